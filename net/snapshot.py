"""Per-client snapshots, written by one kernel into one preallocated send buffer.

For every connected session: the 16-byte header, then one msgpack map (docs/PROTOCOL.md,
"SNAPSHOT"). Visible players and revealed treasures come from the world's grids, nearest
first, capped so no snapshot exceeds net.limits.worst_snapshot_size.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from net.msgpack_out import put_array, put_key, put_map, put_uint
from net.sessions import CONNECTED, S_ID, S_STATE, S_TX_SEQ
from net.wire import MAX_DATAGRAM, PROTOCOL_ID, SNAPSHOT, VERSION
from sim.jit import kernel
from sim.nearest import nearest_k
from sim.schema import (BURIED, CLAIM_HEAD, CLAIM_RING, CR_SLOT, CR_TICK, CR_TREASURE,
                        CR_VALUE, HUNT_ID, HUNT_START, LAST_HUNT_END, LB_SCORE, LB_SLOT,
                        P_ALIVE, P_DIG_TICKS, P_HEAT, P_INPUT_SEQ, P_SCORE, PX, PY,
                        T_STATE, T_VALUE, TICK, TX, TY)


class SnapshotCaps(NamedTuple):
    """Per-snapshot caps and windows, in entities and ticks."""

    max_players: int
    max_treasures: int
    claim_window_ticks: int
    leaderboard_every_ticks: int
    result_window_ticks: int


@kernel
def quantize(v: float, extent: float) -> int:
    """World coordinate 0..extent -> u16: floor(v * 65536 / extent), capped at 65535."""
    q = int(np.float64(v) * 65536.0 / extent)
    if q < 0:
        return 0
    return 65535 if q > 65535 else q


@kernel
def put_header(buf: np.ndarray, pos: int, sid: int, seq: int) -> int:
    """The 16-byte SNAPSHOT header (little-endian)."""
    buf[pos] = PROTOCOL_ID & 0xFF
    buf[pos + 1] = PROTOCOL_ID >> 8
    buf[pos + 2] = VERSION
    buf[pos + 3] = SNAPSHOT
    for k in range(4, 8):
        buf[pos + k] = 0
    for k in range(4):
        buf[pos + 8 + k] = (sid >> (8 * k)) & 0xFF
        buf[pos + 12 + k] = (seq >> (8 * k)) & 0xFF
    return pos + 16


@kernel
def encode_snapshots(sessions: np.ndarray, pf: np.ndarray, pi: np.ndarray, tf: np.ndarray,
                     ti: np.ndarray, p_starts: np.ndarray, p_items: np.ndarray,
                     t_starts: np.ndarray, t_items: np.ndarray, clock: np.ndarray,
                     claim_ring: np.ndarray, board: np.ndarray, final_board: np.ndarray,
                     kr, caps, out: np.ndarray, out_off: np.ndarray, out_slot: np.ndarray,
                     near: np.ndarray, near_d2: np.ndarray) -> int:
    """Write one SNAPSHOT per connected session; return how many.

    Snapshot j is out[out_off[j]:out_off[j + 1]] for session slot out_slot[j].
    out: uint8[P * MAX_DATAGRAM]; out_off: int32[P + 1]; out_slot: int32[P];
    near: int32[K], near_d2: float64[K] scratch, K >= both caps. Call after step(): the
    snapshot describes the tick that just ran (clock[TICK] - 1).
    """
    tick = clock[TICK] - 1
    w = kr.world_width
    h = kr.world_height
    n_out = 0
    pos = 0
    out_off[0] = 0
    # recent claims, newest first: shared by every snapshot of this tick
    head = clock[CLAIM_HEAD]
    n_claims = 0
    for back in range(min(head, CLAIM_RING)):
        r = (head - 1 - back) % CLAIM_RING
        if tick - claim_ring[r, CR_TICK] >= caps.claim_window_ticks:
            break
        n_claims += 1
    n_board = 0
    for r in range(board.shape[0]):
        if board[r, LB_SLOT] >= 0:
            n_board += 1
    n_final = 0
    for r in range(final_board.shape[0]):
        if final_board[r, LB_SLOT] >= 0:
            n_final += 1
    show_result = clock[LAST_HUNT_END] >= 0 and tick - clock[LAST_HUNT_END] < caps.result_window_ticks
    ticks_left = kr.hunt_ticks - (tick + 1 - clock[HUNT_START])
    if ticks_left < 0:
        ticks_left = 0
    for s in range(sessions.shape[1]):
        if sessions[S_STATE, s] != CONNECTED or pi[P_ALIVE, s] == 0:
            continue
        start = pos
        seq = sessions[S_TX_SEQ, s] + 1
        sessions[S_TX_SEQ, s] = seq
        pos = put_header(out, pos, sessions[S_ID, s], seq)
        show_board = (tick + s) % caps.leaderboard_every_ticks == 0
        keys = 6 + (1 if n_claims > 0 else 0) + (1 if show_board else 0) + (1 if show_result else 0)
        pos = put_map(out, pos, keys)
        pos = put_key(out, pos, 116, 0)  # "t"
        pos = put_uint(out, pos, tick & 0xFFFFFFFF)  # ticks go on the wire mod 2**32
        pos = put_key(out, pos, 97, 0)  # "a"
        pos = put_uint(out, pos, pi[P_INPUT_SEQ, s] & 0xFFFFFFFF)  # u32 bits in int32
        pos = put_key(out, pos, 104, 0)  # "h"
        pos = put_array(out, pos, 2)
        pos = put_uint(out, pos, clock[HUNT_ID])
        pos = put_uint(out, pos, ticks_left)
        x = np.float64(pf[PX, s])
        y = np.float64(pf[PY, s])
        pos = put_key(out, pos, 109, 101)  # "me"
        pos = put_array(out, pos, 6)
        pos = put_uint(out, pos, s)
        pos = put_uint(out, pos, quantize(x, w))
        pos = put_uint(out, pos, quantize(y, h))
        pos = put_uint(out, pos, pi[P_SCORE, s])
        pos = put_uint(out, pos, min(255, pi[P_DIG_TICKS, s] * 255 // kr.dig_ticks))
        pos = put_uint(out, pos, pi[P_HEAT, s])
        m = nearest_k(x, y, kr.view_radius, pf[PX], pf[PY], pi[P_ALIVE], 1, s, p_starts,
                      p_items, kr.cell_size, kr.grid_cols, kr.grid_rows, near, near_d2,
                      caps.max_players)
        pos = put_key(out, pos, 112, 0)  # "p"
        pos = put_array(out, pos, 3 * m)
        for k in range(m):
            j = near[k]
            pos = put_uint(out, pos, j)
            pos = put_uint(out, pos, quantize(pf[PX, j], w))
            pos = put_uint(out, pos, quantize(pf[PY, j], h))
        m = nearest_k(x, y, kr.reveal_radius, tf[TX], tf[TY], ti[T_STATE], BURIED, -1,
                      t_starts, t_items, kr.cell_size, kr.grid_cols, kr.grid_rows, near,
                      near_d2, caps.max_treasures)
        pos = put_key(out, pos, 116, 114)  # "tr"
        pos = put_array(out, pos, 4 * m)
        for k in range(m):
            j = near[k]
            pos = put_uint(out, pos, j)
            pos = put_uint(out, pos, quantize(tf[TX, j], w))
            pos = put_uint(out, pos, quantize(tf[TY, j], h))
            pos = put_uint(out, pos, ti[T_VALUE, j])
        if n_claims > 0:
            pos = put_key(out, pos, 101, 118)  # "ev"
            pos = put_array(out, pos, 4 * n_claims)
            for back in range(n_claims):
                r = (head - 1 - back) % CLAIM_RING
                pos = put_uint(out, pos, claim_ring[r, CR_TICK] & 0xFFFFFFFF)
                pos = put_uint(out, pos, claim_ring[r, CR_SLOT])
                pos = put_uint(out, pos, claim_ring[r, CR_TREASURE])
                pos = put_uint(out, pos, claim_ring[r, CR_VALUE])
        if show_board:
            pos = put_key(out, pos, 108, 98)  # "lb"
            pos = put_array(out, pos, 2 * n_board)
            for r in range(n_board):
                pos = put_uint(out, pos, board[r, LB_SLOT])
                pos = put_uint(out, pos, board[r, LB_SCORE])
        if show_result:
            pos = put_key(out, pos, 104, 114)  # "hr"
            pos = put_array(out, pos, 1 + 2 * n_final)
            pos = put_uint(out, pos, clock[HUNT_ID] - 1)
            for r in range(n_final):
                pos = put_uint(out, pos, final_board[r, LB_SLOT])
                pos = put_uint(out, pos, final_board[r, LB_SCORE])
        if pos - start > MAX_DATAGRAM:  # unreachable while NetLimits.validate holds
            pos = start
            sessions[S_TX_SEQ, s] = seq - 1
            continue
        out_slot[n_out] = s
        n_out += 1
        out_off[n_out] = pos
    return n_out
