"""store/claim_json.py: a claim batch's JSON text, checked against Python's json."""

from __future__ import annotations

import json

import numpy as np
import pytest

from store.claim_json import NAME_JSON_MAX, ROW_MAX, claims_json, name_json

EDGES = [0, 1, 9, 10, 99, 100, -1, -9, -10, 2**31, -2**31, 2**63 - 1, -2**63]


def _encode(rows: list[list[int]], names: list[str | None], first_seq: int) -> str:
    n = len(rows)
    cols = np.array(rows, np.int64).reshape(n, 8).T if n else np.zeros((8, 0), np.int64)
    name_rows = np.zeros((n, NAME_JSON_MAX), np.uint8)
    name_lens = np.zeros(n, np.int32)
    for k, name in enumerate(names):
        b = name_json(name)
        name_rows[k, :len(b)] = np.frombuffer(b, np.uint8)
        name_lens[k] = len(b)
    out = np.zeros(n * ROW_MAX + 2, np.uint8)
    m = claims_json(first_seq, cols[0], cols[1], cols[2], name_rows, name_lens, cols[3],
                    cols[4].astype(np.int32), cols[5], cols[6].astype(np.int32), out)
    return out[:m].tobytes().decode("ascii")


@pytest.mark.parametrize("seed", range(5))
def test_random_and_edge_values_read_back_as_python_json_sees_them(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 40))
    rows, names = [], []
    for k in range(n):
        tick, cid = (int(v) for v in rng.choice(EDGES + [int(rng.integers(-2**63, 2**63))], 2))
        slot, treasure, value = (int(v) for v in rng.integers(0, 65536, 3))
        gen, score = (int(v) for v in rng.integers(-2**31, 2**31, 2))
        rows.append([tick, cid, slot, treasure, gen, value, score, 0])
        names.append(rng.choice(["", "bot-1", 'a"b\\c', "\x01\x1f" * 16, "\u00e9\U0001f600",
                                 None]))
    text = _encode(rows, names, 2**40)
    got = json.loads(text)
    assert got == [[2**40 + k, r[0], r[1], r[2], names[k], r[3], r[4], r[5], r[6]]
                   for k, r in enumerate(rows)]


def test_the_longest_name_fits_and_a_longer_one_is_refused():
    assert len(name_json("\x01" * 32)) == NAME_JSON_MAX  # 32 bytes, every one escaped
    with pytest.raises(ValueError, match="longer than any valid name"):
        name_json("\x01" * 33)


def test_names_json_cannot_carry_through_sqlite_are_left_to_the_plain_path():
    assert name_json("a\x00b") is None  # json_extract would end the string at NUL
    assert name_json("\ud800") is None  # not UTF-8: SQLite would store bad bytes
    assert name_json(None) == b"null" and name_json("") == b'""'
