"""SipHash-2-4 (Aumasson & Bernstein, "SipHash: a fast short-input PRF", 2012) as a kernel.

The packet tag of protocol v3 (docs/PROTOCOL.md, "Keys and the tag"). Kernels carry the key
words and the tag as int64 holding the u64's bits, as the rest of net/ does; inside, all
arithmetic is uint64. numba promotes a mix of int64 and uint64 to float64, so every value
that meets the state is cast to np.uint64 first and the result is cast back once at the end.
"""

from __future__ import annotations

import numpy as np

from sim.jit import kernel

_MASK64 = (1 << 64) - 1


@kernel(inline=True)
def _rotl(x: np.uint64, b: int) -> np.uint64:
    """x (uint64) rotated left by b bits, 0 < b < 64."""
    return (x << np.uint64(b)) | (x >> np.uint64(64 - b))


@kernel(inline=True)
def _sipround(v0: np.uint64, v1: np.uint64, v2: np.uint64, v3: np.uint64):
    """One SipRound over the four uint64 state words; returns the new four."""
    v0 = v0 + v1
    v1 = _rotl(v1, 13)
    v1 = v1 ^ v0
    v0 = _rotl(v0, 32)
    v2 = v2 + v3
    v3 = _rotl(v3, 16)
    v3 = v3 ^ v2
    v0 = v0 + v3
    v3 = _rotl(v3, 21)
    v3 = v3 ^ v0
    v2 = v2 + v1
    v1 = _rotl(v1, 17)
    v1 = v1 ^ v2
    v2 = _rotl(v2, 32)
    return v0, v1, v2, v3


@kernel(inline=True)
def _load_u64(buf: np.ndarray, at: int) -> np.uint64:
    """Little-endian u64 at buf[at:at + 8] (uint8[:]), as uint64."""
    return (np.uint64(buf[at]) | (np.uint64(buf[at + 1]) << np.uint64(8))
            | (np.uint64(buf[at + 2]) << np.uint64(16)) | (np.uint64(buf[at + 3]) << np.uint64(24))
            | (np.uint64(buf[at + 4]) << np.uint64(32)) | (np.uint64(buf[at + 5]) << np.uint64(40))
            | (np.uint64(buf[at + 6]) << np.uint64(48)) | (np.uint64(buf[at + 7]) << np.uint64(56)))


@kernel
def siphash24(k0: int, k1: int, buf: np.ndarray, start: int, n: int) -> int:
    """SipHash-2-4 of buf[start:start + n] (buf uint8[:], n >= 0) under key words k0, k1.

    k0, k1: int64 holding the bits of the little-endian u64s of key bytes 0..7 and 8..15
    (see key_words). Returns the 64-bit tag as an int64 holding the u64's bits: callers in
    int64 kernels can shift and mask it without meeting uint64. Allocates nothing.
    """
    uk0 = np.uint64(k0)
    uk1 = np.uint64(k1)
    v0 = uk0 ^ np.uint64(0x736F6D6570736575)
    v1 = uk1 ^ np.uint64(0x646F72616E646F6D)
    v2 = uk0 ^ np.uint64(0x6C7967656E657261)
    v3 = uk1 ^ np.uint64(0x7465646279746573)
    full = n - (n & 7)
    for at in range(start, start + full, 8):
        m = _load_u64(buf, at)
        v3 ^= m
        v0, v1, v2, v3 = _sipround(v0, v1, v2, v3)
        v0, v1, v2, v3 = _sipround(v0, v1, v2, v3)
        v0 ^= m
    # last block: the 0..7 leftover bytes, and the length mod 256 in the top byte
    m = np.uint64(n & 0xFF) << np.uint64(56)
    tail = start + full
    for j in range(n & 7):
        m |= np.uint64(buf[tail + j]) << np.uint64(8 * j)
    v3 ^= m
    v0, v1, v2, v3 = _sipround(v0, v1, v2, v3)
    v0, v1, v2, v3 = _sipround(v0, v1, v2, v3)
    v0 ^= m
    v2 ^= np.uint64(0xFF)
    for _ in range(4):
        v0, v1, v2, v3 = _sipround(v0, v1, v2, v3)
    return np.int64(v0 ^ v1 ^ v2 ^ v3)


def key_words(key: bytes) -> tuple[int, int]:
    """The (k0, k1) int64 key words of a 16-byte key: its two little-endian u64s, signed."""
    if len(key) != 16:
        raise ValueError(f"SipHash key must be 16 bytes, got {len(key)}")
    return (int.from_bytes(key[:8], "little", signed=True),
            int.from_bytes(key[8:], "little", signed=True))


def siphash24_ref(key: bytes, data: bytes) -> int:
    """Plain-Python SipHash-2-4 straight from the paper; the tag as an unsigned int (u64).

    For tests and tools only: slow, but shares no code with the kernel.
    """
    def rotl(x: int, b: int) -> int:
        return ((x << b) | (x >> (64 - b))) & _MASK64

    def rnd(v: list[int]) -> None:
        v[0] = (v[0] + v[1]) & _MASK64; v[1] = rotl(v[1], 13); v[1] ^= v[0]; v[0] = rotl(v[0], 32)
        v[2] = (v[2] + v[3]) & _MASK64; v[3] = rotl(v[3], 16); v[3] ^= v[2]
        v[0] = (v[0] + v[3]) & _MASK64; v[3] = rotl(v[3], 21); v[3] ^= v[0]
        v[2] = (v[2] + v[1]) & _MASK64; v[1] = rotl(v[1], 17); v[1] ^= v[2]; v[2] = rotl(v[2], 32)

    k0 = int.from_bytes(key[:8], "little")
    k1 = int.from_bytes(key[8:16], "little")
    v = [k0 ^ 0x736F6D6570736575, k1 ^ 0x646F72616E646F6D,
         k0 ^ 0x6C7967656E657261, k1 ^ 0x7465646279746573]
    padded = data + bytes(7 - len(data) % 8) + bytes([len(data) & 0xFF])
    for i in range(0, len(padded), 8):
        m = int.from_bytes(padded[i:i + 8], "little")
        v[3] ^= m
        rnd(v); rnd(v)
        v[0] ^= m
    v[2] ^= 0xFF
    for _ in range(4):
        rnd(v)
    return v[0] ^ v[1] ^ v[2] ^ v[3]
