"""Rates of the server loop."""

from __future__ import annotations

import math
from dataclasses import dataclass


class RatesError(ValueError):
    """A rate has a value the loop cannot run with."""


@dataclass(frozen=True)
class TickRates:
    tick_rate: float = 20.0  # simulation ticks per second
    snapshot_rate: float = 0.0  # snapshots per second to each client (0: one per tick)
    timing_ring: int = 65536  # ticks of per-phase timings kept in memory
    status_every: float = 5.0  # seconds between status log lines (0 = never)

    def validate(self) -> None:
        if not (isinstance(self.tick_rate, (int, float)) and math.isfinite(self.tick_rate)
                and 1 <= self.tick_rate <= 240 and float(self.tick_rate).is_integer()):
            # whole Hz: CONNECT_ACCEPT carries the rate as a u16
            raise RatesError(f"tick_rate must be a whole number in 1..240, got {self.tick_rate!r}")
        rate = self.snapshot_rate
        if rate != 0 and not (
                isinstance(rate, (int, float)) and math.isfinite(rate) and 1 <= rate <= self.tick_rate
                and float(rate).is_integer() and self.tick_rate % rate == 0):
            raise RatesError(f"snapshot_rate must be 0 (every tick) or a whole number that "
                             f"divides tick_rate ({self.tick_rate:g}), got {rate!r}")
        if not (isinstance(self.timing_ring, int) and 16 <= self.timing_ring <= 1 << 24):
            raise RatesError(f"timing_ring must be an integer in 16..16777216, got {self.timing_ring!r}")
        if not (isinstance(self.status_every, (int, float)) and math.isfinite(self.status_every)
                and self.status_every >= 0):
            raise RatesError(f"status_every must be a number >= 0, got {self.status_every!r}")

    @property
    def snapshot_every(self) -> int:
        """Ticks between two snapshots to one client."""
        return 1 if not self.snapshot_rate else int(self.tick_rate // self.snapshot_rate)

    @property
    def snapshots_per_second(self) -> float:
        return self.tick_rate / self.snapshot_every
