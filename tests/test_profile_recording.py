"""Tick timing recordings and `xmarks profile` (tick/timings.py TimingRecorder, tick/gcwatch.py,
profiling/recording.py, profiling/profile_report.py, cli/profile.py), and the progress
lines of long operations (tick/warmup.py, tick/swarm.py, profiling/bench.py).

Synthetic recordings are written two ways: by the real recorder (TickTimings.record with
made-up phase marks) and by a reference encoder below that follows the format as
profiling/README.md specifies it, so the reader is checked against the document too. The
report's figures are checked against numpy and against what was planted. No assertion
judges a timing.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from profiling import bench as B
from profiling.profile_report import analyse, format_profile, verdict
from profiling.recording import RecordingError, parse_recording, read_recording
from tick import gcwatch as G
from tick import swarm as SW
from tick import timings as T
from tick import warmup as W
from tests.test_cli import assert_one_line_error, run as run_cli
from tick.timings import PHASES, TickTimings, TimingRecorder

TICK_RATE = 20.0
BUDGET_NS = 50_000_000
T0 = 5_000_000_000  # monotonic ns of the first synthetic tick


pytestmark = pytest.mark.usefixtures("no_xmarks_env")


# ---- the reference encoder (profiling/README.md, "Timing recordings") ---------------------

def reference_file(ticks: np.ndarray, gcs: list[tuple[int, int, int]] = (), *,
                   end: tuple[int, int, int, int] | None = (0, 0, 0, 0),
                   tick_rate: float = TICK_RATE, phases=PHASES, version: int = 1,
                   unix_ms: int = 1_700_000_000_000, mono_ns: int = T0) -> bytes:
    """The bytes of a recording, written from the spec: header, then W-word records
    (tick rows, GC rows, END), little-endian. end=None leaves the END record out."""
    names = b"".join(bytes([len(p)]) + p.encode() for p in phases)
    size = 48 + len(names)
    size += -size % 8
    words = max(6, 3 + len(phases))
    head = b"XMTICKS\x00" + struct.pack("<IIdqqII", version, size, tick_rate, unix_ms,
                                        mono_ns, len(phases), words)
    out = [(head + names).ljust(size, b"\x00")]

    def record(tag, *values):
        row = [tag, *values] + [0] * (words - 1 - len(values))
        out.append(struct.pack(f"<{words}q", *row))
    for row in ticks:
        record(1, *map(int, row))
    for start, duration, generation in gcs:
        record(2, start, duration, generation, 0, 0)
    if end is not None:
        record(3, *(end if end != (0, 0, 0, 0) else (len(ticks), len(gcs), 0, 0)))
    return b"".join(out)


# ---- a synthetic run with planted trouble --------------------------------------------------

STREAK_A = range(100, 105)  # 5 ticks over budget
STREAK_B = range(500, 502)  # 2 ticks over budget
ISOLATED = 800  # 1 tick over budget


def synthetic_ticks(n: int = 1000, seed: int = 7) -> np.ndarray:
    """int64[n, 7] timing rows: lognormal phases (~0.05-2 ms), ticks every 50 ms, three
    runs of over-budget ticks planted in the step phase."""
    rng = np.random.default_rng(seed)
    rows = np.zeros((n, 2 + len(PHASES)), np.int64)
    rows[:, 0] = np.arange(n) + 1000  # tick numbers need not start at 0
    rows[:, 1] = T0 + np.arange(n, dtype=np.int64) * BUDGET_NS
    scale = np.array([0.1, 0.05, 1.0, 0.8, 0.02]) * 1e6
    rows[:, 2:] = (rng.lognormal(0.0, 0.6, (n, len(PHASES))) * scale).astype(np.int64) + 1
    for i in (*STREAK_A, *STREAK_B, ISOLATED):
        if i < n:
            rows[i, 2 + 2] += 60_000_000 + i * 1000  # step: 60+ ms; distinct totals
    return rows


def planted_gcs(rows: np.ndarray) -> list[tuple[int, int, int]]:
    """(start, duration, generation): in tick 102's step, in tick 300's encode, and one
    between ticks 400 and 401."""
    def at_phase(i, k, into=1000):
        return int(rows[i, 1] + rows[i, 2:2 + k].sum() + into)
    return [(at_phase(102, 2), 8_000_000, 2),
            (at_phase(300, 3), 300_000, 0),
            (int(rows[400, 1] + rows[400, 2:].sum() + 1_000_000), 2_000_000, 1)]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    rows = synthetic_ticks()
    path = tmp_path_factory.mktemp("rec") / "synthetic.xmt"
    path.write_bytes(reference_file(rows, planted_gcs(rows), end=(len(rows), 3, 9, 0)))
    return rows, str(path)


def test_reader_returns_what_the_reference_encoder_wrote(synthetic):
    rows, path = synthetic
    rec = read_recording(path)
    assert rec.version == 1 and rec.tick_rate == TICK_RATE and rec.phases == PHASES
    assert rec.start_unix_ms == 1_700_000_000_000 and rec.start_mono_ns == T0
    np.testing.assert_array_equal(rec.ticks, rows)
    assert rec.gc.tolist() == [[s, d, g, 0, 0] for s, d, g in sorted(planted_gcs(rows))]
    assert rec.complete and rec.end == {"ticks": 1000, "gc": 3, "overruns": 9, "gc_lost": 0}
    assert rec.ignored_bytes == 0
    assert rec.unix_ms(T0 + 2_000_000_000) == 1_700_000_002_000


def test_percentiles_match_numpy(synthetic):
    rows, path = synthetic
    report = analyse(read_recording(path))
    ms = rows[:, 2:].astype(np.float64) / 1e6
    columns = {p: ms[:, k] for k, p in enumerate(PHASES)} | {"total": ms.sum(axis=1)}
    for name, values in columns.items():
        got = report["percentiles"][name]
        for q in (50, 90, 99):
            assert got[f"p{q}_ms"] == pytest.approx(np.percentile(values, q), abs=1e-6), (name, q)
        assert got["max_ms"] == pytest.approx(values.max(), abs=1e-6)
        assert got["mean_ms"] == pytest.approx(values.mean(), abs=1e-6)
    shares = [report["percentiles"][p]["share"] for p in PHASES]
    assert sum(shares) == pytest.approx(1.0, abs=1e-3)
    assert report["budget_ms"] == 50.0 and report["ticks"] == 1000
    assert report["loop_overruns"] == 9 and report["complete"]


def test_worst_ticks_are_the_longest_totals_with_their_phases(synthetic):
    rows, path = synthetic
    report = analyse(read_recording(path), top=4)
    total = rows[:, 2:].sum(axis=1)
    expected = np.argsort(-total, kind="stable")[:4]
    assert [w["tick"] for w in report["worst"]] == [int(rows[i, 0]) for i in expected]
    first = report["worst"][0]
    i = int(expected[0])
    assert first["total_ms"] == pytest.approx(total[i] / 1e6, abs=1e-6)
    assert first["phases_ms"] == {p: pytest.approx(rows[i, 2 + k] / 1e6, abs=1e-6)
                                  for k, p in enumerate(PHASES)}
    assert first["at_s"] == pytest.approx(i * 0.05, abs=1e-3)
    assert len(analyse(read_recording(path), top=0)["worst"]) == 0


def test_streaks_of_ticks_over_budget(synthetic):
    rows, path = synthetic
    ob = analyse(read_recording(path))["over_budget"]
    assert ob["ticks"] == 8 and ob["pct"] == pytest.approx(0.8)
    assert ob["runs"] == 3 and ob["streaks"] == 2 and ob["isolated"] == 1
    assert ob["longest"] == {"length": 5, "first_tick": 1100, "last_tick": 1104,
                             "at_s": pytest.approx(5.0)}
    assert [s["length"] for s in ob["longest_streaks"]] == [5, 2]
    assert ob["longest_streaks"][1]["first_tick"] == 1500


def test_a_gap_in_tick_numbers_breaks_a_streak():
    rows = synthetic_ticks(50)
    rows[10:14, 4] += 70_000_000  # 4 rows over budget ...
    rows[12:, 0] += 5  # ... but the ticks between rows 11 and 12 were not recorded
    report = analyse(parse_recording(reference_file(rows)))
    assert report["tick_gaps"] == 1
    assert report["over_budget"]["streaks"] == 2
    assert report["over_budget"]["longest"]["length"] == 2


def test_gc_collections_are_attributed_to_the_tick_and_phase_they_ran_in(synthetic):
    rows, path = synthetic
    g = analyse(read_recording(path))["gc"]
    assert g["collections"] == 3 and g["in_ticks"] == 2 and g["between_ticks"] == 1
    assert g["by_generation"] == {"0": 1, "1": 1, "2": 1}
    assert g["in_ticks_by_generation"] == {"0": 1, "2": 1}
    assert g["over_budget_ticks_with_gc"] == 1
    assert g["in_ticks_ms"] == pytest.approx(8.3)
    big, small = sorted(g["events"], key=lambda e: -e["duration_ms"])
    assert (big["tick"], big["generation"], big["phase"]) == (1102, 2, "step")
    assert big["duration_ms"] == pytest.approx(8.0)
    assert big["share"] == pytest.approx(8e6 / rows[102, 2:].sum(), abs=1e-4)
    assert big["tick_over_budget"] is True
    assert (small["tick"], small["generation"], small["phase"]) == (1300, 0, "encode")
    assert small["tick_over_budget"] is False
    worst = {w["tick"]: w for w in analyse(read_recording(path), top=8)["worst"]}
    assert worst[1102]["gc_ms"] == pytest.approx(8.0) and worst[1100]["gc_ms"] == 0.0


def test_verdicts():
    rows = synthetic_ticks(200)
    rows[:, 4] %= 1_000_000  # nothing over budget
    assert verdict(analyse(parse_recording(reference_file(rows)))).startswith("OK:")
    one = rows.copy()
    one[150, 4] += 80_000_000
    text = verdict(analyse(parse_recording(reference_file(one))))
    assert text.startswith("MOSTLY OK:") and "worst tick 1150" in text and "step" in text
    many = rows.copy()
    many[:20, 5] += 80_000_000
    text = verdict(analyse(parse_recording(reference_file(many))))
    assert text.startswith("OVER BUDGET:") and "20 of 200 ticks (10.00%)" in text
    assert "longest streak 20" in text


# ---- the command -----------------------------------------------------------------------------

def test_profile_json_is_the_report(monkeypatch, capsys, synthetic):
    rows, path = synthetic
    code, out, err = run_cli(monkeypatch, capsys, "profile", path, "--json", "--top", "3")
    assert code == 0, err
    report = json.loads(out)
    assert report == json.loads(json.dumps(analyse(read_recording(path), top=3)))
    assert set(report) >= {"percentiles", "worst", "over_budget", "gc", "verdict", "ticks",
                           "budget_ms", "complete", "phases"}
    assert len(report["worst"]) == 3


def test_profile_text_report(monkeypatch, capsys, synthetic):
    _, path = synthetic
    code, out, err = run_cli(monkeypatch, capsys, "profile", path, "--top", "5")
    assert code == 0, err
    assert "p99 ms" in out and "worst 5 ticks" in out
    assert "longest 5 ticks (1100..1104" in out
    assert "gc: 3 collections, 2 inside ticks" in out
    assert re.search(r"^\s+1102\s+2\s+8\.000\s+\d+\.\d%\s+step", out, re.M), out
    assert out.rstrip().splitlines()[-1].startswith("verdict: MOSTLY OK:")
    assert format_profile(analyse(read_recording(path), top=5)) + "\n" == out


def test_profile_plot_writes_a_png(monkeypatch, capsys, synthetic, tmp_path):
    import matplotlib.image

    _, path = synthetic
    png = tmp_path / "run.png"
    code, out, err = run_cli(monkeypatch, capsys, "profile", path, "--plot", str(png))
    assert code == 0, err
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    image = matplotlib.image.imread(str(png))
    assert image.shape[0] >= 400 and image.shape[1] >= 600
    assert f"plot written to {png}" in out
    code, out, err = run_cli(monkeypatch, capsys, "profile", path, "--json", "--plot",
                             str(tmp_path / "b.png"))
    assert code == 0 and json.loads(out)["plot"] == str(tmp_path / "b.png")


def test_profile_plot_without_matplotlib_names_the_extra(monkeypatch, capsys, synthetic,
                                                         tmp_path):
    _, path = synthetic
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    code, out, err = run_cli(monkeypatch, capsys, "profile", path, "--plot",
                             str(tmp_path / "x.png"))
    assert_one_line_error(code, out, err, "--plot", "pip install 'xmarks[plot]'")
    assert not (tmp_path / "x.png").exists()


def test_profile_plot_to_an_unwritable_place(monkeypatch, capsys, synthetic, tmp_path):
    _, path = synthetic
    code, out, err = run_cli(monkeypatch, capsys, "profile", path, "--plot",
                             str(tmp_path / "no" / "such" / "dir.png"))
    assert_one_line_error(code, out, err, "--plot", "cannot write")


# ---- bad, truncated and foreign files --------------------------------------------------------

def _bad(tmp_path, data: bytes) -> str:
    path = tmp_path / "bad.xmt"
    path.write_bytes(data)
    return str(path)


GOOD = reference_file(synthetic_ticks(20))


@pytest.mark.parametrize("data,words", [
    (b"", ["not an xmarks timing recording"]),
    (b"XMTI", ["truncated header"]),
    (GOOD[:30], ["truncated header"]),
    (GOOD[:52], ["truncated header"]),  # the fixed part, not the phase names
    (b"\x89PNG\r\n\x1a\n" + bytes(200), ["not an xmarks timing recording"]),
    (b"time,tick\n" * 20, ["not an xmarks timing recording"]),
    (GOOD[:8] + struct.pack("<I", 2) + GOOD[12:], ["version 2", "version 1"]),
    (GOOD[:40] + struct.pack("<I", 0) + GOOD[44:], ["corrupt header"]),
    (GOOD[:44] + struct.pack("<I", 9) + GOOD[48:], ["corrupt header"]),
    (GOOD[:16] + struct.pack("<d", float("nan")) + GOOD[24:], ["tick rate"]),
    (GOOD[:12] + struct.pack("<I", 12) + GOOD[16:], ["corrupt header"]),
    (GOOD[:80] + struct.pack("<q", 77) + GOOD[88:], ["corrupt record 0", "tag 77"]),
    (reference_file(synthetic_ticks(0), end=None), ["no tick rows"]),
    (reference_file(synthetic_ticks(0)), ["no tick rows"]),
])
def test_bad_files_are_one_line_and_exit_2(monkeypatch, capsys, tmp_path, data, words):
    path = _bad(tmp_path, data)
    with pytest.raises(RecordingError):
        read_recording(path)
    code, out, err = run_cli(monkeypatch, capsys, "profile", path)
    assert_one_line_error(code, out, err, *words)


def test_missing_file_and_directory(monkeypatch, capsys, tmp_path):
    code, out, err = run_cli(monkeypatch, capsys, "profile", str(tmp_path / "none.xmt"))
    assert_one_line_error(code, out, err, "cannot read", "No such file")
    code, out, err = run_cli(monkeypatch, capsys, "profile", str(tmp_path))
    assert_one_line_error(code, out, err, "is a directory")


def test_a_file_cut_inside_a_record_keeps_its_whole_records(monkeypatch, capsys, tmp_path):
    rows = synthetic_ticks(20)
    data = reference_file(rows, end=None)
    path = _bad(tmp_path, data[:-20])  # the last row lost 20 of its 64 bytes
    rec = read_recording(path)
    np.testing.assert_array_equal(rec.ticks, rows[:19])
    assert rec.ignored_bytes == 44 and not rec.complete and rec.end is None
    code, out, err = run_cli(monkeypatch, capsys, "profile", path)
    assert code == 0, err
    assert "cut short (no END record), 44 trailing bytes of a partial record ignored" in out


# ---- the recorder ------------------------------------------------------------------------------

def _marks(start: int, durations) -> list[int]:
    return [start] + [start + int(d) for d in np.cumsum(durations)]


def test_recorder_writes_every_tick_in_chunks_and_closes_with_an_end_record(tmp_path):
    path = tmp_path / "rec.xmt"
    timings = TickTimings(128)  # the ring wraps many times: the chunks keep up
    recorder = TimingRecorder(str(path), TICK_RATE, chunk=64, watch_gc=False)
    header = path.stat().st_size
    assert header % 8 == 0
    timings.attach(recorder)
    rows = synthetic_ticks(1000)
    sizes = []
    for row in rows:
        timings.record(int(row[0]), _marks(int(row[1]), row[2:]))
        sizes.append(path.stat().st_size)
    # one write per 64 ticks, nothing in between: the tick never waits on a syscall
    assert sizes[62] == header and sizes[63] == header + 64 * 64
    assert len(set(sizes)) == 1 + 1000 // 64
    timings.overruns = 4
    assert timings.detach() is recorder and recorder.closed
    assert timings.recorder is None
    rec = read_recording(str(path))
    np.testing.assert_array_equal(rec.ticks, rows)
    assert rec.end == {"ticks": 1000, "gc": 0, "overruns": 4, "gc_lost": 0}
    assert rec.tick_rate == TICK_RATE and rec.phases == PHASES
    timings.record(5000, _marks(T0, [1, 1, 1, 1, 1]))  # detached: nothing more written
    assert read_recording(str(path)).ticks.shape == (1000, 7)
    recorder.close(timings)  # twice is fine


def test_recorder_chunk_never_exceeds_the_ring(tmp_path):
    timings = TickTimings(16)
    recorder = TimingRecorder(str(tmp_path / "r.xmt"), TICK_RATE, chunk=256, watch_gc=False)
    timings.attach(recorder)
    assert recorder.chunk == 16
    rows = synthetic_ticks(100)
    for row in rows:
        timings.record(int(row[0]), _marks(int(row[1]), row[2:]))
    timings.detach()
    np.testing.assert_array_equal(read_recording(str(tmp_path / "r.xmt")).ticks, rows)


def test_a_crashed_recorder_leaves_its_written_chunks_readable(tmp_path):
    path = tmp_path / "crash.xmt"
    timings = TickTimings(1024)
    recorder = TimingRecorder(str(path), TICK_RATE, chunk=256, watch_gc=False)
    timings.attach(recorder)
    rows = synthetic_ticks(600)
    for row in rows:
        timings.record(int(row[0]), _marks(int(row[1]), row[2:]))
    recorder._file.close()  # the process dies: no last flush, no END record
    rec = read_recording(str(path))
    np.testing.assert_array_equal(rec.ticks, rows[:512])
    assert not rec.complete and rec.ignored_bytes == 0


class FullDisk:
    """A file whose writes fail after `room` bytes, like a full disk."""

    def __init__(self, real, room: int) -> None:
        self.real, self.room = real, room

    def write(self, data) -> int:
        if self.room <= 0:
            raise OSError(28, "No space left on device")
        n = self.real.write(data[:self.room])
        self.room -= n
        return n

    def close(self) -> None:
        self.real.close()


def test_a_full_disk_stops_the_recording_not_the_server(tmp_path, caplog):
    path = tmp_path / "full.xmt"
    timings = TickTimings(256)
    recorder = TimingRecorder(str(path), TICK_RATE, chunk=16, watch_gc=False)
    recorder._file = FullDisk(recorder._file, room=40 * 64 + 10)  # 2.5 chunks
    timings.attach(recorder)
    rows = synthetic_ticks(100)
    with caplog.at_level("ERROR", logger="xmarks.timings"):
        for row in rows:  # never raises into the tick
            timings.record(int(row[0]), _marks(int(row[1]), row[2:]))
        timings.detach()
    assert recorder.error == "No space left on device" and recorder.closed
    assert recorder.ticks_written == 32
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [
        f"recording tick timings to {path} stopped"]
    rec = read_recording(str(path))
    np.testing.assert_array_equal(rec.ticks, rows[:40])  # and a partial 41st: ignored
    assert rec.ignored_bytes == 10 and not rec.complete


def test_recorder_writes_the_collections_it_saw(tmp_path, monkeypatch):
    clock = iter(range(T0 + 1000, T0 + 10**9, 500))
    monkeypatch.setattr(G, "now_ns", lambda: next(clock))
    # the collections are planted by hand: a real one meanwhile would take the fake clock
    gc.disable()
    try:
        _record_planted_collections(tmp_path)
    finally:
        gc.enable()


def _record_planted_collections(tmp_path) -> None:
    path = tmp_path / "gc.xmt"
    timings = TickTimings(64)
    recorder = TimingRecorder(str(path), TICK_RATE, chunk=8, watch_gc=True)
    watch = recorder.gc
    watch._callback("start", {"generation": 1})  # before attach: not recorded
    watch._callback("stop", {"generation": 1, "collected": 3, "uncollectable": 0})
    timings.attach(recorder)
    assert watch.installed
    watch._callback("start", {"generation": 0})
    watch._callback("stop", {"generation": 0, "collected": 5, "uncollectable": 1})
    for k in range(10):
        timings.record(k, _marks(T0 + k * BUDGET_NS, [10, 10, 10, 10, 10]))
    watch._callback("start", {"generation": 2})
    watch._callback("stop", {"generation": 2, "collected": 0, "uncollectable": 0})
    timings.detach()
    assert not watch.installed and watch._callback not in gc.callbacks
    rec = read_recording(str(path))
    assert rec.gc[:, G.GC_GENERATION].tolist() == [0, 2]
    assert rec.gc[:, G.GC_DURATION].tolist() == [500, 500]
    assert rec.gc[0, G.GC_COLLECTED] == 5 and rec.gc[0, G.GC_UNCOLLECTABLE] == 1
    assert rec.end["gc"] == 2 and len(rec.ticks) == 10


def test_gc_watch_sees_a_real_collection_and_counts_what_its_ring_lost():
    watch = G.GcWatch(capacity=4).install()
    try:
        gc.collect(2)
    finally:
        watch.uninstall()
    rows, lost = watch.since(0)
    assert lost == 0 and len(rows) >= 1
    assert rows[-1, G.GC_GENERATION] == 2 and rows[-1, G.GC_DURATION] > 0
    for _ in range(6):
        watch._callback("start", {})
        watch._callback("stop", {"generation": 0})
    rows, lost = watch.since(0)
    assert len(rows) == 4 and lost == watch.recorded - 4
    assert watch.since(watch.recorded)[0].shape == (0, G.GC_COLUMNS)


def test_header_layout_is_the_documented_one():
    head = T.recording_header(30.0, PHASES, 123, 456)
    assert len(head) % 8 == 0 and head[:8] == b"XMTICKS\x00"
    assert struct.unpack_from("<IIdqqII", head, 8) == (1, len(head), 30.0, 123, 456, 5, 8)
    assert head[48:54] == b"\x05drain"
    assert head == reference_file(synthetic_ticks(0), end=None, tick_rate=30.0,
                                  unix_ms=123, mono_ns=456)


# ---- real servers ------------------------------------------------------------------------------

def test_a_real_server_records_every_tick_it_runs(tmp_path, caplog):
    from sim.rules import GameRules
    from tick.config import ServerConfig
    from tick.rates import TickRates
    from tick.server import GameServer
    from net.udp import UdpEndpoint

    rules = GameRules(world_width=256.0, world_height=256.0, max_players=8, treasure_count=8,
                      cell_size=64.0, seed=3)
    config = ServerConfig(rules=rules, rates=TickRates(tick_rate=TICK_RATE, status_every=0))
    server = GameServer(config, endpoint=UdpEndpoint("127.0.0.1", 0), key=bytes(32))
    try:
        with caplog.at_level("INFO", logger="xmarks.warmup"):
            server.warm_up()
        assert any(r.getMessage().startswith("warm-up took") for r in caplog.records)
        path = tmp_path / "real.xmt"
        server.timings.attach(TimingRecorder(str(path), server.tick_rate, chunk=8))
        for _ in range(20):
            server.run_tick()
        server.timings.detach()
    finally:
        server.close()
    rec = read_recording(str(path))
    assert len(rec.ticks) == 20 and rec.end["ticks"] == 20
    assert rec.ticks[:, 0].tolist() == list(range(20))
    assert np.all(np.diff(rec.ticks[:, 1]) > 0) and np.all(rec.ticks[:, 2:] >= 0)
    assert analyse(rec)["ticks"] == 20


def _serve_env() -> dict[str, str]:
    """The environment without XMARKS_* settings, and without the admin API (its fixed
    port may be taken by another server on this machine)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("XMARKS_")}
    if importlib.util.find_spec("net.admin_http") is None:  # a server without one
        return env
    return env | {"XMARKS_ADMIN_ENABLED": "false"}


def _xmarks() -> list[str]:
    script = Path(sys.executable).with_name("xmarks")
    return [str(script)] if script.exists() else [sys.executable, "-m", "cli"]


def test_serve_record_timings_then_profile(tmp_path):
    path = tmp_path / "serve.xmt"
    env = _serve_env()
    serve = subprocess.run(
        _xmarks() + ["serve", "--duration", "2", "--port", "0", "--key-file",
                     str(tmp_path / "k"), "--record-timings", str(path)],
        capture_output=True, text=True, timeout=300, env=env)
    assert serve.returncode == 0, serve.stderr
    ran = int(re.search(r"stopped at tick (\d+)", serve.stderr).group(1))
    assert ran > 0
    rec = read_recording(str(path))
    assert len(rec.ticks) == ran and rec.end["ticks"] == ran
    assert rec.ticks[:, 0].tolist() == list(range(ran))
    assert f"recorded {ran} ticks in {path}" in serve.stderr
    assert "warm-up took" in serve.stderr
    profile = subprocess.run(_xmarks() + ["profile", str(path), "--json"],
                             capture_output=True, text=True, timeout=60, env=env)
    assert profile.returncode == 0, profile.stderr
    assert json.loads(profile.stdout)["ticks"] == ran


def test_a_killed_server_leaves_a_readable_recording(tmp_path):
    """SIGKILL: no END record, no last flush; every whole chunk written so far is there."""
    import signal
    import time

    path = tmp_path / "killed.xmt"
    serve = subprocess.Popen(
        _xmarks() + ["serve", "--tick-rate", "200", "--duration", "120", "--port", "0",
                     "--key-file", str(tmp_path / "k"), "--record-timings", str(path),
                     "--log-level", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_serve_env())
    try:
        header = len(T.recording_header(200.0, PHASES, 0, 0))
        deadline = time.monotonic() + 120  # a cold numba cache compiles every kernel first
        while not (path.exists() and path.stat().st_size > header):
            assert serve.poll() is None, serve.stderr.read()
            assert time.monotonic() < deadline, "no chunk written"
            time.sleep(0.1)
        serve.send_signal(signal.SIGKILL)
        serve.wait(timeout=30)
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()
        serve.stderr.close()
    rec = read_recording(str(path))
    assert not rec.complete and rec.ignored_bytes == 0
    assert len(rec.ticks) > 0 and len(rec.ticks) % T.RECORD_CHUNK == 0
    assert rec.ticks[:, 0].tolist() == list(range(len(rec.ticks)))


def test_serve_record_timings_to_an_unwritable_path(tmp_path):
    env = _serve_env()
    serve = subprocess.run(
        _xmarks() + ["serve", "--duration", "1", "--port", "0", "--key-file",
                     str(tmp_path / "k"), "--record-timings", str(tmp_path / "no" / "x.xmt")],
        capture_output=True, text=True, timeout=120, env=env)
    assert serve.returncode == 2
    lines = [line for line in serve.stderr.splitlines() if "error" in line]
    assert lines == [lines[0]] and lines[0].startswith("xmarks: error: --record-timings:")
    assert "Traceback" not in serve.stderr


def test_bench_record_timings_to_an_unwritable_path(monkeypatch, capsys, tmp_path):
    code, out, err = run_cli(monkeypatch, capsys, "bench", "--scenario", "ci",
                             "--record-timings", str(tmp_path / "no" / "x.xmt"))
    assert_one_line_error(code, out, err, "--record-timings", "cannot write")
    code, out, err = run_cli(monkeypatch, capsys, "bench", "--scenario", "ci",
                             "--record-timings", str(tmp_path))
    assert_one_line_error(code, out, err, "--record-timings", "is a directory")


# ---- progress lines --------------------------------------------------------------------------

class FakeClock:
    def __init__(self, t: int = 0) -> None:
        self.t = t

    def __call__(self) -> int:
        return self.t


def test_connect_progress_says_n_of_n_once_a_second_then_all(monkeypatch):
    clock = FakeClock(10**9)
    monkeypatch.setattr(SW, "now_ns", clock)
    said: list[str] = []
    progress = SW.ConnectProgress(10, said.append)
    asked = []

    def count():
        asked.append(1)
        return 3
    progress.poll(count)
    clock.t += 500_000_000
    progress.poll(count)
    assert said == [] and asked == []  # not due: the count is not even taken
    clock.t += 600_000_000
    progress.poll(count)
    assert said == ["3/10 bots connected (1 s)"]
    progress.poll(count)
    assert len(said) == 1
    clock.t += 1_000_000_000
    progress.update(10)
    assert said[-1] == "all 10 bots connected in 2.1 s"
    clock.t += 5_000_000_000
    progress.poll(count)
    progress.finish(10)
    assert len(said) == 2


def test_connect_progress_at_the_end_of_a_short_run(monkeypatch):
    monkeypatch.setattr(SW, "now_ns", FakeClock(0))
    said: list[str] = []
    progress = SW.ConnectProgress(5, said.append)
    progress.finish(2)
    assert said == ["2/5 bots connected when the run ended"]


def test_horde_progress_reads_the_horde_counters(monkeypatch):
    from net.horde import ST_ACCEPTS, ST_ROWS

    clock = FakeClock(0)
    monkeypatch.setattr(SW, "now_ns", clock)

    class Horde:
        count = 4

        class state:
            stats = np.zeros(ST_ROWS, np.int64)
    said: list[str] = []
    stops = iter([False, False, True])
    check = SW.watch_horde_connects(Horde, lambda: next(stops), said.append)
    Horde.state.stats[ST_ACCEPTS] = 1
    clock.t = 1_000_000_000
    assert check() is False and said == ["1/4 bots connected (1 s)"]
    Horde.state.stats[ST_ACCEPTS] = 4
    clock.t = 2_000_000_000
    assert check() is False and said[-1] == "all 4 bots connected in 2.0 s"
    assert check() is True


def test_warmup_summary_line():
    counts = {"net.a.k": (1, 0), "net.b.k": (0, 1), "sim.c.k": (0, 2), "sim.d.k": (0, 0)}
    line = W.summary(counts, {"net.b.k": 2.5, "sim.c.k": 7.25}, 9.87)
    assert line.startswith("warm-up took 9.87 s: 3 kernels ready, 1 loaded from numba's "
                           "cache, 2 compiled (slowest: sim.c.k 7.2 s, net.b.k 2.5 s)")
    line = W.summary({"net.a.k": (2, 0)}, {}, 0.5)
    assert line == "warm-up took 0.50 s: 1 kernels ready, 1 loaded from numba's cache, 0 compiled"


def test_compile_log_names_the_kernels_numba_compiles(caplog):
    from numba import njit

    def twice(x):
        return 2 * x
    kernel = njit(twice)
    log = W.watch_compiles()
    assert W.watch_compiles() is log  # one listener for the process
    with caplog.at_level("INFO", logger="xmarks.warmup"):
        assert kernel(21) == 42
    messages = [r.getMessage() for r in caplog.records]
    name = f"{__name__}.test_compile_log_names_the_kernels_numba_compiles.<locals>.twice"
    assert f"compiling {name} ..." in messages
    assert any(m.startswith(f"compiled {name} in ") for m in messages)
    assert name in log.seconds


def test_bench_follows_a_child_log_and_passes_on_progress(tmp_path):
    path = tmp_path / "bots.err"
    follow = B._Follow(str(path))
    assert follow.lines() == []  # not there yet
    path.write_text("10:00:00 INFO  12/100 bots connected (1 s)\n10:00:01 INFO  par")
    said: list[str] = []
    B._relay(follow, B.BOTS_LINE, said.append)
    assert said == ["12/100 bots connected (1 s)"]
    with open(path, "a") as f:
        f.write("tial line\n10:00:02 INFO  all 100 bots connected in 2.0 s\n")
    B._relay(follow, B.BOTS_LINE, said.append)
    assert said[1:] == ["all 100 bots connected in 2.0 s"]
    kernels = tmp_path / "prewarm.err"
    kernels.write_text("10:00:00 INFO  compiling net.decode.decode_batch ...\n"
                       "10:00:00 INFO  serving on 127.0.0.1:1\n"
                       '{"msg": "x"}\n'
                       "10:00:09 INFO  warm-up took 9.0 s: 50 kernels ready\n")
    got: list[str] = []
    B._relay(B._Follow(str(kernels)), B.KERNEL_LINE, got.append)
    assert got == ["compiling net.decode.decode_batch ...",
                   "warm-up took 9.0 s: 50 kernels ready"]


def test_bench_measuring_lines(monkeypatch, tmp_path):
    clock = FakeClock(0)
    monkeypatch.setattr(B, "now_ns", clock)
    said: list[str] = []
    (tmp_path / "e").write_text("")
    watch = B._measuring(0, 12.0, B._Follow(str(tmp_path / "e")), said.append)
    for t in (1, 5, 6, 10, 11, 12, 13):
        clock.t = t * 10**9
        watch()
    assert said == ["measuring: 7 s left", "measuring: 2 s left",
                    "measured; waiting for both reports"]
