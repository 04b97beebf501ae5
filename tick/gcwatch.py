"""Every garbage collection's start, duration and generation, in a preallocated ring.

A collection stops the tick thread for as long as it takes (a full one over a big heap can
take milliseconds), so a recording that shows a slow tick must also show whether the
collector ran inside it. gc.callbacks tells us when each collection starts and stops; the
callback reads the monotonic clock and writes one row, nothing else, so watching costs a
few microseconds per collection and nothing per tick.
"""

from __future__ import annotations

import gc

import numpy as np

from tick.clock import now_ns

# Columns of a row: start (monotonic ns), duration (ns), generation, objects collected,
# uncollectable objects found.
GC_START, GC_DURATION, GC_GENERATION, GC_COLLECTED, GC_UNCOLLECTABLE = range(5)
GC_COLUMNS = 5


class GcWatch:
    """int64[capacity, GC_COLUMNS]; row (n % capacity) holds the n-th collection seen.

    install() registers the callback, uninstall() removes it; `recorded` counts every
    collection seen, so a reader that fell more than `capacity` behind knows how many it
    lost (see since()).
    """

    def __init__(self, capacity: int = 4096) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity!r}")
        self.rows = np.zeros((capacity, GC_COLUMNS), np.int64)
        self.recorded = 0
        self._started = 0
        self._installed = False

    @property
    def installed(self) -> bool:
        return self._installed

    def install(self) -> "GcWatch":
        if not self._installed:
            gc.callbacks.append(self._callback)
            self._installed = True
        return self

    def uninstall(self) -> None:
        if self._installed:
            gc.callbacks.remove(self._callback)
            self._installed = False

    def _callback(self, phase: str, info: dict) -> None:
        # called by the interpreter around every collection (gc is off while it runs)
        if phase == "start":
            self._started = now_ns()
            return
        stop = now_ns()
        row = self.rows[self.recorded % self.rows.shape[0]]
        row[GC_START] = self._started
        row[GC_DURATION] = stop - self._started
        row[GC_GENERATION] = info.get("generation", -1)
        row[GC_COLLECTED] = info.get("collected", 0)
        row[GC_UNCOLLECTABLE] = info.get("uncollectable", 0)
        self.recorded += 1

    def since(self, seen: int) -> tuple[np.ndarray, int]:
        """(rows of the collections after the first `seen`, oldest first: a copy,
        int64[k, GC_COLUMNS]; how many of them the ring had already overwritten)."""
        cap = self.rows.shape[0]
        recorded = self.recorded  # read once: a collection may run while we copy
        new = recorded - seen
        lost = max(0, new - cap)
        n = new - lost
        end = recorded % cap
        idx = (np.arange(end - n, end) % cap) if n > 0 else np.zeros(0, np.int64)
        return self.rows[idx].copy(), lost
