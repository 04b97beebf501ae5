"""store/checkpoint.py: capture, atomic save, checked load (layout, rules, damage), the
writer thread."""

from __future__ import annotations

import dataclasses
import io
import os
import random
import time
import zipfile

import numpy as np
import pytest

from sim import schema as S
from sim.rules import GameRules
from sim.world import World, new_world
from store import checkpoint as C
from store.checkpoint import (CheckpointError, CheckpointWriter, capture, load_checkpoint,
                              restore_arrays, save_checkpoint, state_layout)
from store.records import Recorder
from tests.test_store_records import RULES, TICK_RATE, Bots, run_tick

UID = 2**62 + 5


def played_world(ticks: int = 60) -> tuple[World, Recorder]:
    world = new_world(RULES, TICK_RATE)
    bots = Bots(world, seed=3)
    recorder = Recorder(UID, RULES.max_players)
    for _ in range(ticks):
        run_tick(world, bots, recorder)
    return world, recorder


def same_checkpoint(a: C.Checkpoint, b: C.Checkpoint) -> bool:
    return (a.tick, a.seq, a.world_uid, a.tick_rate, a.rules, a.digest, a.names) == (
        b.tick, b.seq, b.world_uid, b.tick_rate, b.rules, b.digest, b.names) and all(
        np.array_equal(a.arrays[n], b.arrays[n]) for n in World.STATE_FIELDS) and np.array_equal(
        a.client_ids, b.client_ids)


def test_save_and_load_give_back_the_world_bit_for_bit(tmp_path):
    world, recorder = played_world()
    assert world.alive_count() > 3
    cp = capture(world, recorder)
    path = str(tmp_path / "cp.npz")
    save_checkpoint(path, cp)
    want = world.state_hash()
    world.step()  # the capture is a copy: the world moves on, the checkpoint does not
    got = load_checkpoint(path, RULES, TICK_RATE)
    assert same_checkpoint(got, cp) and got.rules_changed == ()
    assert (got.tick, got.seq, got.world_uid) == (world.tick - 1, recorder.last_seq, UID)
    assert np.array_equal(got.client_ids, recorder.client_ids) and got.names == recorder.names
    fresh = new_world(RULES, TICK_RATE)
    restore_arrays(fresh, got)
    assert fresh.state_hash() == want
    assert all(np.array_equal(getattr(fresh, n), cp.arrays[n]) for n in World.STATE_FIELDS)
    assert os.listdir(tmp_path) == ["cp.npz"]  # no temporary left behind


@pytest.mark.parametrize("rules", [
    RULES,
    GameRules(),
    GameRules(world_width=500.0, world_height=330.0, max_players=40, treasure_count=30,
              cell_size=48.0, leaderboard_size=3),
])
def test_state_layout_is_what_new_world_allocates(rules):
    world = new_world(rules, 20.0)
    layout = state_layout(rules)
    assert list(layout) == list(World.STATE_FIELDS)
    for name, (shape, dtype) in layout.items():
        arr = getattr(world, name)
        assert (arr.shape, arr.dtype) == (shape, dtype), name


def test_a_checkpoint_of_other_rules_is_refused(tmp_path):
    world, recorder = played_world(5)
    path = str(tmp_path / "cp.npz")
    save_checkpoint(path, capture(world, recorder))
    for change in (dict(max_players=25), dict(treasure_count=21), dict(world_width=640.0),
                   dict(cell_size=32.0), dict(leaderboard_size=6)):
        other = dataclasses.replace(RULES, **change)
        name = next(iter(change))
        with pytest.raises(CheckpointError, match=f"saved with {name}=") as info:
            load_checkpoint(path, other)
        assert "\n" not in str(info.value)
    # other rules may change across a restart: the checkpoint loads and says which
    got = load_checkpoint(path, dataclasses.replace(RULES, hunt_duration=60.0, seed=9), 30.0)
    assert got.rules_changed == ("hunt_duration", "seed", "tick_rate")


def _damaged(path: str, data: bytes, rules=RULES) -> C.Checkpoint | None:
    with open(path, "wb") as f:
        f.write(data)
    try:
        return load_checkpoint(path, rules)
    except CheckpointError as exc:
        assert "\n" not in str(exc) and str(exc).startswith(f"checkpoint {path}: ")
        return None


def test_truncated_or_corrupt_files_raise_checkpoint_error_or_load_unchanged(tmp_path):
    """Parse it or raise our error, never anything else, never wrong data."""
    world, recorder = played_world(40)
    good = str(tmp_path / "good.npz")
    cp = capture(world, recorder)
    save_checkpoint(good, cp)
    data = open(good, "rb").read()
    bad = str(tmp_path / "bad.npz")
    rnd = random.Random(1)
    refused = 0
    for cut in sorted({0, 1, 4, 30, len(data) // 2, len(data) - 22, len(data) - 1,
                       *(rnd.randrange(len(data)) for _ in range(40))}):
        got = _damaged(bad, data[:cut])
        assert got is None, cut
        refused += 1
    for _ in range(150):
        pos = rnd.randrange(len(data))
        flipped = bytearray(data)
        flipped[pos] ^= 1 << rnd.randrange(8)
        got = _damaged(bad, bytes(flipped))
        if got is None:
            refused += 1
        else:  # a byte nobody reads (a zip timestamp, say): the content is intact
            assert same_checkpoint(got, cp), pos
    assert refused > 150


def test_foreign_files_are_refused(tmp_path):
    path = str(tmp_path / "x.npz")
    assert _damaged(path, b"") is None
    assert _damaged(path, os.urandom(5000)) is None
    # an npz of something else, and one that would need pickle to load
    buf = io.BytesIO()
    np.savez(buf, a=np.arange(3))
    assert _damaged(path, buf.getvalue()) is None
    world, recorder = played_world(2)
    good = str(tmp_path / "good.npz")
    save_checkpoint(good, capture(world, recorder))
    with zipfile.ZipFile(good) as z:
        members = {n: z.read(n) for n in z.namelist()}
    buf = io.BytesIO()
    np.save(buf, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    members["pf.npy"] = buf.getvalue()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for n, b in members.items():
            z.writestr(n, b)
    with pytest.raises(CheckpointError, match="unreadable"):
        _damaged_raw(path, out.getvalue())
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(str(tmp_path / "missing.npz"), RULES)
    with pytest.raises(CheckpointError):
        load_checkpoint(str(tmp_path), RULES)


def _damaged_raw(path: str, data: bytes) -> C.Checkpoint:
    with open(path, "wb") as f:
        f.write(data)
    return load_checkpoint(path, RULES)


def test_a_checkpoint_whose_arrays_do_not_match_its_digest_is_refused(tmp_path):
    world, recorder = played_world(2)
    cp = capture(world, recorder)
    path = str(tmp_path / "cp.npz")
    save_checkpoint(path, cp)
    real = C.digest_of
    try:  # write the arrays of one world under the digest of another
        C.digest_of = lambda arrays: "0" * 32
        save_checkpoint(path, cp)
    finally:
        C.digest_of = real
    with pytest.raises(CheckpointError, match="digest mismatch"):
        load_checkpoint(path, RULES)


def test_a_failed_write_leaves_the_old_checkpoint_and_no_temporary(tmp_path, monkeypatch):
    world, recorder = played_world(2)
    path = str(tmp_path / "cp.npz")
    old = capture(world, recorder)
    save_checkpoint(path, old)
    world.step()

    def disk_full(f, **members):
        f.write(b"PK partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", disk_full)
    with pytest.raises(OSError):
        save_checkpoint(path, capture(world, recorder))
    assert os.listdir(tmp_path) == ["cp.npz"]
    assert same_checkpoint(load_checkpoint(path, RULES), old)


def test_writer_thread_writes_the_newest_capture_and_survives_failures(tmp_path, caplog):
    world, recorder = played_world(2)
    path = str(tmp_path / "sub" / "cp.npz")  # the folder is missing at first: writes fail
    writer = CheckpointWriter(path, time.monotonic)
    saved = []
    writer.on_saved = saved.append
    writer.submit(capture(world, recorder))
    end = time.monotonic() + 10
    while writer.status()["faults"] == 0 and time.monotonic() < end:
        time.sleep(0.01)
    st = writer.status()
    assert st["faults"] == 1 and "No such file" in st["last_error"] and saved == []
    assert any("checkpoint" in r.getMessage() for r in caplog.records)
    os.mkdir(tmp_path / "sub")
    for _ in range(3):
        world.step()
        writer.submit(capture(world, recorder))
    assert writer.close(10.0)
    st = writer.status()
    assert st["last_error"] is None and st["last_tick"] == world.tick and st["written"] >= 1
    assert saved and saved[-1].tick == world.tick
    got = load_checkpoint(path, RULES)
    assert all(np.array_equal(getattr(world, n), got.arrays[n]) for n in World.STATE_FIELDS)


def test_header_tick_must_match_the_clock(tmp_path):
    world, recorder = played_world(2)
    cp = capture(world, recorder)
    cp.tick += 1
    path = str(tmp_path / "cp.npz")
    save_checkpoint(path, cp)
    with pytest.raises(CheckpointError, match="header"):
        load_checkpoint(path, RULES)
    assert int(cp.arrays["clock"][S.TICK]) == cp.tick - 1
