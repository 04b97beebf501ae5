"""net/msgpack_out.py: each writer emits exactly what msgpack-python packs (smallest form)."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from net.msgpack_out import put_array, put_int, put_key, put_map, put_uint

UINT_BOUNDARIES = [0, 1, 126, 127, 128, 254, 255, 256, 65534, 65535, 65536,
                   2**31 - 1, 2**31, 2**32 - 2, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1]


def written(writer, *args) -> bytes:
    buf = np.full(32, 0xEE, np.uint8)  # a canary pattern: nothing past the end is touched
    end = writer(buf, 3, *args)
    assert (buf[:3] == 0xEE).all()
    assert (buf[end:] == 0xEE).all()
    return bytes(buf[3:end])


@pytest.mark.parametrize("value", [v for v in UINT_BOUNDARIES if v < 2**63])
def test_put_uint_matches_msgpack(value):
    assert written(put_uint, value) == msgpack.packb(value)


# Regression: put_uint once reassigned `v = 0` for v < 0, which made numba unify a uint64
# `v` into float64, so it could not be called with a uint64 at all.
@pytest.mark.parametrize("value", [0, 255, 65536, 2**32, 2**63, 2**64 - 1])
def test_put_uint_matches_msgpack_for_uint64(value):
    assert written(put_uint, np.uint64(value)) == msgpack.packb(value)


@pytest.mark.parametrize("value", [0, 127, 128, 255, 256, 65535, 65536, 2**31 - 1])
@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_put_uint_matches_msgpack_for_the_kernel_dtypes(value, dtype):
    # the snapshot kernel passes int32 and int64 array elements
    assert written(put_uint, dtype(value)) == msgpack.packb(value)


def test_put_uint_widths_around_every_boundary():
    for edge in (0x80, 0x100, 0x10000, 0x100000000):
        for v in (edge - 1, edge, edge + 1):
            assert written(put_uint, v) == msgpack.packb(v), v


INT_BOUNDARIES = [-2**63, -2**63 + 1, -2**31 - 1, -2**31, -2**31 + 1, -32769, -32768, -32767,
                  -129, -128, -127, -33, -32, -31, -1, 0, 1, 127, 128, 255, 256, 65535, 65536,
                  2**32 - 1, 2**32, 2**63 - 1]


@pytest.mark.parametrize("value", INT_BOUNDARIES)
def test_put_int_matches_msgpack(value):
    # negative fixint, int 8/16/32/64 below zero; the unsigned forms from zero up
    assert written(put_int, value) == msgpack.packb(value)


@pytest.mark.parametrize("value", [-65535, -32768, -32767, -129, -128, -33, -32, -1, 0, 127,
                                   128, 32767, 65535, 2**31 - 1])
@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_put_int_matches_msgpack_for_the_kernel_dtypes(value, dtype):
    # residuals and velocities come from int32 scratch rows, ids and positions too
    assert written(put_int, dtype(value)) == msgpack.packb(value)


def test_put_int_widths_around_every_boundary():
    for edge in (-32, -128, -32768, -2**31):
        for v in (edge - 1, edge, edge + 1):
            assert written(put_int, v) == msgpack.packb(v), v
    sizes = {v: len(written(put_int, v)) for v in (-1, -32, -33, -128, -129, -32768, -32769,
                                                   -2**31, -2**31 - 1)}
    assert sizes == {-1: 1, -32: 1, -33: 2, -128: 2, -129: 3, -32768: 3, -32769: 5,
                     -2**31: 5, -2**31 - 1: 9}


@pytest.mark.parametrize("n", [0, 1, 14, 15, 16, 17, 255, 256, 65534, 65535])
def test_put_array_header_matches_msgpack(n):
    packed = msgpack.packb([0] * n)
    header = packed[:len(packed) - n]  # every element 0 is one byte
    assert written(put_array, n) == header


@pytest.mark.parametrize("n", [0, 1, 9, 15])
def test_put_map_header_matches_msgpack(n):
    packed = msgpack.packb({chr(65 + i): 0 for i in range(n)})
    assert written(put_map, n) == packed[:1]


@pytest.mark.parametrize("key", ["t", "a", "b", "h", "p", "me", "tr", "pm", "pv", "pr", "pn",
                                 "tx", "tn", "ev", "lb", "hr", "zz"])
def test_put_key_matches_msgpack(key):
    c0 = ord(key[0])
    c1 = ord(key[1]) if len(key) > 1 else 0
    assert written(put_key, c0, c1) == msgpack.packb(key)


def test_writers_compose_into_a_document_msgpack_reads():
    buf = np.zeros(64, np.uint8)
    pos = put_map(buf, 0, 3)
    pos = put_key(buf, pos, ord("t"), 0)
    pos = put_uint(buf, pos, 70000)
    pos = put_key(buf, pos, ord("p"), 0)
    pos = put_array(buf, pos, 3)
    for v in (1, 200, 40000):
        pos = put_uint(buf, pos, v)
    pos = put_key(buf, pos, ord("p"), ord("v"))
    pos = put_array(buf, pos, 5)
    for v in (0, -40000, 300, -5, -200):
        pos = put_int(buf, pos, v)
    doc = {"t": 70000, "p": [1, 200, 40000], "pv": [0, -40000, 300, -5, -200]}
    assert bytes(buf[:pos]) == msgpack.packb(doc)
    assert msgpack.unpackb(bytes(buf[:pos])) == doc
