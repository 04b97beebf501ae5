"""sim/rng.py: SplitMix64 against a pure-Python SplitMix64 and its published outputs."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.rng import new_rng, next_below, next_u64, next_unit, pick_weighted
from tests.sim_reference import MASK64, SplitMix64

SEEDS = [0, 1, 42, 1234567, 2**63, 2**64 - 1, 0x9E3779B97F4A7C15, 0xDEADBEEFCAFEBABE]


def test_reference_matches_published_vector():
    # Rosetta Code "Pseudo-random numbers/Splitmix64", seed 1234567.
    ref = SplitMix64(1234567)
    assert [ref.next_u64() for _ in range(5)] == [
        6457827717110365317, 3203168211198807973, 9817491932198370423,
        4593380528125082431, 16408922859458223821]


def test_kernel_matches_published_vector():
    state = new_rng(1234567)
    assert [int(next_u64(state)) for _ in range(5)] == [
        6457827717110365317, 3203168211198807973, 9817491932198370423,
        4593380528125082431, 16408922859458223821]


@pytest.mark.parametrize("seed", SEEDS)
def test_next_u64_matches_reference(seed):
    state, ref = new_rng(seed), SplitMix64(seed)
    assert state.dtype == np.uint64 and state.shape == (1,) and int(state[0]) == seed
    for _ in range(500):
        assert int(next_u64(state)) == ref.next_u64()
        assert int(state[0]) == ref.state  # the state wraps modulo 2**64, like the reference


@pytest.mark.parametrize("seed", SEEDS)
def test_next_unit_matches_reference_and_range(seed):
    state, ref = new_rng(seed), SplitMix64(seed)
    for _ in range(300):
        u = next_unit(state)
        assert u == ref.next_unit()
        assert 0.0 <= u < 1.0


def _unxorshift(y: int, shift: int) -> int:
    z = y
    for _ in range(64 // shift + 1):
        z = y ^ (z >> shift)
    return z


def _state_before_output(out: int) -> int:
    """The RNG state whose next next_u64() returns `out` (SplitMix64's mix is a bijection)."""
    z = _unxorshift(out, 31)
    z = (z * pow(0x94D049BB133111EB, -1, 2**64)) & MASK64
    z = _unxorshift(z, 27)
    z = (z * pow(0xBF58476D1CE4E5B9, -1, 2**64)) & MASK64
    z = _unxorshift(z, 30)
    return (z - SplitMix64.GAMMA) & MASK64


@pytest.mark.parametrize("out", [0, 1, 2**11 - 1, 2**11, MASK64 - 1, MASK64])
def test_extreme_outputs(out):
    s = _state_before_output(out)
    ref = SplitMix64(s)
    assert ref.next_u64() == out  # the inversion is right
    assert int(next_u64(new_rng(s))) == out
    u = next_unit(new_rng(s))
    assert u == (out >> 11) / 2.0**53 and 0.0 <= u < 1.0
    # the largest output must still map below n, for every n the RNG promises (n <= 2**53)
    # (and, as it happens, for every n below 2**63: u * n never rounds up to n)
    for n in (1, 2, 3, 5, 7, 100, 2**31, 2**40 + 1, 2**52 + 1, 2**53 - 1, 2**53, 3 * 2**59,
              2**62 + 12345, 2**63 - 1):
        r = next_below(new_rng(s), n)
        assert 0 <= r < n, (out, n, r)
        assert r == SplitMix64(s).next_below(n)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 10, 1000, 2**31 - 1, 2**31, 2**40 + 3, 2**53])
def test_next_below_range_and_reference(n):
    seed = (n * 7919) & MASK64
    state, ref = new_rng(seed), SplitMix64(seed)
    seen = set()
    for _ in range(300):
        r = next_below(state, n)
        assert r == ref.next_below(n)
        assert 0 <= r < n
        seen.add(r)
    if n == 1:
        assert seen == {0}
    if n <= 10:
        assert seen == set(range(n))  # 300 draws hit every value of a small range


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, MASK64), n=st.integers(1, 2**53))
def test_next_below_property(seed, n):
    state, ref = new_rng(seed), SplitMix64(seed)
    for _ in range(3):
        r = next_below(state, n)
        assert 0 <= r < n
        assert r == ref.next_below(n)
    assert int(state[0]) == ref.state


def _cdf(weights):
    return np.cumsum(np.asarray(weights, np.int64))


@pytest.mark.parametrize("weights", [
    [1], [40, 25, 18, 11, 6], [0, 5], [5, 0], [0, 0, 3, 0], [1, 0, 0, 1],
    [2**40, 1], [1] * 100, [0] * 99 + [1],
])
def test_pick_weighted_matches_reference(weights):
    seed = len(weights) * 31 + weights[0]
    state, ref = new_rng(seed), SplitMix64(seed)
    cdf = _cdf(weights)
    for _ in range(300):
        i = pick_weighted(state, cdf)
        assert i == ref.pick_weighted(weights)
        assert 0 <= i < len(weights)
        assert weights[i] > 0, "a zero-weight index must never be picked"


def test_pick_weighted_distribution():
    weights = [40, 25, 18, 11, 6]
    total = sum(weights)
    state = new_rng(2024)
    cdf = _cdf(weights)
    draws = 20_000
    counts = [0] * len(weights)
    for _ in range(draws):
        counts[pick_weighted(state, cdf)] += 1
    chi2 = sum((c - draws * w / total) ** 2 / (draws * w / total) for c, w in zip(counts, weights))
    assert chi2 < 30.0, (counts, chi2)  # 4 degrees of freedom: p < 1e-5 if the picks were fair


def test_streams_differ_and_are_reproducible():
    rnd = random.Random(5)
    for _ in range(20):
        seed = rnd.getrandbits(64)
        a, b = new_rng(seed), new_rng(seed)
        xs = [int(next_u64(a)) for _ in range(10)]
        assert xs == [int(next_u64(b)) for _ in range(10)]
        c = new_rng((seed + 1) & MASK64)
        assert xs != [int(next_u64(c)) for _ in range(10)]
