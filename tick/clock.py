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
