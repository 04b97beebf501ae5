"""sim/heat.py: the heat level formula at its edges, and heat() against brute force."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim import schema as S
from sim.heat import heat, heat_level
from tests.sim_reference import (BURIED, CLAIMED, WAITING, RefPlayer, RefTreasure, diff_players,
                                 f32, players_to_arrays, ref_grid, ref_heat, ref_heat_level,
                                 treasures_to_arrays)


@pytest.mark.parametrize("radius", [768.0, 1.0, 100.0, 333.3, 0.001, 65536.0])
def test_heat_level_edges(radius):
    r2 = radius * radius
    assert heat_level(0.0, radius) == 255  # on top of it: 1 + 255 capped at 255
    assert heat_level(r2, radius) == 0  # at the radius
    assert heat_level(float(np.nextafter(r2, np.inf)), radius) == 0
    assert heat_level(4 * r2, radius) == 0
    assert heat_level(float("inf"), radius) == 0
    assert heat_level(float(np.nextafter(r2, 0.0)), radius) == 1  # just inside: at least 1
    d = radius * 0.999999
    assert heat_level(d * d, radius) == 1
    # within R/255 of the treasure the level is already at its cap
    d = radius / 256
    assert heat_level(d * d, radius) == 255
    assert heat_level((radius / 2) ** 2, radius) == 1 + 127


def test_heat_level_monotone_and_matches_reference():
    radius = 768.0
    prev = 256
    for k in range(0, 20001):
        d = radius * 1.01 * k / 20000
        level = heat_level(d * d, radius)
        assert level == ref_heat_level(d * d, radius)
        assert 0 <= level <= 255
        assert level <= prev, "heat never grows with distance"
        assert (level >= 1) == (d * d < radius * radius)
        prev = level


@settings(max_examples=400, deadline=None)
@given(d2=st.floats(0, 1e12, allow_nan=False), radius=st.floats(1e-3, 1e5, allow_nan=False))
def test_heat_level_property(d2, radius):
    level = heat_level(d2, radius)
    assert level == ref_heat_level(d2, radius)
    assert 0 <= level <= 255
    assert (level == 0) == (d2 >= radius * radius)


def _run_heat(players, treasures, w, h, cs, radius):
    cols, rows = math.ceil(w / cs), math.ceil(h / cs)
    pf, pi = players_to_arrays(players)
    tf, ti = treasures_to_arrays(treasures)
    starts, items, _ = ref_grid([t.x for t in treasures], [t.y for t in treasures],
                                [t.state for t in treasures], BURIED, cs, cols, rows,
                                [0] * len(treasures))
    tf0, ti0 = tf.copy(), ti.copy()
    heat(pf, pi, tf, ti, np.asarray(starts, np.int32), np.asarray(items, np.int32), radius, cs,
         cols, rows)
    ref_heat(players, treasures, radius)
    assert diff_players(players, pf, pi) == []
    assert np.array_equal(tf0, tf) and np.array_equal(ti0, ti)
    return pi[S.P_HEAT].tolist()


@pytest.mark.parametrize("seed", range(8))
def test_heat_random_worlds(seed):
    rnd = random.Random(seed)
    w, h = rnd.choice([(512.0, 384.0), (1000.0, 700.0), (200.0, 200.0)])
    cs = rnd.choice([32.0, 64.0, 128.0, 500.0])
    radius = rnd.choice([10.0, 100.0, 300.0, 768.0, 5000.0])
    treasures = [RefTreasure(x=f32(rnd.uniform(0, w)), y=f32(rnd.uniform(0, h)), value=1,
                             state=rnd.choice((BURIED, BURIED, CLAIMED, WAITING)))
                 for _ in range(rnd.randint(0, 60))]
    players = []
    for _ in range(300):
        if treasures and rnd.random() < 0.2:
            t = rnd.choice(treasures)
            x, y = t.x, t.y
        else:
            x, y = rnd.choice([(rnd.uniform(0, w), rnd.uniform(0, h)), (0.0, 0.0), (w, h), (w, 0.0)])
        players.append(RefPlayer(x=f32(x), y=f32(y), alive=int(rnd.random() < 0.85),
                                 heat=rnd.randint(0, 255)))  # stale heat must be overwritten
    levels = _run_heat(players, treasures, w, h, cs, radius)
    for p, level in zip(players, levels):
        if not p.alive:
            assert level == 0


def test_heat_specific_cases():
    treasures = [RefTreasure(x=100.0, y=100.0, state=BURIED, value=1),
                 RefTreasure(x=400.0, y=100.0, state=CLAIMED, value=1)]
    players = [RefPlayer(x=100.0, y=100.0, alive=1),  # on it
               RefPlayer(x=100.0, y=400.0, alive=1),  # exactly R away
               RefPlayer(x=100.0, y=399.0, alive=1),  # just inside
               RefPlayer(x=400.0, y=100.0, alive=1),  # on a claimed one: 300 from the buried
               RefPlayer(x=100.0, y=100.0, alive=0, heat=200)]
    assert _run_heat(players, treasures, 512.0, 512.0, 64.0, 300.0) == [255, 0, 1, 0, 0]


def test_heat_empty_world():
    players = [RefPlayer(x=10.0, y=10.0, alive=1, heat=9)]
    assert _run_heat(players, [], 64.0, 64.0, 16.0, 1e6) == [0]
