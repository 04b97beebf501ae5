"""Compile (or load from numba's cache) every per-tick kernel before tick 0."""

from __future__ import annotations

import os
import random
from dataclasses import replace

from net.client import ClientProtocol
from net.limits import NetLimits
from net.loopback import connect_in_memory
from net.server import ServerProtocol
from net.token import issue_token
from sim.rules import GameRules
from sim.world import new_world


def warm_up(rules: GameRules, limits: NetLimits, tick_rate: float) -> None:
    """Run every kernel once on a tiny world with the real dtypes, so the first real tick
    is as fast as the thousandth. Each kernel is compiled once per process for its types."""
    tiny = replace(rules, max_players=4, treasure_count=4, world_width=256.0,
                   world_height=256.0, cell_size=64.0)
    world = new_world(tiny, tick_rate)
    key = os.urandom(32)  # a throwaway server: its own key, its own token
    addr = ("127.0.0.1", 1)
    proto = ServerProtocol(world, replace(limits, rx_batch=8), tick_rate, random.Random(0),
                           key=key, address=addr, unix_origin_ms=1_000_000)
    client = ClientProtocol(issue_token(key, 1, [addr], "warmup", 1000, 60), salt=1)
    connect_in_memory(proto, client, addr)
    proto.receive_datagram(client.input(1, 1, True, 0.0), addr, 0)
    world.step()
    proto.encode()
    for data, _ in proto.snapshots():
        client.receive(bytes(data), 0.0)
    proto.expire(10**12)
