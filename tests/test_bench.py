"""`xmarks bench` (profiling/bench*.py, profiling/probe.py, tick/stats.py, cli/bench.py).

The pure parts (world sizing, config, percentiles from histograms, /proc parsing, targets,
the table) are tested on made-up inputs; the window on an in-process server without
clients; and the whole thing once, for real, on the small `ci` scenario: its --json output
must have every key with the right type and sane values. No test judges a timing.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import tomllib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from profiling import bench_report as BR
from profiling import bench_spec as BS
from profiling import probe as P
from tick import stats as S
from tick.timings import COLUMNS, FIRST_PHASE, PHASES

ROOT = Path(__file__).resolve().parent.parent


pytestmark = pytest.mark.usefixtures("no_xmarks_env")


def xmarks_command() -> list[str]:
    script = Path(sys.executable).with_name("xmarks")
    return [str(script)] if script.exists() else [sys.executable, "-m", "cli"]


# ---- world sizing and the config --------------------------------------------------------

def test_world_gives_about_visible_players_in_view():
    w = BS.world_for(10_000, 32, view_radius=512.0)
    side = math.sqrt(10_000 * math.pi * 512.0**2 / 32)
    assert abs(w["world_width"] - side) <= 0.5 and w["world_height"] == w["world_width"]
    density = 10_000 / w["world_width"] ** 2
    assert density * math.pi * 512.0**2 == pytest.approx(32, rel=1e-3)
    assert w["expected_visible"] == pytest.approx(32, abs=0.1)
    assert w["max_players"] == 10_000


def test_world_scales_treasures_with_area_and_stays_within_the_rules():
    small, big = BS.world_for(1000, 32), BS.world_for(4000, 32)
    assert big["world_width"] ** 2 == pytest.approx(4 * small["world_width"] ** 2, rel=1e-3)
    assert big["treasure_count"] == pytest.approx(4 * small["treasure_count"], rel=0.01)
    default = BS.world_for(1, 1, view_radius=4096 / math.sqrt(math.pi))  # side 4096
    assert default["world_width"] == 4096 and default["treasure_count"] == 256
    assert BS.world_for(65535, 0.01)["world_width"] == BS.MAX_WORLD_SIDE
    tiny = BS.world_for(2, 32)
    assert tiny["world_width"] == BS.MIN_WORLD_SIDE and tiny["treasure_count"] >= 1
    assert tiny["expected_visible"] <= 1


def test_visible_sizes_the_world():
    assert BS.world_for(1000, 8)["world_width"] == pytest.approx(
        2 * BS.world_for(1000, 32)["world_width"], abs=1)


def test_config_is_valid_toml_and_a_valid_server_config(tmp_path):
    spec = BS.BenchSpec(players=5000, tick_rate=30.0, snapshot_rate=15.0, duration=5, seed=7,
                       io="portable")
    tables = BS.bench_config(spec)
    path = tmp_path / "b.toml"
    path.write_text(BS.to_toml(tables))
    assert tomllib.loads(path.read_text()) == tables
    config = BS.validate_config(str(path))
    assert config.rules.max_players == 5000 and config.rules.seed == 7
    assert config.rates.tick_rate == 30 and config.rates.snapshot_every == 2
    assert config.rates.status_every == 0 and config.io == "portable" and config.port == 0
    assert config.rates.timing_ring >= (spec.warmup_s + spec.duration) * 30


def test_a_config_the_server_refuses_is_a_usage_error(tmp_path):
    spec = BS.BenchSpec(players=10, tick_rate=20.0, snapshot_rate=3.0)
    path = tmp_path / "b.toml"
    path.write_text(BS.to_toml(BS.bench_config(spec)))
    with pytest.raises(BS.BenchUsageError, match="snapshot_rate"):
        BS.validate_config(str(path))


def test_to_toml_values():
    text = BS.to_toml({"a": {"s": 'x"y', "b": True, "i": 3, "f": 2.5}})
    assert tomllib.loads(text) == {"a": {"s": 'x"y', "b": True, "i": 3, "f": 2.5}}
    with pytest.raises(TypeError):
        BS.to_toml({"a": {"l": [1]}})


def test_default_warmup_covers_the_connect_ramp():
    spec = BS.BenchSpec(players=10_000, connect_rate=2000.0)
    assert spec.warmup_s == pytest.approx(10_000 / 2000 + BS.WARMUP_SLACK_S)
    assert replace(spec, warmup=1.5).warmup_s == 1.5


# ---- scenarios and specs ------------------------------------------------------------------

def test_every_scenario_makes_a_valid_run(tmp_path):
    common, scenarios = BS.load_scenarios()
    assert {"ci", "10k-20hz", "7500-30hz", "3500-60hz", "latency-1000-60hz",
            "latency-1000-120hz"} <= set(scenarios)
    for name in scenarios:
        spec = BS.make_spec(name, {})
        path = tmp_path / f"{name}.toml"
        path.write_text(BS.to_toml(BS.bench_config(spec)))
        BS.validate_config(str(path))
        for figure, (op, _) in spec.targets.items():
            assert op in BR.OPS, (name, figure)
    ci = BS.make_spec("ci", {})
    assert (ci.players, ci.duration, ci.warmup) == (50, 3.0, 2)
    big = BS.make_spec("10k-20hz", {})
    assert big.targets["overrun_pct"] == ["<=", 1.0] and "floor_ratio" in big.targets


def test_flags_override_a_scenario():
    spec = BS.make_spec("10k-20hz", {"duration": 5.0, "players": None, "io": "portable"})
    assert (spec.players, spec.duration, spec.io, spec.scenario) == (10_000, 5.0, "portable",
                                                                     "10k-20hz")
    assert spec.ledger == "sqlite"  # as deployed, unless asked
    assert BS.make_spec("ci", {"ledger": "none"}).ledger == "none"


@pytest.mark.parametrize("scenario,flags,words", [
    (None, {}, "--players"),
    ("nope", {}, "unknown scenario"),
    (None, {"players": 0}, "players"),
    (None, {"players": 70_000}, "players"),
    (None, {"players": 10, "duration": 0.0}, "duration"),
    (None, {"players": 10, "visible": -1.0}, "visible"),
    (None, {"players": 10, "warmup": -1.0}, "warmup"),
    (None, {"players": 10, "ledger": "disk"}, "ledger"),
])
def test_bad_specs(scenario, flags, words):
    with pytest.raises(BS.BenchUsageError, match=words):
        BS.make_spec(scenario, flags)


def test_a_scenario_file_with_an_unknown_key_is_refused(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text("[scenario.x]\nplayers = 1\nspeed = 3\n")
    with pytest.raises(BS.BenchUsageError, match="speed"):
        BS.load_scenarios(path)


# ---- percentiles, histograms, /proc -------------------------------------------------------

def test_histogram_percentiles_are_nearest_rank():
    rng = np.random.default_rng(3)
    for _ in range(50):
        samples = rng.integers(20, 1201, size=int(rng.integers(1, 500)))
        hist = np.bincount(samples, minlength=1201).astype(np.int64)
        for q in (0.5, 0.99, 1.0, 0.01):
            assert S.histogram_percentile(hist, q) == int(
                np.percentile(samples, 100 * q, method="inverted_cdf"))
        summary = S.histogram_summary(hist)
        assert summary["count"] == len(samples)
        assert summary["mean"] == pytest.approx(samples.mean(), abs=0.005)
        assert summary["max"] == samples.max()
    empty = np.zeros(1201, np.int64)
    assert S.histogram_summary(empty) == {"count": 0, "mean": 0.0, "p50": 0, "p99": 0, "max": 0}


def test_phase_figures_from_timing_rows():
    rng = np.random.default_rng(1)
    rows = np.zeros((300, COLUMNS), np.int64)
    rows[:, FIRST_PHASE:] = rng.integers(1_000, 5_000_000, size=(300, len(PHASES)))
    fig = S.phase_figures(rows)
    assert list(fig) == [*PHASES, "total"]
    total = rows[:, FIRST_PHASE:].sum(axis=1) / 1e6
    assert fig["total"]["p99_ms"] == pytest.approx(np.percentile(total, 99), abs=1e-4)
    assert fig["total"]["max_ms"] == pytest.approx(total.max(), abs=1e-4)
    enc = rows[:, FIRST_PHASE + PHASES.index("encode")] / 1e6
    assert fig["encode"]["p50_ms"] == pytest.approx(np.median(enc), abs=1e-4)
    for f in fig.values():
        assert f["p50_ms"] <= f["p99_ms"] <= f["max_ms"]
    assert S.phase_figures(rows[:0])["total"] == {"p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0}


PROC_STATUS = """Name:\tpython
Umask:\t0022
VmPeak:\t  900000 kB
VmHWM:\t  204800 kB
VmRSS:\t  153600 kB
Threads:\t3
"""

SNMP = """Ip: Forwarding DefaultTTL InReceives
Ip: 2 64 8594535
Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
Udp: 8559403 10624 3184 8578844 3100 7 0 0 0
UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
UdpLite: 0 0 0 0 99 0 0 0 0
"""


def test_parse_proc_status():
    assert S.parse_proc_status(PROC_STATUS) == {"rss_mb": 150.0, "hwm_mb": 200.0}
    assert S.parse_proc_status("Name: x\n") == {"rss_mb": -1.0, "hwm_mb": -1.0}
    live = S.parse_proc_status(Path("/proc/self/status").read_text()) if Path(
        "/proc/self/status").exists() else {"rss_mb": 1.0, "hwm_mb": 1.0}
    assert 0 < live["rss_mb"] <= live["hwm_mb"]


def test_parse_schedstat():
    assert S.parse_schedstat("275430332 75251908 464\n") == (275430332, 75251908)
    assert S.parse_schedstat("") == (-1, -1) and S.parse_schedstat("x y z") == (-1, -1)


def test_parse_snmp_udp():
    udp = S.parse_snmp_udp(SNMP)
    assert udp["RcvbufErrors"] == 3100 and udp["SndbufErrors"] == 7
    assert S.parse_snmp_udp("") == {}
    assert S.parse_snmp_udp("Udp: A B\nUdp: 1 x\n") == {}


# ---- targets, report, table ----------------------------------------------------------------

def _server_fig(**over) -> dict:
    fig = {"window_s": 3.0, "tick_rate": 20.0, "snapshot_every": 1, "ticks": 60,
           "ticks_expected": 60, "ticks_timed": 60, "budget_ms": 50.0, "ticks_over_budget": 1,
           "overrun_pct": 1.667, "ticks_work_over_budget": 0,
           "phases": S.phase_figures(np.zeros((0, COLUMNS), np.int64)),
           "snapshot_bytes": {"mean": 120.0, "p50": 110, "p99": 300, "max": 480},
           "snapshots": 3000, "snapshot_size_hist": [[110, 3000]], "packets_in": 3000,
           "packets_out": 3000, "bytes_out": 360_000, "bandwidth_out_mbps": 0.96,
           "players_connected": {"open": 50, "close": 50}, "clients_per_tick": 50.0,
           "server_cpu_s": 0.3, "server_cpu_busy_fraction": 0.1,
           "server_cpu_wait_fraction": 0.0, "server_preemptions": 3,
           "server_cpu_us_per_client_tick": 100.0, "py_allocs": 6000,
           "py_allocs_per_tick": 100.0, "py_allocs_note": "", "gc_collections": 0,
           "rss_mb": 150.0, "rss_current_mb": 140.0, "kernel_rcvbuf_drops": 0,
           "kernel_rcvbuf_drops_system": 5, "rcvbuf_bytes": 1, "sndbuf_bytes": 1,
           "io": "batched"}
    fig.update(over)
    return fig


BOTS = {"bots": 50, "connected": 50, "errors": 0, "error_reasons": {},
        "snapshots_per_bot_per_s": {"mean": 20.0, "min": 19.5}, "clients_below_95pct": 0,
        "latency_ms": {"mean": 30.0, "p50": 29.0, "p99": 55.0, "max": 60.0, "count": 100},
        "drops": {}, "cpu_busy_fraction": 0.2, "bots_cpu_saturated": False,
        "kernel_rcvbuf_drops": 2, "duration_s": 5.5}

EXTRA = {"command": "xmarks bench --scenario ci", "config": {}, "machine": {},
         "world": {"world_width": 1134.0, "world_height": 1134.0, "treasure_count": 20,
                   "max_players": 50, "expected_visible": 32.0},
         "server_command": "", "bots_command": ""}


def test_assemble_targets_and_warnings():
    spec = BS.make_spec("ci", {})
    report = BR.assemble(spec, _server_fig(), dict(BOTS), {"kernel_floor_us_per_client_tick": 4.0},
                        EXTRA)
    assert report["floor_ratio"] == 25.0
    assert report["kernel_rcvbuf_drops"] == 2  # server 0 + bots 2
    assert report["latency_ms"]["p99"] == 55.0 and report["connected"] == 50
    met = {t["figure"]: t["met"] for t in report["targets"]}
    assert met["floor_ratio"] is False and met["py_allocs_per_tick"] is True
    assert met["kernel_rcvbuf_drops"] is False and met["bots_cpu_saturated"] is True
    assert any("dropped 2" in w for w in report["warnings"])
    json.dumps(report)  # every value serialises

    bad = BR.assemble(spec, _server_fig(py_allocs_per_tick=-1.0, py_allocs_note="no numba",
                                       server_cpu_wait_fraction=0.25),
                     dict(BOTS, connected=40, bots_cpu_saturated=True,
                          error_reasons={"denied (server full)": 10}),
                     {"kernel_floor_us_per_client_tick": -1.0}, EXTRA)
    text = " ".join(bad["warnings"])
    assert "10 of 50 bots never connected: 10 x denied (server full)" in text
    assert "saturated" in text and "no numba" in text and "no floor ratio" in text
    assert "waited 25.0% of the window for a CPU" in text
    met = {t["figure"]: t["met"] for t in bad["targets"]}
    assert met["py_allocs_per_tick"] is None and met["floor_ratio"] is None


def test_get_figure_and_evaluate_targets():
    report = {"a": {"b": 3}, "c": 1.5, "d": -1}
    assert BR.get_figure(report, "a.b") == 3 and BR.get_figure(report, "a.x") is None
    out = BR.evaluate_targets(report, {"a.b": ["<=", 3], "c": [">=", 2], "d": ["==", 0],
                                      "zz": ["==", 1]})
    assert [t["met"] for t in out] == [True, False, None, None]


def test_format_report_has_every_figure():
    spec = BS.make_spec("ci", {})
    report = BR.assemble(spec, _server_fig(), dict(BOTS), {"kernel_floor_us_per_client_tick": 4.0},
                        EXTRA)
    text = BR.format_report(report)
    for words in ("50 players", "budget 50.00 ms", "over budget 1 = 1.67%", "drain", "total",
                  "latency input->ack", "p99 55.00", "floor_ratio 25.00", "100.0 allocs/tick",
                  "RSS peak 150.0 MB", "saturated: no", "floor_ratio", "MISSED",
                  "reported, not enforced", "warning: the kernel dropped 2"):
        assert words in text, words


# ---- the probe -------------------------------------------------------------------------------

def test_probe_helpers():
    counts = P.per_tick_counts(333.3333, 30)
    assert counts.sum() == 9999 and counts.max() - counts.min() <= 1
    sizes = P.sizes_from_hist([[100, 3], [400, 1]], 1000)
    assert sizes.mean() == pytest.approx(175, abs=1) and set(sizes.tolist()) == {100, 400}
    assert P.sample_ticks(10_000) == P.MIN_SAMPLE_TICKS
    assert P.sample_ticks(50) == P.MIN_SAMPLE_DATAGRAMS // 50
    assert P.sample_ticks(1) == P.MAX_SAMPLE_TICKS


def test_probe_moves_every_datagram():
    shape = P.ProbeShape(players=20, ticks=10, snapshots=200, inputs=200,
                         snapshot_hist=[[90, 5], [300, 1]])
    result = P.run_probe(shape, repeats=1)
    assert result["kernel_floor_us_per_client_tick"] > 0
    assert result["sent"] == result["expected_sent"] == 20 * result["sample_ticks"]
    assert result["received"] == result["expected_received"] and result["lost"] == 0
    assert result["io"] in ("batched", "portable")


# ---- the server's window, in process ----------------------------------------------------------

@pytest.mark.parametrize("by_signal", [False, True])
def test_stats_window_on_a_server(tmp_path, by_signal):
    from tick.config import ServerConfig
    from tick.rates import TickRates
    from tick.server import GameServer
    from sim.rules import GameRules

    config = ServerConfig(rules=GameRules(max_players=8, world_width=512.0, world_height=512.0,
                                          treasure_count=4),
                          rates=TickRates(tick_rate=50.0, status_every=0.0), port=0)
    server = GameServer(config, key=NetKit.KEY)
    server.warm_up()  # on a fresh clone the first tick would compile for seconds
    path = tmp_path / "stats.json"
    window = S.StatsWindow(server, str(path), after_s=None if by_signal else 0.1, for_s=0.2,
                           count_allocs=False)
    old = signal.getsignal(signal.SIGUSR1)
    try:
        window.attach()
        if by_signal:
            window.install_signal()
            server.schedule(0.1, lambda: os.kill(os.getpid(), signal.SIGUSR1))
        server.run(0.6)
        assert window.finish() is window.figures
    finally:
        signal.signal(signal.SIGUSR1, old)
        server.close()
    fig = json.loads(path.read_text())
    assert fig == window.figures
    assert 0.19 <= fig["window_s"] <= 0.5  # 0.2 s asked; a slow tick may close it late
    assert 5 <= fig["ticks"] <= 17 and fig["ticks_timed"] == fig["ticks"]
    assert fig["snapshots"] == 0 and fig["server_cpu_us_per_client_tick"] == 0.0
    assert fig["py_allocs_per_tick"] == -1.0 and fig["py_allocs_note"]
    assert fig["rss_mb"] > 0 and fig["kernel_rcvbuf_drops"] in (0, -1)
    assert set(fig["phases"]) == {*PHASES, "total"}


def test_a_window_that_never_opened_writes_nothing(tmp_path):
    class Fake:
        def schedule(self, after_s, fn):
            pass
    window = S.StatsWindow(Fake(), str(tmp_path / "s.json"), after_s=None, count_allocs=False)
    window.attach()
    assert window.finish() is None and not (tmp_path / "s.json").exists()


# ---- the command line -------------------------------------------------------------------------

from tests.test_cli import run as run_cli  # noqa: E402  main() with argv, one helper
from tests.conftest import NetKit


@pytest.mark.parametrize("args,words", [
    (("bench",), ["--players"]),
    (("bench", "--players", "0"), ["players"]),
    (("bench", "--players", "70000"), ["players"]),
    (("bench", "--players", "many"), ["--players"]),
    (("bench", "--players", "10", "--duration", "0"), ["duration"]),
    (("bench", "--players", "10", "--duration", "-1"), ["duration"]),
    (("bench", "--players", "10", "--warmup", "-1"), ["warmup"]),
    (("bench", "--players", "10", "--visible", "0"), ["visible"]),
    (("bench", "--players", "10", "--io", "fast"), ["--io"]),
    (("bench", "--players", "10", "--ledger", "disk"), ["--ledger"]),
    (("bench", "--players", "10", "--tick-rate", "0"), ["tick_rate"]),
    (("bench", "--players", "10", "--tick-rate", "20", "--snapshot-rate", "3"),
     ["snapshot_rate"]),
    (("bench", "--scenario", "nope"), ["nope", "ci"]),
    (("bench", "--players", "10", "--probe-repeats", "0"), ["repeats"]),
    (("bench", "--bogus"), ["--bogus"]),
])
def test_bench_usage_errors_are_one_line_and_exit_2(monkeypatch, capsys, args, words):
    code, out, err = run_cli(monkeypatch, capsys, *args)
    assert code == 2, (code, err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("xmarks: error:"), err
    assert "Traceback" not in err and out == ""
    for word in words:
        assert word in lines[0], (word, err)


def test_bench_help_and_list(monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys, "bench", "--help")
    assert code == 0 and "Examples:" in out and "xmarks bench --scenario" in out
    for flag in ("--players", "--tick-rate", "--snapshot-rate", "--duration", "--warmup",
                 "--visible", "--io", "--seed", "--json", "--scenario"):
        assert flag in out
    code, out, _ = run_cli(monkeypatch, capsys, "bench", "--list-scenarios")
    assert code == 0 and "10k-20hz" in out and "ci" in out


def test_hidden_options_stay_hidden(monkeypatch, capsys):
    _, out, _ = run_cli(monkeypatch, capsys, "serve", "--help")
    assert "--stats-json" not in out and "--ready-file" not in out
    _, out, _ = run_cli(monkeypatch, capsys, "bots", "--help")
    assert "--horde" not in out


# ---- one real run: the --json schema ------------------------------------------------------------

NUMBER = (int, float)
SCHEMA = {
    "players": int, "tick_rate": NUMBER, "snapshot_rate": NUMBER, "duration_s": NUMBER,
    "warmup_s": NUMBER, "window_s": NUMBER, "ticks": int, "ticks_expected": int,
    "ticks_over_budget": int, "overrun_pct": NUMBER, "budget_ms": NUMBER, "phases": dict,
    "latency_ms": dict, "snapshot_bytes": dict, "bandwidth_out_mbps": NUMBER,
    "server_cpu_us_per_client_tick": NUMBER, "kernel_floor_us_per_client_tick": NUMBER,
    "server_cpu_busy_fraction": NUMBER, "server_cpu_wait_fraction": NUMBER,
    "floor_ratio": NUMBER, "py_allocs_per_tick": NUMBER, "gc_collections": int,
    "rss_mb": NUMBER, "kernel_rcvbuf_drops": int, "bots_cpu_saturated": bool,
    "connected": int, "clients_below_95pct": int, "snapshots_per_bot_per_s": dict,
    "io": str, "command": str, "config": dict, "world": dict, "targets": list,
    "warnings": list, "server": dict, "bots": dict, "probe": dict, "scenario": str,
}


@pytest.fixture(scope="module")
def ci_run():
    environ = {k: v for k, v in os.environ.items() if not k.startswith("XMARKS_")}
    proc = subprocess.run(xmarks_command() + ["bench", "--scenario", "ci", "--json"],
                          capture_output=True, text=True, timeout=900, env=environ, cwd=ROOT)
    return proc


def test_bench_json_schema_on_a_small_run(ci_run):
    assert ci_run.returncode == 0, ci_run.stderr
    lines = ci_run.stdout.strip().splitlines()
    assert len(lines) == 1, ci_run.stdout  # exactly one JSON object on stdout
    r = json.loads(lines[0])
    for key, kind in SCHEMA.items():
        assert key in r, key
        assert isinstance(r[key], kind), (key, r[key])
        if kind is NUMBER:
            assert not isinstance(r[key], bool), key
    assert r["players"] == 50 and r["connected"] == 50 and r["scenario"] == "ci"
    assert r["tick_rate"] == 20 and r["snapshot_rate"] == 20 and r["duration_s"] == 3
    assert r["ticks"] > 0 and r["ticks"] <= r["ticks_expected"] + 2
    assert 0 <= r["ticks_over_budget"] <= r["ticks"] and 0 <= r["overrun_pct"] <= 100
    assert set(r["phases"]) == {"drain", "decode", "step", "encode", "send", "total"}
    for name, p in r["phases"].items():
        assert set(p) == {"p50_ms", "p99_ms", "max_ms"}, name
        assert 0 <= p["p50_ms"] <= p["p99_ms"] <= p["max_ms"], (name, p)
    lat = r["latency_ms"]
    assert lat["count"] > 0 and 0 < lat["p50"] <= lat["p99"] <= lat["max"] and lat["mean"] > 0
    sb = r["snapshot_bytes"]
    assert set(sb) == {"mean", "p99", "max"} and 16 < sb["mean"] <= sb["max"] <= 1200
    assert sb["p99"] <= sb["max"]
    assert r["bandwidth_out_mbps"] > 0
    assert r["server_cpu_us_per_client_tick"] > 0 and r["kernel_floor_us_per_client_tick"] > 0
    assert r["floor_ratio"] == pytest.approx(
        r["server_cpu_us_per_client_tick"] / r["kernel_floor_us_per_client_tick"], rel=0.01)
    assert r["py_allocs_per_tick"] >= 0 and r["gc_collections"] >= 0
    assert 0 < r["server_cpu_busy_fraction"] <= 2 and -1 <= r["server_cpu_wait_fraction"] <= 1
    assert 0 < r["rss_mb"] < 4096
    assert r["kernel_rcvbuf_drops"] >= -1
    assert 0 <= r["clients_below_95pct"] <= 50
    assert set(r["snapshots_per_bot_per_s"]) >= {"mean", "min"}
    assert r["snapshots_per_bot_per_s"]["mean"] > 0
    assert r["io"] in ("batched", "portable")
    assert r["command"].startswith("xmarks bench") and "--scenario ci" in r["command"]
    assert r["config"]["game"]["max_players"] == 50 and r["config"]["tick"]["status_every"] == 0
    assert {t["figure"] for t in r["targets"]} >= {"floor_ratio", "py_allocs_per_tick"}
    assert r["probe"]["lost"] == 0 and r["probe"]["io"] in ("batched", "portable")
    assert r["server"]["clients_per_tick"] == pytest.approx(50, abs=1)
