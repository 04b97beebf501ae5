"""Decode a batch of datagrams straight into the session table and the players' input rows.

Runs once per tick over the whole batch (no Python per datagram). Every check of
docs/PROTOCOL.md 9.1 that needs no key server-wide runs here, cheapest first: framing,
version, type and length, then for session packets the session, the replay window, the
tag, the address (a move to a new one, or wrong_address) and the session's packet rate;
for handshake packets the per-address and global rate limits. The rare packets that change sessions (connect requests, challenge
responses, disconnects, address moves) are passed back as "control" entries for Python,
which does the token and cookie cryptography and keeps its address books.
"""

from __future__ import annotations

import numpy as np

from net import drops as D
from net.header import frame_drop
from net.ratelimit import address_slot, gcra_take
from net.replay import WINDOW, replay_fresh, replay_mark
from net.rtt import rtt_sample
from net.sessions import (CONNECTED, S_C2S_K0, S_C2S_K1, S_ID, S_IP, S_LAST_HEARD,
                          S_LAST_RX_SEQ, S_PORT, S_RX_TAT, S_SNAPSHOT_ACK, S_STATE)
from net.tag import tag_ok
from net.wire import (BUTTON_DIG, CHALLENGE_RESPONSE,
                      CONNECT_REQUEST, CONNECT_REQUEST_SIZE, DISCONNECT, DISCONNECT_SIZE,
                      HEADER_SIZE, INPUT, INPUT_PREFIX, INPUT_RECORD, KEEPALIVE,
                      KEEPALIVE_SIZE, MAX_INPUTS_PER_PACKET, TAG_SIZE, VERSION)
from sim.jit import borrowed, kernel
from sim.schema import P_DIG, P_INPUT_SEQ, P_MOVE_X, P_MOVE_Y

# What a control entry asks Python to do. CTRL_MOVED: the session's address changed (the
# kernel already wrote it to the session table; Python updates its own address books).
CTRL_CONNECT, CTRL_BAD_VERSION, CTRL_DISCONNECT, CTRL_RESPONSE, CTRL_MOVED = 1, 2, 3, 4, 5

# Rate-limit parameters, int64[GUARD_ROWS] (net.ratelimit.gcra_params): per address and
# global for handshake packets, per session for the rest; then the silence (ns) of its
# address after which a session may move (net.security move_after_silence).
(G_ADDR_INTERVAL, G_ADDR_TOLERANCE, G_ALL_INTERVAL, G_ALL_TOLERANCE, G_SESSION_INTERVAL,
 G_SESSION_TOLERANCE, G_MOVE_SILENCE) = range(7)
GUARD_ROWS = 7

_INPUT_MIN = HEADER_SIZE + INPUT_PREFIX.size
_RECORD = INPUT_RECORD.size
LOOPBACK_NET = 127  # the first octet of 127.0.0.0/8


@kernel
def read_u32(row: np.ndarray, at: int) -> int:
    """Little-endian u32 at byte `at` of row (uint8[:])."""
    return (np.int64(row[at]) | (np.int64(row[at + 1]) << 8) | (np.int64(row[at + 2]) << 16)
            | (np.int64(row[at + 3]) << 24))


@kernel
def to_move(b: int) -> int:
    """An i8 move axis from its byte; -128 is clamped to -127 so the range is symmetric."""
    v = b - 256 if b >= 128 else b
    return -127 if v < -127 else v


@kernel
def handshake_limited(ip: int, now: int, guard: np.ndarray, addr_ip: np.ndarray,
                      addr_tat: np.ndarray, all_tat: np.ndarray) -> bool:
    """True if a handshake packet from `ip` is over its address's rate or the global one.
    The address bucket is asked first, so one noisy address cannot spend the global budget.
    Loopback sources (127.0.0.0/8, which no remote host can forge past the kernel's martian
    filter) have no address bucket: they are the host's own bots and tools.
    addr_ip, addr_tat: int64[ADDRESS_TABLE_SIZE]; all_tat: int64[1]; guard: int64[GUARD_ROWS]."""
    if (ip >> 24) != LOOPBACK_NET:  # the host's own bots and tools share 127.0.0.1
        a = address_slot(addr_ip, addr_tat, ip)
        if not gcra_take(addr_tat, a, now, guard[G_ADDR_INTERVAL], guard[G_ADDR_TOLERANCE]):
            return True
    return not gcra_take(all_tat, 0, now, guard[G_ALL_INTERVAL], guard[G_ALL_TOLERANCE])


@kernel
def decode_batch(data: np.ndarray, length: np.ndarray, ip: np.ndarray, port: np.ndarray,
                 count: int, sessions: np.ndarray, replay: np.ndarray, pi: np.ndarray,
                 now: int, guard: np.ndarray, addr_ip: np.ndarray, addr_tat: np.ndarray,
                 all_tat: np.ndarray, drops: np.ndarray, accepted: np.ndarray,
                 ctrl_index: np.ndarray, ctrl_kind: np.ndarray, sent: np.ndarray) -> int:
    """Check and apply datagrams 0..count-1; return how many control entries were written.

    data: uint8[N, B]; length, ip, port: per datagram; sessions: int64[SESSION_ROWS, P];
    replay: int64[P, REPLAY_WORDS]; pi: int32[11, P] player ints (input rows are written);
    now: ns; guard: int64[GUARD_ROWS]; addr_ip, addr_tat, all_tat: rate-limit state
    (handshake_limited); drops: int64[reasons]; accepted: int64[16] by packet type;
    ctrl_index, ctrl_kind: int32[N] (out); sent: int64[2, SENT_RING] snapshot send times
    by tick (net.rtt: an ack of a new tick updates the session's RTT). Checks run cheapest
    first, in the order docs/PROTOCOL.md 9.1 gives; the first that fails counts one drop
    and moves on. A packet is marked received only after its tag verified. Nothing is
    raised, nothing allocated.
    """
    # every array the loop touches, borrowed (sim.jit.borrowed): a view per datagram
    # would otherwise cost two atomic reference counts
    data, length, ip, port = borrowed(data), borrowed(length), borrowed(ip), borrowed(port)
    sessions, replay, pi = borrowed(sessions), borrowed(replay), borrowed(pi)
    guard, addr_ip, addr_tat = borrowed(guard), borrowed(addr_ip), borrowed(addr_tat)
    all_tat, drops, accepted = borrowed(all_tat), borrowed(drops), borrowed(accepted)
    ctrl_index, ctrl_kind, sent = borrowed(ctrl_index), borrowed(ctrl_kind), borrowed(sent)
    n_ctrl = 0
    capacity = sessions.shape[1]
    for i in range(count):
        n = length[i]
        row = data[i]
        why = frame_drop(row, n)
        if why >= 0:
            drops[why] += 1
            continue
        ptype = row[3]
        if row[2] != VERSION:
            if ptype == CONNECT_REQUEST and n == CONNECT_REQUEST_SIZE:
                # answered with a 25-byte deny, smaller than the request, so that a client
                # of another version learns why; still rate limited like any handshake
                if not handshake_limited(ip[i], now, guard, addr_ip, addr_tat, all_tat):
                    ctrl_index[n_ctrl] = i
                    ctrl_kind[n_ctrl] = CTRL_BAD_VERSION
                    n_ctrl += 1
            drops[D.BAD_VERSION] += 1
            continue
        if row[4] != 0 or row[5] != 0 or row[6] != 0 or row[7] != 0:
            drops[D.BAD_FLAGS] += 1
            continue
        if ptype == CONNECT_REQUEST or ptype == CHALLENGE_RESPONSE:
            if n != CONNECT_REQUEST_SIZE:  # both are 256 bytes
                drops[D.BAD_LENGTH] += 1
                continue
            if handshake_limited(ip[i], now, guard, addr_ip, addr_tat, all_tat):
                drops[D.RATE_LIMITED] += 1
                continue
            ctrl_index[n_ctrl] = i
            ctrl_kind[n_ctrl] = CTRL_CONNECT if ptype == CONNECT_REQUEST else CTRL_RESPONSE
            n_ctrl += 1
            continue
        if ptype == INPUT:
            if n < _INPUT_MIN + TAG_SIZE:
                drops[D.BAD_LENGTH] += 1
                continue
            records = row[HEADER_SIZE + 4]
            if (records < 1 or records > MAX_INPUTS_PER_PACKET
                    or n != _INPUT_MIN + records * _RECORD + TAG_SIZE):
                drops[D.BAD_LENGTH] += 1
                continue
        elif ptype == KEEPALIVE:
            if n != KEEPALIVE_SIZE:
                drops[D.BAD_LENGTH] += 1
                continue
        elif ptype == DISCONNECT:
            if n != DISCONNECT_SIZE:
                drops[D.BAD_LENGTH] += 1
                continue
        else:
            drops[D.BAD_TYPE] += 1
            continue
        sid = read_u32(row, 8)
        slot = sid & 0xFFFF
        if slot >= capacity or sessions[S_STATE, slot] != CONNECTED or sessions[S_ID, slot] != sid:
            drops[D.UNKNOWN_SESSION] += 1
            continue
        # From another address: a session moves there (NAT rebinding, a phone switching
        # networks) only for a packet that authenticates and is newer than any before it,
        # once its address has been silent for a while; anything else from there is
        # wrong_address (after the cheap checks)
        moved = sessions[S_IP, slot] != ip[i] or sessions[S_PORT, slot] != port[i]
        seq = read_u32(row, 12)
        greatest = sessions[S_LAST_RX_SEQ, slot]
        bits = replay[slot]
        if seq == 0 or seq + WINDOW <= greatest:
            drops[D.STALE_SEQUENCE] += 1
            continue
        if not replay_fresh(bits, greatest, seq):
            drops[D.REPLAYED] += 1
            continue
        if not tag_ok(row, n, sessions[S_C2S_K0, slot], sessions[S_C2S_K1, slot]):
            drops[D.WRONG_ADDRESS if moved else D.BAD_TAG] += 1
            continue
        # late from elsewhere never moves a session back; nor does anything while its
        # address still talks (a captured packet raced from elsewhere)
        if moved and (seq <= greatest
                      or now - sessions[S_LAST_HEARD, slot] < guard[G_MOVE_SILENCE]):
            drops[D.WRONG_ADDRESS] += 1
            continue
        if not gcra_take(sessions[S_RX_TAT], slot, now, guard[G_SESSION_INTERVAL],
                         guard[G_SESSION_TOLERANCE]):
            drops[D.RATE_LIMITED] += 1
            continue
        newest = seq > greatest
        sessions[S_LAST_RX_SEQ, slot] = replay_mark(bits, greatest, seq)
        sessions[S_LAST_HEARD, slot] = now
        accepted[ptype] += 1
        if moved:
            sessions[S_IP, slot] = ip[i]
            sessions[S_PORT, slot] = port[i]
            ctrl_index[n_ctrl] = i
            ctrl_kind[n_ctrl] = CTRL_MOVED
            n_ctrl += 1
        if ptype == INPUT:
            if newest:  # a late packet's ack is older than the one already kept
                ack = read_u32(row, HEADER_SIZE)
                if ack != sessions[S_SNAPSHOT_ACK, slot]:  # first word of a new tick
                    sessions[S_SNAPSHOT_ACK, slot] = ack
                    rtt_sample(sessions, slot, ack, now, sent)
            at = _INPUT_MIN  # the newest record comes first
            input_seq = read_u32(row, at)
            # the int32 row holds the u32's bits: compare as unsigned
            if input_seq > (pi[P_INPUT_SEQ, slot] & 0xFFFFFFFF):
                pi[P_INPUT_SEQ, slot] = input_seq if input_seq < 0x80000000 else input_seq - 0x100000000
                pi[P_MOVE_X, slot] = to_move(row[at + 4])
                pi[P_MOVE_Y, slot] = to_move(row[at + 5])
                pi[P_DIG, slot] = 1 if (row[at + 6] & BUTTON_DIG) else 0
        elif ptype == DISCONNECT:
            ctrl_index[n_ctrl] = i
            ctrl_kind[n_ctrl] = CTRL_DISCONNECT
            n_ctrl += 1
    return n_ctrl
