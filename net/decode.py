"""Decode a batch of datagrams straight into the session table and the players' input rows.

Runs once per tick over the whole batch (no Python per datagram). Inputs, keepalives and
the header checks of every packet are done here; the rare packets that change sessions
(connect requests, disconnects) are passed back as "control" entries for Python.
"""

from __future__ import annotations

import numpy as np

from net import drops as D
from net.sessions import (CONNECTED, S_ID, S_IP, S_LAST_HEARD, S_LAST_RX_SEQ, S_PORT,
                          S_SNAPSHOT_ACK, S_STATE)
from net.wire import (BUTTON_DIG, CONNECT_REQUEST, CONNECT_REQUEST_SIZE, DISCONNECT,
                      DISCONNECT_BODY, HEADER_SIZE, INPUT, INPUT_PREFIX, INPUT_RECORD,
                      KEEPALIVE, MAX_INPUTS_PER_PACKET, VERSION)
from net.header import frame_drop
from sim.jit import kernel
from sim.schema import P_DIG, P_INPUT_SEQ, P_MOVE_X, P_MOVE_Y

# What a control entry asks Python to do.
CTRL_CONNECT, CTRL_BAD_VERSION, CTRL_DISCONNECT = 1, 2, 3

_INPUT_MIN = HEADER_SIZE + INPUT_PREFIX.size
_RECORD = INPUT_RECORD.size
_DISCONNECT_SIZE = HEADER_SIZE + DISCONNECT_BODY.size


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
def decode_batch(data: np.ndarray, length: np.ndarray, ip: np.ndarray, port: np.ndarray,
                 count: int, sessions: np.ndarray, pi: np.ndarray, now: int,
                 drops: np.ndarray, accepted: np.ndarray, ctrl_index: np.ndarray,
                 ctrl_kind: np.ndarray) -> int:
    """Check and apply datagrams 0..count-1; return how many control entries were written.

    data: uint8[N, B]; length, ip, port: per datagram; sessions: int64[10, P];
    pi: int32[11, P] player ints (input rows are written); now: ns; drops: int64[reasons];
    accepted: int64[8] by packet type; ctrl_index, ctrl_kind: int32[N] (out).
    Checks run cheapest first, in the order docs/PROTOCOL.md gives; the first that fails
    counts one drop and moves on. Nothing is raised, nothing is allocated.
    """
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
                ctrl_index[n_ctrl] = i  # answered with a deny, no bigger than the request
                ctrl_kind[n_ctrl] = CTRL_BAD_VERSION
                n_ctrl += 1
            drops[D.BAD_VERSION] += 1
            continue
        if row[4] != 0 or row[5] != 0 or row[6] != 0 or row[7] != 0:
            drops[D.BAD_FLAGS] += 1
            continue
        if ptype == CONNECT_REQUEST:
            if n != CONNECT_REQUEST_SIZE:
                drops[D.BAD_LENGTH] += 1
                continue
            ctrl_index[n_ctrl] = i
            ctrl_kind[n_ctrl] = CTRL_CONNECT
            n_ctrl += 1
            continue
        if ptype == INPUT:
            if n < _INPUT_MIN:
                drops[D.BAD_LENGTH] += 1
                continue
            records = row[HEADER_SIZE + 4]
            if records < 1 or records > MAX_INPUTS_PER_PACKET or n != _INPUT_MIN + records * _RECORD:
                drops[D.BAD_LENGTH] += 1
                continue
        elif ptype == KEEPALIVE:
            if n != HEADER_SIZE:
                drops[D.BAD_LENGTH] += 1
                continue
        elif ptype == DISCONNECT:
            if n != _DISCONNECT_SIZE:
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
        if sessions[S_IP, slot] != ip[i] or sessions[S_PORT, slot] != port[i]:
            drops[D.WRONG_ADDRESS] += 1
            continue
        seq = read_u32(row, 12)
        if seq <= sessions[S_LAST_RX_SEQ, slot]:
            drops[D.STALE_SEQUENCE] += 1
            continue
        # (security issue: verify the per-packet tag here, before anything is marked seen)
        sessions[S_LAST_RX_SEQ, slot] = seq
        sessions[S_LAST_HEARD, slot] = now
        accepted[ptype] += 1
        if ptype == INPUT:
            sessions[S_SNAPSHOT_ACK, slot] = read_u32(row, HEADER_SIZE)
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
