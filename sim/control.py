"""Operator control of a world between two ticks: end or start a hunt, change its length,
spawn or clear treasure.

Each function is deterministic given (world, arguments): randomness comes from the
world's own RNG, in index order, so a log of (tick, command, arguments) re-applied at the
same tick boundaries gives the same world bit for bit. Nothing here reads a clock.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from sim.hunt import end_hunt
from sim.jit import kernel
from sim.rules import GameRules, seconds_to_ticks
from sim.schema import (BURIED, CLAIMED, EVENT_COUNT, HUNT_ID, HUNT_START, REMOVED, T_STATE,
                        T_VALUE, WAITING)
from sim.treasures import bury
from sim.world import World, new_world

#: Longest hunt an operator may set (about three years): keeps the tick count in int64
#: at any tick rate.
MAX_HUNT_SECONDS = 1e8
#: Most treasures one spawn asks for (the world's capacity bounds what it gets).
MAX_SPAWN = 65535


def end_hunt_now(world: World) -> int:
    """End the running hunt at this tick boundary and open the next; return the id of the
    hunt that ended.

    Exactly what step_world does when a hunt runs out at the start of tick world.tick:
    final ranks, the final board, HUNT_END and RANK events, scores and digs reset, every
    treasure reburied. The events replace those of the last tick (already handled by
    then) in world.events, for the caller to hand to its usual event handling.
    """
    kr = world.kr
    ended = int(world.clock[HUNT_ID])
    world.clock[EVENT_COUNT] = 0
    end_hunt(world.pi, world.tf, world.ti, world.tick, world.clock, world.rng,
             world.value_cdf, world.final_board, world.events, kr.world_width,
             kr.world_height)
    return ended


def start_next_hunt(world: World) -> int:
    """Start a new hunt now; return its id. A hunt always runs (its end opens the next),
    so this ends the running one as end_hunt_now does."""
    end_hunt_now(world)
    return int(world.clock[HUNT_ID])


def set_hunt_duration(world: World, seconds: float) -> int:
    """Make hunts last `seconds` (0 < seconds <= MAX_HUNT_SECONDS), the running one
    included; return the duration in ticks. A hunt already older than that ends at the
    start of the next tick (step_world's check)."""
    if (isinstance(seconds, bool) or not isinstance(seconds, (int, float))
            or not math.isfinite(seconds) or not 0 < seconds <= MAX_HUNT_SECONDS):
        raise ValueError(f"seconds must be a number in (0, {MAX_HUNT_SECONDS:g}], "
                         f"got {seconds!r}")
    ticks = seconds_to_ticks(float(seconds), world.kr.tick_rate)
    world.rules = dataclasses.replace(world.rules, hunt_duration=float(seconds))
    world.kr = world.kr._replace(hunt_ticks=ticks)  # same field types: bound kernels hold
    return ticks


@kernel
def rebury(tf: np.ndarray, ti: np.ndarray, rng: np.ndarray, value_cdf: np.ndarray,
           world_width: float, world_height: float, count: int) -> int:
    """Bury up to `count` treasures that are not buried: REMOVED ones first, then those
    claimed or waiting to respawn, each group in index order. Return how many.
    tf: float32[2, T]; ti: int32[5, T]; rng: uint64[1]; value_cdf: int64[k]."""
    n = 0
    for want_removed in (True, False):
        for t in range(ti.shape[1]):
            if n >= count:
                return n
            state = ti[T_STATE, t]
            if state == BURIED or (state == REMOVED) != want_removed:
                continue
            bury(tf, ti, t, rng, value_cdf, world_width, world_height)
            n += 1
    return n


def spawn_treasures(world: World, count: int) -> int:
    """Bury up to `count` (1..MAX_SPAWN) treasures in slots not buried now (rebury's
    order); return how many were buried (fewer when the world's capacity is reached)."""
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_SPAWN:
        raise ValueError(f"count must be an integer in 1..{MAX_SPAWN}, got {count!r}")
    kr = world.kr
    return int(rebury(world.tf, world.ti, world.rng, world.value_cdf, kr.world_width,
                      kr.world_height, count))


def clear_treasures(world: World) -> int:
    """Take every buried treasure out of play (state REMOVED); return how many. Treasures
    claimed or waiting to respawn are removed too, so none comes back by itself: only
    spawn_treasures or the next hunt start bury them again."""
    state = world.ti[T_STATE]
    buried = int(np.count_nonzero(state == BURIED))
    state[:] = REMOVED
    return buried


def treasure_census(world: World) -> dict:
    """{"capacity", "buried", "claimed" (claimed or waiting to respawn), "removed",
    "by_value": {value: buried treasures of that value}}."""
    state, value = world.ti[T_STATE], world.ti[T_VALUE]
    buried = state == BURIED
    values, counts = np.unique(value[buried], return_counts=True)
    return {"capacity": int(state.shape[0]), "buried": int(np.count_nonzero(buried)),
            "claimed": int(np.count_nonzero((state == CLAIMED) | (state == WAITING))),
            "removed": int(np.count_nonzero(state == REMOVED)),
            "by_value": {int(v): int(c) for v, c in zip(values, counts)}}


def hunt_clock(world: World) -> tuple[int, int, int]:
    """(hunt id, ticks it has run, ticks it lasts) at this tick boundary."""
    return (int(world.clock[HUNT_ID]), world.tick - int(world.clock[HUNT_START]),
            int(world.kr.hunt_ticks))


#: The commands that change a world, by the names the admin API logs them under
#: (tick.admin, server.admin_log): name -> function(world, **args). A replay of an input
#: log re-applies them with these.
WORLD_COMMANDS: dict[str, Callable[..., Any]] = {
    "hunt_end": end_hunt_now,
    "hunt_start": start_next_hunt,
    "hunt_duration": set_hunt_duration,
    "treasures_spawn": spawn_treasures,
    "treasures_clear": clear_treasures,
}


def warm_up_control(rules: GameRules, tick_rate: float) -> None:
    """Compile (or load) this module's kernels on a tiny world with `rules`' dtypes, so
    an operator's first command does not stall a tick."""
    tiny = dataclasses.replace(rules, max_players=4, treasure_count=4, world_width=256.0,
                               world_height=256.0, cell_size=64.0)
    world = new_world(tiny, tick_rate)
    clear_treasures(world)
    spawn_treasures(world, 1)
    end_hunt_now(world)
