"""Re-run a recorded hunt from its input log and compare the final state hash.

The replay builds the world the log started from (its rules, a fresh world at tick 0),
then for every tick applies what the live server did before that step, in the same
order: joins, leaves and operator commands, then the players' input rows; and steps. At
the log's end record the world must be at the same tick with the same state hash, bit for
bit, because every kernel is deterministic and the RNG state is part of the world.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from sim import schema as S
from sim.control import WORLD_COMMANDS
from sim.inputs import INPUT_ROWS, new_input_shadow, restore_inputs
from sim.jit import bind
from sim.world import World, new_world
from store.input_log import InputLogError, LogEnd, read_input_log, rules_of

#: Operator commands a log may hold: name -> function(world, **args), the same table the
#: live server's admin API applies them with.
COMMANDS: dict[str, Callable[..., Any]] = WORLD_COMMANDS


@dataclass
class ReplayResult:
    ticks: int  # steps run
    final_tick: int
    hash: str  # the replayed world's state hash at the end
    recorded_hash: str | None  # the live server's, from the end record (None: log cut short)
    joins: int
    leaves: int
    commands: int

    @property
    def matches(self) -> bool | None:
        return None if self.recorded_hash is None else self.hash == self.recorded_hash


def replay(path: str, progress: Callable[[int], None] | None = None) -> ReplayResult:
    """Replay the log at `path`; raise InputLogError for an unusable log."""
    header, records = read_input_log(path)
    rules = rules_of(header)
    try:
        tick_rate = float(header["tick_rate"])
        start_tick = int(header["tick"])
    except (KeyError, TypeError, ValueError):
        raise InputLogError(f"{path}: the start record lacks tick_rate or tick") from None
    world = new_world(rules, tick_rate)
    if start_tick != 0 or header.get("hash") != world.state_hash():
        raise InputLogError(f"{path}: the log starts at tick {start_tick} from a world this "
                            "build does not create from its rules (a resumed world?)")
    shadow = new_input_shadow(rules.max_players)
    none_slots = np.zeros(0, np.int32)
    none_values = np.zeros((0, len(INPUT_ROWS)), np.int32)
    restore = bind(restore_inputs, world.pi, INPUT_ROWS, shadow, none_slots, none_values, 0)
    counts = {"join": 0, "leave": 0, "score": 0, "command": 0}
    recorded = None
    for rec in records:
        if rec.tick < world.tick:
            raise InputLogError(f"{path}: tick {rec.tick} comes after tick {world.tick}")
        _run_to(world, rec.tick, restore, shadow, none_slots, none_values)
        for op in rec.ops:
            counts[_apply(world, op, rec.tick, path)] += 1
        slots = np.ascontiguousarray(rec.slots)
        values = np.ascontiguousarray(rec.values)
        restore(world.pi, INPUT_ROWS, shadow, slots, values, len(slots))
        if isinstance(rec, LogEnd):  # no step follows the end record
            recorded = rec.hash
            break
        world.step()
        if progress is not None and world.tick % 1000 == 0:
            progress(world.tick)
    return ReplayResult(world.tick - start_tick, world.tick, world.state_hash(), recorded,
                        counts["join"], counts["leave"], counts["command"])


def _apply(world: World, op: list, tick: int, path: str) -> str:
    """Carry out one logged operation; return its kind."""
    kind = op[0] if isinstance(op, list) and op else None
    try:
        if kind == "join":
            gen = world.join(int(op[1]))
            if gen != int(op[2]):
                raise InputLogError(f"{path}: tick {tick}: slot {op[1]} joined as generation "
                                    f"{gen}, the log says {op[2]}")
        elif kind == "leave":
            world.leave(int(op[1]))
        elif kind == "score":
            world.pi[S.P_SCORE, int(op[1])] = int(op[2])
        elif kind == "command":
            fn = COMMANDS.get(op[1])
            if fn is None:
                raise InputLogError(f"{path}: tick {tick}: unknown command {op[1]!r}")
            fn(world, **op[2])
        else:
            raise InputLogError(f"{path}: tick {tick}: unknown operation {kind!r}")
    except (IndexError, TypeError, ValueError) as exc:
        if isinstance(exc, InputLogError):
            raise
        raise InputLogError(f"{path}: tick {tick}: bad operation {op!r}: {exc}") from None
    return kind


def _run_to(world: World, tick: int, restore, shadow, none_slots, none_values) -> None:
    """Step with unchanged inputs up to (not including) `tick`."""
    while world.tick < tick:
        restore(world.pi, INPUT_ROWS, shadow, none_slots, none_values, 0)
        world.step()
