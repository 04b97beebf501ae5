"""sim/treasures.py: burying (RNG placement, weighted values) and the respawn timers."""

from __future__ import annotations

import random

import numpy as np
import pytest

from sim import schema as S
from sim.rng import new_rng
from sim.treasures import age_treasures, bury, bury_all
from tests.sim_reference import (BURIED, CLAIMED, WAITING, RefTreasure, SplitMix64, diff_treasures,
                                 ref_age, ref_bury, treasures_to_arrays)

WEIGHTS = [40, 25, 18, 11, 6]


def _cdf(weights):
    return np.cumsum(np.asarray(weights, np.int64))


def test_bury_matches_reference():
    treasures = [RefTreasure(gen=g, state=CLAIMED, claim_tick=5, claimer=3) for g in (-1, 0, 7)]
    tf, ti = treasures_to_arrays(treasures)
    rng, ref = new_rng(77), SplitMix64(77)
    for _ in range(20):
        for t in (2, 0, 1):
            bury(tf, ti, t, rng, _cdf(WEIGHTS), 4096.0, 300.0)
            ref_bury(treasures[t], ref, WEIGHTS, 4096.0, 300.0)
    assert diff_treasures(treasures, tf, ti) == []
    assert ti[S.T_GEN].tolist() == [19, 20, 27]
    assert int(rng[0]) == ref.state


def test_bury_all_in_index_order():
    treasures = [RefTreasure(gen=-1) for _ in range(50)]
    tf, ti = treasures_to_arrays(treasures)
    rng, ref = new_rng(3), SplitMix64(3)
    bury_all(tf, ti, rng, _cdf(WEIGHTS), 512.0, 384.0)
    for tr in treasures:
        ref_bury(tr, ref, WEIGHTS, 512.0, 384.0)
    assert diff_treasures(treasures, tf, ti) == []
    assert ti[S.T_GEN].tolist() == [0] * 50
    assert (ti[S.T_STATE] == BURIED).all() and (ti[S.T_CLAIM_TICK] == -1).all()


@pytest.mark.parametrize("weights", [WEIGHTS, [1, 0, 0, 0, 9], [0, 0, 1], [5]])
def test_value_distribution_follows_weights(weights):
    n = 30_000
    tf = np.zeros((2, n), np.float32)
    ti = np.zeros((5, n), np.int32)
    w, h = 1000.0, 600.0
    bury_all(tf, ti, new_rng(12345), _cdf(weights), w, h)
    values = ti[S.T_VALUE]
    counts = np.bincount(values, minlength=len(weights) + 1)
    assert counts[0] == 0 and values.max() <= len(weights)
    total = sum(weights)
    chi2 = 0.0
    for v, wt in enumerate(weights, start=1):
        if wt == 0:
            assert counts[v] == 0, "a value of weight 0 is never buried"
            continue
        expected = n * wt / total
        chi2 += (counts[v] - expected) ** 2 / expected
    # at most 4 degrees of freedom: chi2 > 30 has p < 1e-5 for fair draws (the seed is fixed)
    assert chi2 < 30.0, (counts.tolist(), chi2)
    # positions: inside the world and spread over it
    xs, ys = tf[S.TX].astype(np.float64), tf[S.TY].astype(np.float64)
    assert xs.min() >= 0 and xs.max() <= w and ys.min() >= 0 and ys.max() <= h
    hist, _, _ = np.histogram2d(xs, ys, bins=4, range=[[0, w], [0, h]])
    assert hist.min() > 0.8 * n / 16 and hist.max() < 1.2 * n / 16


def _age_rig(states, claim_ticks):
    treasures = [RefTreasure(x=float(t), y=float(t), state=s, claim_tick=c, value=1, gen=3)
                 for t, (s, c) in enumerate(zip(states, claim_ticks))]
    tf, ti = treasures_to_arrays(treasures)
    return treasures, tf, ti


def _age(treasures, tf, ti, tick, rng, ref, show, respawn, w=256.0, h=256.0):
    age_treasures(tf, ti, tick, rng, _cdf(WEIGHTS), show, respawn, w, h)
    ref_age(treasures, tick, ref, WEIGHTS, show, respawn, w, h)
    assert diff_treasures(treasures, tf, ti) == []
    assert int(rng[0]) == ref.state


def test_claimed_waiting_buried_timeline():
    show, respawn = 4, 10
    treasures, tf, ti = _age_rig([CLAIMED], [100])
    rng, ref = new_rng(8), SplitMix64(8)
    seen = []
    for tick in range(100, 112):
        _age(treasures, tf, ti, tick, rng, ref, show, respawn)
        seen.append((tick, int(ti[S.T_STATE, 0]), int(ti[S.T_GEN, 0])))
    states = {tick: state for tick, state, _ in seen}
    assert all(states[t] == CLAIMED for t in range(100, 104))
    assert all(states[t] == WAITING for t in range(104, 110))
    assert states[110] == BURIED and states[111] == BURIED
    gens = {tick: gen for tick, _, gen in seen}
    assert gens[109] == 3 and gens[110] == 4  # one new generation, once
    assert (float(tf[S.TX, 0]), float(tf[S.TY, 0])) != (0.0, 0.0)  # a new place
    assert ti[S.T_CLAIM_TICK, 0] == -1


def test_show_longer_than_respawn_goes_straight_to_buried():
    treasures, tf, ti = _age_rig([CLAIMED], [0])
    rng, ref = new_rng(1), SplitMix64(1)
    for tick in range(0, 5):
        _age(treasures, tf, ti, tick, rng, ref, show=8, respawn=5)
        assert ti[S.T_STATE, 0] == CLAIMED
    _age(treasures, tf, ti, 5, rng, ref, show=8, respawn=5)
    assert ti[S.T_STATE, 0] == BURIED and ti[S.T_GEN, 0] == 4


def test_many_treasures_respawn_in_index_order():
    rnd = random.Random(21)
    states = [rnd.choice((BURIED, CLAIMED, WAITING)) for _ in range(80)]
    claim_ticks = [rnd.randint(0, 30) if s != BURIED else -1 for s in states]
    treasures, tf, ti = _age_rig(states, claim_ticks)
    rng, ref = new_rng(99), SplitMix64(99)
    for tick in range(20, 50):
        _age(treasures, tf, ti, tick, rng, ref, show=3, respawn=12)
        if tick % 7 == 0:  # some get claimed again in between
            for t in range(0, 80, 9):
                if treasures[t].state == BURIED:
                    treasures[t].state, treasures[t].claim_tick = CLAIMED, tick
                    ti[S.T_STATE, t], ti[S.T_CLAIM_TICK, t] = CLAIMED, tick
    assert (ti[S.T_STATE] == BURIED).sum() > 40


def test_buried_treasures_are_left_alone():
    treasures, tf, ti = _age_rig([BURIED] * 5, [-1] * 5)
    rng = new_rng(5)
    before = (tf.copy(), ti.copy(), int(rng[0]))
    age_treasures(tf, ti, 10**6, rng, _cdf(WEIGHTS), 1, 1, 256.0, 256.0)
    assert np.array_equal(before[0], tf) and np.array_equal(before[1], ti)
    assert int(rng[0]) == before[2], "no RNG draw for a treasure that stays put"
