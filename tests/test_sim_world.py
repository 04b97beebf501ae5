"""sim/world.py + sim/step.py: determinism, the state hash, and whole ticks against the
plain-Python reference model (tests/sim_reference.RefWorld), tick by tick."""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim import schema as S
from sim.rules import GameRules, kernel_rules, seconds_to_ticks
from sim.world import World, new_world
from tests.sim_reference import (BURIED, EVENT_CLAIM, EVENT_HUNT_END, MASK64, RefWorld, ticks_of)

ROOT = Path(__file__).resolve().parent.parent

SMALL = GameRules(world_width=512.0, world_height=384.0, max_players=48, treasure_count=30,
                  player_speed=200.0, dig_radius=20.0, dig_time=0.15, heat_radius=200.0,
                  respawn_delay=1.0, claim_show_time=0.5, hunt_duration=8.0, cell_size=64.0,
                  leaderboard_size=8, seed=7)

CONFIGS = {
    "small": (SMALL, 20.0, 600),
    # ragged grid, 1-tick digs, show >= respawn, zero weights, short board, extreme seed
    "ragged": (GameRules(world_width=500.0, world_height=330.0, max_players=40, treasure_count=30,
                         player_speed=150.0, dig_radius=30.0, dig_time=0.01, heat_radius=120.0,
                         respawn_delay=0.2, claim_show_time=0.5, hunt_duration=5.0,
                         cell_size=48.0, leaderboard_size=3, value_weights=(0, 3, 0, 1, 9),
                         seed=2**64 - 1), 30.0, 260),
    # one grid cell larger than the world, heat radius far past the grid, slow ticks
    "coarse": (GameRules(world_width=300.0, world_height=200.0, max_players=45, treasure_count=30,
                         player_speed=400.0, dig_radius=25.0, dig_time=0.5, heat_radius=1e25,
                         respawn_delay=0.5, claim_show_time=0.3, hunt_duration=12.0,
                         cell_size=512.0, leaderboard_size=16, seed=0), 8.0, 200),
    # a crowd on a tiny map: contention on nearly every claim, hunts every 80 ticks
    "crowded": (GameRules(world_width=128.0, world_height=96.0, max_players=64, treasure_count=30,
                          player_speed=100.0, dig_radius=12.0, dig_time=0.1, heat_radius=64.0,
                          respawn_delay=0.4, claim_show_time=0.2, hunt_duration=4.0,
                          cell_size=16.0, leaderboard_size=8, seed=99), 20.0, 200),
}


class Script:
    """Joins, leaves, and per-tick inputs from a seeded RNG, applied to a World and (if
    given) a RefWorld alike. Player behaviours: hunters steer to the nearest buried treasure
    and dig; wanderers move and dig at random; wall-huggers push into edges and corners;
    clones stand on another player's exact spot with the same inputs, so several diggers
    start on one treasure in the same tick."""

    def __init__(self, seed: int, world: World, ref: RefWorld | None = None, target: int = 40):
        self.rnd = random.Random(seed)
        self.world, self.ref = world, ref
        self.target = target
        self.mode: dict[int, tuple] = {}

    def _set(self, slot, **ints):
        for name, value in ints.items():
            self.world.pi[S.PLAYER_I32.index(name), slot] = value
            if self.ref is not None:
                setattr(self.ref.players[slot], name, value)

    def _teleport(self, slot, x, y):
        self.world.pf[S.PX, slot] = x
        self.world.pf[S.PY, slot] = y
        if self.ref is not None:
            self.ref.players[slot].x, self.ref.players[slot].y = float(np.float32(x)), float(np.float32(y))

    def _join(self, slot):
        gen = self.world.join(slot)
        if self.ref is not None:
            assert self.ref.join(slot) == gen
        alive = [s for s in self.mode if s != slot and self.mode[s][0] != "clone"]
        r = self.rnd.random()
        if alive and r < 0.2:
            leader = self.rnd.choice(alive)
            self.mode[slot] = ("clone", leader)
            x, y = float(self.world.pf[S.PX, leader]), float(self.world.pf[S.PY, leader])
            self._teleport(slot, x, y)
        elif r < 0.6:
            self.mode[slot] = ("hunter", self.rnd.random() < 0.3)
        elif r < 0.85:
            self.mode[slot] = ("wander",)
        else:
            self.mode[slot] = ("wall", self.rnd.choice((-127, 127)), self.rnd.choice((-127, 0, 127)))

    def _leave(self, slot):
        self.world.leave(slot)
        if self.ref is not None:
            self.ref.leave(slot)
        del self.mode[slot]
        for s, m in list(self.mode.items()):  # orphaned clones become wanderers
            if m[0] == "clone" and m[1] == slot:
                self.mode[s] = ("wander",)

    def before_tick(self):
        w = self.world
        rnd = self.rnd
        free = [s for s in range(w.pi.shape[1]) if not w.pi[S.P_ALIVE, s]]
        if len(self.mode) < self.target and free:
            for _ in range(min(len(free), rnd.randint(1, 6))):
                slot = rnd.choice(free)
                free.remove(slot)
                self._join(slot)
        if self.mode and rnd.random() < 0.05:
            self._leave(rnd.choice(sorted(self.mode)))
        kr = w.kr
        step = kr.speed_per_tick
        px, py = w.pf[S.PX].tolist(), w.pf[S.PY].tolist()
        tx, ty, ts = w.tf[S.TX].tolist(), w.tf[S.TY].tolist(), w.ti[S.T_STATE].tolist()
        inputs = {}
        for slot in sorted(self.mode):
            mode = self.mode[slot]
            if mode[0] == "hunter":
                best, best_d2 = -1, math.inf
                for t in range(len(tx)):
                    d2 = (tx[t] - px[slot]) ** 2 + (ty[t] - py[slot]) ** 2
                    if ts[t] == BURIED and d2 < best_d2:
                        best, best_d2 = t, d2
                mx = my = 0
                if best >= 0:
                    mx = max(-127, min(127, round((tx[best] - px[slot]) / step * 127)))
                    my = max(-127, min(127, round((ty[best] - py[slot]) / step * 127)))
                if mode[1]:  # a sloppy hunter
                    mx += rnd.randint(-20, 20)
                    my += rnd.randint(-20, 20)
                    mx, my = max(-127, min(127, mx)), max(-127, min(127, my))
                dig = int(rnd.random() < 0.95)
                inputs[slot] = (mx, my, dig)
            elif mode[0] == "wander":
                inputs[slot] = (rnd.choice((rnd.randint(-127, 127), 0, 127, -127)),
                                rnd.choice((rnd.randint(-127, 127), 0, 127, -127)),
                                int(rnd.random() < 0.5))
            elif mode[0] == "wall":
                inputs[slot] = (mode[1], mode[2], int(rnd.random() < 0.5))
        for slot in sorted(self.mode):
            mode = self.mode[slot]
            if mode[0] == "clone":
                inputs[slot] = inputs.get(mode[1], (0, 0, 1))
        for slot, (mx, my, dig) in inputs.items():
            self._set(slot, move_x=mx, move_y=my, dig=dig, input_seq=w.tick)


def _events(world):
    return [tuple(r) for r in world.events[:world.event_count].tolist()]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_full_simulation_matches_reference_tick_by_tick(name):
    rules, tick_rate, ticks = CONFIGS[name]
    world = new_world(rules, tick_rate)
    ref = RefWorld(rules, tick_rate)
    assert ref.diff(world) == [], "new_world differs from the reference"
    assert ref.state_hash() == world.state_hash()
    script = Script(1000 + len(name), world, ref, target=int(rules.max_players * 0.85))
    claims = hunt_ends = contested = 0
    heat_seen = set()
    for _ in range(ticks):
        script.before_tick()
        assert ref.diff(world) == []
        tick = world.tick
        got = world.step()
        want = ref.step()
        problems = ref.diff(world)
        assert problems == [], f"tick {tick}: " + "\n".join(problems)
        assert got == want
        assert ref.state_hash() == world.state_hash(), f"tick {tick}"
        events = _events(world)
        claims += sum(1 for e in events if e[0] == EVENT_CLAIM)
        hunt_ends += sum(1 for e in events if e[0] == EVENT_HUNT_END)
        heat_seen.update(world.pi[S.P_HEAT, world.pi[S.P_ALIVE] == 1].tolist())
        # a claim where another player was on the same treasure's spot with dig held
        for e in events:
            if e[0] == EVENT_CLAIM:
                spot = (world.pf[S.PX, e[2]], world.pf[S.PY, e[2]])
                same = ((world.pf[S.PX] == spot[0]) & (world.pf[S.PY] == spot[1])
                        & (world.pi[S.P_ALIVE] == 1) & (world.pi[S.P_DIG] == 1))
                contested += int(same.sum() > 1)
    # the run exercised what it is meant to
    print(name, dict(claims=claims, hunt_ends=hunt_ends, contested=contested, heat=len(heat_seen)))
    assert claims >= 20, claims
    assert hunt_ends >= 1
    assert contested >= 1
    if rules.heat_radius < math.hypot(rules.world_width, rules.world_height):
        assert len(heat_seen) > 20
    else:
        assert heat_seen == {255}  # a radius far past the grid: everyone is "hot"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_rules_match_reference(data):
    """Short runs under drawn rules: odd world sizes (some not float32-exact), cells from
    tiny to larger than the world, one-tick hunts and digs, zero respawn delay."""
    rules = GameRules(
        world_width=data.draw(st.sampled_from([64.0, 100.0, 257.5, 333.3, 512.0, 1000.7])),
        world_height=data.draw(st.sampled_from([48.0, 100.0, 300.0])),
        max_players=data.draw(st.integers(1, 40)),
        treasure_count=data.draw(st.integers(1, 30)),
        player_speed=data.draw(st.sampled_from([1.0, 50.0, 200.0, 1e4])),
        dig_radius=data.draw(st.sampled_from([1.0, 10.0, 40.0, 1e6])),
        dig_time=data.draw(st.sampled_from([0.01, 0.1, 0.5])),
        heat_radius=data.draw(st.sampled_from([5.0, 100.0, 768.0, 1e30])),
        respawn_delay=data.draw(st.sampled_from([0.0, 0.1, 1.0])),
        claim_show_time=data.draw(st.sampled_from([0.0, 0.1, 2.0])),
        hunt_duration=data.draw(st.sampled_from([0.01, 0.5, 2.0])),
        cell_size=data.draw(st.sampled_from([8.0, 30.0, 64.0, 2000.0])),
        leaderboard_size=data.draw(st.integers(1, 16)),
        value_weights=tuple(data.draw(st.lists(st.integers(0, 50), min_size=1, max_size=6)
                                      .filter(lambda w: sum(w) > 0))),
        seed=data.draw(st.integers(0, MASK64)),
    )
    tick_rate = data.draw(st.sampled_from([1.0, 10.0, 20.0, 60.0]))
    world = new_world(rules, tick_rate)
    ref = RefWorld(rules, tick_rate)
    assert ref.diff(world) == []
    script = Script(data.draw(st.integers(0, 2**32)), world, ref,
                    target=max(1, rules.max_players * 3 // 4))
    for _ in range(60):
        script.before_tick()
        tick = world.tick
        assert world.step() == ref.step()
        problems = ref.diff(world)
        assert problems == [], f"tick {tick}: " + "\n".join(problems)
    assert ref.state_hash() == world.state_hash()


def _scripted_hashes(rules, tick_rate, ticks, script_seed):
    world = new_world(rules, tick_rate)
    script = Script(script_seed, world)
    hashes = [world.state_hash()]
    for _ in range(ticks):
        script.before_tick()
        world.step()
        hashes.append(world.state_hash())
    return hashes


def test_same_seed_same_inputs_same_hash():
    a = _scripted_hashes(SMALL, 20.0, 250, 5)
    b = _scripted_hashes(SMALL, 20.0, 250, 5)
    assert a == b
    assert len(set(a)) == len(a), "every tick changes the state (the clock at least)"


def test_different_seed_different_hash():
    a = _scripted_hashes(SMALL, 20.0, 60, 5)
    b = _scripted_hashes(replace(SMALL, seed=8), 20.0, 60, 5)
    assert a[0] != b[0]
    assert all(x != y for x, y in zip(a, b))
    c = _scripted_hashes(SMALL, 20.0, 60, 6)  # same seed, other inputs
    assert a[0] == c[0] and a[-1] != c[-1]


def test_hash_is_the_same_in_another_process():
    """No dependence on the process: hash seeds, import order, compiled vs cached kernels."""
    code = ("import json, sys; sys.path.insert(0, '.');"
            "from tests.test_sim_world import SMALL, _scripted_hashes;"
            "print(json.dumps(_scripted_hashes(SMALL, 20.0, 80, 5)[-1]))")
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == _scripted_hashes(SMALL, 20.0, 80, 5)[-1]


def test_state_hash_sees_every_state_array():
    world = new_world(SMALL, 20.0)
    script = Script(3, world)
    for _ in range(30):
        script.before_tick()
        world.step()
    base = world.state_hash()
    for name in World.STATE_FIELDS:
        arr = getattr(world, name)
        flat = arr.reshape(-1)
        idx = flat.size // 2
        old = flat[idx].copy()
        flat[idx] = old + np.ones((), arr.dtype)
        assert world.state_hash() != base, name
        flat[idx] = old
        assert world.state_hash() == base, name
    # the network's input sequence is not simulation state (an input log replays what
    # the simulation consumed): it does not change the hash
    world.pi[S.P_INPUT_SEQ] += 7
    assert world.state_hash() == base
    world.pi[S.P_INPUT_SEQ] -= 7
    # the hash is over bytes: -0.0 is not 0.0 (a kernel producing either must be consistent)
    idx = int(np.flatnonzero(world.pf[S.PVX].view(np.uint32) == 0)[0])
    world.pf[S.PVX, idx] = -0.0
    assert world.state_hash() != base


def test_join_and_leave():
    world = new_world(SMALL, 20.0)
    assert world.join(4) == 1
    with pytest.raises(ValueError):
        world.join(4)
    world.pi[S.P_DIG, 4] = 1
    world.pi[S.P_MOVE_X, 4] = 100
    world.leave(4)
    assert world.pi[S.P_ALIVE, 4] == 0 and world.pi[S.P_DIG, 4] == 0
    assert world.pi[S.P_MOVE_X, 4] == 0
    assert world.alive_count() == 0
    assert world.join(4) == 2  # a new generation in the same slot
    x, y = float(world.pf[S.PX, 4]), float(world.pf[S.PY, 4])
    assert 0 <= x <= SMALL.world_width and 0 <= y <= SMALL.world_height
    assert world.alive_count() == 1


def test_new_world_layout():
    world = new_world(SMALL, 20.0)
    p, t, k = SMALL.max_players, SMALL.treasure_count, SMALL.leaderboard_size
    cells = math.ceil(512 / 64) * math.ceil(384 / 64)
    shapes = {"pf": ((4, p), np.float32), "pi": ((11, p), np.int32), "tf": ((2, t), np.float32),
              "ti": ((5, t), np.int32), "p_starts": ((cells + 1,), np.int32),
              "p_items": ((p,), np.int32), "t_starts": ((cells + 1,), np.int32),
              "t_items": ((t,), np.int32), "clock": ((7,), np.int64), "rng": ((1,), np.uint64),
              "claim_ring": ((16, 6), np.int64), "board": ((k, 3), np.int32),
              "final_board": ((k, 3), np.int32)}
    for name, (shape, dtype) in shapes.items():
        arr = getattr(world, name)
        assert arr.shape == shape and arr.dtype == dtype and arr.flags.c_contiguous, name
    assert world.events.shape == (t + 1 + k, S.EVENT_FIELDS)
    assert (world.ti[S.T_GEN] == 0).all() and (world.ti[S.T_STATE] == BURIED).all()
    assert world.tick == 0 and int(world.clock[S.LAST_HUNT_END]) == -1


def test_kernel_rules_match_reference_conversion():
    for rules, tick_rate, _ in CONFIGS.values():
        kr = kernel_rules(rules, tick_rate)
        ref = RefWorld(rules, tick_rate)
        assert (kr.dig_ticks, kr.respawn_ticks, kr.claim_show_ticks, kr.hunt_ticks) == (
            ref.dig_ticks, ref.respawn_ticks, ref.claim_show_ticks, ref.hunt_ticks)
        assert (kr.grid_cols, kr.grid_rows) == (ref.cols, ref.rows)
    assert seconds_to_ticks(0.0, 20.0) == 1 == ticks_of(0.0, 20.0)
    assert seconds_to_ticks(1.5, 20.0) == 30
