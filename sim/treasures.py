"""Treasure life cycle: placement from the seeded RNG, and timed state changes."""

from __future__ import annotations

import numpy as np

from sim.jit import kernel
from sim.rng import next_unit, pick_weighted
from sim.schema import (BURIED, CLAIMED, REMOVED, T_CLAIM_TICK, T_CLAIMER, T_GEN, T_STATE,
                        T_VALUE, TX, TY, WAITING)


@kernel
def bury(tf: np.ndarray, ti: np.ndarray, t: int, rng: np.ndarray, value_cdf: np.ndarray,
         world_width: float, world_height: float) -> None:
    """Bury treasure `t` afresh: uniform position, weighted value 1..k, next generation.

    tf: float32[2, T]; ti: int32[5, T]; rng: uint64[1]; value_cdf: int64[k].
    """
    tf[TX, t] = next_unit(rng) * world_width
    tf[TY, t] = next_unit(rng) * world_height
    ti[T_VALUE, t] = pick_weighted(rng, value_cdf) + 1
    ti[T_STATE, t] = BURIED
    ti[T_GEN, t] += 1
    ti[T_CLAIM_TICK, t] = -1
    ti[T_CLAIMER, t] = -1


@kernel
def bury_all(tf: np.ndarray, ti: np.ndarray, rng: np.ndarray, value_cdf: np.ndarray,
             world_width: float, world_height: float) -> None:
    """Bury every treasure afresh, in index order (the start of a hunt)."""
    for t in range(tf.shape[1]):
        bury(tf, ti, t, rng, value_cdf, world_width, world_height)


@kernel
def age_treasures(tf: np.ndarray, ti: np.ndarray, tick: int, rng: np.ndarray,
                  value_cdf: np.ndarray, claim_show_ticks: int, respawn_ticks: int,
                  world_width: float, world_height: float) -> None:
    """CLAIMED -> WAITING after claim_show_ticks; -> BURIED elsewhere after respawn_ticks.
    BURIED and REMOVED treasures are left alone.

    Treasures are visited in index order, so RNG draws are deterministic.
    """
    for t in range(tf.shape[1]):
        state = ti[T_STATE, t]
        if state == BURIED or state == REMOVED:
            continue
        age = tick - ti[T_CLAIM_TICK, t]
        if age >= respawn_ticks:
            bury(tf, ti, t, rng, value_cdf, world_width, world_height)
        elif state == CLAIMED and age >= claim_show_ticks:
            ti[T_STATE, t] = WAITING
