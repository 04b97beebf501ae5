"""The only clock reads in xmarks (house rule: only tick/ reads the clock)."""

from __future__ import annotations

import time

now_ns = time.monotonic_ns  # monotonic: immune to wall-clock jumps


def now_s() -> float:
    return time.monotonic()


def sleep_until_ns(deadline_ns: int) -> None:
    """Sleep until monotonic time `deadline_ns`; return at once if it has passed."""
    delay = deadline_ns - time.monotonic_ns()
    if delay > 0:
        time.sleep(delay / 1e9)


def unix_s() -> int:
    """Whole seconds since the Unix epoch (wall clock: token create/expire times)."""
    return int(time.time())


def unix_origin_ms() -> int:
    """Unix time in ms at monotonic time 0: unix ms of monotonic `t` ns is this + t // 10**6.
    The network layer keeps monotonic time and converts with it (token expiry, cookies)."""
    return int(time.time() * 1000) - time.monotonic_ns() // 1_000_000


def unix_ms() -> int:
    """Milliseconds since the Unix epoch (wall clock: when ledger records happened)."""
    return time.time_ns() // 1_000_000
