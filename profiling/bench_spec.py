"""What `xmarks bench` runs: the spec (from a scenario and flags), the world sized for it
and the server's config file. profiling/bench.py runs it; profiling/bench_report.py reports.
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCENARIOS = Path(__file__).with_name("scenarios.toml")

#: World sizing bounds: a side below this is already smaller than one view diameter.
MIN_WORLD_SIDE = 256.0
MAX_WORLD_SIDE = 65536.0  # sim.rules: world_width/world_height at most 65536
#: Warm-up when none is given: the bots' connect ramp (players / connect_rate) plus this.
WARMUP_SLACK_S = 3.0

SPEC_KEYS = ("players", "tick_rate", "snapshot_rate", "duration", "warmup", "visible", "io",
             "seed", "connect_rate", "encode_threads", "ledger")
LEDGER_BACKENDS = ("sqlite", "memory", "none")
SCENARIO_KEYS = SPEC_KEYS + ("description", "targets")


class BenchUsageError(ValueError):
    """The bench was asked for something it cannot run (exit 2, one line)."""


@dataclass(frozen=True)
class BenchSpec:
    """What to run. warmup None: the connect ramp plus WARMUP_SLACK_S."""

    players: int
    tick_rate: float = 20.0
    snapshot_rate: float = 0.0
    duration: float = 10.0
    warmup: float | None = None
    visible: float = 32.0
    io: str = "auto"
    seed: int = 1
    connect_rate: float = 2000.0
    encode_threads: int = 1  # the server's net encode_threads
    ledger: str = "sqlite"  # the server's store ledger_backend (as deployed: sqlite)
    scenario: str | None = None
    pin: bool = True
    probe_repeats: int = 5
    targets: dict = field(default_factory=dict)

    @property
    def warmup_s(self) -> float:
        if self.warmup is not None:
            return float(self.warmup)
        return round(self.players / self.connect_rate + WARMUP_SLACK_S, 3)

    def check(self) -> None:
        """Raise BenchUsageError naming the first value the bench cannot use (the server's
        own settings are checked by cli.settings when the config is built)."""
        if not (isinstance(self.players, int) and 1 <= self.players <= 65535):
            raise BenchUsageError(f"players must be an integer in 1..65535, got {self.players!r}")
        for name in ("duration", "visible", "connect_rate"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise BenchUsageError(f"{name} must be a positive number, got {value!r}")
        if self.warmup is not None and not (math.isfinite(self.warmup) and self.warmup >= 0):
            raise BenchUsageError(f"warmup must be a number >= 0, got {self.warmup!r}")
        if self.io not in ("auto", "batched", "portable"):
            raise BenchUsageError(f"io must be auto, batched or portable, got {self.io!r}")
        if not (isinstance(self.encode_threads, int) and 1 <= self.encode_threads <= 64):
            raise BenchUsageError(f"encode_threads must be an integer in 1..64, got "
                                  f"{self.encode_threads!r}")
        if self.ledger not in LEDGER_BACKENDS:
            raise BenchUsageError(f"ledger must be sqlite, memory or none, got {self.ledger!r}")
        if not 1 <= self.probe_repeats <= 100:
            raise BenchUsageError(f"probe repeats must be in 1..100, got {self.probe_repeats!r}")


# ---- scenarios ---------------------------------------------------------------------------

def load_scenarios(path: Path = SCENARIOS) -> tuple[dict, dict[str, dict]]:
    """(common targets, {name: scenario}) from a scenarios TOML file."""
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise BenchUsageError(f"cannot read scenarios {path}: {exc}") from None
    common = doc.get("targets", {})
    scenarios = doc.get("scenario", {})
    for name, sc in scenarios.items():
        unknown = set(sc) - set(SCENARIO_KEYS)
        if unknown:
            raise BenchUsageError(f"scenario {name}: unknown key {sorted(unknown)[0]!r}")
    return common, scenarios


def make_spec(scenario: str | None, flags: dict[str, Any], pin: bool = True,
              probe_repeats: int = 5, path: Path = SCENARIOS) -> BenchSpec:
    """A BenchSpec from a scenario's values, overridden by the flags that were given
    (None = not given); targets are the common ones plus the scenario's."""
    common, scenarios = load_scenarios(path)
    values: dict[str, Any] = {}
    targets = dict(common)
    if scenario is not None:
        if scenario not in scenarios:
            raise BenchUsageError(f"unknown scenario {scenario!r} (one of: "
                                  f"{', '.join(scenarios)})")
        sc = scenarios[scenario]
        values.update({k: v for k, v in sc.items() if k in SPEC_KEYS})
        targets.update(sc.get("targets", {}))
    values.update({k: v for k, v in flags.items() if v is not None})
    if "players" not in values:
        raise BenchUsageError("give --players N (or --scenario NAME)")
    for key in ("tick_rate", "snapshot_rate", "duration", "visible", "connect_rate"):
        if key in values and isinstance(values[key], int) and not isinstance(values[key], bool):
            values[key] = float(values[key])
    spec = BenchSpec(scenario=scenario, pin=pin, probe_repeats=probe_repeats, targets=targets,
                     **values)
    spec.check()
    return spec


# ---- world sizing and config -----------------------------------------------------------

def world_for(players: int, visible: float, view_radius: float | None = None,
              base_side: float | None = None, base_treasures: int | None = None) -> dict:
    """Game settings so that about `visible` other players are within view_radius of each
    player on average: a square of side sqrt(players * pi * r^2 / visible), within
    [MIN_WORLD_SIDE, MAX_WORLD_SIDE]; treasures scale with the area from the defaults
    (sim.rules.GameRules: 256 on 4096 x 4096); max_players = players.

    Players near an edge see fewer (their view circle is cut), so the mean is a little
    below `visible`; the snapshot cap (NetLimits.max_visible_players) bounds it above.
    """
    from sim.rules import GameRules
    base = GameRules()
    r = float(view_radius if view_radius is not None else base.view_radius)
    side0 = float(base_side if base_side is not None else base.world_width)
    t0 = int(base_treasures if base_treasures is not None else base.treasure_count)
    side = math.sqrt(players * math.pi * r * r / visible)
    side = float(round(min(MAX_WORLD_SIDE, max(MIN_WORLD_SIDE, side))))
    treasures = int(min(65535, max(1, round(t0 * (side * side) / (side0 * side0)))))
    density = players / (side * side)
    return {"world_width": side, "world_height": side, "treasure_count": treasures,
            "max_players": players,
            "expected_visible": round(min(players - 1, density * math.pi * r * r), 1)}


def bench_config(spec: BenchSpec) -> dict[str, dict[str, Any]]:
    """The server's TOML tables for a spec (cli.settings reads them)."""
    world = world_for(spec.players, spec.visible)
    # the timing ring must hold the whole window, whatever the warm-up
    ring_ticks = int((spec.warmup_s + spec.duration + 120) * spec.tick_rate * 1.2)
    return {
        "server": {"host": "127.0.0.1", "port": 0, "io": spec.io},
        "tick": {"tick_rate": spec.tick_rate, "snapshot_rate": spec.snapshot_rate,
                 "status_every": 0.0, "timing_ring": int(min(1 << 24, max(65536, ring_ticks)))},
        "game": {"world_width": world["world_width"], "world_height": world["world_height"],
                 "treasure_count": world["treasure_count"], "max_players": spec.players,
                 "seed": spec.seed},
        "net": {"encode_threads": spec.encode_threads},
        "admin": {"admin_enabled": False},  # nothing to administer; no port to collide on
        # every bot shares 127.0.0.1 and they join at the horde's ramp: no per-address
        # limits (run_bench points key_file into its own directory)
        "security": {"key_file": "xmarks.key", "connect_rate_per_address": 0.0,
                     "max_sessions_per_address": 0,
                     "connect_rate": max(20000.0, 4.0 * spec.connect_rate)},
    }


def to_toml(tables: dict[str, dict[str, Any]]) -> str:
    """TOML text for flat tables of str / bool / int / float values."""
    lines = []
    for name, table in tables.items():
        lines.append(f"[{name}]")
        for key, value in table.items():
            if isinstance(value, bool):
                text = "true" if value else "false"
            elif isinstance(value, str):
                text = json.dumps(value)
            elif isinstance(value, float):
                text = repr(value) if math.isfinite(value) else "nan"
            elif isinstance(value, int):
                text = str(value)
            else:
                raise TypeError(f"to_toml: {key} has unsupported type {type(value).__name__}")
            lines.append(f"{key} = {text}")
        lines.append("")
    return "\n".join(lines)


def validate_config(path: str) -> Any:
    """The ServerConfig the server will build from `path` (XMARKS_* ignored, as the bench
    strips them from the children's environment); BenchUsageError if invalid."""
    from cli.settings import SettingsError, build_config
    try:
        return build_config(path, {}, {})
    except SettingsError as exc:
        raise BenchUsageError(str(exc).replace(f"config {path}: ", "")) from None
