"""Network limits: timeouts, batch sizes and snapshot caps, with the snapshot size bound."""

from __future__ import annotations

import math
from dataclasses import dataclass

from net.errors import LimitsError
from net.wire import HEADER_SIZE, MAX_DATAGRAM

CLAIM_EVENTS_MAX = 16  # sim.schema.CLAIM_RING: recent claims a snapshot may carry
LEADERBOARD_MAX = 16  # sim.rules.GameRules.leaderboard_size upper bound


@dataclass(frozen=True)
class NetLimits:
    """What the network layer allows. Durations in seconds."""

    session_timeout: float = 5.0  # silence after which a session is dropped
    rx_batch: int = 1024  # datagrams drained per batch
    max_visible_players: int = 48  # other players per snapshot, nearest first
    max_visible_treasures: int = 16  # revealed treasures per snapshot, nearest first
    claim_event_window: float = 2.0  # recent claims repeat in snapshots this long
    leaderboard_every: float = 1.0  # each client gets the live leaderboard this often
    hunt_result_window: float = 5.0  # the last hunt's result repeats this long

    def validate(self) -> None:
        """Raise LimitsError naming the first bad field."""
        for name in ("session_timeout", "claim_event_window", "leaderboard_every",
                     "hunt_result_window"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise LimitsError(f"{name} must be a positive number, got {value!r}")
        for name, top in (("rx_batch", 65536), ("max_visible_players", 120),
                          ("max_visible_treasures", 32)):
            value = getattr(self, name)
            if not (isinstance(value, int) and 1 <= value <= top):
                raise LimitsError(f"{name} must be an integer in 1..{top}, got {value!r}")
        worst = worst_snapshot_size(self.max_visible_players, self.max_visible_treasures)
        if worst > MAX_DATAGRAM:
            raise LimitsError(
                f"max_visible_players/max_visible_treasures allow {worst}-byte snapshots; "
                f"the limit is {MAX_DATAGRAM}")


def worst_snapshot_size(players: int, treasures: int) -> int:
    """Upper bound in bytes of a SNAPSHOT datagram with these caps (see docs/PROTOCOL.md).

    Every unsigned integer is counted at its widest form in practice: ids and quantized
    positions as uint16 (3 bytes), ticks and scores as uint32 (5 bytes).
    """
    u8, u16, u32 = 2, 3, 5
    arr = 3  # array16 header, the widest any of these arrays needs
    key = 3  # fixstr of up to 2 characters
    size = HEADER_SIZE + 1  # fixmap header
    size += key + u32  # "t" tick
    size += key + u32  # "a" input ack
    size += key + 1 + u32 + u32  # "h" [hunt id, ticks left]
    size += key + 1 + u16 + u16 + u16 + u32 + u8 + u8  # "me"
    size += key + arr + players * 3 * u16  # "p"
    size += key + arr + treasures * (3 * u16 + 1 + 1)  # "tr"
    size += key + arr + CLAIM_EVENTS_MAX * (u32 + u16 + u16 + 1)  # "ev"
    size += key + arr + LEADERBOARD_MAX * (u16 + u32)  # "lb"
    size += key + arr + u32 + LEADERBOARD_MAX * (u16 + u32)  # "hr"
    return size
