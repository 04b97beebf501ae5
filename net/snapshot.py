"""Per-client snapshots, written by one kernel into one preallocated send buffer.

For every session due a snapshot this tick: the 16-byte header, one msgpack map
(docs/PROTOCOL.md, "SNAPSHOT") and the session's 8-byte tag. Players and treasures in view come from the world's grids
(net.aoi: with hysteresis at the edge, the nearest kept when over the cap, in grid scan
order). When the client has acked a snapshot still in its ring (net.snapshot_ring), only
the difference is sent (net.delta); otherwise a full snapshot. Sizes are bounded by
net.limits.worst_snapshot_size.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from net.aoi import NEAR_BINS, gather_cells, select_visible
from net.delta import (MOVED, REMOVED, TURNED, diff_players, diff_treasures, full_rows,
                       quantize_players, quantize_treasures)
from net.header import put_header
from net.msgpack_out import put_array, put_int, put_key, put_map, put_uint
from net.sessions import (CONNECTED, S_ID, S_IP, S_PORT, S_S2C_K0, S_S2C_K1, S_SNAPSHOT_ACK,
                          S_STATE, S_TX_SEQ)
from net.limits import CLAIM_EVENTS_MAX
from net.snapshot_ring import (E_ID, E_QX, E_QY, E_VX, E_VY, OC_SENT, OC_TICK, OC_TREASURE,
                               OC_VALUE, PLAYER_FIELDS, R_DONE, R_HUNT, R_SENT, TREASURE_FIELDS,
                               V_BIAS, find_baseline, prefetch_client)
from net.tag import put_tag
from net.wire import MAX_DATAGRAM, SNAPSHOT, TAG_SIZE
from sim.jit import borrowed, kernel
from sim.schema import (BURIED, CLAIM_HEAD, CLAIM_RING, CR_SLOT, CR_TICK, CR_TREASURE,
                        EV_A, EV_B, EV_C, EV_D, EV_KIND, EV_TICK, EVENT_CLAIM, EVENT_COUNT,
                        P_GEN,
                        CR_VALUE, CR_X, CR_Y, HUNT_ID, HUNT_START, LAST_HUNT_END, LB_SCORE,
                        LB_SLOT, P_ALIVE, P_DIG_TICKS, P_HEAT, P_INPUT_SEQ, P_SCORE, PX, PY, T_STATE,
                        TICK, TX, TY)

__all__ = ["SnapshotCaps", "EncodeScratch", "new_encode_scratch", "encode_snapshots",
           "prepare_snapshots", "split_sessions", "encode_range", "merge_parts", "count_sizes"]


class SnapshotCaps(NamedTuple):
    """Per-snapshot caps, windows and delta settings, in entities, ticks and quanta."""

    max_players: int
    max_treasures: int
    claim_window_ticks: int
    leaderboard_every_snapshots: int  # each client gets "lb" in every n-th snapshot
    result_window_ticks: int
    snapshot_every: int  # ticks between two snapshots to one client
    exit_scale: float  # an entity in view leaves only beyond radius * exit_scale
    tolerance_x: int  # extrapolation error (quanta) a delta lets stand, per axis
    tolerance_y: int


#: Clients ahead whose ring entries are prefetched (net.snapshot_ring.prefetch_client).
PREFETCH_AHEAD = 2

#: Candidates of one view query kept in scan order; a larger crowd is walked twice.
CANDIDATES = 512


class EncodeScratch(NamedTuple):
    """Scratch of the encoder, allocated once. p_xy: float64[2, P] and t_xy:
    float64[2, T] positions in grid order; pq: int32[P, 4] and tq: int32[T, 3] every
    entity as the wire carries it (net.delta.quantize_*); cand: int32[CANDIDATES + 1];
    cand_d2: float64[CANDIDATES + 1]; sel_ids, sel_d2: the same again; heap: int32[K];
    heap_d2: float64[K]; bins: int32[NEAR_BINS]; sel_p: int32[CP]; sel_t: int32[CT];
    p_kind: int32[CP]; p_res: int32[CP, 4]; p_state: int32[CP, 5]; t_kind: int32[CT];
    t_state: int32[CT, 4]; claims: int32[CLAIM_RING] claim ring rows of one snapshot."""

    p_xy: np.ndarray
    t_xy: np.ndarray
    pq: np.ndarray
    tq: np.ndarray
    cand: np.ndarray
    cand_d2: np.ndarray
    sel_ids: np.ndarray
    sel_d2: np.ndarray
    heap: np.ndarray
    heap_d2: np.ndarray
    bins: np.ndarray
    sel_p: np.ndarray
    sel_t: np.ndarray
    p_kind: np.ndarray
    p_res: np.ndarray
    p_state: np.ndarray
    t_kind: np.ndarray
    t_state: np.ndarray
    claims: np.ndarray


def new_encode_scratch(max_players: int, max_treasures: int, world_players: int,
                       world_treasures: int) -> EncodeScratch:
    """Scratch for caps of max_players / max_treasures per snapshot, in a world of
    world_players / world_treasures slots."""
    k = max(max_players, max_treasures)
    return EncodeScratch(
        np.zeros((2, world_players), np.float64), np.zeros((2, world_treasures), np.float64),
        np.zeros((world_players, 4), np.int32), np.zeros((world_treasures, 3), np.int32),
        np.zeros(CANDIDATES + 1, np.int32), np.zeros(CANDIDATES + 1, np.float64),
        np.zeros(CANDIDATES + 1, np.int32), np.zeros(CANDIDATES + 1, np.float64),
        np.zeros(k, np.int32), np.zeros(k, np.float64), np.zeros(NEAR_BINS, np.int32),
        np.zeros(max_players, np.int32),
        np.zeros(max_treasures, np.int32), np.zeros(max_players, np.int32),
        np.zeros((max_players, 4), np.int32), np.zeros((max_players, PLAYER_FIELDS), np.int32),
        np.zeros(max_treasures, np.int32), np.zeros((max_treasures, TREASURE_FIELDS), np.int32),
        np.zeros(CLAIM_RING, np.int32))


@kernel
def count_sizes(out_off: np.ndarray, n: int, sizes: np.ndarray) -> None:
    """Add snapshots 0..n-1 to the size histogram sizes (int64[MAX_DATAGRAM + 1])."""
    for j in range(n):
        sizes[out_off[j + 1] - out_off[j]] += 1


@kernel
def put_rows(out: np.ndarray, pos: int, c0: int, c1: int, rows: np.ndarray, first: int,
             last: int, fields: int) -> int:
    """Key c0c1, then rows[first:last, :fields] flattened (signed ints)."""
    pos = put_key(out, pos, c0, c1)
    pos = put_array(out, pos, (last - first) * fields)
    for q in range(first, last):
        for f in range(fields):
            pos = put_int(out, pos, rows[q, f])
    return pos


@kernel
def put_changed(out: np.ndarray, pos: int, c0: int, c1: int, kind: np.ndarray, n_base: int,
                want: int, count: int, res: np.ndarray, fields: int) -> int:
    """Key c0c1, then [i, res[i, 0], ..., res[i, fields - 2]] for every baseline row i of
    kind `want` (fields == 1: the indices alone)."""
    pos = put_key(out, pos, c0, c1)
    pos = put_array(out, pos, count * fields)
    for i in range(n_base):
        if kind[i] != want:
            continue
        pos = put_uint(out, pos, i)
        for f in range(fields - 1):
            pos = put_int(out, pos, res[i, f])
    return pos


@kernel(inline=True)
def remember(r_tick: np.ndarray, r_count: np.ndarray, r_np: np.ndarray, r_nt: np.ndarray,
             r_players: np.ndarray, r_treasures: np.ndarray, s: int, tick: int,
             p_state: np.ndarray, n_p: int, t_state: np.ndarray, n_t: int) -> None:
    """Store what client s holds after the snapshot of `tick` as its newest ring entry
    (the arrays of a SnapshotRing)."""
    depth = r_tick.shape[1]
    count = r_count[s]
    slot = count % depth
    r_tick[s, slot] = tick
    r_np[s, slot] = n_p
    r_nt[s, slot] = n_t
    for q in range(n_p):
        r_players[s, slot, q, E_ID] = p_state[q, E_ID]
        r_players[s, slot, q, E_QX] = p_state[q, E_QX]
        r_players[s, slot, q, E_QY] = p_state[q, E_QY]
        r_players[s, slot, q, E_VX] = p_state[q, E_VX] + V_BIAS
        r_players[s, slot, q, E_VY] = p_state[q, E_VY] + V_BIAS
    for q in range(n_t):
        for f in range(TREASURE_FIELDS):
            r_treasures[s, slot, q, f] = t_state[q, f]
    r_count[s] = count + 1


@kernel
def note_own_claims(sessions: np.ndarray, pi: np.ndarray, events: np.ndarray,
                    clock: np.ndarray, own: np.ndarray) -> None:
    """Add this tick's claims (events[:clock[EVENT_COUNT]], EVENT_CLAIM rows) to the
    claimer's own-claims table own (int64[P, OWN_CLAIMS, 4], net.snapshot_ring OC_*), if
    the claimer has a session. A full table drops its oldest claim: a client that went
    this long without acking is about to time out anyway."""
    for e in range(clock[EVENT_COUNT]):
        if events[e, EV_KIND] != EVENT_CLAIM:
            continue
        s = events[e, EV_A]
        if sessions[S_STATE, s] != CONNECTED or pi[P_GEN, s] != events[e, EV_B]:
            continue
        k = 0
        for j in range(own.shape[1]):  # the first free entry, else the oldest
            if own[s, j, OC_TICK] < 0:
                k = j
                break
            if own[s, j, OC_TICK] < own[s, k, OC_TICK]:
                k = j
        own[s, k, OC_TICK] = events[e, EV_TICK]
        own[s, k, OC_TREASURE] = events[e, EV_C]
        own[s, k, OC_VALUE] = events[e, EV_D]
        own[s, k, OC_SENT] = -1


@kernel
def prepare_snapshots(pf: np.ndarray, tf: np.ndarray, ti: np.ndarray, p_starts: np.ndarray,
                      p_items: np.ndarray, t_starts: np.ndarray, t_items: np.ndarray, kr,
                      scratch, sessions: np.ndarray, pi: np.ndarray, events: np.ndarray,
                      clock: np.ndarray, own: np.ndarray) -> None:
    """What every snapshot of this tick reads, computed once: positions in grid order
    (scratch.p_xy, scratch.t_xy), every entity quantized (scratch.pq, scratch.tq), and
    this tick's claims in their claimers' own-claims tables (note_own_claims). Parts that
    share these arrays may then encode concurrently."""
    note_own_claims(sessions, pi, events, clock, own)
    ncells = kr.grid_cols * kr.grid_rows
    gather_cells(pf[PX], pf[PY], p_items, p_starts[ncells], pi[P_ALIVE], 1, scratch.p_xy)
    gather_cells(tf[TX], tf[TY], t_items, t_starts[ncells], ti[T_STATE], BURIED, scratch.t_xy)
    quantize_players(pf, kr.world_width, kr.world_height, kr.tick_rate, scratch.pq)
    quantize_treasures(tf, ti, kr.world_width, kr.world_height, scratch.tq)


@kernel
def split_sessions(sessions: np.ndarray, split: np.ndarray) -> None:
    """Cut the session slots into len(split) - 1 ranges [split[c], split[c + 1]) holding
    about as many connected sessions each (slots fill lowest first, so equal slot ranges
    would not balance). split: int64[parts + 1]."""
    parts = split.shape[0] - 1
    total = 0
    for s in range(sessions.shape[1]):
        if sessions[S_STATE, s] == CONNECTED:
            total += 1
    split[0] = 0
    c = 1
    seen = 0
    for s in range(sessions.shape[1]):
        while c < parts and seen * parts >= total * c:
            split[c] = s
            c += 1
        if sessions[S_STATE, s] == CONNECTED:
            seen += 1
    while c <= parts:
        split[c] = sessions.shape[1]
        c += 1


@kernel
def merge_parts(out: np.ndarray, out_off: np.ndarray, out_slot: np.ndarray,
                out_ip: np.ndarray, out_port: np.ndarray, n_first: int, part_n: np.ndarray,
                part_off: np.ndarray, part_slot: np.ndarray, part_ip: np.ndarray,
                part_port: np.ndarray) -> int:
    """Append parts 1.. (written by encode_range into their own rows and their own region
    of `out`) after part 0's n_first snapshots, in part order; return the total count.

    part_n: int64[parts]; part_off: int32[parts, P + 1]; part_slot: int32[parts, P];
    part_ip, part_port: int64[parts, P]. A part's region starts at or after the end of
    everything before it, so bytes only ever move towards the front.
    """
    n = n_first
    pos = out_off[n]
    for c in range(1, part_n.shape[0]):
        count = part_n[c]
        src = part_off[c, 0]
        length = part_off[c, count] - src
        if pos + length <= src:  # the usual case: no overlap, one memcpy
            out[pos:pos + length] = out[src:src + length]
        else:
            for b in range(length):  # front to back is safe: pos <= src
                out[pos + b] = out[src + b]
        for j in range(count):
            out_off[n + j] = part_off[c, j] - src + pos
            out_slot[n + j] = part_slot[c, j]
            out_ip[n + j] = part_ip[c, j]
            out_port[n + j] = part_port[c, j]
        n += count
        pos += length
        out_off[n] = pos
    return n


@kernel
def encode_snapshots(sessions: np.ndarray, pf: np.ndarray, pi: np.ndarray, tf: np.ndarray,
                     ti: np.ndarray, p_starts: np.ndarray, p_items: np.ndarray,
                     t_starts: np.ndarray, t_items: np.ndarray, clock: np.ndarray,
                     claim_ring: np.ndarray, board: np.ndarray, final_board: np.ndarray,
                     kr, caps, ring, scratch, events: np.ndarray, durable: np.ndarray,
                     out: np.ndarray, out_off: np.ndarray, out_slot: np.ndarray,
                     out_ip: np.ndarray, out_port: np.ndarray) -> int:
    """Every session's snapshot in one part: prepare_snapshots then encode_range over all
    slots. The arguments of both (without lo, hi, pos0) and encode_range's result."""
    prepare_snapshots(pf, tf, ti, p_starts, p_items, t_starts, t_items, kr, scratch,
                      sessions, pi, events, clock, ring.own)
    return encode_range(sessions, pf, pi, tf, ti, p_starts, p_items, t_starts, t_items, clock,
                        claim_ring, board, final_board, kr, caps, ring, scratch, durable, 0,
                        sessions.shape[1], 0, out, out_off, out_slot, out_ip, out_port)


@kernel
def encode_range(sessions: np.ndarray, pf: np.ndarray, pi: np.ndarray, tf: np.ndarray,
                 ti: np.ndarray, p_starts: np.ndarray, p_items: np.ndarray,
                 t_starts: np.ndarray, t_items: np.ndarray, clock: np.ndarray,
                 claim_ring: np.ndarray, board: np.ndarray, final_board: np.ndarray,
                 kr, caps, ring, scratch, durable: np.ndarray, lo: int, hi: int, pos0: int,
                 out: np.ndarray,
                 out_off: np.ndarray, out_slot: np.ndarray, out_ip: np.ndarray,
                 out_port: np.ndarray) -> int:
    """Write one SNAPSHOT per connected session of slots lo..hi-1 due one this tick, from
    out[pos0] on; return how many.

    Snapshot j is out[out_off[j]:out_off[j + 1]] for session slot out_slot[j], to be sent
    to (out_ip[j], out_port[j]). out: uint8[P * MAX_DATAGRAM] (the range writes at most
    (hi - lo) * MAX_DATAGRAM bytes); out_off: int32[>= hi - lo + 1]; out_slot:
    int32[>= hi - lo]; out_ip, out_port: int64[like out_slot]. ring: SnapshotRing (read
    for baselines, then written with what each client holds; its stamp tables are this
    part's own); scratch: EncodeScratch, its p_xy, t_xy, pq, tq filled by
    prepare_snapshots this tick (shared read-only between parts), the rest this part's.
    durable: int64[1], the newest tick whose claims the ledger has made durable: the
    client's own claims up to it go out as confirmed.
    Parts over disjoint slot ranges touch disjoint session and ring rows, so they may run
    on different threads. Session s is due when (tick + s) % caps.snapshot_every == 0,
    which spreads clients evenly over ticks. Call after step(): the snapshot describes the
    tick that just ran (clock[TICK] - 1).
    """
    # every array the loop touches, borrowed (sim.jit.borrowed): the caller holds them
    sessions, pf, pi, tf, ti = (borrowed(sessions), borrowed(pf), borrowed(pi), borrowed(tf),
                                borrowed(ti))
    p_starts, p_items = borrowed(p_starts), borrowed(p_items)
    t_starts, t_items = borrowed(t_starts), borrowed(t_items)
    clock, claim_ring, board = borrowed(clock), borrowed(claim_ring), borrowed(board)
    final_board, durable, out = borrowed(final_board), borrowed(durable), borrowed(out)
    out_off, out_slot = borrowed(out_off), borrowed(out_slot)
    out_ip, out_port = borrowed(out_ip), borrowed(out_port)
    tick = clock[TICK] - 1
    depth = ring.tick.shape[1]
    n_out = 0
    pos = pos0
    out_off[0] = pos0
    head = clock[CLAIM_HEAD]
    n_board = 0
    for r in range(board.shape[0]):
        if board[r, LB_SLOT] >= 0:
            n_board += 1
    n_final = 0
    for r in range(final_board.shape[0]):
        if final_board[r, LB_SLOT] >= 0:
            n_final += 1
    last_end = clock[LAST_HUNT_END]
    ended_hunt = clock[HUNT_ID] - 1
    durable_tick = durable[0]
    ticks_left = kr.hunt_ticks - (tick + 1 - clock[HUNT_START])
    if ticks_left < 0:
        ticks_left = 0
    exit_view = kr.view_radius * caps.exit_scale
    exit_reveal = kr.reveal_radius * caps.exit_scale
    tolerance = min(caps.tolerance_x, caps.tolerance_y)
    view2 = kr.view_radius * kr.view_radius
    # the tuples' arrays as borrowed locals, once: touching a tuple field inside the loop
    # makes numba count references on every access (atomic increments, measured ~5x slower)
    claims = borrowed(scratch.claims)
    pq, tq = borrowed(scratch.pq), borrowed(scratch.tq)
    r_tick, r_count = borrowed(ring.tick), borrowed(ring.count)
    r_np, r_nt = borrowed(ring.n_players), borrowed(ring.n_treasures)
    r_players, r_treasures = borrowed(ring.players), borrowed(ring.treasures)
    own, result = borrowed(ring.own), borrowed(ring.result)
    p_marks, t_marks, stamp = borrowed(ring.p_marks), borrowed(ring.t_marks), borrowed(ring.stamp)
    cand, cand_d2 = borrowed(scratch.cand), borrowed(scratch.cand_d2)
    sel_ids, sel_d2 = borrowed(scratch.sel_ids), borrowed(scratch.sel_d2)
    heap, heap_d2, bins = borrowed(scratch.heap), borrowed(scratch.heap_d2), borrowed(scratch.bins)
    p_xy, t_xy = borrowed(scratch.p_xy), borrowed(scratch.t_xy)
    sel_p, sel_t = borrowed(scratch.sel_p), borrowed(scratch.sel_t)
    p_kind, p_res = borrowed(scratch.p_kind), borrowed(scratch.p_res)
    p_state = borrowed(scratch.p_state)
    t_kind, t_state = borrowed(scratch.t_kind), borrowed(scratch.t_state)
    for s in range(lo, hi):
        u = s + PREFETCH_AHEAD
        if u < hi and sessions[S_STATE, u] == CONNECTED and (tick + u) % caps.snapshot_every == 0:
            prefetch_client(r_tick, r_count, r_players, r_treasures, u,
                            sessions[S_SNAPSHOT_ACK, u], tick)
        if sessions[S_STATE, s] != CONNECTED or pi[P_ALIVE, s] == 0:
            continue
        if (tick + s) % caps.snapshot_every != 0:
            continue
        count = r_count[s]
        last = (count - 1) % depth if count > 0 else 0
        n_last_p = r_np[s, last] if count > 0 else 0
        n_last_t = r_nt[s, last] if count > 0 else 0
        base = find_baseline(r_tick, r_count, s, sessions[S_SNAPSHOT_ACK, s], tick)
        x = np.float64(pf[PX, s])
        y = np.float64(pf[PY, s])
        n_sel_p = select_visible(x, y, kr.view_radius, exit_view, p_xy, p_items, p_starts,
                                 kr.cell_size, kr.grid_cols, kr.grid_rows, s,
                                 caps.max_players, r_players[s, last], n_last_p, p_marks,
                                 stamp, cand, cand_d2, sel_ids, sel_d2, heap, heap_d2, bins,
                                 sel_p)
        n_sel_t = select_visible(x, y, kr.reveal_radius, exit_reveal, t_xy, t_items, t_starts,
                                 kr.cell_size, kr.grid_cols, kr.grid_rows, -1,
                                 caps.max_treasures, r_treasures[s, last], n_last_t, t_marks,
                                 stamp, cand, cand_d2, sel_ids, sel_d2, heap, heap_d2, bins,
                                 sel_t)
        # what changes for the client, and the copy it will hold afterwards
        moved = turned = p_removed = p_new = t_removed = t_new = 0
        base_tick = -1
        n_base_p = n_base_t = 0
        if base >= 0:
            base_tick = r_tick[s, base]
            n_base_p = r_np[s, base]
            n_base_t = r_nt[s, base]
            n_p, moved, turned, p_removed, p_new = diff_players(
                r_players[s, base], n_base_p, tick - base_tick, sel_p, n_sel_p, pq, tolerance,
                p_marks, stamp, p_kind, p_res, p_state)
            n_t, t_removed, t_new = diff_treasures(
                r_treasures[s, base], n_base_t, sel_t, n_sel_t, tq, t_marks, stamp, t_kind,
                t_state)
        else:
            n_p = full_rows(sel_p, n_sel_p, pq, p_state)
            n_t = full_rows(sel_t, n_sel_t, tq, t_state)
        # recent claims near the client (or its own), newest first; a delta repeats only
        # those after its baseline. Far-away claims are left out: in a big world they
        # would fill every snapshot (the leaderboard carries the scores)
        n_claims = 0
        for back in range(min(head, CLAIM_RING)):
            r = (head - 1 - back) % CLAIM_RING
            t_claim = claim_ring[r, CR_TICK]
            if (tick - t_claim >= caps.claim_window_ticks or t_claim <= base_tick
                    or n_claims == CLAIM_EVENTS_MAX):
                break
            dx = np.float64(claim_ring[r, CR_X]) - x  # where it was claimed
            dy = np.float64(claim_ring[r, CR_Y]) - y
            if claim_ring[r, CR_SLOT] == s or dx * dx + dy * dy <= view2:
                claims[n_claims] = r
                n_claims += 1
        # the client's own claims: each until the client acks a snapshot that carried it
        # as confirmed; confirmed once the ledger made its tick durable
        n_my = 0
        for k in range(own.shape[1]):
            if own[s, k, OC_TICK] < 0:
                continue
            sent = own[s, k, OC_SENT]
            if sent >= 0 and base_tick >= sent:
                own[s, k, OC_TICK] = -1
                continue
            if sent < 0 and own[s, k, OC_TICK] <= durable_tick:
                own[s, k, OC_SENT] = tick
            n_my += 1
        # the last hunt's result: to every client connected within the result window of
        # its end, until the client acks a snapshot that carried it
        show_result = False
        if last_end >= 0:
            if result[s, R_HUNT] != ended_hunt:
                result[s, R_HUNT] = ended_hunt
                result[s, R_SENT] = -1
                result[s, R_DONE] = 0 if tick - last_end < caps.result_window_ticks else 1
            elif (result[s, R_DONE] == 0 and result[s, R_SENT] >= 0
                  and base_tick >= result[s, R_SENT]):
                result[s, R_DONE] = 1
            show_result = result[s, R_DONE] == 0
            if show_result and result[s, R_SENT] < 0:
                result[s, R_SENT] = tick
        # the final board of the last hunt replaces the live one while it is shown
        show_board = count % caps.leaderboard_every_snapshots == 0 and not show_result
        if base >= 0:
            keys = 5
            keys += (1 if moved else 0) + (1 if turned else 0) + (1 if p_removed else 0)
            keys += (1 if p_new else 0) + (1 if t_removed else 0) + (1 if t_new else 0)
        else:
            keys = 6
        keys += (1 if n_claims else 0) + (1 if show_board else 0) + (1 if show_result else 0)
        keys += 1 if n_my else 0
        start = pos
        seq = sessions[S_TX_SEQ, s] + 1
        pos = put_header(out, pos, SNAPSHOT, sessions[S_ID, s], seq)
        pos = put_map(out, pos, keys)
        pos = put_key(out, pos, 116, 0)  # "t"
        pos = put_uint(out, pos, tick & 0xFFFFFFFF)  # ticks go on the wire mod 2**32
        pos = put_key(out, pos, 97, 0)  # "a"
        pos = put_uint(out, pos, pi[P_INPUT_SEQ, s] & 0xFFFFFFFF)  # u32 bits in int32
        if base >= 0:
            pos = put_key(out, pos, 98, 0)  # "b"
            pos = put_uint(out, pos, base_tick & 0xFFFFFFFF)
        pos = put_key(out, pos, 104, 0)  # "h"
        pos = put_array(out, pos, 2)
        pos = put_uint(out, pos, clock[HUNT_ID])
        pos = put_uint(out, pos, ticks_left)
        pos = put_key(out, pos, 109, 101)  # "me"
        pos = put_array(out, pos, 6)
        pos = put_uint(out, pos, s)
        pos = put_uint(out, pos, pq[s, 0])
        pos = put_uint(out, pos, pq[s, 1])
        pos = put_uint(out, pos, pi[P_SCORE, s])
        pos = put_uint(out, pos, min(255, pi[P_DIG_TICKS, s] * 255 // kr.dig_ticks))
        pos = put_uint(out, pos, pi[P_HEAT, s])
        if base >= 0:
            if moved:
                pos = put_changed(out, pos, 112, 109, p_kind, n_base_p, MOVED, moved, p_res, 3)
            if turned:
                pos = put_changed(out, pos, 112, 118, p_kind, n_base_p, TURNED, turned, p_res, 5)
            if p_removed:
                pos = put_changed(out, pos, 112, 114, p_kind, n_base_p, REMOVED, p_removed,
                                  p_res, 1)
            if p_new:
                pos = put_rows(out, pos, 112, 110, p_state, n_p - p_new, n_p, PLAYER_FIELDS)
            if t_removed:
                pos = put_changed(out, pos, 116, 120, t_kind, n_base_t, REMOVED, t_removed,
                                  p_res, 1)
            if t_new:
                pos = put_rows(out, pos, 116, 110, t_state, n_t - t_new, n_t, TREASURE_FIELDS)
        else:
            pos = put_rows(out, pos, 112, 0, p_state, 0, n_p, PLAYER_FIELDS)  # "p"
            pos = put_rows(out, pos, 116, 114, t_state, 0, n_t, TREASURE_FIELDS)  # "tr"
        if n_claims:
            pos = put_key(out, pos, 101, 118)  # "ev"
            pos = put_array(out, pos, 4 * n_claims)
            for c in range(n_claims):
                r = claims[c]
                pos = put_uint(out, pos, claim_ring[r, CR_TICK] & 0xFFFFFFFF)
                pos = put_uint(out, pos, claim_ring[r, CR_SLOT])
                pos = put_uint(out, pos, claim_ring[r, CR_TREASURE])
                pos = put_uint(out, pos, claim_ring[r, CR_VALUE])
        if n_my:
            pos = put_key(out, pos, 109, 121)  # "my": oldest claim first
            pos = put_array(out, pos, 4 * n_my)
            prev_tick = -1
            prev_treasure = -1
            for _ in range(n_my):  # selection by (tick, treasure): at most OWN_CLAIMS
                k = -1
                for j in range(own.shape[1]):
                    jt = own[s, j, OC_TICK]
                    jr = own[s, j, OC_TREASURE]
                    if jt < 0 or jt < prev_tick or (jt == prev_tick and jr <= prev_treasure):
                        continue
                    if k < 0 or jt < own[s, k, OC_TICK] or (
                            jt == own[s, k, OC_TICK] and jr < own[s, k, OC_TREASURE]):
                        k = j
                prev_tick = own[s, k, OC_TICK]
                prev_treasure = own[s, k, OC_TREASURE]
                pos = put_uint(out, pos, prev_tick & 0xFFFFFFFF)
                pos = put_uint(out, pos, prev_treasure)
                pos = put_uint(out, pos, own[s, k, OC_VALUE])
                pos = put_uint(out, pos, 1 if own[s, k, OC_SENT] >= 0 else 0)
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
        if pos + TAG_SIZE - start > MAX_DATAGRAM:  # unreachable while NetLimits.validate holds
            pos = start
            continue
        pos = put_tag(out, start, pos - start, sessions[S_S2C_K0, s], sessions[S_S2C_K1, s])
        sessions[S_TX_SEQ, s] = seq
        remember(r_tick, r_count, r_np, r_nt, r_players, r_treasures, s, tick, p_state,
                 n_p, t_state, n_t)
        out_slot[n_out] = s
        out_ip[n_out] = sessions[S_IP, s]
        out_port[n_out] = sessions[S_PORT, s]
        n_out += 1
        out_off[n_out] = pos
    return n_out
