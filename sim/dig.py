"""Dig to claim: hold dig near a buried treasure for dig_ticks ticks to claim it."""

from __future__ import annotations

import numpy as np

from sim.jit import kernel
from sim.nearest import nearest_buried
from sim.schema import (CLAIM_RING, CLAIM_HEAD, CLAIMED, CR_SLOT, CR_TICK, CR_TREASURE,
                        CR_VALUE, CR_X, CR_Y, EV_A, EV_B, EV_C, EV_D, EV_KIND, EV_TICK,
                        EVENT_CLAIM, EVENT_COUNT, EVENTS_LOST, P_ALIVE, P_DIG, P_DIG_START,
                        P_DIG_TICKS, P_DIG_TREASURE, P_GEN, P_SCORE, PX, PY, T_CLAIM_TICK,
                        T_CLAIMER, T_STATE, T_VALUE, TX, TY)


@kernel
def push_event(events: np.ndarray, clock: np.ndarray, kind: int, tick: int,
               a: int, b: int, c: int, d: int) -> None:
    """Append one event row to events (int64[E, 6]); count it as lost if full."""
    n = clock[EVENT_COUNT]
    if n >= events.shape[0]:
        clock[EVENTS_LOST] += 1
        return
    events[n, EV_KIND] = kind
    events[n, EV_TICK] = tick
    events[n, EV_A] = a
    events[n, EV_B] = b
    events[n, EV_C] = c
    events[n, EV_D] = d
    clock[EVENT_COUNT] = n + 1


@kernel
def dig(pf: np.ndarray, pi: np.ndarray, tf: np.ndarray, ti: np.ndarray,
        t_starts: np.ndarray, t_items: np.ndarray, tick: int, dig_radius: float,
        dig_ticks: int, cell_size: float, cols: int, rows: int, clock: np.ndarray,
        events: np.ndarray, claim_ring: np.ndarray) -> int:
    """Advance every digger; resolve claims; return the number of claims this tick.

    A player holding dig works on the nearest buried treasure within dig_radius. Progress
    counts consecutive ticks on the same treasure; leaving range, releasing dig, or the
    nearest treasure changing restarts it. A player whose progress reaches dig_ticks
    finishes. Several finishers on one treasure in one tick: the earliest dig start wins,
    then the lowest player slot. Every digger of a claimed treasure starts over.
    The treasure grid (t_starts, t_items) must hold the BURIED treasures of this tick.
    """
    for t in range(ti.shape[1]):
        ti[T_CLAIMER, t] = -1
    for i in range(pi.shape[1]):
        if pi[P_ALIVE, i] == 0:
            continue
        if pi[P_DIG, i] == 0:
            pi[P_DIG_TREASURE, i] = -1
            pi[P_DIG_TICKS, i] = 0
            continue
        t, _ = nearest_buried(np.float64(pf[PX, i]), np.float64(pf[PY, i]), dig_radius,
                              tf, ti, t_starts, t_items, cell_size, cols, rows)
        if t < 0:
            pi[P_DIG_TREASURE, i] = -1
            pi[P_DIG_TICKS, i] = 0
            continue
        if t == pi[P_DIG_TREASURE, i]:
            pi[P_DIG_TICKS, i] += 1
        else:
            pi[P_DIG_TREASURE, i] = t
            pi[P_DIG_START, i] = tick
            pi[P_DIG_TICKS, i] = 1
        if pi[P_DIG_TICKS, i] >= dig_ticks:
            rival = ti[T_CLAIMER, t]
            # slots ascend, so a rival with the same start already has the lower slot
            if rival < 0 or pi[P_DIG_START, i] < pi[P_DIG_START, rival]:
                ti[T_CLAIMER, t] = i
    claims = 0
    for t in range(ti.shape[1]):
        winner = ti[T_CLAIMER, t]
        if winner < 0:
            continue
        value = ti[T_VALUE, t]
        ti[T_STATE, t] = CLAIMED
        ti[T_CLAIM_TICK, t] = tick
        pi[P_SCORE, winner] += value
        push_event(events, clock, EVENT_CLAIM, tick, winner, pi[P_GEN, winner], t, value)
        head = clock[CLAIM_HEAD] % CLAIM_RING
        claim_ring[head, CR_TICK] = tick
        claim_ring[head, CR_SLOT] = winner
        claim_ring[head, CR_TREASURE] = t
        claim_ring[head, CR_VALUE] = value
        claim_ring[head, CR_X] = int(tf[TX, t])  # positions are >= 0: int() is floor
        claim_ring[head, CR_Y] = int(tf[TY, t])
        clock[CLAIM_HEAD] += 1
        claims += 1
    if claims > 0:
        for i in range(pi.shape[1]):
            t = pi[P_DIG_TREASURE, i]
            if t >= 0 and ti[T_STATE, t] == CLAIMED:
                pi[P_DIG_TREASURE, i] = -1
                pi[P_DIG_TICKS, i] = 0
    return claims
