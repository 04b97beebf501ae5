"""The 8-byte packet tag of protocol v3 (docs/PROTOCOL.md, "Keys and the tag").

tag = SipHash-2-4(key, packet[0 : n - 8]), written little-endian at packet[n - 8 : n]; the
key is the session's c2s key for client->server packets and s2c for server->client ones.
The kernels are inlined into the decoder and the encoders; sign/verify serve clients and
tests.
"""

from __future__ import annotations

import numpy as np

from net.siphash import key_words, siphash24
from net.wire import TAG_SIZE
from sim.jit import kernel


@kernel(inline=True)
def put_tag(buf: np.ndarray, start: int, n: int, k0: int, k1: int) -> int:
    """Write the tag of buf[start:start + n] at buf[start + n:start + n + 8] (buf uint8[:],
    k0/k1 int64 key words); return start + n + 8, the end of the tagged packet."""
    t = siphash24(k0, k1, buf, start, n)
    at = start + n
    for k in range(8):
        buf[at + k] = (t >> (8 * k)) & 0xFF  # int64 shift is arithmetic: the mask drops the sign
    return at + 8


@kernel(inline=True)
def tag_ok(row: np.ndarray, n: int, k0: int, k1: int) -> bool:
    """True if the datagram row[0:n] (uint8[:], n >= 8) ends with the tag of row[0:n - 8]
    under key words k0, k1 (int64). All 8 bytes are compared, without an early exit."""
    m = n - 8
    t = siphash24(k0, k1, row, 0, m)
    diff = 0
    for k in range(8):
        diff |= np.int64(row[m + k]) ^ ((t >> (8 * k)) & 0xFF)
    return diff == 0


@kernel
def _put_tag(buf: np.ndarray, start: int, n: int, k0: int, k1: int) -> int:
    return put_tag(buf, start, n, k0, k1)


@kernel
def _tag_ok(row: np.ndarray, n: int, k0: int, k1: int) -> bool:
    return tag_ok(row, n, k0, k1)


def sign(packet: bytes, key: bytes) -> bytes:
    """packet followed by its 8-byte tag under the 16-byte key."""
    k0, k1 = key_words(key)
    buf = np.zeros(len(packet) + TAG_SIZE, np.uint8)
    buf[:len(packet)] = np.frombuffer(packet, np.uint8)
    _put_tag(buf, 0, len(packet), k0, k1)
    return buf.tobytes()


def verify(datagram: bytes, key: bytes) -> bool:
    """True if datagram (at least 8 bytes) ends with the tag of the rest under the 16-byte key."""
    if len(datagram) < TAG_SIZE:
        return False
    k0, k1 = key_words(key)
    row = np.frombuffer(datagram, np.uint8).copy()  # writable: one compiled signature
    return bool(_tag_ok(row, len(datagram), k0, k1))
