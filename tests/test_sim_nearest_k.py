"""sim/nearest.py nearest_k: the k nearest grid members against a brute-force sort."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from sim.grid import build_grid
from sim.nearest import nearest_k


def brute(x, y, radius, xs, ys, member, want, exclude, k):
    found = []
    for j in range(len(xs)):
        if j == exclude or member[j] != want:
            continue
        dx = float(xs[j]) - x
        dy = float(ys[j]) - y
        d2 = dx * dx + dy * dy
        if d2 <= radius * radius:
            found.append((d2, j))
    found.sort()
    return found[:k]


def layout(rng: random.Random, n: int, w: float, h: float, stacked: bool):
    if stacked:  # adversarial: many members on one point and on cell borders
        pts = [(64.0, 64.0)] * (n // 2) + [(rng.choice((0.0, 64.0, 128.0, w)),
                                            rng.choice((0.0, 64.0, h))) for _ in range(n - n // 2)]
    else:
        pts = [(rng.uniform(0, w), rng.uniform(0, h)) for _ in range(n)]
    xs = np.array([p[0] for p in pts], np.float32)
    ys = np.array([p[1] for p in pts], np.float32)
    member = np.array([rng.random() < 0.8 for _ in range(n)], np.int32)
    return xs, ys, member


@pytest.mark.parametrize("stacked", [False, True])
@pytest.mark.parametrize("cell", [16.0, 64.0, 1000.0])
def test_nearest_k_matches_brute_force(stacked, cell):
    rng = random.Random(int(cell) * 2 + stacked)
    w, h = 500.0, 300.0
    cols, rows = math.ceil(w / cell), math.ceil(h / cell)
    for trial in range(30):
        n = rng.randrange(0, 300)
        xs, ys, member = layout(rng, n, w, h, stacked)
        starts = np.zeros(cols * rows + 1, np.int32)
        items = np.zeros(max(n, 1), np.int32)
        build_grid(xs, ys, member, 1, cell, cols, rows, starts, items)
        near = np.zeros(64, np.int32)
        near_d2 = np.zeros(64, np.float64)
        for _ in range(20):
            x, y = rng.uniform(-10, w + 10), rng.uniform(-10, h + 10)
            radius = rng.choice((0.0, 5.0, 50.0, 200.0, 1e6))
            k = rng.choice((1, 3, 48, 64))
            exclude = rng.randrange(-1, max(n, 1))
            m = nearest_k(x, y, radius, xs, ys, member, 1, exclude, starts, items, cell, cols,
                          rows, near, near_d2, k)
            want = brute(x, y, radius, xs, ys, member, 1, exclude, k)
            assert [(float(near_d2[i]), int(near[i])) for i in range(m)] == want
