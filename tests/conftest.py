"""Shared fixtures. Each helper adds its own block; never rewrite another block."""

from __future__ import annotations

import pytest


# ---- net: in-memory protocol rigs (tests/test_net_*.py, tests/test_e2e_*.py) ------------

class NetKit:
    """Builds in-memory servers and clients; time is stepped by hand.

    The server takes `now` in integer nanoseconds, the client in seconds: tests count
    milliseconds and convert with `ns()` / `sec()`.
    """

    @staticmethod
    def ns(ms: int) -> int:
        return ms * 1_000_000

    @staticmethod
    def sec(ms: int) -> float:
        return ms / 1000.0

    @staticmethod
    def rules(**overrides):
        from sim.rules import GameRules
        base = dict(world_width=512.0, world_height=512.0, max_players=4, treasure_count=8,
                    cell_size=64.0, seed=1)
        base.update(overrides)
        return GameRules(**base)

    @classmethod
    def server(cls, tick_rate: float = 20.0, limits=None, seed: int = 1, **rules):
        """A fresh ServerProtocol over a fresh small world (session-id nonces seeded)."""
        import random

        from net.limits import NetLimits
        from net.server import ServerProtocol
        from sim.world import new_world
        world = new_world(cls.rules(**rules), tick_rate)
        return ServerProtocol(world, limits or NetLimits(), tick_rate, random.Random(seed))

    @classmethod
    def connect(cls, proto, client, addr, ms: int = 0) -> list:
        """Run one connect handshake; return the client's events (Connected on success)."""
        proto.receive_datagram(client.connect(cls.sec(ms)), addr, cls.ns(ms))
        events = []
        for data, to in proto.datagrams_to_send():
            assert to == addr
            events += client.receive(data, cls.sec(ms))
        return events

    @staticmethod
    def state(proto) -> tuple:
        """Everything a dropped datagram must leave unchanged: sessions, players, replies."""
        w = proto.world
        return (proto.sessions.tobytes(), w.pf.tobytes(), w.pi.tobytes(),
                tuple(proto.names), tuple(proto.addresses), dict(proto._by_salt),
                sorted(proto._free), len(proto._replies), proto.accepting)

    @staticmethod
    def check_invariants(proto) -> None:
        """Slots are either free (once) or connected; nothing outgrows the capacity."""
        from net.sessions import CONNECTED, S_STATE
        connected = set(int(s) for s in (proto.sessions[S_STATE] == CONNECTED).nonzero()[0])
        assert len(proto._free) == len(set(proto._free)), "a slot is free twice"
        assert set(proto._free).isdisjoint(connected)
        assert len(proto._free) + len(connected) == proto.capacity
        assert len(proto._by_salt) == len(connected)
        assert set(proto._by_salt.values()) == connected
        assert proto.world.alive_count() == len(connected)


@pytest.fixture(scope="session")
def netkit() -> type[NetKit]:
    return NetKit
