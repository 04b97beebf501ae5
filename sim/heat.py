"""The heat hint: how close each player is to the nearest buried treasure, 0..255."""

from __future__ import annotations

import math

import numpy as np

from sim.jit import kernel
from sim.nearest import nearest_buried
from sim.schema import P_ALIVE, P_HEAT, PX, PY


@kernel
def heat_level(d2: float, heat_radius: float) -> int:
    """0 at or beyond heat_radius, else 1 + floor(255 * (R - d) / R), capped at 255."""
    if d2 >= heat_radius * heat_radius:
        return 0
    d = math.sqrt(d2)
    level = 1 + int(255.0 * (heat_radius - d) / heat_radius)
    return min(level, 255)


@kernel
def heat(pf: np.ndarray, pi: np.ndarray, tf: np.ndarray, ti: np.ndarray,
         t_starts: np.ndarray, t_items: np.ndarray, heat_radius: float, cell_size: float,
         cols: int, rows: int) -> None:
    """Write every alive player's heat level into pi[P_HEAT] (int32[P])."""
    for i in range(pi.shape[1]):
        if pi[P_ALIVE, i] == 0:
            pi[P_HEAT, i] = 0
            continue
        t, d2 = nearest_buried(np.float64(pf[PX, i]), np.float64(pf[PY, i]), heat_radius,
                               tf, ti, t_starts, t_items, cell_size, cols, rows)
        pi[P_HEAT, i] = heat_level(d2, heat_radius) if t >= 0 else 0
