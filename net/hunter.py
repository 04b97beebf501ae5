"""A bot's hunting strategy: walk to revealed treasure and dig; otherwise climb the heat."""

from __future__ import annotations

import math
import random

from net.client import ServerInfo, Snapshot


class Hunter:
    """Decides one input per snapshot. Pure: state in, intent out; randomness from `rng`."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.heading = rng.uniform(0.0, 2.0 * math.pi)
        self.last_heat = 0
        self.wander_ticks = 0

    def decide(self, snap: Snapshot, info: ServerInfo) -> tuple[int, int, bool]:
        """(move_x, move_y, dig) for the next input."""
        if snap.treasures:
            # the nearest (a delta snapshot's list is not ordered by distance)
            _, tx, ty, _ = min(snap.treasures,
                               key=lambda t: (t[1] - snap.x) ** 2 + (t[2] - snap.y) ** 2)
            dx, dy = tx - snap.x, ty - snap.y
            dist = math.hypot(dx, dy)
            if dist <= info.dig_radius * 0.5:
                return 0, 0, True
            if dist <= info.dig_radius * 0.9:  # in range already: keep digging, edge closer
                return int(40 * dx / dist), int(40 * dy / dist), True
            return int(127 * dx / dist), int(127 * dy / dist), False
        heat = snap.heat
        if heat == 0:
            self.wander_ticks -= 1
            if self.wander_ticks <= 0:
                self.heading = self.rng.uniform(0.0, 2.0 * math.pi)
                self.wander_ticks = self.rng.randint(20, 80)
        elif heat < self.last_heat:  # colder: turn away, by a random amount
            self.heading += self.rng.choice((-1.0, 1.0)) * self.rng.uniform(0.6, 2.2)
        self.last_heat = heat
        self._bounce(snap.x, snap.y, info)
        return int(127 * math.cos(self.heading)), int(127 * math.sin(self.heading)), False

    def _bounce(self, x: float, y: float, info: ServerInfo) -> None:
        cx, cy = math.cos(self.heading), math.sin(self.heading)
        margin = 32.0
        if (x < margin and cx < 0) or (x > info.world_width - margin and cx > 0):
            cx = -cx
        if (y < margin and cy < 0) or (y > info.world_height - margin and cy > 0):
            cy = -cy
        self.heading = math.atan2(cy, cx)
