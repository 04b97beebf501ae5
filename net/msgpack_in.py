"""msgpack readers for kernels: the reading counterpart of net/msgpack_out.py.

Bounded readers over a received datagram (row uint8[:]): nothing is read at or past `end`,
nothing raises on peer data, nothing allocates. The key decoder (read_key) and check_rows'
constraints know the SNAPSHOT payload's keys and rows; net/horde.py's parse_snapshot puts
the readers together.
"""

from __future__ import annotations

import numpy as np

from sim.jit import kernel

# The tiny readers (an integer, an array or key header; net/horde.py's u32) are
# kernel(inline=True). Measured: a loop calling read_int as an ordinary kernel spent 2.6 ns
# per integer (a call LLVM did not inline), 14 ns once the call came with an NRT
# incref/decref pair of the row; inlined and call-free, 0.4-0.7 ns. The hottest loop
# (check_rows) has the reader written out: there, nested inlining left the refcount pair in
# the loop.

#: Nesting of non-empty arrays/maps allowed inside a value the bot skips (unknown keys).
SKIP_DEPTH = 32

# Snapshot keys the reader knows (bit k of the "seen" mask is key code k).
(K_UNKNOWN, K_T, K_A, K_B, K_H, K_ME, K_P, K_TR, K_PM, K_PV, K_PR, K_PN, K_TX, K_TN, K_EV,
 K_LB, K_HR) = range(17)

# How check_rows constrains the integers of an array (in groups of `group`).
ROWS_INT, ROWS_UINT, ROWS_ENTITY, ROWS_TREASURE, ROWS_ASCENDING = range(5)

_STOP = np.int64(-1)


# ---- the msgpack reader ------------------------------------------------------------------
# Each reader takes (row, pos, end) and returns the position after what it read, or -1 for
# anything malformed (wrong type, truncated, out of range). Lengths are checked before use.

@kernel(inline=True)
def read_int(row: np.ndarray, pos: int, end: int) -> tuple:
    """(value, next pos) of a msgpack integer of any width; next pos -1 if the byte at pos
    starts no integer, the integer is cut, or it does not fit an int64."""
    if pos >= end:
        return np.int64(0), _STOP
    c = np.int64(row[pos])
    if c <= 0x7F:
        return c, pos + 1
    if c >= 0xE0:
        return c - 256, pos + 1
    if c < 0xCC or c > 0xD3:
        return np.int64(0), _STOP
    # cc cd ce cf (uint 8..64), d0 d1 d2 d3 (int 8..64): 1 << (c & 3) bytes
    size = np.int64(1) << (c & 3)
    if pos + 1 + size > end:
        return np.int64(0), _STOP
    v = np.int64(0)
    for k in range(size):
        v = (v << 8) | np.int64(row[pos + 1 + k])
    if c == 0xCF and v < 0:  # a u64 above 2**63 - 1
        return np.int64(0), _STOP
    if c >= 0xD0 and size < 8:  # sign-extend int 8/16/32
        top = np.int64(1) << (8 * size - 1)
        if v >= top:
            v -= top << 1
    return v, pos + 1 + size


@kernel(inline=True)
def read_array(row: np.ndarray, pos: int, end: int) -> tuple:
    """(element count, next pos) of an array header (fixarray, array 16, array 32)."""
    if pos >= end:
        return np.int64(0), _STOP
    c = np.int64(row[pos])
    if 0x90 <= c <= 0x9F:
        return c & 0xF, pos + 1
    if c == 0xDC:
        if pos + 3 > end:
            return np.int64(0), _STOP
        return (np.int64(row[pos + 1]) << 8) | np.int64(row[pos + 2]), pos + 3
    if c == 0xDD:
        if pos + 5 > end:
            return np.int64(0), _STOP
        n = np.int64(0)
        for k in range(4):
            n = (n << 8) | np.int64(row[pos + 1 + k])
        return n, pos + 5
    return np.int64(0), _STOP


@kernel(inline=True)
def read_key(row: np.ndarray, pos: int, end: int) -> tuple:
    """(key code K_*, next pos) of a map key, which must be a msgpack str (any form)."""
    if pos >= end:
        return K_UNKNOWN, _STOP
    c = np.int64(row[pos])
    if 0xA0 <= c <= 0xBF:
        n = c & 0x1F
        at = pos + 1
    elif c == 0xD9 or c == 0xDA or c == 0xDB:
        size = 1 if c == 0xD9 else (2 if c == 0xDA else 4)
        if pos + 1 + size > end:
            return K_UNKNOWN, _STOP
        n = np.int64(0)
        for k in range(size):
            n = (n << 8) | np.int64(row[pos + 1 + k])
        at = pos + 1 + size
    else:
        return K_UNKNOWN, _STOP
    if at + n > end:
        return K_UNKNOWN, _STOP
    code = K_UNKNOWN
    if n == 1:
        c0 = row[at]
        if c0 == 116:  # t
            code = K_T
        elif c0 == 97:  # a
            code = K_A
        elif c0 == 98:  # b
            code = K_B
        elif c0 == 104:  # h
            code = K_H
        elif c0 == 112:  # p
            code = K_P
    elif n == 2:
        c0 = row[at]
        c1 = row[at + 1]
        if c0 == 109 and c1 == 101:  # me
            code = K_ME
        elif c0 == 116 and c1 == 114:  # tr
            code = K_TR
        elif c0 == 116 and c1 == 120:  # tx
            code = K_TX
        elif c0 == 116 and c1 == 110:  # tn
            code = K_TN
        elif c0 == 112:
            if c1 == 109:  # pm
                code = K_PM
            elif c1 == 118:  # pv
                code = K_PV
            elif c1 == 114:  # pr
                code = K_PR
            elif c1 == 110:  # pn
                code = K_PN
        elif c0 == 101 and c1 == 118:  # ev
            code = K_EV
        elif c0 == 108 and c1 == 98:  # lb
            code = K_LB
        elif c0 == 104 and c1 == 114:  # hr
            code = K_HR
    return code, at + n


@kernel
def skip_value(row: np.ndarray, pos: int, end: int, stack: np.ndarray) -> int:
    """The position after one msgpack value of any type (the value of an unknown key), or
    -1. bin, ext and the reserved byte 0xc1 are malformed here, and so is nesting non-empty
    arrays/maps more than SKIP_DEPTH deep. stack: int64[>= SKIP_DEPTH + 1] scratch.

    No recursion: stack[d] counts the items still to skip at depth d. Every item takes at
    least one byte, so the loop ends within the payload whatever the headers claim.
    """
    depth = 0
    stack[0] = 1
    while True:
        if pos >= end:
            return -1
        c = np.int64(row[pos])
        pos += 1
        children = np.int64(0)
        if c <= 0x7F or c >= 0xE0 or c == 0xC0 or c == 0xC2 or c == 0xC3:
            pass  # fixint, nil, false, true: the byte alone
        elif 0xA0 <= c <= 0xBF:
            pos += c & 0x1F
        elif 0x90 <= c <= 0x9F:
            children = c & 0xF
        elif 0x80 <= c <= 0x8F:
            children = 2 * (c & 0xF)
        elif c == 0xCC or c == 0xD0:
            pos += 1
        elif c == 0xCD or c == 0xD1:
            pos += 2
        elif c == 0xCE or c == 0xD2 or c == 0xCA:
            pos += 4
        elif c == 0xCF or c == 0xD3 or c == 0xCB:
            pos += 8
        elif 0xD9 <= c <= 0xDF:  # str 8/16/32, array 16/32, map 16/32
            size = 1 if c == 0xD9 else (2 if (c == 0xDA or c == 0xDC or c == 0xDE) else 4)
            if pos + size > end:
                return -1
            n = np.int64(0)
            for k in range(size):
                n = (n << 8) | np.int64(row[pos + k])
            pos += size
            if c <= 0xDB:
                pos += n  # a string's bytes
            elif c <= 0xDD:
                children = n
            else:
                children = 2 * n
        else:
            return -1  # bin (c4-c6), ext (c7-c9, d4-d8), reserved (c1)
        if pos > end:
            return -1
        stack[depth] -= 1
        if children > 0:
            if depth + 1 > SKIP_DEPTH:
                return -1
            depth += 1
            stack[depth] = children
        while stack[depth] == 0:
            if depth == 0:
                return pos
            depth -= 1


@kernel
def check_rows(row: np.ndarray, pos: int, end: int, kind: int, group: int) -> tuple:
    """(next pos, position of the first element, element count) of an array of integers
    whose length is a multiple of `group`, each integer constrained by `kind`:
    ROWS_INT any; ROWS_UINT >= 0; ROWS_ENTITY per group of 5 [id >= 0, qx, qy in u16,
    vx, vy any]; ROWS_TREASURE per group of 4 [id, qx, qy in u16, value >= 0];
    ROWS_ASCENDING >= 0 and strictly ascending. next pos -1 if anything is off.

    The integer reader is written out in the loop (as read_int, which is not called here):
    most of a snapshot's bytes go through this loop, and any call in it costs an NRT
    incref/decref pair per integer."""
    n, pos = read_array(row, pos, end)
    if pos < 0 or n % group != 0:
        return _STOP, np.int64(0), np.int64(0)
    first = pos
    prev = np.int64(-1)
    col = 0
    for _j in range(n):
        if pos >= end:
            return _STOP, np.int64(0), np.int64(0)
        c = np.int64(row[pos])
        if c <= 0x7F:
            v = c
            pos += 1
        elif c >= 0xE0:
            v = c - 256
            pos += 1
        elif c < 0xCC or c > 0xD3:
            return _STOP, np.int64(0), np.int64(0)
        else:  # cc-cf uint 8..64, d0-d3 int 8..64: 1 << (c & 3) bytes, big-endian
            size = np.int64(1) << (c & 3)
            if pos + 1 + size > end:
                return _STOP, np.int64(0), np.int64(0)
            v = np.int64(0)
            for k in range(size):
                v = (v << 8) | np.int64(row[pos + 1 + k])
            if c == 0xCF and v < 0:
                return _STOP, np.int64(0), np.int64(0)
            if c >= 0xD0 and size < 8:
                top = np.int64(1) << (8 * size - 1)
                if v >= top:
                    v -= top << 1
            pos += 1 + size
        if kind == ROWS_UINT:
            ok = v >= 0
        elif kind == ROWS_ENTITY:
            ok = (v >= 0) if col == 0 else ((0 <= v <= 0xFFFF) if col <= 2 else True)
        elif kind == ROWS_TREASURE:
            ok = v >= 0 and (v <= 0xFFFF or col == 3)
        elif kind == ROWS_ASCENDING:
            ok = v > prev
            prev = v
        else:
            ok = True
        if not ok:
            return _STOP, np.int64(0), np.int64(0)
        col += 1
        if col == group:
            col = 0
    return pos, first, n
