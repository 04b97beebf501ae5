"""sim.jit intrinsics: borrowed (an alias of an array that numba does not reference-count)
and prefetch (a cache hint that changes no result)."""

from __future__ import annotations

import sys

import numpy as np
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from sim.jit import borrowed, kernel, prefetch


@kernel(inline=True)
def _bump_row(rows: np.ndarray, r: int) -> None:
    for c in range(rows.shape[1]):
        rows[r, c] += 1


@kernel
def _bump_all(rows: np.ndarray, times: int) -> int:
    """Every row through an inlined helper and a row view, `times` times, borrowed."""
    alias = borrowed(rows)
    total = 0
    for _ in range(times):
        for r in range(alias.shape[0]):
            _bump_row(alias, r)
            row = alias[r]
            total += row[0]
    return total


@kernel
def _borrowed_view_of_temporary(a: np.ndarray) -> int:
    words = borrowed(a.view(np.int32))  # the temporary view dies; `a` keeps the data alive
    s = 0
    for i in range(words.size):
        s += words[i]
    return s


@intrinsic
def _has_null_meminfo(typingctx, arr):
    """True if the array's meminfo is null (a probe for the tests)."""

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, value=args[0])
        return builder.icmp_unsigned("==", ary.meminfo, cgutils.get_null_value(ary.meminfo.type))
    return types.boolean(arr), codegen


@njit
def _meminfo_is_null(a):
    return _has_null_meminfo(borrowed(a))


def test_writes_through_the_alias_land_in_the_array():
    rows = np.zeros((5, 3), np.int64)
    total = _bump_all(rows, 4)
    assert (rows == 4).all()
    assert total == 5 * (1 + 2 + 3 + 4)


def test_the_alias_has_no_meminfo_and_the_array_keeps_its_references():
    rows = np.zeros((64, 8), np.int64)
    before = sys.getrefcount(rows)
    for _ in range(1000):
        _bump_all(rows, 3)
    assert sys.getrefcount(rows) == before  # nothing leaked, nothing released twice
    assert _meminfo_is_null(rows)
    assert rows[0, 0] == 3000


def test_a_borrowed_temporary_view_reads_the_callers_data():
    a = np.arange(16, dtype=np.int64)
    assert _borrowed_view_of_temporary(a) == int(a.view(np.int32).sum())
    before = sys.getrefcount(a)
    for _ in range(1000):
        _borrowed_view_of_temporary(a)
    assert sys.getrefcount(a) == before


@kernel
def _sum_with_prefetch(a: np.ndarray, ahead: int) -> int:
    total = 0
    for i in range(a.size):
        if i + ahead < a.size:
            prefetch(a, i + ahead)
        total += a[i]
    return total


def test_prefetch_is_only_a_hint():
    a = np.arange(100_000, dtype=np.int64) % 977
    for ahead in (0, 1, 16, 4096):
        assert _sum_with_prefetch(a, ahead) == int(a.sum())
    b = np.arange(10, dtype=np.uint16).reshape(2, 5)
    assert _sum_with_prefetch(b.ravel(), 3) == 45
