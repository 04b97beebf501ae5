"""Area of interest with hysteresis: who is in a client's snapshot.

An entity enters a client's view within `enter_radius` and leaves only beyond
`exit_radius` (> enter_radius), so one walking along the edge does not flicker in and
out of every other snapshot. "Was in view" means "was in the last snapshot sent to this
client", acknowledged or not.

Candidates are found by scanning the grid cells under the bounding box of the exit
circle, one row of cells at a time: a row's cells are contiguous in the grid's item order,
and their positions are gathered once per tick into that same order (`gather_cells`), so
the scan reads memory front to back. Results are listed in that scan order (cell row, then
cell column, then slot): clients do not depend on the order, and no per-client sort is
needed unless more than `k` candidates compete for the cap.
"""

from __future__ import annotations

import numpy as np

from net.snapshot_ring import E_ID, MARK_LAST, next_stamp
from sim.grid import cell_coord
from sim.jit import kernel


@kernel
def gather_cells(x: np.ndarray, y: np.ndarray, items: np.ndarray, n: int, member: np.ndarray,
                 want: int, out: np.ndarray) -> None:
    """out[:, m] = position of items[m], for the n items of a grid (out: float64[2, >= n]),
    or NaN for one that is not a member (member[j] != want: a dead player, a treasure not
    buried). A NaN distance fails every comparison, so the scans load no membership per
    candidate."""
    for m in range(n):
        j = items[m]
        if member[j] == want:
            out[0, m] = x[j]
            out[1, m] = y[j]
        else:
            out[0, m] = np.nan
            out[1, m] = np.nan


@kernel
def before(d2a: float, ja: int, d2b: float, jb: int) -> bool:
    """True when candidate a is nearer than b: by squared distance, ties by lower id."""
    return d2a < d2b or (d2a == d2b and ja < jb)


@kernel(inline=True)
def view_box(x: float, y: float, exit_radius: float, cell_size: float, cols: int,
             rows: int) -> tuple:
    """The grid cells (x0, x1, y0, y1), inclusive, under the bounding box of the exit
    circle around (x, y)."""
    return (cell_coord(x - exit_radius, cell_size, cols),
            cell_coord(x + exit_radius, cell_size, cols),
            cell_coord(y - exit_radius, cell_size, rows),
            cell_coord(y + exit_radius, cell_size, rows))


@kernel(inline=True)
def scan_near(x: float, y: float, enter_radius: float, exit_radius: float,
              cell_xy: np.ndarray, items: np.ndarray, starts: np.ndarray, cell_size: float,
              cols: int, rows: int, exclude: int, last_mark: np.ndarray, stamp_last: int,
              cand: np.ndarray, cand_d2: np.ndarray) -> int:
    """Every member in view of (x, y), in scan order: within exit_radius, not `exclude`,
    and either within enter_radius or marked (last_mark[j] == stamp_last: it was in view
    before). Returns the count; the first len(cand) - 1 go to cand / cand_d2 (int32 /
    float64 scratch: the last slot takes the writes past them).

    The hot loop of the encoder, so it is kept small: members come from cell_xy (float64[2,
    n] positions in grid item order, NaN for non-members: gather_cells), every candidate
    is written and the count advances only for one in view (no branch to mispredict near
    the edge), and indices are unsigned (numba adds a negative-index fix-up to every
    signed one).
    """
    exit2 = exit_radius * exit_radius
    enter2 = enter_radius * enter_radius
    x0, x1, y0, y1 = view_box(x, y, exit_radius, cell_size, cols, rows)
    top = np.uint64(cand.shape[0] - 1)
    n = np.uint64(0)
    one = np.uint64(1)
    zero = np.uint64(0)
    for gy in range(y0, y1 + 1):
        row = gy * cols
        for m in range(np.uint64(starts[row + x0]), np.uint64(starts[row + x1 + 1])):
            dx = cell_xy[0, m] - x
            dy = cell_xy[1, m] - y
            d2 = dx * dx + dy * dy
            j = items[m]
            keep = ((d2 <= exit2) & (j != exclude)
                    & ((d2 <= enter2) | (last_mark[np.uint32(j)] == stamp_last)))
            w = min(n, top)
            cand[w] = j
            cand_d2[w] = d2
            n += one if keep else zero
    return np.int64(n)


@kernel(inline=True)
def scan_view(x: float, y: float, enter_radius: float, exit_radius: float,
              cell_xy: np.ndarray, items: np.ndarray, starts: np.ndarray, cell_size: float,
              cols: int, rows: int, exclude: int, last_mark: np.ndarray, stamp_last: int,
              cand: np.ndarray, cand_d2: np.ndarray, heap: np.ndarray, heap_d2: np.ndarray,
              k: int, cut_d2: float, cut_j: int) -> int:
    """scan_near's test, for crowds larger than its scratch: only those no farther than
    the cut-off (cut_d2, cut_j) count (pass inf, 0 for none); the first len(cand) go to
    cand / cand_d2, and with k > 0 the k nearest are also kept in the max-heap heap /
    heap_d2 (int32[k] / float64[k]). Returns the total count (it may exceed len(cand))."""
    exit2 = exit_radius * exit_radius
    enter2 = enter_radius * enter_radius
    x0, x1, y0, y1 = view_box(x, y, exit_radius, cell_size, cols, rows)
    cap = cand.shape[0]
    n = 0
    for gy in range(y0, y1 + 1):
        row = gy * cols
        for m in range(starts[row + x0], starts[row + x1 + 1]):
            dx = cell_xy[0, m] - x
            dy = cell_xy[1, m] - y
            d2 = dx * dx + dy * dy
            j = items[m]
            keep = ((d2 <= exit2) & (j != exclude)
                    & ((d2 <= enter2) | (last_mark[j] == stamp_last))
                    & ((d2 < cut_d2) | ((d2 == cut_d2) & (j <= cut_j))))
            if n < cap:
                cand[n] = j
                cand_d2[n] = d2
            if k > 0 and keep:
                if n < k:
                    heap_push(heap, heap_d2, n, j, d2)
                elif before(d2, j, heap_d2[0], heap[0]):
                    heap_replace_top(heap, heap_d2, k, j, d2)
            n += 1 if keep else 0
    return n


@kernel(inline=True)
def heap_push(heap: np.ndarray, heap_d2: np.ndarray, n: int, j: int, d2: float) -> None:
    """Add (d2, j) to the max-heap of n entries (the farthest at index 0)."""
    i = n
    while i > 0:
        parent = (i - 1) // 2
        if not before(heap_d2[parent], heap[parent], d2, j):
            break
        heap[i] = heap[parent]
        heap_d2[i] = heap_d2[parent]
        i = parent
    heap[i] = j
    heap_d2[i] = d2


@kernel(inline=True)
def heap_replace_top(heap: np.ndarray, heap_d2: np.ndarray, n: int, j: int, d2: float) -> None:
    """Replace the farthest of the n-entry max-heap with the nearer (d2, j)."""
    i = 0
    while True:
        child = 2 * i + 1
        if child >= n:
            break
        if child + 1 < n and before(heap_d2[child], heap[child], heap_d2[child + 1], heap[child + 1]):
            child += 1
        if not before(d2, j, heap_d2[child], heap[child]):
            break
        heap[i] = heap[child]
        heap_d2[i] = heap_d2[child]
        i = child
    heap[i] = j
    heap_d2[i] = d2


@kernel(inline=True)
def kth_nearest(ids: np.ndarray, d2s: np.ndarray, n: int, k: int) -> int:
    """Reorder ids[:n] / d2s[:n] (scratch copies) so position k holds the (k+1)-th nearest
    by (distance, id), with nothing nearer after it and nothing farther before it
    (quickselect, median-of-three pivots: linear on average); return k."""
    lo = 0
    hi = n - 1
    while lo < hi:
        mid = (lo + hi) // 2
        # median of three to position hi, as the pivot
        if before(d2s[mid], ids[mid], d2s[lo], ids[lo]):
            swap(ids, d2s, mid, lo)
        if before(d2s[hi], ids[hi], d2s[lo], ids[lo]):
            swap(ids, d2s, hi, lo)
        if before(d2s[mid], ids[mid], d2s[hi], ids[hi]):
            swap(ids, d2s, mid, hi)
        pj = ids[hi]
        pd = d2s[hi]
        store = lo
        for i in range(lo, hi):
            if before(d2s[i], ids[i], pd, pj):
                swap(ids, d2s, i, store)
                store += 1
        swap(ids, d2s, store, hi)
        if store == k:
            return k
        if store < k:
            lo = store + 1
        else:
            hi = store - 1
    return k


@kernel
def swap(ids: np.ndarray, d2s: np.ndarray, a: int, b: int) -> None:
    ids[a], ids[b] = ids[b], ids[a]
    d2s[a], d2s[b] = d2s[b], d2s[a]


#: Distance bins of cut_off: candidates in view spread about evenly over them (a bin
#: is an equal slice of d2, so an equal ring area).
NEAR_BINS = 32


@kernel(inline=True)
def near_bin(d2: float, scale: float) -> int:
    """The histogram bin of squared distance d2: floor(d2 * scale) within 0..NEAR_BINS-1
    (monotonic in d2; anything not finite lands in bin 0 rather than out of the table)."""
    v = d2 * scale
    if not (v >= 0.0):  # NaN
        return 0
    return NEAR_BINS - 1 if v >= NEAR_BINS - 1 else np.int64(v)


@kernel(inline=True)
def cut_off(cand: np.ndarray, cand_d2: np.ndarray, total: int, k: int, exit2: float,
            bins: np.ndarray, sel_ids: np.ndarray, sel_d2: np.ndarray) -> tuple:
    """The k-th nearest (d2, id) of the total > k candidates cand / cand_d2 (all with d2
    <= exit2). A histogram of d2 over NEAR_BINS equal slices of 0..exit2 finds the slice
    holding it (a nearer slice holds only nearer candidates: the bin is monotonic in d2),
    then a quickselect among that slice's few candidates, copied to sel_ids / sel_d2,
    picks it. bins: int32[NEAR_BINS]. Two linear passes and a quickselect over a few
    candidates, instead of a quickselect (data-dependent swaps) over all of them."""
    for b in range(NEAR_BINS):
        bins[b] = 0
    # a radius so small that exit2 underflows puts everyone in bin 0: still exact
    scale = NEAR_BINS / exit2 if exit2 > 0.0 else 0.0
    for q in range(total):
        bins[near_bin(cand_d2[q], scale)] += 1
    below = 0
    b = 0
    while below + bins[b] < k:
        below += bins[b]
        b += 1
    m = 0
    for q in range(total):
        if near_bin(cand_d2[q], scale) == b:
            sel_ids[m] = cand[q]
            sel_d2[m] = cand_d2[q]
            m += 1
    r = k - below - 1
    kth_nearest(sel_ids, sel_d2, m, r)
    return sel_d2[r], sel_ids[r]


@kernel(inline=True)
def select_visible(x: float, y: float, enter_radius: float, exit_radius: float,
                   cell_xy: np.ndarray, items: np.ndarray, starts: np.ndarray,
                   cell_size: float, cols: int, rows: int, exclude: int, k: int,
                   last: np.ndarray, n_last: int, marks: np.ndarray, stamp: np.ndarray,
                   cand: np.ndarray, cand_d2: np.ndarray, sel_ids: np.ndarray,
                   sel_d2: np.ndarray, heap: np.ndarray, heap_d2: np.ndarray,
                   bins: np.ndarray, out: np.ndarray) -> int:
    """Write the ids in view of (x, y) to out (int32[>= k]) in scan order; return how many.

    In view: a member (cell_xy not NaN: gather_cells) within enter_radius, or within
    exit_radius if it was among the first n_last rows of `last` (uint16[CAP, F], column
    E_ID: the entities of the previous snapshot). Of those, the k nearest (ties by lower
    id). marks: int64[3, N] stamp table (row MARK_LAST is used); stamp: int64[1]; cand,
    cand_d2: scan scratch (int32 / float64[CANDIDATES + 1]); sel_ids, sel_d2 (like cand),
    heap, heap_d2 (int32 / float64[k]), bins (cut_off): scratch.
    """
    stamp_last = next_stamp(stamp)
    for e in range(n_last):
        marks[MARK_LAST, last[e, E_ID]] = stamp_last
    last_mark = marks[MARK_LAST]
    total = scan_near(x, y, enter_radius, exit_radius, cell_xy, items, starts, cell_size,
                      cols, rows, exclude, last_mark, stamp_last, cand, cand_d2)
    cap = cand.shape[0] - 1
    if total <= k:
        for q in range(total):
            out[q] = cand[q]
        return total
    # more than k in view: the k-th nearest is the cut-off
    if total <= cap:
        cut_d2, cut_j = cut_off(cand, cand_d2, total, k, exit_radius * exit_radius, bins,
                                sel_ids, sel_d2)
        n = 0
        for q in range(total):
            j = cand[q]
            d2 = cand_d2[q]
            if d2 < cut_d2 or (d2 == cut_d2 and j <= cut_j):
                out[n] = j
                n += 1
        return n
    # a crowd larger than the scratch: one walk to find the cut-off with a heap, one more
    # to list those within it, in the same scan order
    scan_view(x, y, enter_radius, exit_radius, cell_xy, items, starts, cell_size, cols, rows,
              exclude, last_mark, stamp_last, cand, cand_d2, heap, heap_d2, k, np.inf, 0)
    n = scan_view(x, y, enter_radius, exit_radius, cell_xy, items, starts, cell_size, cols,
                  rows, exclude, last_mark, stamp_last, out, cand_d2, heap, heap_d2, 0,
                  heap_d2[0], heap[0])
    return min(n, k)
