"""Input log and replay (sim/inputs.py, store/input_log.py, tick/replay.py).

The kernels are checked against plain Python; a hunt driven by a seeded script (joins,
leaves, inputs that steer players onto treasure and dig) is recorded, replayed from the
log, and must end with the live world's state hash, bit for bit. Tampering with one
logged input must change it.
"""

from __future__ import annotations

import random
from dataclasses import replace

import msgpack
import numpy as np
import pytest

from sim import schema as S
from sim.inputs import INPUT_ROWS, changed_inputs, new_input_shadow, restore_inputs
from sim.rules import GameRules
from sim.world import new_world
from store.input_log import MAGIC, InputLog, InputLogError, LogEnd, TickRecord, read_input_log
from tick.replay import replay

RULES = GameRules(world_width=600.0, world_height=600.0, max_players=24, treasure_count=12,
                  reveal_radius=200.0, dig_time=0.2, hunt_duration=6.0, respawn_delay=0.5,
                  claim_show_time=0.2, seed=11)
TICK_RATE = 20.0


# ---- kernels against plain Python -----------------------------------------------------

def ref_changed(pi, shadow):
    out = []
    for i in range(pi.shape[1]):
        now = [int(pi[r, i]) for r in INPUT_ROWS]
        if now != [int(v) for v in shadow[:, i]]:
            out.append((i, now))
            shadow[:, i] = now
    return out


@pytest.mark.parametrize("seed", range(12))
def test_changed_inputs_matches_python(seed):
    rng = np.random.default_rng(seed)
    players = int(rng.integers(1, 300))
    pi = np.zeros((len(S.PLAYER_I32), players), np.int32)
    shadow = new_input_shadow(players)
    ref_shadow = shadow.copy()
    slots = np.zeros(players, np.int32)
    values = np.zeros((players, len(INPUT_ROWS)), np.int32)
    for _ in range(6):
        share = rng.choice([0.0, 0.05, 0.5, 1.0])  # none, few, half, every player changes
        mask = rng.random(players) < share
        for r in INPUT_ROWS:
            pi[r, mask] = rng.integers(-2**31, 2**31, int(mask.sum()), dtype=np.int64)
        pi[S.P_SCORE] = rng.integers(0, 100, players)  # other rows never count
        expected = ref_changed(pi, ref_shadow)
        n = changed_inputs(pi, INPUT_ROWS, shadow, slots, values)
        assert [(int(s), [int(v) for v in values[j]]) for j, s in enumerate(slots[:n])] == expected
        assert np.array_equal(shadow, ref_shadow)
        assert np.array_equal(shadow, pi[INPUT_ROWS])


def test_restore_inputs_rebuilds_the_rows():
    rng = np.random.default_rng(3)
    players = 50
    pi = rng.integers(-5, 5, (len(S.PLAYER_I32), players)).astype(np.int32)
    before = pi.copy()
    shadow = rng.integers(-5, 5, (len(INPUT_ROWS), players)).astype(np.int32)
    slots = np.array([0, 7, 49], np.int32)
    values = rng.integers(-100, 100, (3, len(INPUT_ROWS))).astype(np.int32)
    expected = shadow.copy()
    expected[:, slots] = values.T
    restore_inputs(pi, INPUT_ROWS, shadow, slots, values, 3)
    assert np.array_equal(shadow, expected)
    assert np.array_equal(pi[INPUT_ROWS], expected)
    others = [r for r in range(pi.shape[0]) if r not in INPUT_ROWS]
    assert np.array_equal(pi[others], before[others])


# ---- a recorded hunt ------------------------------------------------------------------

def drive(world, rnd: random.Random, log: InputLog | None, ticks: int) -> None:
    """Joins, leaves and inputs from `rnd`, as the server would apply them (noting each in
    the log), then a step. Half the players steer to the nearest buried treasure and dig,
    so claims, respawns and a hunt end all happen."""
    for _ in range(ticks):
        for slot in range(world.rules.max_players):
            alive = world.pi[S.P_ALIVE, slot]
            if not alive and rnd.random() < 0.05:
                gen = world.join(slot)
                if log:
                    log.join(slot, gen)
            elif alive and rnd.random() < 0.01:
                world.leave(slot)
                if log:
                    log.leave(slot)
            elif alive and rnd.random() < 0.3:
                if slot % 2 == 0:
                    buried = np.flatnonzero(world.ti[S.T_STATE] == S.BURIED)
                    if len(buried):
                        dx = world.tf[S.TX, buried] - world.pf[S.PX, slot]
                        dy = world.tf[S.TY, buried] - world.pf[S.PY, slot]
                        t = buried[int(np.argmin(dx * dx + dy * dy))]
                        d = max(1e-6, float(np.hypot(dx[buried == t][0], dy[buried == t][0])))
                        mx = int(127 * float(world.tf[S.TX, t] - world.pf[S.PX, slot]) / d)
                        my = int(127 * float(world.tf[S.TY, t] - world.pf[S.PY, slot]) / d)
                        world.pi[S.P_MOVE_X, slot] = mx if d > 10 else 0
                        world.pi[S.P_MOVE_Y, slot] = my if d > 10 else 0
                        world.pi[S.P_DIG, slot] = int(d < world.rules.dig_radius)
                else:
                    world.pi[S.P_MOVE_X, slot] = rnd.randint(-127, 127)
                    world.pi[S.P_MOVE_Y, slot] = rnd.randint(-127, 127)
                    world.pi[S.P_DIG, slot] = int(rnd.random() < 0.1)
            # the network's bookkeeping changes every tick; the log ignores it
            world.pi[S.P_INPUT_SEQ, slot] += 1
        if log:
            log.before_step(world)
        world.step()


def record(tmp_path, ticks=400, seed=5, rules=RULES):
    world = new_world(rules, TICK_RATE)
    path = str(tmp_path / "hunt.xmil")
    log = InputLog(path, world, TICK_RATE, unix_ms=1_700_000_000_000)
    rnd = random.Random(seed)
    drive(world, rnd, log, ticks)
    for slot in np.flatnonzero(world.pi[S.P_ALIVE]):  # a shutdown: everyone leaves
        world.leave(int(slot))
        log.leave(int(slot))
    digest = log.close(world)
    return path, world, digest


def test_a_replayed_hunt_ends_with_the_live_hash(tmp_path):
    path, world, digest = record(tmp_path)
    assert world.clock[S.HUNT_ID] >= 2, "the script must reach a hunt end"
    assert world.pi[S.P_ALIVE].sum() == 0
    result = replay(path)
    assert result.recorded_hash == digest == world.state_hash()
    assert result.hash == digest and result.matches
    assert result.final_tick == world.tick == 400
    assert result.joins > 20 and result.leaves > 20


def test_the_log_is_small_and_skips_quiet_ticks(tmp_path):
    path, world, _ = record(tmp_path, ticks=200)
    _, records = read_input_log(path)
    recs = list(records)
    assert isinstance(recs[-1], LogEnd)
    # inputs are logged only when they change: far fewer rows than players x ticks
    rows = sum(len(r.slots) for r in recs)
    assert 0 < rows < 0.5 * RULES.max_players * 200


def test_tampered_inputs_change_the_hash(tmp_path):
    path, _, digest = record(tmp_path, ticks=200)
    with open(path, "rb") as f:
        data = f.read()
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(data[len(MAGIC) + 1:])
    recs = list(unpacker)
    tampered = 0
    for rec in recs[len(recs) // 2:]:  # a change to a player who then leaves leaves no
        if rec[0] == "tick" and rec[3] > 0:  # trace: flip move_x of every change instead
            values = np.frombuffer(rec[5], np.int32).reshape(-1, len(INPUT_ROWS)).copy()
            values[:, 0] = 127 - values[:, 0]
            rec[5] = values.tobytes()
            tampered += 1
    assert tampered > 10
    with open(path, "wb") as f:
        f.write(data[:len(MAGIC) + 1] + b"".join(msgpack.packb(r) for r in recs))
    result = replay(path)
    assert result.recorded_hash == digest
    assert result.matches is False


def test_a_log_cut_short_replays_what_it_has(tmp_path):
    path, _, _ = record(tmp_path, ticks=200)
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[:len(data) * 2 // 3])  # a crash: the tail was never written
    result = replay(path)
    assert result.recorded_hash is None and result.matches is None
    assert 0 < result.final_tick <= 200


@pytest.mark.parametrize("content, why", [
    (b"", "not an xmarks input log"),
    (b"hello world", "not an xmarks input log"),
    (MAGIC + b"\x09", "version"),
    (MAGIC + b"\x01", "no start record"),
    (MAGIC + b"\x01" + msgpack.packb(["tick", 1]), "not a start record"),
])
def test_foreign_files_are_refused_in_one_line(tmp_path, content, why):
    path = tmp_path / "x.xmil"
    path.write_bytes(content)
    with pytest.raises(InputLogError, match=why):
        replay(str(path))


def test_a_log_of_other_rules_is_refused_if_its_start_differs(tmp_path):
    path, _, _ = record(tmp_path, ticks=20)
    header, _ = read_input_log(path)
    assert header["rules"]["seed"] == RULES.seed
    other = replace(RULES, seed=12)
    path2, _, digest2 = record(tmp_path / "..", ticks=20, rules=other)
    assert replay(path2).hash == digest2


def test_records_are_tick_records():
    assert issubclass(LogEnd, TickRecord)
