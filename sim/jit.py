"""The one place that sets numba flags for every kernel.

fastmath stays off: it lets LLVM reorder float math, which would break bit-for-bit
determinism across builds. parallel stays off: on 2 cores it only pays off near 100k
players (see ../shared/PERF-NOTES.md), and serial loops keep event order deterministic.
"""

from __future__ import annotations

from numba import njit

KERNEL_FLAGS = dict(cache=True, nogil=True, fastmath=False, parallel=False, boundscheck=False)


def kernel(fn):
    """Compile `fn` as a nopython, cached, GIL-free kernel with the house flags."""
    return njit(**KERNEL_FLAGS)(fn)
