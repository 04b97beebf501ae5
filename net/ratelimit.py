"""GCRA rate limiting: one int64 "theoretical arrival time" per bucket (docs/PROTOCOL.md
9.4, "Rate limits and session limits").

A bucket allows `burst` packets at once and then one per `interval_ns`; it is the token
bucket of capacity `burst` refilled at `rate`, stored as a single time instead of a count
and a timestamp. Per-address buckets live in a direct-mapped table keyed by IPv4 only.
"""

from __future__ import annotations

import numpy as np

from sim.jit import kernel

ADDRESS_TABLE_SIZE = 4096  # a power of two; see address_slot

# tolerance of an unlimited bucket: any real wait is below it (2**62 ns is ~146 years)
_UNLIMITED_TOLERANCE = 1 << 62


@kernel(inline=True)
def gcra_take(tat: np.ndarray, i: int, now: int, interval_ns: int, tolerance_ns: int) -> bool:
    """Take one packet from bucket i of tat (int64[:], ns; 0 = full bucket) at time now (ns).

    True and tat[i] advanced by interval_ns if the bucket allows it; False, unchanged, if
    the packet came more than tolerance_ns early."""
    t = tat[i]
    if t < now:
        t = now
    if t - now > tolerance_ns:
        return False
    tat[i] = t + interval_ns
    return True


@kernel(inline=True)
def address_slot(addr_ip: np.ndarray, addr_tat: np.ndarray, ip: int) -> int:
    """The entry of the per-address table (addr_ip, addr_tat: int64[K], K a power of two)
    for IPv4 ip (u32 in int64). If another ip held it, the entry is taken over with a full
    bucket: the table stays bounded, and an evicted address only ever gains a fresh burst."""
    k = addr_ip.shape[0]
    # Fibonacci hashing: the top bits of ip * 2**64 / phi are well mixed even for
    # neighbouring addresses; top 32 bits scaled to [0, K) without a division
    h = np.uint64(ip) * np.uint64(0x9E3779B97F4A7C15)
    slot = np.int64(h >> np.uint64(32)) * k >> 32
    if addr_ip[slot] != ip:
        addr_ip[slot] = ip
        addr_tat[slot] = 0
    return slot


def gcra_params(rate_per_s: float, burst: float) -> tuple[int, int]:
    """(interval_ns, tolerance_ns) for gcra_take: `rate_per_s` packets per second after a
    burst of `burst` packets (burst below 1 counts as 1).

    rate_per_s <= 0 means no limit: interval 0 and a tolerance no wait reaches, so every
    take passes and tat never runs ahead of now.
    """
    if rate_per_s <= 0:
        return 0, _UNLIMITED_TOLERANCE
    interval = max(1, round(1e9 / rate_per_s))
    return interval, round(interval * (max(1.0, burst) - 1.0))


def new_address_table(size: int = ADDRESS_TABLE_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Empty per-address table: (addr_ip, addr_tat), both int64[size]; ip -1 marks a free
    entry (no IPv4 address is negative)."""
    if size <= 0 or size & (size - 1):
        raise ValueError(f"address table size must be a power of two, got {size}")
    return np.full(size, -1, np.int64), np.zeros(size, np.int64)
