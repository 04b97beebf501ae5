"""Network limits: timeouts, batch sizes and snapshot caps, with the snapshot size bound."""

from __future__ import annotations

import math
from dataclasses import dataclass

from net.errors import LimitsError
from net.wire import HEADER_SIZE, MAX_DATAGRAM, TAG_SIZE

CLAIM_EVENTS_MAX = 12  # recent claims nearby a snapshot may carry, the newest ("ev")
OWN_CLAIMS_MAX = 4  # net.snapshot_ring.OWN_CLAIMS: the client's own claims ("my")
LEADERBOARD_MAX = 16  # sim.rules.GameRules.leaderboard_size upper bound


@dataclass(frozen=True)
class NetLimits:
    """What the network layer allows. Durations in seconds."""

    session_timeout: float = 5.0  # silence after which a session is dropped
    rx_batch: int = 0  # datagrams per drain; 0: max_players (a tick's inputs in one drain)
    max_visible_players: int = 32  # other players per snapshot (the nearest, if more are in view)
    max_visible_treasures: int = 16  # revealed treasures per snapshot (the nearest)
    claim_event_window: float = 2.0  # recent claims repeat in snapshots this long
    leaderboard_every: float = 1.0  # each client gets the live leaderboard this often
    hunt_result_window: float = 5.0  # the last hunt's result repeats this long
    snapshot_ring: int = 8  # past snapshots kept per client as delta baselines
    aoi_hysteresis: float = 0.1  # in view within r, out of view only beyond r * (1 + this)
    delta_tolerance: float = 0.25  # world units a client's extrapolation may be off
    # snapshots are encoded in this many parts, each on its own thread (1: all on the tick
    # thread); the bytes sent are the same whatever the number
    encode_threads: int = 1
    # a timed-out player stays in the world this long (standing still); its client id
    # connecting again takes it back with its score and place (0: it leaves at once)
    reconnect_grace: float = 30.0

    def validate(self) -> None:
        """Raise LimitsError naming the first bad field."""
        for name in ("session_timeout", "claim_event_window", "leaderboard_every",
                     "hunt_result_window"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise LimitsError(f"{name} must be a positive number, got {value!r}")
        if not (isinstance(self.rx_batch, int) and not isinstance(self.rx_batch, bool)
                and 0 <= self.rx_batch <= 65536):
            raise LimitsError(f"rx_batch must be an integer in 0..65536 (0: max_players), "
                              f"got {self.rx_batch!r}")
        for name, low, top in (("max_visible_players", 1, 120),
                               ("max_visible_treasures", 1, 32), ("snapshot_ring", 2, 64),
                               ("encode_threads", 1, 64)):
            value = getattr(self, name)
            if not (isinstance(value, int) and not isinstance(value, bool) and low <= value <= top):
                raise LimitsError(f"{name} must be an integer in {low}..{top}, got {value!r}")
        grace = self.reconnect_grace
        if (isinstance(grace, bool) or not isinstance(grace, (int, float))
                or not math.isfinite(grace) or not 0 <= grace <= 86400):
            raise LimitsError(f"reconnect_grace must be a number of seconds in 0..86400, "
                              f"got {grace!r}")
        for name in ("aoi_hysteresis", "delta_tolerance"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and 0 <= value <= 1000):
                raise LimitsError(f"{name} must be a number in 0..1000, got {value!r}")
        worst = worst_snapshot_size(self.max_visible_players, self.max_visible_treasures)
        if worst > MAX_DATAGRAM:
            raise LimitsError(
                f"max_visible_players/max_visible_treasures allow {worst}-byte snapshots; "
                f"the limit is {MAX_DATAGRAM}")


    def batch_size(self, max_players: int) -> int:
        """Datagrams per drain: rx_batch, or max_players when it is 0. One drain a tick
        then takes every player's input, and the tick's Python work stays flat in N."""
        return self.rx_batch or max_players


def worst_snapshot_size(players: int, treasures: int) -> int:
    """Upper bound in bytes of a SNAPSHOT datagram with these caps (see docs/PROTOCOL.md).

    Every integer is counted at its widest possible form: ids, quantized positions and
    velocities as 3 bytes, ticks, scores and residuals as 5. The bigger of a full and a
    delta snapshot counts; "lb" and "hr" never travel together.
    """
    u8, u16, u32, i16, i32 = 2, 3, 5, 3, 5
    value = 1  # treasure values are 1..100: a positive fixint
    idx = 1  # a baseline index < 128 is a positive fixint
    arr = 3  # array16 header, the widest any of these arrays needs
    key = 3  # fixstr of up to 2 characters
    size = HEADER_SIZE + TAG_SIZE + 1  # header, tag, fixmap header
    size += key + u32  # "t" tick
    size += key + u32  # "a" input ack
    size += key + u32  # "b" baseline tick (deltas only)
    size += key + 1 + u32 + u32  # "h" [hunt id, ticks left]
    size += key + 1 + u16 + u16 + u16 + u32 + u8 + u8  # "me"
    player_full = 3 * u16 + 2 * i16
    player_delta = max(idx + 2 * i32 + 2 * i16,  # "pv" (a "pm" row is smaller)
                       idx + player_full)  # "pr" index, then a "pn" row
    size += 4 * (key + arr) + players * max(player_full, player_delta)
    treasure = 3 * u16 + value
    size += 2 * (key + arr) + treasures * (idx + treasure)  # "tx" + "tn" (or "tr")
    size += key + arr + CLAIM_EVENTS_MAX * (u32 + u16 + u16 + value)  # "ev"
    size += key + arr + OWN_CLAIMS_MAX * (u32 + u16 + value + 1)  # "my" (confirmed: 0/1)
    size += key + arr + u32 + LEADERBOARD_MAX * (u16 + u32)  # "hr" (or the smaller "lb")
    return size
