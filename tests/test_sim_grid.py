"""sim/grid.py: build_grid and cell_coord against a brute-force cell assignment."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.grid import build_grid, cell_coord
from tests.sim_reference import f32, ref_cell, ref_grid, ref_grid_cells

# (width, height, cell_size): exact multiples, ragged last cells, one cell, cell > world
LAYOUTS = [
    (512.0, 384.0, 64.0),
    (500.0, 300.0, 64.0),
    (100.0, 100.0, 30.0),
    (4096.0, 4096.0, 128.0),
    (50.0, 70.0, 100.0),
    (7.0, 1000.0, 0.5),
]


def _dims(w, h, cs):
    return math.ceil(w / cs), math.ceil(h / cs)


def _build(xs, ys, member, want, cs, cols, rows, items_fill=0):
    n = len(xs)
    x = np.asarray(xs, np.float32)
    y = np.asarray(ys, np.float32)
    m = np.asarray(member, np.int32)
    starts = np.full(cols * rows + 1, 12345, np.int32)  # garbage: the kernel must reset it
    items = np.full(n, items_fill, np.int32)
    total = build_grid(x, y, m, want, cs, cols, rows, starts, items)
    return total, starts, items


def _check(xs, ys, member, want, cs, cols, rows):
    xs = [f32(v) for v in xs]
    ys = [f32(v) for v in ys]
    total, starts, items = _build(xs, ys, member, want, cs, cols, rows, items_fill=-7)
    ref_starts, ref_items, ref_total = ref_grid(xs, ys, member, want, cs, cols, rows,
                                                [-7] * len(xs))
    assert total == ref_total == sum(1 for m in member if m == want)
    assert starts.tolist() == ref_starts
    assert items.tolist() == ref_items
    # every member appears exactly once, in the cell its coordinates say, ascending in it
    sl, il = starts.tolist(), items.tolist()
    assert sorted(il[:total]) == [i for i, m in enumerate(member) if m == want]
    for c in range(cols * rows):
        members = il[sl[c]:sl[c + 1]]
        assert members == sorted(members)
        for i in members:
            assert ref_cell(ys[i], cs, rows) * cols + ref_cell(xs[i], cs, cols) == c
    return starts, items


@pytest.mark.parametrize("w,h,cs", LAYOUTS)
def test_random_points(w, h, cs):
    rnd = random.Random(int(w + 3 * h + 7 * cs))
    cols, rows = _dims(w, h, cs)
    for n in (0, 1, 2, 17, 300):
        xs = [rnd.uniform(0, w) for _ in range(n)]
        ys = [rnd.uniform(0, h) for _ in range(n)]
        member = [rnd.choice((0, 1, 1, 2)) for _ in range(n)]
        for want in (0, 1, 2, 3):
            _check(xs, ys, member, want, cs, cols, rows)


@pytest.mark.parametrize("w,h,cs", LAYOUTS)
def test_borders_edges_and_out_of_range(w, h, cs):
    """Points exactly on cell borders go to the cell on their high side; x == W, y == H and
    anything past the edges clamp into the last cell, anything below 0 into the first."""
    cols, rows = _dims(w, h, cs)
    special = sorted({0.0, w, -1.0, -1e9, w + 1.0, 1e9}
                     | {k * cs for k in range(cols + 1)} | {k * cs - cs / 2 for k in range(1, cols + 1)})
    special_y = sorted({0.0, h, -1.0, h + 1.0, 1e9} | {k * cs for k in range(rows + 1)})
    xs, ys = [], []
    for x in special:
        for y in special_y:
            xs.append(x)
            ys.append(y)
    member = [1] * len(xs)
    _check(xs, ys, member, 1, cs, cols, rows)


def test_cell_coord_edges():
    assert cell_coord(0.0, 64.0, 8) == 0
    assert cell_coord(-0.0, 64.0, 8) == 0
    assert cell_coord(-0.5, 64.0, 8) == 0
    assert cell_coord(-1e30, 64.0, 8) == 0
    assert cell_coord(63.999, 64.0, 8) == 0
    assert cell_coord(64.0, 64.0, 8) == 1  # a border belongs to the higher cell
    assert cell_coord(float(np.nextafter(np.float32(64.0), np.float32(0.0))), 64.0, 8) == 0
    assert cell_coord(511.9, 64.0, 8) == 7
    assert cell_coord(512.0, 64.0, 8) == 7  # x == world width clamps into the last cell
    assert cell_coord(1e30, 64.0, 8) == 7  # beyond int64: must clamp, not wrap
    assert cell_coord(float("inf"), 64.0, 8) == 7
    assert cell_coord(float("-inf"), 64.0, 8) == 0
    assert cell_coord(float("nan"), 64.0, 8) == 0
    assert cell_coord(299.0, 100.0, 3) == 2
    assert cell_coord(300.0, 100.0, 3) == 2
    for v in np.linspace(-100, 700, 2001):
        assert cell_coord(float(v), 64.0, 8) == ref_cell(float(v), 64.0, 8)


def test_rebuild_reuses_arrays():
    """A second build on the same arrays (fewer members, moved points) equals a fresh one."""
    rnd = random.Random(9)
    cs, cols, rows = 32.0, 8, 8
    n = 200
    x = np.array([rnd.uniform(0, 256) for _ in range(n)], np.float32)
    y = np.array([rnd.uniform(0, 256) for _ in range(n)], np.float32)
    member = np.ones(n, np.int32)
    starts = np.zeros(cols * rows + 1, np.int32)
    items = np.zeros(n, np.int32)
    assert build_grid(x, y, member, 1, cs, cols, rows, starts, items) == n
    before = items.copy()
    member[::3] = 0
    x[:] = x[::-1]
    total = build_grid(x, y, member, 1, cs, cols, rows, starts, items)
    ref_starts, ref_items, ref_total = ref_grid(x.tolist(), y.tolist(), member.tolist(), 1, cs,
                                                cols, rows, before.tolist())
    assert total == ref_total
    assert starts.tolist() == ref_starts
    assert items.tolist() == ref_items


def test_everything_in_one_cell_keeps_slot_order():
    n = 100
    xs = [10.0] * n
    ys = [10.0] * n
    member = [1 if i % 7 else 0 for i in range(n)]
    starts, items = _check(xs, ys, member, 1, 64.0, 4, 4)
    assert items[:starts[-1]].tolist() == [i for i in range(n) if i % 7]


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_grid_property(data):
    cs = data.draw(st.sampled_from([1.0, 16.0, 30.0, 64.0, 100.0]))
    w = data.draw(st.sampled_from([64.0, 100.0, 250.0]))
    h = data.draw(st.sampled_from([64.0, 90.0, 256.0]))
    cols, rows = _dims(w, h, cs)
    # coordinates on a lattice of quarter cells, so borders and edges are hit often
    coord_x = st.one_of(st.integers(-2, int(w / cs * 4) + 2).map(lambda k: k * cs / 4),
                        st.floats(-10, w + 10, allow_nan=False))
    coord_y = st.one_of(st.integers(-2, int(h / cs * 4) + 2).map(lambda k: k * cs / 4),
                        st.floats(-10, h + 10, allow_nan=False))
    pts = data.draw(st.lists(st.tuples(coord_x, coord_y, st.integers(0, 2)), max_size=60))
    xs = [p[0] for p in pts]
    ys = [p[1] for p in pts]
    member = [p[2] for p in pts]
    _check(xs, ys, member, 1, cs, cols, rows)


def test_reference_cells_agree_with_independent_geometry():
    """Sanity check of the reference itself: a point is in cell (cx, cy) iff it lies in
    [cx*cs, (cx+1)*cs) x [cy*cs, (cy+1)*cs), the last row/column closed at the world edge."""
    cs, cols, rows = 25.0, 4, 4
    rnd = random.Random(3)
    xs = [rnd.choice([rnd.uniform(0, 100), float(rnd.randint(0, 4)) * 25.0]) for _ in range(400)]
    ys = [rnd.choice([rnd.uniform(0, 100), float(rnd.randint(0, 4)) * 25.0]) for _ in range(400)]
    cells = ref_grid_cells(xs, ys, [1] * 400, 1, cs, cols, rows)
    for c, members in enumerate(cells):
        cx, cy = c % cols, c // cols
        for i in members:
            assert cx * cs <= xs[i] and (xs[i] < (cx + 1) * cs or (cx == cols - 1 and xs[i] <= 100.0))
            assert cy * cs <= ys[i] and (ys[i] < (cy + 1) * cs or (cy == rows - 1 and ys[i] <= 100.0))
