"""A tick's claims as one JSON text, for SQLite's json_each: written by a kernel.

The SQLite writer used to bind every field of every claim as a Python object (sqlite3
takes parameters no other way): about seven integer objects a claim, on a thread that
shares the GIL with the tick. A ClaimBatch's arrays go instead through `claims_json` into
one text, `[[seq,tick,client_id,slot,name,treasure,gen,value,score],...]`, and one INSERT
... SELECT over json_each(text) stores them all: a batch costs a handful of objects
whatever its size. Client ids are written as signed 64-bit integers (their bits, as the
ledger stores every u64); names are JSON strings escaped once, when a player joins
(`name_json`), and copied into the batch as bytes.
"""

from __future__ import annotations

import json

import numpy as np

from net.wire import MAX_NAME_BYTES
from sim.jit import kernel

#: Room for one escaped name: every UTF-8 byte of a MAX_NAME_BYTES name as a 6-byte
#: \\uXXXX escape (the worst case, with ensure_ascii), plus the quotes.
NAME_JSON_MAX = 6 * MAX_NAME_BYTES + 2
#: Room for one claim's row: eight integers of at most 20 characters, the name, the
#: brackets and commas.
ROW_MAX = 8 * 20 + NAME_JSON_MAX + 12


def name_json(name: str | None) -> bytes | None:
    """The JSON form of a player's name, ASCII only (null for None); None for a name this
    path cannot carry: one with NUL (SQLite's json_extract ends the string there) or not
    encodable as UTF-8 (a lone surrogate). Claims of such a player are written the plain
    way (store.sqlite_ledger), where they behave as they always did."""
    if name is not None and ("\x00" in name or not _utf8_ok(name)):
        return None
    encoded = b"null" if name is None else json.dumps(name, ensure_ascii=True).encode("ascii")
    if len(encoded) > NAME_JSON_MAX:
        raise ValueError(f"a name of {len(encoded)} JSON bytes is longer than any valid "
                         f"name ({NAME_JSON_MAX})")
    return encoded


def _utf8_ok(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@kernel
def put_decimal(out: np.ndarray, pos: int, v: int) -> int:
    """v (int64) in decimal at out[pos:]; return the position after it."""
    if v < 0:
        out[pos] = 45  # "-"
        pos += 1
        # the magnitude as unsigned: -(-2**63) does not fit an int64
        m = np.uint64(-(v + 1)) + np.uint64(1)
    else:
        m = np.uint64(v)
    ten = np.uint64(10)
    digits = 1
    probe = m
    while probe >= ten:
        probe //= ten
        digits += 1
    for k in range(digits - 1, -1, -1):
        out[pos + k] = 48 + np.int64(m % ten)
        m //= ten
    return pos + digits


@kernel(inline=True)
def put_next(out: np.ndarray, pos: int, v: int) -> int:
    """A comma, then v in decimal (the next field of a row)."""
    out[pos] = 44  # ","
    return put_decimal(out, pos + 1, v)


@kernel
def claims_json(first_seq: int, ticks: np.ndarray, client_ids: np.ndarray, slots: np.ndarray,
                names: np.ndarray, name_len: np.ndarray, treasures: np.ndarray,
                gens: np.ndarray, values: np.ndarray, scores: np.ndarray,
                out: np.ndarray) -> int:
    """Write the n claims as `[[seq,tick,client_id,slot,name,treasure,gen,value,score],...]`
    into out (uint8[>= n * ROW_MAX + 2]); return its length in bytes.

    seqs are first_seq.. in order; client_ids: int64[n] (the u64 ids' bits); names:
    uint8[n, NAME_JSON_MAX] with name_len: int32[n] (name_json bytes); the other arrays
    are [n] integers.
    """
    pos = 0
    out[pos] = 91  # "["
    pos += 1
    for k in range(ticks.shape[0]):
        if k:
            out[pos] = 44  # ","
            pos += 1
        out[pos] = 91
        pos = put_decimal(out, pos + 1, first_seq + k)
        pos = put_next(out, pos, np.int64(ticks[k]))
        pos = put_next(out, pos, np.int64(client_ids[k]))
        pos = put_next(out, pos, np.int64(slots[k]))
        out[pos] = 44
        pos += 1
        for b in range(name_len[k]):
            out[pos + b] = names[k, b]
        pos += name_len[k]
        pos = put_next(out, pos, np.int64(treasures[k]))
        pos = put_next(out, pos, np.int64(gens[k]))
        pos = put_next(out, pos, np.int64(values[k]))
        pos = put_next(out, pos, np.int64(scores[k]))
        out[pos] = 93  # "]"
        pos += 1
    out[pos] = 93
    return pos + 1
