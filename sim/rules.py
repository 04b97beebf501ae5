"""Game rules: the tunables of a treasure hunt, and their per-tick form for kernels."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

from sim.errors import RulesError

#: Treasure values 1..5 and their default relative weights (common to rare).
DEFAULT_VALUE_WEIGHTS = (40, 25, 18, 11, 6)


@dataclass(frozen=True)
class GameRules:
    """What a hunt is. Distances in world units, durations in seconds."""

    world_width: float = 4096.0
    world_height: float = 4096.0
    max_players: int = 10_000
    treasure_count: int = 256
    player_speed: float = 200.0  # units per second, clamped server-side
    dig_radius: float = 24.0
    dig_time: float = 1.5
    reveal_radius: float = 96.0  # a buried treasure is visible only this close
    view_radius: float = 512.0  # other players are visible this close
    heat_radius: float = 768.0  # beyond this the heat hint is 0
    respawn_delay: float = 5.0  # claimed -> buried again at a new place
    claim_show_time: float = 2.0  # an opened chest stays visible this long
    hunt_duration: float = 300.0
    cell_size: float = 128.0  # spatial grid cell edge
    leaderboard_size: int = 8
    value_weights: tuple[int, ...] = field(default=DEFAULT_VALUE_WEIGHTS)
    seed: int = 1

    def validate(self) -> None:
        """Raise RulesError naming the first bad field."""
        positive = ("world_width", "world_height", "player_speed", "dig_radius", "dig_time",
                    "reveal_radius", "view_radius", "heat_radius", "hunt_duration", "cell_size")
        for name in positive:
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise RulesError(f"{name} must be a positive number, got {value!r}")
        for name in ("respawn_delay", "claim_show_time"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise RulesError(f"{name} must be a number >= 0, got {value!r}")
        if self.world_width > 65536 or self.world_height > 65536:
            raise RulesError("world_width and world_height must be at most 65536")
        if not (isinstance(self.max_players, int) and 1 <= self.max_players <= 65535):
            raise RulesError(f"max_players must be an integer in 1..65535, got {self.max_players!r}")
        if not (isinstance(self.treasure_count, int) and 1 <= self.treasure_count <= 65535):
            raise RulesError(f"treasure_count must be an integer in 1..65535, got {self.treasure_count!r}")
        if not (isinstance(self.leaderboard_size, int) and 1 <= self.leaderboard_size <= 16):
            raise RulesError(f"leaderboard_size must be an integer in 1..16, got {self.leaderboard_size!r}")
        weights = self.value_weights
        if (not isinstance(weights, (tuple, list)) or not 1 <= len(weights) <= 100
                or not all(isinstance(w, int) and 0 <= w <= 1_000_000 for w in weights)
                or sum(weights) <= 0):
            raise RulesError("value_weights must be 1..100 integers in 0..1000000 with a positive sum")
        if not isinstance(self.seed, int) or not 0 <= self.seed < 2**64:
            raise RulesError(f"seed must be an integer in 0..2**64-1, got {self.seed!r}")
        cells = math.ceil(self.world_width / self.cell_size) * math.ceil(self.world_height / self.cell_size)
        if cells > 1_048_576:
            raise RulesError("cell_size is too small for the world: more than 1,048,576 grid cells")


class KernelRules(NamedTuple):
    """GameRules in the units kernels use: ticks, and units per tick. All scalars."""

    world_width: float
    world_height: float
    speed_per_tick: float
    speed_per_second: float
    tick_rate: float
    dig_radius: float
    dig_ticks: int
    reveal_radius: float
    view_radius: float
    heat_radius: float
    respawn_ticks: int
    claim_show_ticks: int
    hunt_ticks: int
    cell_size: float
    grid_cols: int
    grid_rows: int


def seconds_to_ticks(seconds: float, tick_rate: float) -> int:
    """Whole ticks for a duration, at least 1: a rule never collapses to 'instant'."""
    return max(1, int(round(seconds * tick_rate)))


def kernel_rules(rules: GameRules, tick_rate: float) -> KernelRules:
    """Convert seconds to ticks and speeds to units per tick for `tick_rate` Hz."""
    return KernelRules(
        world_width=float(rules.world_width),
        world_height=float(rules.world_height),
        speed_per_tick=float(rules.player_speed) / tick_rate,
        speed_per_second=float(rules.player_speed),
        tick_rate=float(tick_rate),
        dig_radius=float(rules.dig_radius),
        dig_ticks=seconds_to_ticks(rules.dig_time, tick_rate),
        reveal_radius=float(rules.reveal_radius),
        view_radius=float(rules.view_radius),
        heat_radius=float(rules.heat_radius),
        respawn_ticks=seconds_to_ticks(rules.respawn_delay, tick_rate),
        claim_show_ticks=seconds_to_ticks(rules.claim_show_time, tick_rate),
        hunt_ticks=seconds_to_ticks(rules.hunt_duration, tick_rate),
        cell_size=float(rules.cell_size),
        grid_cols=math.ceil(rules.world_width / rules.cell_size),
        grid_rows=math.ceil(rules.world_height / rules.cell_size),
    )
