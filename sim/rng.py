"""Explicit, seedable RNG state for kernels: SplitMix64 over a uint64[1] array.

SplitMix64 (Steele, Lea, Flood 2014) is tiny, passes BigCrush, and its whole state is one
64-bit word, so it checkpoints and hashes with the world.
"""

from __future__ import annotations

import numpy as np

from sim.jit import kernel

_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MUL1 = np.uint64(0xBF58476D1CE4E5B9)
_MUL2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_INV_2_53 = 1.0 / 9007199254740992.0


def new_rng(seed: int) -> np.ndarray:
    """Return the RNG state, uint64[1], for `seed` (0 <= seed < 2**64)."""
    return np.array([seed], dtype=np.uint64)


@kernel
def next_u64(state: np.ndarray) -> np.uint64:
    """Advance `state` (uint64[1]) and return the next 64-bit output."""
    state[0] = state[0] + _GAMMA
    z = state[0]
    z = (z ^ (z >> _S30)) * _MUL1
    z = (z ^ (z >> _S27)) * _MUL2
    return z ^ (z >> _S31)


@kernel
def next_unit(state: np.ndarray) -> float:
    """Next float64 uniform in [0, 1): the top 53 bits of next_u64."""
    return float(next_u64(state) >> _S11) * _INV_2_53


@kernel
def next_below(state: np.ndarray, n: int) -> int:
    """Next integer uniform in [0, n), n >= 1 (multiply-shift on 53 bits; bias < 2**-40)."""
    return int(next_unit(state) * n)


@kernel
def pick_weighted(state: np.ndarray, cumulative: np.ndarray) -> int:
    """Index i with probability weight[i]/total; `cumulative` is int64[k], strictly summed."""
    total = cumulative[cumulative.shape[0] - 1]
    r = next_below(state, total)
    for i in range(cumulative.shape[0]):
        if r < cumulative[i]:
            return i
    return cumulative.shape[0] - 1
