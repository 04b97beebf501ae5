"""The overrun policy, as a pure function of times (so it is tested without a clock)."""

from __future__ import annotations


def next_deadline(deadline: int, done: int, period: int) -> tuple[int, bool]:
    """The next tick's deadline after a tick that was due by `deadline` ended at `done`.

    Returns (next deadline, whether this tick overran). Deadlines are absolute
    (start + n * period), so a tick that ends a little late is caught up by a shorter sleep
    and the loop never drifts. A tick that ends more than one whole period late drops the
    missed deadlines and restarts the schedule from `done`: the loop never runs ticks back
    to back to catch up, which is how a slow server spirals into a dead one.
    """
    following = deadline + period
    overran = done > following
    if done - following > period:
        following = done
    return following, overran
