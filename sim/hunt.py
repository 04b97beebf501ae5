"""Hunts: the running leaderboard, and the end of a hunt (final ranks, reset, fresh treasures)."""

from __future__ import annotations

import numpy as np

from sim.dig import push_event
from sim.jit import kernel
from sim.schema import (EVENT_HUNT_END, EVENT_RANK, HUNT_ID, HUNT_START, LAST_HUNT_END,
                        LB_GEN, LB_SCORE, LB_SLOT, P_ALIVE, P_DIG_TICKS, P_DIG_TREASURE,
                        P_GEN, P_SCORE)
from sim.treasures import bury_all


@kernel
def rank_players(pi: np.ndarray, board: np.ndarray) -> int:
    """Fill board (int32[K, 3]: slot, gen, score) with the top K alive players.

    Order: score descending, then slot ascending. Rows past the number ranked get slot -1.
    Returns the number ranked. Insertion into K rows: O(P*K), no allocation.
    """
    k = board.shape[0]
    n = 0
    for i in range(pi.shape[1]):
        if pi[P_ALIVE, i] == 0:
            continue
        score = pi[P_SCORE, i]
        # slots arrive ascending, so a tie never displaces an earlier (lower) slot
        pos = n
        while pos > 0 and board[pos - 1, LB_SCORE] < score:
            pos -= 1
        if pos >= k:
            continue
        last = n if n < k else k - 1
        for j in range(last, pos, -1):
            board[j, LB_SLOT] = board[j - 1, LB_SLOT]
            board[j, LB_GEN] = board[j - 1, LB_GEN]
            board[j, LB_SCORE] = board[j - 1, LB_SCORE]
        board[pos, LB_SLOT] = i
        board[pos, LB_GEN] = pi[P_GEN, i]
        board[pos, LB_SCORE] = score
        if n < k:
            n += 1
    for j in range(n, k):
        board[j, LB_SLOT] = -1
        board[j, LB_GEN] = 0
        board[j, LB_SCORE] = 0
    return n


@kernel
def end_hunt(pi: np.ndarray, tf: np.ndarray, ti: np.ndarray, tick: int, clock: np.ndarray,
             rng: np.ndarray, value_cdf: np.ndarray, final_board: np.ndarray,
             events: np.ndarray, world_width: float, world_height: float) -> None:
    """Close the current hunt at `tick` and open the next one.

    Emits HUNT_END(hunt id, players ranked) then one RANK event per ranked player, stores
    the final board, zeroes scores and digs, and buries every treasure afresh.
    """
    ranked = rank_players(pi, final_board)
    push_event(events, clock, EVENT_HUNT_END, tick, clock[HUNT_ID], ranked, 0, 0)
    for r in range(ranked):
        push_event(events, clock, EVENT_RANK, tick, r, final_board[r, LB_SLOT],
                   final_board[r, LB_GEN], final_board[r, LB_SCORE])
    for i in range(pi.shape[1]):
        pi[P_SCORE, i] = 0
        pi[P_DIG_TREASURE, i] = -1
        pi[P_DIG_TICKS, i] = 0
    bury_all(tf, ti, rng, value_cdf, world_width, world_height)
    clock[LAST_HUNT_END] = tick
    clock[HUNT_ID] += 1
    clock[HUNT_START] = tick
