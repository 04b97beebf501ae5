"""Grid queries: the nearest buried treasure (k = 1, no scratch), and the k nearest members.

Both walk cells in rings of growing Chebyshev distance and stop as soon as no unvisited
cell can hold a nearer candidate; both order candidates by (distance, index).
"""

from __future__ import annotations

import numpy as np

from sim.grid import cell_coord
from sim.jit import kernel
from sim.schema import BURIED, T_STATE, TX, TY


@kernel
def last_ring(radius: float, cell_size: float, cols: int, rows: int) -> int:
    """The last ring a walk within `radius` may need: ring k is at least (k-1)*cell_size
    away, and past cols + rows rings everything lies off the grid. Capped in floats first:
    float -> int beyond int64 is undefined (a huge radius used to walk nothing)."""
    reach_cells = radius / cell_size
    return cols + rows if reach_cells >= cols + rows else int(reach_cells) + 1


@kernel
def ring_off_grid(cx: int, cy: int, ring: int, cols: int, rows: int) -> bool:
    """True when ring `ring` around cell (cx, cy), and so every later ring, misses the grid."""
    return cx - ring < 0 and cy - ring < 0 and cx + ring >= cols and cy + ring >= rows


@kernel
def nearest_buried(x: float, y: float, radius: float, tf: np.ndarray, ti: np.ndarray,
                   starts: np.ndarray, items: np.ndarray, cell_size: float, cols: int,
                   rows: int) -> tuple:
    """(index, squared distance) of the nearest BURIED treasure within `radius` of (x, y).

    Ties go to the lowest treasure index. Returns (-1, inf) when there is none. Cells are
    walked in rings of growing Chebyshev distance; after ring r, every unvisited cell is
    at least r*cell_size away, so the walk stops as soon as the best is no farther.
    tf: float32[2, T]; ti: int32[5, T]; starts: int32[cols*rows+1]; items: int32[T].
    """
    best = -1
    best_d2 = np.inf
    r2 = radius * radius
    cx = cell_coord(x, cell_size, cols)
    cy = cell_coord(y, cell_size, rows)
    max_ring = last_ring(radius, cell_size, cols, rows)
    for ring in range(max_ring + 1):
        reach = (ring - 1) * cell_size  # no unvisited cell is closer than this
        if best >= 0 and ring > 0 and best_d2 <= reach * reach:
            break
        if ring_off_grid(cx, cy, ring, cols, rows):
            break
        for gy in range(cy - ring, cy + ring + 1):
            if gy < 0 or gy >= rows:
                continue
            edge_row = gy == cy - ring or gy == cy + ring
            step = 1 if edge_row else 2 * ring
            gx = cx - ring
            while gx <= cx + ring:
                if 0 <= gx < cols:
                    c = gy * cols + gx
                    for k in range(starts[c], starts[c + 1]):
                        t = items[k]
                        if ti[T_STATE, t] != BURIED:
                            continue
                        dx = np.float64(tf[TX, t]) - x
                        dy = np.float64(tf[TY, t]) - y
                        d2 = dx * dx + dy * dy
                        if d2 <= r2 and (d2 < best_d2 or (d2 == best_d2 and t < best)):
                            best = t
                            best_d2 = d2
                gx += step
    return best, best_d2


@kernel
def nearest_k(x: float, y: float, radius: float, xs: np.ndarray, ys: np.ndarray,
              member: np.ndarray, want: int, exclude: int, starts: np.ndarray,
              items: np.ndarray, cell_size: float, cols: int, rows: int,
              near: np.ndarray, near_d2: np.ndarray, k: int) -> int:
    """Up to k grid members within `radius` of (x, y), sorted by (distance, index).

    Writes indices to near (int32[>=k]) and squared distances to near_d2 (float64[>=k]);
    returns how many. member[i] == want selects (e.g. alive players, buried treasures).
    Cells are walked in rings of growing Chebyshev distance from the cell of (x, y): the
    nearest candidates come first, so most later ones fail the first comparison, and the
    walk stops once k are held and no unvisited cell can hold a nearer one (ring r is at
    least (r-1)*cell_size away). The result does not depend on the walk order.
    """
    n = 0
    r2 = radius * radius
    cx = cell_coord(x, cell_size, cols)
    cy = cell_coord(y, cell_size, rows)
    max_ring = last_ring(radius, cell_size, cols, rows)
    for ring in range(max_ring + 1):
        reach = (ring - 1) * cell_size
        if ring > 0 and n == k and near_d2[k - 1] <= reach * reach:
            break
        if ring_off_grid(cx, cy, ring, cols, rows):
            break
        for gy in range(cy - ring, cy + ring + 1):
            if gy < 0 or gy >= rows:
                continue
            step = 1 if (gy == cy - ring or gy == cy + ring) else 2 * ring
            gx = cx - ring
            while gx <= cx + ring:
                if 0 <= gx < cols:
                    c = gy * cols + gx
                    for m in range(starts[c], starts[c + 1]):
                        j = items[m]
                        if j == exclude or member[j] != want:
                            continue
                        dx = np.float64(xs[j]) - x
                        dy = np.float64(ys[j]) - y
                        d2 = dx * dx + dy * dy
                        if d2 > r2:
                            continue
                        if n == k and (d2 > near_d2[k - 1]
                                       or (d2 == near_d2[k - 1] and j > near[k - 1])):
                            continue
                        pos = n if n < k else k - 1  # when full, the last one drops out
                        while pos > 0 and (near_d2[pos - 1] > d2
                                           or (near_d2[pos - 1] == d2 and near[pos - 1] > j)):
                            near[pos] = near[pos - 1]
                            near_d2[pos] = near_d2[pos - 1]
                            pos -= 1
                        near[pos] = j
                        near_d2[pos] = d2
                        if n < k:
                            n += 1
                gx += step
    return n
