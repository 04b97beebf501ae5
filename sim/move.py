"""Movement: inputs become clamped velocities; positions integrate and stay in bounds."""

from __future__ import annotations

import math

import numpy as np

from sim.jit import kernel
from sim.schema import P_ALIVE, P_MOVE_X, P_MOVE_Y, PVX, PVY, PX, PY


@kernel
def move_players(pf: np.ndarray, pi: np.ndarray, speed_per_second: float, tick_rate: float,
                 world_width: float, world_height: float) -> None:
    """Advance every alive player one tick.

    pf: float32[4, P] player floats; pi: int32[11, P] player ints (see sim.schema).
    A move axis of -127..127 maps linearly to -speed..speed; the vector's length is then
    clamped to speed, so diagonals are not faster. Positions clamp into [0, W] x [0, H].
    """
    for i in range(pf.shape[1]):
        if pi[P_ALIVE, i] == 0:
            continue
        vx = pi[P_MOVE_X, i] / 127.0 * speed_per_second
        vy = pi[P_MOVE_Y, i] / 127.0 * speed_per_second
        mag = math.sqrt(vx * vx + vy * vy)
        if mag > speed_per_second:
            vx = vx * (speed_per_second / mag)
            vy = vy * (speed_per_second / mag)
        x = pf[PX, i] + vx / tick_rate
        y = pf[PY, i] + vy / tick_rate
        pf[PX, i] = min(max(x, 0.0), world_width)
        pf[PY, i] = min(max(y, 0.0), world_height)
        pf[PVX, i] = vx
        pf[PVY, i] = vy
