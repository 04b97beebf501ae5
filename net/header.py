"""The 16-byte packet header as kernels write and first check it (docs/PROTOCOL.md 4, 9.1).

Shared by the server's decoder and snapshot encoder and the bot horde, so both ends of a
load test agree on the bytes by construction.
"""

from __future__ import annotations

import numpy as np

from net import drops as D
from net.wire import HEADER_SIZE, MAX_DATAGRAM, PROTOCOL_ID, VERSION
from sim.jit import kernel


@kernel(inline=True)
def put_header(buf: np.ndarray, pos: int, ptype: int, sid: int, seq: int) -> int:
    """Write the header of a `ptype` packet at buf[pos:pos + 16] (uint8[:], little-endian:
    protocol id, version, type, flags 0, 3 reserved zero bytes, session id u32, sequence
    u32); return pos + 16."""
    buf[pos] = PROTOCOL_ID & 0xFF
    buf[pos + 1] = PROTOCOL_ID >> 8
    buf[pos + 2] = VERSION
    buf[pos + 3] = ptype
    for k in range(4, 8):
        buf[pos + k] = 0
    for k in range(4):
        buf[pos + 8 + k] = (sid >> (8 * k)) & 0xFF
        buf[pos + 12 + k] = (seq >> (8 * k)) & 0xFF
    return pos + HEADER_SIZE


@kernel(inline=True)
def frame_drop(row: np.ndarray, n: int) -> int:
    """The first checks every receiver makes, cheapest first: the drop reason (net.drops)
    if a datagram of n bytes in row (uint8[:]) is too short, oversize or not this
    protocol; -1 if it passes them."""
    if n < HEADER_SIZE:
        return D.TOO_SHORT
    if n > MAX_DATAGRAM:
        return D.OVERSIZE
    if (np.int64(row[0]) | (np.int64(row[1]) << 8)) != PROTOCOL_ID:
        return D.BAD_PROTOCOL
    return -1
