"""Players entering the world."""

from __future__ import annotations

import numpy as np

from sim.jit import kernel
from sim.rng import next_unit
from sim.schema import (P_ALIVE, P_DIG, P_DIG_START, P_DIG_TICKS, P_DIG_TREASURE, P_GEN,
                        P_HEAT, P_INPUT_SEQ, P_MOVE_X, P_MOVE_Y, P_SCORE, PVX, PVY, PX, PY)


@kernel
def place_player(pf: np.ndarray, pi: np.ndarray, slot: int, rng: np.ndarray,
                 world_width: float, world_height: float) -> None:
    """Make `slot` a fresh player at a uniform random position, next generation.

    pf: float32[4, P]; pi: int32[11, P]; rng: uint64[1] (advanced by two draws).
    """
    pf[PX, slot] = next_unit(rng) * world_width
    pf[PY, slot] = next_unit(rng) * world_height
    pf[PVX, slot] = 0.0
    pf[PVY, slot] = 0.0
    pi[P_ALIVE, slot] = 1
    pi[P_GEN, slot] += 1
    pi[P_SCORE, slot] = 0
    pi[P_DIG_TREASURE, slot] = -1
    pi[P_DIG_START, slot] = 0
    pi[P_DIG_TICKS, slot] = 0
    pi[P_HEAT, slot] = 0
    pi[P_MOVE_X, slot] = 0
    pi[P_MOVE_Y, slot] = 0
    pi[P_DIG, slot] = 0
    pi[P_INPUT_SEQ, slot] = 0
