"""What the simulation consumes from players each tick: the input rows of the player table.

An input log (store.input_log) records, per tick, only the players whose input rows
changed since the tick before; a replay rebuilds the same rows from those changes. The
rows are the ones the network writes and the step reads: move axes and the dig button.
"""

from __future__ import annotations

import numpy as np

from sim.jit import kernel
from sim.schema import P_DIG, P_MOVE_X, P_MOVE_Y

#: Rows of the player table (int32[11, P]) that carry a player's input, in log order.
INPUT_ROWS = np.array([P_MOVE_X, P_MOVE_Y, P_DIG], np.int64)


def new_input_shadow(max_players: int) -> np.ndarray:
    """The input rows as of the last logged tick: int32[len(INPUT_ROWS), P], all zero (a
    new world's players hold no input)."""
    return np.zeros((len(INPUT_ROWS), max_players), np.int32)


@kernel
def changed_inputs(pi: np.ndarray, rows: np.ndarray, shadow: np.ndarray, slots: np.ndarray,
                   values: np.ndarray) -> int:
    """List the players whose input rows differ from `shadow`, and update the shadow.

    pi: int32[11, P]; rows: int64[R] (INPUT_ROWS); shadow: int32[R, P]; slots: int32[P]
    and values: int32[P, R] receive the changed players in slot order. Returns how many.
    """
    n = 0
    for i in range(pi.shape[1]):
        same = True
        for k in range(rows.shape[0]):
            if pi[rows[k], i] != shadow[k, i]:
                same = False
        if same:
            continue
        slots[n] = i
        for k in range(rows.shape[0]):
            v = pi[rows[k], i]
            values[n, k] = v
            shadow[k, i] = v
        n += 1
    return n


@kernel
def restore_inputs(pi: np.ndarray, rows: np.ndarray, shadow: np.ndarray, slots: np.ndarray,
                   values: np.ndarray, n: int) -> None:
    """Apply n logged changes (slots int32[n], values int32[n, R]) to `shadow`, then write
    every player's input rows from it: the rows the live step read, whatever joins and
    leaves did to them in between."""
    for j in range(n):
        for k in range(rows.shape[0]):
            shadow[k, slots[j]] = values[j, k]
    for k in range(rows.shape[0]):
        for i in range(pi.shape[1]):
            pi[rows[k], i] = shadow[k, i]
