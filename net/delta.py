"""Delta snapshots: compare what a client holds (its acked baseline) with what it sees now.

The client's copy of a player is (id, qx, qy, vx, vy) in quanta and quanta per tick; it
extrapolates every player it was told about (docs/PROTOCOL.md 7.6), so a player walking
in a straight line costs nothing until the extrapolation drifts more than `tolerance`
quanta off. The functions here classify, and compute the client's resulting copy exactly
as the client will rebuild it: that copy is stored as the next baseline.
"""

from __future__ import annotations

import numpy as np

from net.snapshot_ring import (E_ID, E_QX, E_QY, E_VALUE, E_VX, E_VY, MARK_BASE, MARK_NOW,
                               V_BIAS, V_MAX, next_stamp)
from sim.jit import kernel
from sim.schema import PVX, PVY, PX, PY, T_VALUE, TX, TY

# What became of a baseline entity.
KEEP, MOVED, TURNED, REMOVED = 0, 1, 2, 3


@kernel
def quantize(v: float, extent: float) -> int:
    """World coordinate 0..extent -> u16: floor(v * 65536 / extent), capped at 65535."""
    q = int(np.float64(v) * 65536.0 / extent)
    if q < 0:
        return 0
    return 65535 if q > 65535 else q


@kernel
def velocity_q(v: float, extent: float, tick_rate: float) -> int:
    """Velocity in units per second -> quanta per tick, rounded half up, within +-V_MAX."""
    q = int(np.floor(np.float64(v) * 65536.0 / extent / tick_rate + 0.5))
    if q > V_MAX:
        return V_MAX
    return -V_MAX if q < -V_MAX else q


@kernel
def predict(q: int, v: int, dt: int) -> int:
    """Where the client extrapolates a coordinate: q + v * dt, clamped to 0..65535."""
    p = q + v * dt
    if p < 0:
        return 0
    return 65535 if p > 65535 else p


@kernel
def quantize_players(pf: np.ndarray, w: float, h: float, tick_rate: float,
                     pq: np.ndarray) -> None:
    """Every player as the wire carries it, once a tick: pq int32[P, 4] of qx, qy, vx, vy
    (quanta, quanta per tick), one player to a row so a delta reads one cache line per
    player. pf: float32[4, P]. Per visible pair it would cost ~30x more."""
    for j in range(pf.shape[1]):
        pq[j, 0] = quantize(pf[PX, j], w)
        pq[j, 1] = quantize(pf[PY, j], h)
        pq[j, 2] = velocity_q(pf[PVX, j], w, tick_rate)
        pq[j, 3] = velocity_q(pf[PVY, j], h, tick_rate)


@kernel
def quantize_treasures(tf: np.ndarray, ti: np.ndarray, w: float, h: float,
                       tq: np.ndarray) -> None:
    """Every treasure as the wire carries it: tq int32[T, 3] of qx, qy, value."""
    for j in range(tf.shape[1]):
        tq[j, 0] = quantize(tf[TX, j], w)
        tq[j, 1] = quantize(tf[TY, j], h)
        tq[j, 2] = ti[T_VALUE, j]


@kernel(inline=True)
def full_rows(sel: np.ndarray, n_sel: int, now: np.ndarray, state: np.ndarray) -> int:
    """The client's copy after a full snapshot: state rows [id, *now[id]] in `sel` order
    (now: pq int32[P, 4] for players, tq int32[T, 3] for treasures)."""
    for q in range(n_sel):
        j = sel[q]
        state[q, E_ID] = j
        for f in range(now.shape[1]):
            state[q, 1 + f] = now[j, f]
    return n_sel


@kernel(inline=True)
def append_new(sel: np.ndarray, n_sel: int, marks: np.ndarray, kept: int, now: np.ndarray,
               state: np.ndarray, n: int) -> int:
    """Append to state, from row n on, every id of sel[:n_sel] not marked kept (a new
    entity), in sel order: [id, *now[id]] (now: int32[N, F - 1], the quantized table).
    Returns how many."""
    new = 0
    for q in range(n_sel):
        j = sel[q]
        if marks[MARK_BASE, j] == kept:
            continue
        state[n + new, E_ID] = j
        for f in range(now.shape[1]):
            state[n + new, 1 + f] = now[j, f]
        new += 1
    return new


@kernel(inline=True)
def diff_players(base: np.ndarray, n_base: int, dt: int, sel: np.ndarray, n_sel: int,
                 pq: np.ndarray, tolerance: int, marks: np.ndarray, stamp: np.ndarray,
                 kind: np.ndarray, res: np.ndarray, state: np.ndarray) -> tuple:
    """Classify baseline players against the players in view now.

    base: uint16[CP, 5] baseline rows (velocities biased by V_BIAS); sel: int32 ids in view
    (scan order); pq: int32[P, 4] players now (quantize_players); dt: ticks since the
    baseline. Writes kind[i] (KEEP, MOVED, TURNED,
    REMOVED) and res[i] = (rx, ry, vx, vy) per baseline row, and the client's new copy
    to state (int32[CP, 5]): kept baseline rows in baseline order, then new players in
    `sel` order. Returns (rows in state, moved, turned, removed, new).
    marks: int64[3, P] stamp table; stamp: int64[1].
    """
    now = next_stamp(stamp)
    for q in range(n_sel):
        marks[MARK_NOW, sel[q]] = now
    kept = next_stamp(stamp)
    n = 0
    moved = turned = removed = 0
    for i in range(n_base):
        j = np.int64(base[i, E_ID])
        if marks[MARK_NOW, j] != now:
            kind[i] = REMOVED
            removed += 1
            continue
        marks[MARK_BASE, j] = kept
        vbx = np.int64(base[i, E_VX]) - V_BIAS
        vby = np.int64(base[i, E_VY]) - V_BIAS
        px = predict(np.int64(base[i, E_QX]), vbx, dt)
        py = predict(np.int64(base[i, E_QY]), vby, dt)
        qx = np.int64(pq[j, 0])
        qy = np.int64(pq[j, 1])
        vx = np.int64(pq[j, 2])
        vy = np.int64(pq[j, 3])
        rx = qx - px
        ry = qy - py
        res[i, 0] = rx
        res[i, 1] = ry
        res[i, 2] = vx
        res[i, 3] = vy
        state[n, E_ID] = j
        if vx == vbx and vy == vby:
            if abs(rx) <= tolerance and abs(ry) <= tolerance:
                kind[i] = KEEP  # the client's extrapolation is close enough: send nothing
                qx, qy = px, py
            else:
                kind[i] = MOVED
                moved += 1
        else:
            kind[i] = TURNED
            turned += 1
        state[n, E_QX] = qx
        state[n, E_QY] = qy
        state[n, E_VX] = vx if kind[i] == TURNED else vbx
        state[n, E_VY] = vy if kind[i] == TURNED else vby
        n += 1
    new = append_new(sel, n_sel, marks, kept, pq, state, n)
    return n + new, moved, turned, removed, new


@kernel(inline=True)
def diff_treasures(base: np.ndarray, n_base: int, sel: np.ndarray, n_sel: int,
                   tq: np.ndarray, marks: np.ndarray, stamp: np.ndarray, kind: np.ndarray,
                   state: np.ndarray) -> tuple:
    """Classify baseline treasures: KEEP when still in view and unchanged, else REMOVED
    (a treasure that changed, e.g. re-buried elsewhere under the same id, is removed and
    sent again as new). base: uint16[CT, 4]; tq: int32[T, 3] (quantize_treasures); state:
    int32[CT, 4], kept rows in baseline order then new ones in `sel` order. Returns (rows
    in state, removed, new)."""
    now = next_stamp(stamp)
    for q in range(n_sel):
        marks[MARK_NOW, sel[q]] = now
    kept = next_stamp(stamp)
    n = 0
    removed = 0
    for i in range(n_base):
        j = np.int64(base[i, E_ID])
        if (marks[MARK_NOW, j] != now or base[i, E_QX] != tq[j, 0]
                or base[i, E_QY] != tq[j, 1] or base[i, E_VALUE] != tq[j, 2]):
            kind[i] = REMOVED
            removed += 1
            continue
        kind[i] = KEEP
        marks[MARK_BASE, j] = kept
        for f in range(4):
            state[n, f] = base[i, f]
        n += 1
    new = append_new(sel, n_sel, marks, kept, tq, state, n)
    return n + new, removed, new
