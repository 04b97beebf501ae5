"""sim/move.py: move_players against the reference, float32 results bit for bit."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.move import move_players
from sim.schema import P_ALIVE, P_MOVE_X, P_MOVE_Y, PVX, PVY, PX, PY
from tests.sim_reference import (RefPlayer, diff_players, f32, players_from_arrays,
                                 players_to_arrays, ref_move)


def _run(players, speed, tick_rate, w, h):
    pf, pi = players_to_arrays(players)
    pi_before = pi.copy()
    move_players(pf, pi, float(speed), float(tick_rate), float(w), float(h))
    ref_move(players, speed, tick_rate, w, h)
    assert diff_players(players, pf, pi) == []
    assert np.array_equal(pi, pi_before), "move must not write player ints"
    return pf, pi


def _random_players(rnd, n, w, h):
    players = []
    for _ in range(n):
        edge = rnd.random()
        if edge < 0.15:
            x, y = rnd.choice((0.0, w)), rnd.uniform(0, h)
        elif edge < 0.3:
            x, y = rnd.choice((0.0, 0.5, w - 0.5, w)), rnd.choice((0.0, 0.25, h - 0.25, h))
        else:
            x, y = rnd.uniform(0, w), rnd.uniform(0, h)
        axis = lambda: rnd.choice((rnd.randint(-127, 127), -127, 127, 0, 1, -1, 64))
        players.append(RefPlayer(x=f32(x), y=f32(y), alive=1 if rnd.random() < 0.8 else 0,
                                 move_x=axis(), move_y=axis(), gen=rnd.randint(0, 9),
                                 vx=f32(rnd.uniform(-5, 5)), vy=f32(rnd.uniform(-5, 5))))
    return players


@pytest.mark.parametrize("speed,tick_rate,w,h", [
    (200.0, 20.0, 4096.0, 4096.0), (200.0, 30.0, 512.0, 384.0), (333.3, 7.0, 100.0, 60.0),
    (1.0, 60.0, 65536.0, 65536.0), (5000.0, 1.0, 300.0, 300.0), (0.1, 128.0, 1.0, 1.0),
])
def test_random_players_bit_exact(speed, tick_rate, w, h):
    rnd = random.Random(int(speed * 10 + tick_rate))
    players = _random_players(rnd, 400, w, h)
    pf, pi = players_to_arrays(players)
    for _ in range(5):  # several ticks in a row, fresh inputs each
        for i, p in enumerate(players):
            p.move_x, p.move_y = rnd.randint(-127, 127), rnd.randint(-127, 127)
            pi[P_MOVE_X, i], pi[P_MOVE_Y, i] = p.move_x, p.move_y
        move_players(pf, pi, speed, tick_rate, w, h)
        ref_move(players, speed, tick_rate, w, h)
        assert diff_players(players, pf, pi) == []


def test_every_input_pair_bit_exact_and_never_faster_than_speed():
    speed, tick_rate, w, h = 200.0, 30.0, 4096.0, 4096.0
    players = [RefPlayer(x=2048.0, y=2048.0, alive=1, move_x=mx, move_y=my)
               for mx in range(-127, 128) for my in range(-127, 128, 3)]
    pf, _ = _run(players, speed, tick_rate, w, h)
    vx = pf[PVX].astype(np.float64)
    vy = pf[PVY].astype(np.float64)
    # diagonals are not faster: the stored velocity is at most speed (float32 rounding aside)
    assert np.all(np.hypot(vx, vy) <= speed * (1 + 2**-22))
    step = np.hypot(pf[PX].astype(np.float64) - 2048.0, pf[PY].astype(np.float64) - 2048.0)
    assert np.all(step <= speed / tick_rate + 2048.0 * 2**-23)


def test_axis_mapping():
    speed, tick_rate = 200.0, 20.0
    cases = [(127, 0, speed, 0.0), (-127, 0, -speed, 0.0), (0, 127, 0.0, speed),
             (0, -127, 0.0, -speed), (0, 0, 0.0, 0.0), (64, 0, 64 / 127 * speed, 0.0),
             (1, -1, speed / 127, -speed / 127)]
    for mx, my, want_vx, want_vy in cases:
        players = [RefPlayer(x=1000.0, y=1000.0, alive=1, move_x=mx, move_y=my)]
        pf, _ = _run(players, speed, tick_rate, 4096.0, 4096.0)
        assert pf[PVX, 0] == np.float32(want_vx) and pf[PVY, 0] == np.float32(want_vy)
    # full diagonal: both components speed/sqrt(2), length exactly speed (to float32)
    players = [RefPlayer(x=1000.0, y=1000.0, alive=1, move_x=127, move_y=-127)]
    pf, _ = _run(players, speed, tick_rate, 4096.0, 4096.0)
    assert math.isclose(float(pf[PVX, 0]), speed / math.sqrt(2), rel_tol=1e-6)
    assert math.isclose(float(pf[PVY, 0]), -speed / math.sqrt(2), rel_tol=1e-6)


def test_out_of_range_axes_are_still_clamped_to_speed():
    # decode clamps -128 to -127, but the kernel must stay bounded whatever it is given
    speed, tick_rate = 200.0, 20.0
    players = [RefPlayer(x=500.0, y=500.0, alive=1, move_x=mx, move_y=my)
               for mx, my in [(-128, 0), (1000, 0), (-2**31, 2**31 - 1), (127, 128), (0, -500)]]
    pf, _ = _run(players, speed, tick_rate, 4096.0, 4096.0)
    assert np.all(np.hypot(pf[PVX].astype(np.float64), pf[PVY].astype(np.float64))
                  <= speed * (1 + 2**-22))


def test_bounds_clamp():
    w, h = 512.0, 384.0
    players = [
        RefPlayer(x=511.0, y=383.0, alive=1, move_x=127, move_y=127),  # past the far corner
        RefPlayer(x=1.0, y=1.0, alive=1, move_x=-127, move_y=-127),  # past the origin
        RefPlayer(x=0.0, y=0.0, alive=1, move_x=-127, move_y=0),  # pushing into the wall
        RefPlayer(x=w, y=h, alive=1, move_x=127, move_y=127),
        RefPlayer(x=w, y=h / 2, alive=1, move_x=-127, move_y=0),  # leaving the wall
        RefPlayer(x=0.0, y=h, alive=1, move_x=0, move_y=127),
    ]
    pf, _ = _run(players, 200.0, 20.0, w, h)
    assert pf[PX].tolist()[:4] == [w, 0.0, 0.0, w]
    assert pf[PY].tolist()[:4] == [h, 0.0, 0.0, h]
    assert pf[PX, 4] == np.float32(w - 10.0)
    assert pf[PY, 5] == h
    # velocity is what the input asked for, even when the wall stops the move
    assert pf[PVX, 2] == -200.0


def test_dead_slots_untouched():
    rnd = random.Random(11)
    players = _random_players(rnd, 200, 256.0, 256.0)
    for p in players[::2]:
        p.alive = 0
        p.x, p.y = float("nan"), -1e30  # garbage in a dead slot must survive as is
        p.move_x = 127
    pf, pi = players_to_arrays(players)
    dead = pi[P_ALIVE] == 0
    pf_dead_bits = pf.view(np.uint32)[:, dead].copy()
    move_players(pf, pi, 200.0, 20.0, 256.0, 256.0)
    assert np.array_equal(pf.view(np.uint32)[:, dead], pf_dead_bits)
    alive = ~dead
    assert np.all((pf[PX, alive] >= 0) & (pf[PX, alive] <= 256.0))


@settings(max_examples=300, deadline=None)
@given(mx=st.integers(-127, 127), my=st.integers(-127, 127),
       x=st.floats(0, 1000, width=32), y=st.floats(0, 700, width=32),
       speed=st.sampled_from([1.0, 150.0, 200.0, 333.3, 1e4]),
       tick_rate=st.sampled_from([1.0, 20.0, 30.0, 60.0, 7.5]))
def test_move_property(mx, my, x, y, speed, tick_rate):
    players = [RefPlayer(x=x, y=y, alive=1, move_x=mx, move_y=my)]
    pf, _ = _run(players, speed, tick_rate, 1000.0, 700.0)
    assert 0.0 <= pf[PX, 0] <= 1000.0 and 0.0 <= pf[PY, 0] <= 700.0


def test_reference_round_trip():
    """The array conversion used by every sim test keeps float32 bits and ints exactly."""
    rnd = random.Random(2)
    players = _random_players(rnd, 50, 100.0, 100.0)
    pf, pi = players_to_arrays(players)
    assert diff_players(players_from_arrays(pf, pi), pf, pi) == []
    assert diff_players(players, pf, pi) == []
