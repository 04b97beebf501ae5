"""Uniform spatial grid built by counting sort into preallocated arrays.

A grid over a W x H world has cols x rows square cells of edge `cell_size`. After
`build_grid`, the members of cell c are items[starts[c]:starts[c + 1]], in ascending slot
order, so every query that walks cells in a fixed order is deterministic.
"""

from __future__ import annotations

import numpy as np

from sim.jit import kernel


@kernel
def cell_coord(v: float, cell_size: float, cells: int) -> int:
    """Cell column (or row) of coordinate `v`, clamped into 0..cells-1 (NaN -> 0)."""
    q = v / cell_size
    # clamp before converting: float -> int of a value outside int64 is undefined in LLVM
    if not q >= 0.0:
        return 0
    if q >= cells:
        return cells - 1
    return int(q)


@kernel
def build_grid(x: np.ndarray, y: np.ndarray, member: np.ndarray, want: int,
               cell_size: float, cols: int, rows: int,
               starts: np.ndarray, items: np.ndarray) -> int:
    """Sort every slot i with member[i] == want into cells; return how many were sorted.

    x, y: float32[n]; member: int32[n]; starts: int32[cols*rows + 1]; items: int32[n].
    """
    ncells = cols * rows
    for c in range(ncells + 1):
        starts[c] = 0
    n = x.shape[0]
    for i in range(n):
        if member[i] == want:
            c = cell_coord(y[i], cell_size, rows) * cols + cell_coord(x[i], cell_size, cols)
            starts[c] += 1
    total = 0
    for c in range(ncells):  # inclusive prefix: starts[c] = end of cell c
        total += starts[c]
        starts[c] = total
    starts[ncells] = total
    for i in range(n - 1, -1, -1):  # backwards, so each cell ends up in ascending order
        if member[i] == want:
            c = cell_coord(y[i], cell_size, rows) * cols + cell_coord(x[i], cell_size, cols)
            starts[c] -= 1
            items[starts[c]] = i
    return total
