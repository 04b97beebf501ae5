"""Per-phase tick timings in a ring buffer that tick/ writes and profiling/ reads."""

from __future__ import annotations

import numpy as np

PHASES = ("drain", "decode", "step", "encode", "send")
# Columns of a row: tick, start (monotonic ns), then one duration (ns) per phase.
COL_TICK, COL_START = 0, 1
FIRST_PHASE = 2
COLUMNS = FIRST_PHASE + len(PHASES)


class TickTimings:
    """int64[capacity, COLUMNS]; row (n % capacity) holds the n-th recorded tick."""

    def __init__(self, capacity: int) -> None:
        self.rows = np.zeros((capacity, COLUMNS), np.int64)
        self.recorded = 0
        self.overruns = 0

    def record(self, tick: int, marks: list[int]) -> None:
        """Store one tick from its phase boundaries: marks[0] = start, marks[k+1] = end of
        phase k (monotonic ns)."""
        row = self.rows[self.recorded % self.rows.shape[0]]
        row[COL_TICK] = tick
        row[COL_START] = marks[0]
        for k in range(len(PHASES)):
            row[FIRST_PHASE + k] = marks[k + 1] - marks[k]
        self.recorded += 1

    def latest(self, n: int | None = None) -> np.ndarray:
        """The last n recorded rows (default: all kept), oldest first. A copy."""
        cap = self.rows.shape[0]
        kept = min(self.recorded, cap)
        n = kept if n is None else min(n, kept)
        end = self.recorded % cap
        idx = (np.arange(end - n, end) % cap) if n else np.zeros(0, np.int64)
        return self.rows[idx].copy()
