"""Overrun warnings at most once a second: a sustained overload must not flood the log.

The limiter takes `now` as an argument (monotonic ns from the tick loop), so it is tested
with times stepped by hand.
"""

from __future__ import annotations

import logging

import numpy as np

from tick.timings import COL_TICK, FIRST_PHASE, PHASES

EVERY_NS = 1_000_000_000


class OverrunLimiter:
    """Counts overruns; lets one line through per `every_ns`, carrying the count since the
    previous line (the first overrun is reported at once)."""

    def __init__(self, every_ns: int = EVERY_NS) -> None:
        self.every_ns = every_ns
        self.pending = 0  # overruns not yet reported by a line
        self._last: int | None = None  # when the last line went out

    def note(self, now: int) -> int:
        """One overrun at `now` (ns). Return how many overruns the line to write now reports
        (this one and those held back since the last line), or 0: write nothing."""
        self.pending += 1
        if self._last is not None and now - self._last < self.every_ns:
            return 0
        self._last = now
        count, self.pending = self.pending, 0
        return count


def overrun_fields(row: np.ndarray, tick_rate: float, count: int, overruns: int) -> dict:
    """The structured fields of an overrun line for timing row `row` (int64[COLUMNS],
    tick.timings): tick, total_ms, budget_ms, <phase>_ms, count (overruns this line
    reports) and overruns (since start)."""
    durations = [int(row[FIRST_PHASE + k]) for k in range(len(PHASES))]
    fields = {"event": "overrun", "tick": int(row[COL_TICK]),
              "total_ms": round(sum(durations) / 1e6, 3),
              "budget_ms": round(1000.0 / tick_rate, 3)}
    for name, ns in zip(PHASES, durations):
        fields[f"{name}_ms"] = round(ns / 1e6, 3)
    fields["count"] = count
    fields["overruns"] = overruns
    return fields


def log_overrun(log: logging.Logger, row: np.ndarray, tick_rate: float, count: int,
                overruns: int) -> None:
    """The WARNING line for an overrun: the tick's phase breakdown and how many overruns
    it stands for."""
    f = overrun_fields(row, tick_rate, count, overruns)
    phases = " ".join(f"{name} {f[name + '_ms']:.2f}" for name in PHASES)
    log.warning("overrun: tick %d took %.2f ms of %.2f (%s); %d overrun%s since the last "
                "line, %d in all", f["tick"], f["total_ms"], f["budget_ms"], phases, count,
                "" if count == 1 else "s", overruns, extra=f)
