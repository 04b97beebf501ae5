"""sim/nearest.py: nearest_buried through the grid against a brute-force scan."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.nearest import nearest_buried
from sim.schema import T_STATE
from tests.sim_reference import (BURIED, CLAIMED, INF, WAITING, RefTreasure, f32, ref_grid,
                                 ref_nearest, treasures_to_arrays)


class Field:
    """Treasure arrays plus their BURIED grid (built by the reference, not the kernel)."""

    def __init__(self, treasures, w, h, cs):
        self.treasures = treasures
        self.w, self.h, self.cs = w, h, cs
        self.cols, self.rows = math.ceil(w / cs), math.ceil(h / cs)
        self.tf, self.ti = treasures_to_arrays(treasures)
        starts, items, _ = ref_grid([t.x for t in treasures], [t.y for t in treasures],
                                    [t.state for t in treasures], BURIED, cs, self.cols,
                                    self.rows, [0] * len(treasures))
        self.starts = np.asarray(starts, np.int32)
        self.items = np.asarray(items, np.int32)

    def query(self, x, y, radius):
        t, d2 = nearest_buried(float(x), float(y), float(radius), self.tf, self.ti, self.starts,
                               self.items, self.cs, self.cols, self.rows)
        return int(t), float(d2)

    def check(self, x, y, radius):
        got = self.query(x, y, radius)
        want = ref_nearest(x, y, radius, self.treasures)
        assert got == want, (x, y, radius, got, want)
        return got


def _random_field(rnd, n, w, h, cs, lattice=None, buried_share=0.7):
    treasures = []
    for _ in range(n):
        if lattice:
            x = min(w, lattice * rnd.randint(0, int(w / lattice)))
            y = min(h, lattice * rnd.randint(0, int(h / lattice)))
        else:
            x, y = rnd.uniform(0, w), rnd.uniform(0, h)
        state = BURIED if rnd.random() < buried_share else rnd.choice((CLAIMED, WAITING))
        treasures.append(RefTreasure(x=f32(x), y=f32(y), state=state, value=1))
    return Field(treasures, w, h, cs)


def _queries(rnd, field, count, lattice=None):
    w, h, cs = field.w, field.h, field.cs
    fixed = [(0.0, 0.0), (w, 0.0), (0.0, h), (w, h), (w / 2, 0.0), (0.0, h / 2), (w, h / 2),
             (w / 2, h), (cs, cs), (w / 2, h / 2)]
    out = list(fixed)
    while len(out) < count:
        kind = rnd.random()
        if kind < 0.4:
            out.append((rnd.uniform(0, w), rnd.uniform(0, h)))
        elif kind < 0.7:  # on cell borders / lattice points: ties and border cases
            step = lattice or cs / 2
            out.append((min(w, step * rnd.randint(0, int(w / step) + 1)),
                        min(h, step * rnd.randint(0, int(h / step) + 1))))
        elif field.treasures:  # exactly on (or a hair off) a treasure
            t = rnd.choice(field.treasures)
            out.append((t.x + rnd.choice((0.0, 0.0, 1e-3, -0.5)), t.y))
        else:
            out.append((rnd.uniform(0, w), rnd.uniform(0, h)))
    return [(f32(x), f32(y)) for x, y in out]


# (w, h, cs): multiples, ragged, one cell, cells smaller than every radius
LAYOUTS = [(512.0, 384.0, 64.0), (500.0, 330.0, 64.0), (100.0, 100.0, 128.0),
           (256.0, 256.0, 8.0), (1000.0, 40.0, 30.0)]


@pytest.mark.parametrize("w,h,cs", LAYOUTS)
def test_random_worlds(w, h, cs):
    rnd = random.Random(int(w * 7 + h * 3 + cs))
    queries = 0
    for n in (0, 1, 3, 40, 150):
        for lattice in (None, cs / 4):
            field = _random_field(rnd, n, w, h, cs, lattice)
            for x, y in _queries(rnd, field, 45, lattice):
                for radius in (0.0, cs / 3, cs, 1.5 * cs, 3.7 * cs, math.hypot(w, h), 1e6):
                    field.check(x, y, radius)
                    queries += 1
    assert queries > 2500


def test_empty_and_nothing_buried():
    rnd = random.Random(1)
    assert Field([], 256.0, 256.0, 64.0).check(10.0, 10.0, 1e9) == (-1, INF)
    gone = [RefTreasure(x=10.0, y=10.0, state=s, value=1) for s in (CLAIMED, WAITING, 7)]
    field = Field(gone, 256.0, 256.0, 64.0)
    for _ in range(50):
        assert field.check(rnd.uniform(0, 256), rnd.uniform(0, 256), 1e9) == (-1, INF)


def test_non_buried_is_ignored_even_when_in_the_grid():
    # a treasure claimed this tick is still in the grid built at the start of the tick
    ts = [RefTreasure(x=10.0, y=10.0, state=BURIED, value=1),
          RefTreasure(x=50.0, y=10.0, state=BURIED, value=1)]
    field = Field(ts, 256.0, 256.0, 64.0)
    assert field.check(10.0, 10.0, 100.0) == (0, 0.0)
    ts[0].state = CLAIMED
    field.ti[T_STATE, 0] = CLAIMED
    assert field.check(10.0, 10.0, 100.0) == (1, 1600.0)


def test_radius_is_inclusive():
    ts = [RefTreasure(x=30.0, y=40.0, state=BURIED, value=1)]
    field = Field(ts, 256.0, 256.0, 16.0)
    assert field.check(0.0, 0.0, 50.0) == (0, 2500.0)
    assert field.check(0.0, 0.0, float(np.nextafter(50.0, 0.0))) == (-1, INF)


@pytest.mark.parametrize("cs", [16.0, 64.0, 100.0])
def test_ties_go_to_lowest_index_across_cells(cs):
    """Four treasures at the same distance in four different cells around a cell corner;
    the lowest index is placed in the cell the ring walk reaches last."""
    w = h = 8 * cs
    cx, cy = 4 * cs, 4 * cs  # a cell corner: the query's own cell is the one up-right
    d = cs / 2
    for order in ([3, 2, 1, 0], [0, 1, 2, 3], [2, 0, 3, 1], [1, 3, 0, 2]):
        spots = [(cx + d, cy), (cx - d, cy), (cx, cy - d), (cx, cy + d)]
        ts = [None] * 4
        for idx, spot in zip(order, spots):
            ts[idx] = RefTreasure(x=spot[0], y=spot[1], state=BURIED, value=1)
        field = Field(ts, w, h, cs)
        assert field.check(cx, cy, cs) == (0, d * d)
        # farther rings: same distance exactly one and two cells away
        far = [(cx + 2 * cs, cy), (cx - 2 * cs, cy), (cx, cy + 2 * cs), (cx, cy - 2 * cs)]
        ts = [None] * 4
        for idx, spot in zip(order, far):
            ts[idx] = RefTreasure(x=spot[0], y=spot[1], state=BURIED, value=1)
        field = Field(ts, w, h, cs)
        assert field.check(cx, cy, 5 * cs) == (0, 4 * cs * cs)


def test_many_duplicates_at_one_point():
    ts = [RefTreasure(x=64.0, y=64.0, state=BURIED if i % 3 else CLAIMED, value=1) for i in range(30)]
    field = Field(ts, 256.0, 256.0, 64.0)
    assert field.check(64.0, 64.0, 1.0) == (1, 0.0)
    assert field.check(63.0, 64.0, 1.0) == (1, 1.0)


def test_treasures_on_world_edges_and_corners():
    w, h, cs = 300.0, 200.0, 64.0  # ragged last cells
    spots = [(0.0, 0.0), (w, 0.0), (0.0, h), (w, h), (w, 100.0), (150.0, h), (256.0, 192.0)]
    ts = [RefTreasure(x=x, y=y, state=BURIED, value=1) for x, y in spots]
    field = Field(ts, w, h, cs)
    for x, y in spots + [(w - 1, h - 1), (1.0, 1.0), (w / 2, h / 2), (299.9, 0.1)]:
        for radius in (0.0, 0.5, 10.0, 64.0, 150.0, 1e4):
            field.check(f32(x), f32(y), radius)


def test_huge_radius_and_far_queries():
    rnd = random.Random(4)
    field = _random_field(rnd, 60, 512.0, 512.0, 32.0)
    for radius in (1e6, 1e12, 1e18, 1e30):  # radius / cell beyond int64 must not break the walk
        for x, y in _queries(rnd, field, 20):
            field.check(x, y, radius)
    # queries outside the world (the kernel clamps the starting cell)
    for x, y in [(-100.0, -100.0), (1e4, 250.0), (250.0, -1e4), (600.0, 600.0)]:
        for radius in (50.0, 500.0, 1e5):
            field.check(x, y, radius)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_nearest_property(data):
    cs = data.draw(st.sampled_from([8.0, 30.0, 64.0]))
    w = data.draw(st.sampled_from([64.0, 200.0, 256.0]))
    h = data.draw(st.sampled_from([64.0, 130.0]))
    q = cs / 4
    coord = lambda hi: st.one_of(st.integers(0, int(hi / q)).map(lambda k: min(hi, k * q)),
                                 st.floats(0, hi, allow_nan=False, width=32))
    pts = data.draw(st.lists(st.tuples(coord(w), coord(h), st.sampled_from([BURIED, BURIED, CLAIMED])),
                             max_size=40))
    ts = [RefTreasure(x=f32(x), y=f32(y), state=s, value=1) for x, y, s in pts]
    field = Field(ts, w, h, cs)
    x = data.draw(coord(w))
    y = data.draw(coord(h))
    radius = data.draw(st.one_of(st.sampled_from([0.0, q, cs, 2 * cs, 1e9]),
                                 st.floats(0, 3 * max(w, h), allow_nan=False)))
    field.check(f32(x), f32(y), radius)
