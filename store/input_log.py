"""The input log of a hunt: per tick, what the simulation consumed, for a bit-exact replay.

A world's next state depends only on its current state, the rules, and what happened to
it between two steps: players joining and leaving (a join draws the spawn point from the
world's RNG), operator commands, and the players' input rows (sim.inputs). The log keeps
exactly those, in the order they happened, so `xmarks replay` rebuilds the same world bit
for bit from a fresh one (tick.replay).

File: the 5 bytes b"XMIL" + version (1), then a stream of msgpack arrays:

- ["start", header]: header = {"rules": GameRules fields, "tick_rate": Hz, "tick": the
  world's tick, "hash": its state hash, "unix_ms": when the log started};
- ["tick", tick, ops, n, slots, values] for each tick with something to replay, written
  just before that tick's step: ops = [["join", slot, generation] | ["leave", slot] |
  ["score", slot, score] | ["command", name, args]] in the order they happened; then the n players whose input
  rows changed: slots (n int32, little-endian) and values (n x len(INPUT_ROWS) int32);
- ["end", tick, ops, n, slots, values, hash]: what happened after the last step (as a
  tick record, but no step follows), then the world's tick and state hash when the
  server stopped.

Ticks with nothing to replay are not written. Records are buffered and written by the
tick thread in large blocks: a crash loses at most the last block, and a reader stops at
the last whole record (`complete` tells whether the end record was there).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import msgpack
import numpy as np

from sim.inputs import INPUT_ROWS, changed_inputs, new_input_shadow
from sim.jit import bind
from sim.rules import GameRules
from sim.world import World

MAGIC = b"XMIL"
VERSION = 1
BUFFER_BYTES = 1 << 20


class InputLogError(ValueError):
    """The file is not a readable input log (the message says why, in one line)."""


class InputLog:
    """Writes one world's input log. Call the notes as things happen, before_step() right
    before each step, and close() when the server stops."""

    def __init__(self, path: str, world: World, tick_rate: float, unix_ms: int) -> None:
        self.path = path
        self._file: BinaryIO = open(path, "wb", buffering=BUFFER_BYTES)
        self._file.write(MAGIC + bytes([VERSION]))
        rules = dataclasses.asdict(world.rules)
        rules["value_weights"] = list(rules["value_weights"])
        header = {"rules": rules, "tick_rate": float(tick_rate), "tick": world.tick,
                  "hash": world.state_hash(), "unix_ms": int(unix_ms)}
        self._file.write(msgpack.packb(["start", header]))
        players = world.rules.max_players
        self._shadow = new_input_shadow(players)
        self._slots = np.zeros(players, np.int32)
        self._values = np.zeros((players, len(INPUT_ROWS)), np.int32)
        self._ops: list[list] = []
        self._changed = bind(changed_inputs, world.pi, INPUT_ROWS, self._shadow, self._slots,
                             self._values)
        self.records = 0

    def join(self, slot: int, generation: int) -> None:
        self._ops.append(["join", slot, generation])

    def leave(self, slot: int) -> None:
        self._ops.append(["leave", slot])

    def score(self, slot: int, score: int) -> None:
        """The server set a player's score (given back on rejoin after a restart)."""
        self._ops.append(["score", slot, score])

    def command(self, name: str, args: dict[str, Any]) -> None:
        """An operator command that changed the world (sim.control), with its arguments."""
        self._ops.append(["command", name, args])

    def before_step(self, world: World) -> None:
        """Record what the coming step of world.tick will consume (no-op when nothing
        changed since the last step)."""
        n = self._changed(world.pi, INPUT_ROWS, self._shadow, self._slots, self._values)
        if n == 0 and not self._ops:
            return
        self._write("tick", world.tick, n)

    def close(self, world: World) -> str:
        """Write the end record: what happened since the last step (e.g. everyone leaving
        at shutdown), then the tick and state hash now; return the hash."""
        digest = world.state_hash()
        n = self._changed(world.pi, INPUT_ROWS, self._shadow, self._slots, self._values)
        self._write("end", world.tick, n, digest)
        self._file.close()
        return digest

    def _write(self, kind: str, tick: int, n: int, *extra: str) -> None:
        record = [kind, tick, self._ops, n, self._slots[:n].tobytes(),
                  self._values[:n].tobytes(), *extra]
        self._ops = []
        self._file.write(msgpack.packb(record))
        self.records += 1


@dataclass
class TickRecord:
    tick: int
    ops: list
    slots: np.ndarray  # int32[n]
    values: np.ndarray  # int32[n, len(INPUT_ROWS)]


@dataclass
class LogEnd(TickRecord):
    """The end record: what happened after the last step (applied without a step), and
    the live world's tick and state hash."""

    hash: str = ""


def read_input_log(path: str) -> tuple[dict, Iterator[TickRecord | LogEnd]]:
    """The header and an iterator over the records. A truncated tail ends the iteration
    quietly (the reader then sees no LogEnd); anything else malformed raises
    InputLogError."""
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise InputLogError(f"cannot read {path}: {exc.strerror}") from None
    head = f.read(len(MAGIC) + 1)
    if head[:len(MAGIC)] != MAGIC:
        f.close()
        raise InputLogError(f"{path} is not an xmarks input log")
    if head[len(MAGIC):] != bytes([VERSION]):
        f.close()
        raise InputLogError(f"{path}: input log version {head[len(MAGIC):].hex()} is not "
                            f"{VERSION}")
    unpacker = msgpack.Unpacker(f, raw=False, strict_map_key=False,
                                max_buffer_size=64 << 20)
    try:
        first = next(unpacker)
    except (StopIteration, ValueError, msgpack.UnpackException):
        f.close()
        raise InputLogError(f"{path}: no start record") from None
    if not (isinstance(first, list) and len(first) == 2 and first[0] == "start"
            and isinstance(first[1], dict)):
        f.close()
        raise InputLogError(f"{path}: the first record is not a start record")
    return first[1], _records(f, unpacker, path)


def _records(f: BinaryIO, unpacker: msgpack.Unpacker, path: str) -> Iterator[TickRecord | LogEnd]:
    width = len(INPUT_ROWS)
    with f:
        while True:
            try:
                rec = next(unpacker)
            except StopIteration:
                return
            except (ValueError, msgpack.UnpackException) as exc:
                raise InputLogError(f"{path}: corrupt record ({exc})") from None
            try:
                if rec[0] in ("tick", "end"):
                    tick, ops, n, slots, values = rec[1:6]
                    slots = np.frombuffer(slots, np.int32, n)
                    values = np.frombuffer(values, np.int32, n * width).reshape(n, width)
                    if rec[0] == "tick":
                        yield TickRecord(int(tick), ops, slots, values)
                    else:
                        yield LogEnd(int(tick), ops, slots, values, str(rec[6]))
                        return
                else:
                    raise InputLogError(f"{path}: unknown record {rec[0]!r}")
            except (TypeError, ValueError, IndexError, KeyError) as exc:
                if isinstance(exc, InputLogError):
                    raise
                raise InputLogError(f"{path}: malformed record ({exc})") from None


def rules_of(header: dict) -> GameRules:
    """The GameRules a log was recorded with."""
    try:
        fields = dict(header["rules"])
        fields["value_weights"] = tuple(fields["value_weights"])
        rules = GameRules(**fields)
        rules.validate()
    except (KeyError, TypeError, ValueError) as exc:
        raise InputLogError(f"the log's rules are unusable: {exc}") from None
    return rules
