"""msgpack writers for kernels: the smallest form of each value, as msgpack-python packs it.

Every writer takes (buf uint8[:], pos) and returns the position after what it wrote. The
caller guarantees room (snapshots are bounded by net.limits.worst_snapshot_size).
"""

from __future__ import annotations

import numpy as np

from sim.jit import kernel


@kernel
def put_uint(buf: np.ndarray, pos: int, v: int) -> int:
    """A non-negative integer: positive fixint, uint8, uint16, uint32 or uint64."""
    if v < 0:  # never on the wire: every field of this protocol is unsigned
        buf[pos] = 0
        return pos + 1
    if v < 0x80:
        buf[pos] = v
        return pos + 1
    if v < 0x100:
        buf[pos] = 0xCC
        buf[pos + 1] = v
        return pos + 2
    if v < 0x10000:
        buf[pos] = 0xCD
        buf[pos + 1] = v >> 8
        buf[pos + 2] = v & 0xFF
        return pos + 3
    if v < 0x100000000:
        buf[pos] = 0xCE
        for k in range(4):
            buf[pos + 1 + k] = (v >> (24 - 8 * k)) & 0xFF
        return pos + 5
    buf[pos] = 0xCF
    for k in range(8):
        buf[pos + 1 + k] = (v >> (56 - 8 * k)) & 0xFF
    return pos + 9


@kernel
def put_int(buf: np.ndarray, pos: int, v: int) -> int:
    """A signed integer in the smallest form msgpack-python picks: a non-negative value as
    put_uint; -32..-1 negative fixint; then int8, int16, int32, int64."""
    if v >= 0:
        return put_uint(buf, pos, v)
    if v >= -32:
        buf[pos] = v & 0xFF
        return pos + 1
    if v >= -128:
        buf[pos] = 0xD0
        buf[pos + 1] = v & 0xFF
        return pos + 2
    if v >= -32768:
        buf[pos] = 0xD1
        buf[pos + 1] = (v >> 8) & 0xFF
        buf[pos + 2] = v & 0xFF
        return pos + 3
    if v >= -2147483648:
        buf[pos] = 0xD2
        for k in range(4):
            buf[pos + 1 + k] = (v >> (24 - 8 * k)) & 0xFF
        return pos + 5
    buf[pos] = 0xD3
    for k in range(8):
        buf[pos + 1 + k] = (v >> (56 - 8 * k)) & 0xFF
    return pos + 9


@kernel
def put_array(buf: np.ndarray, pos: int, n: int) -> int:
    """An array header for n elements: fixarray or array16 (n < 65536)."""
    if n < 16:
        buf[pos] = 0x90 | n
        return pos + 1
    buf[pos] = 0xDC
    buf[pos + 1] = n >> 8
    buf[pos + 2] = n & 0xFF
    return pos + 3


@kernel
def put_map(buf: np.ndarray, pos: int, n: int) -> int:
    """A fixmap header for n < 16 pairs."""
    buf[pos] = 0x80 | n
    return pos + 1


@kernel
def put_key(buf: np.ndarray, pos: int, c0: int, c1: int) -> int:
    """A fixstr key of one ASCII character (c1 == 0) or two."""
    if c1 == 0:
        buf[pos] = 0xA1
        buf[pos + 1] = c0
        return pos + 2
    buf[pos] = 0xA2
    buf[pos + 1] = c0
    buf[pos + 2] = c1
    return pos + 3
