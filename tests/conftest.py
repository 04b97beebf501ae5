"""Shared fixtures. Each helper adds its own block; never rewrite another block."""

from __future__ import annotations

import os

import pytest

# Servers the tests start as subprocesses bind their admin API to a free port: the
# default, 7778, may be taken on the machine or by another test's server.
os.environ.setdefault("XMARKS_ADMIN_PORT", "0")


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

    #: The token key of every test server, the address its tokens name, and the unix time
    #: (ms) at now = 0: tokens are issued at UNIX_S and live TOKEN_LIFETIME seconds.
    KEY = bytes(range(32))
    ADDRESS = ("192.0.2.1", 7777)
    UNIX_S = 1_800_000_000
    TOKEN_LIFETIME = 3600

    @classmethod
    def server(cls, tick_rate: float = 20.0, limits=None, seed: int = 1, security=None,
               **rules):
        """A fresh ServerProtocol over a fresh small world (session-id nonces and the
        cookie key fixed), taking tokens issued with KEY for ADDRESS."""
        from net.limits import NetLimits
        from sim.world import new_world
        world = new_world(cls.rules(**rules), tick_rate)
        return cls.server_for(world, limits or NetLimits(), tick_rate, seed=seed,
                              security=security)

    @classmethod
    def server_for(cls, world, limits, tick_rate: float, snapshot_every: int = 1,
                   seed: int = 1, security=None):
        """A ServerProtocol over `world` with the test key, address, clock and cookie key.
        Without `security`, handshakes are not rate limited (tests open many sessions
        from one address at one instant); pass SecuritySettings() for the defaults."""
        import random

        from net.security import SecuritySettings
        from net.server import ServerProtocol
        security = security or SecuritySettings(connect_rate=0.0, connect_rate_per_address=0.0,
                                                max_sessions_per_address=0)
        return ServerProtocol(world, limits, tick_rate, random.Random(seed),
                              snapshot_every=snapshot_every, key=cls.KEY, address=cls.ADDRESS,
                              security=security, unix_origin_ms=cls.UNIX_S * 1000,
                              cookie_key=bytes(32))

    _next_id = [0]

    @classmethod
    def token(cls, name: str = "player", client_id: int | None = None, **kw):
        """A connect token for the test server (a fresh client id unless given)."""
        from net.token import issue_token
        if client_id is None:
            cls._next_id[0] += 1
            client_id = cls._next_id[0]
        args = dict(servers=[cls.ADDRESS], now=cls.UNIX_S, lifetime=cls.TOKEN_LIFETIME)
        args.update(kw)
        return issue_token(cls.KEY, client_id, args.pop("servers"), name, args.pop("now"),
                           args.pop("lifetime"), **args)

    @classmethod
    def client(cls, name: str = "player", salt: int | None = None, token=None, **kw):
        """A ClientProtocol holding a fresh token for the test server (or `token`).
        ClientProtocol's timer settings pass through; other keywords go to token()."""
        from net.client import ClientProtocol
        timers = {k: kw.pop(k) for k in ("resend_interval", "connect_timeout",
                                          "keepalive_interval") if k in kw}
        token = token or cls.token(name, **kw)
        if salt is not None:
            timers["salt"] = salt
        return ClientProtocol(token, **timers)

    @classmethod
    def connect(cls, proto, client, addr, ms: int = 0) -> list:
        """Run the whole handshake (request, challenge, response, accept) at `ms`; return
        the client's events (Connected on success)."""
        from net.loopback import connect_in_memory
        return connect_in_memory(proto, client, addr, cls.ns(ms))

    @staticmethod
    def state(proto) -> tuple:
        """Everything a dropped datagram must leave unchanged: sessions, players, replies."""
        w = proto.world
        return (proto.sessions.tobytes(), w.pf.tobytes(), w.pi.tobytes(),
                tuple(proto.names), tuple(proto.addresses), dict(proto._by_client),
                sorted(proto._free), len(proto._replies), proto.accepting)

    @staticmethod
    def check_invariants(proto) -> None:
        """Slots are free (once), connected, or away (a player waiting for its client);
        nothing outgrows the capacity."""
        from net.sessions import AWAY, CONNECTED, S_STATE
        connected = set(int(s) for s in (proto.sessions[S_STATE] == CONNECTED).nonzero()[0])
        away = set(int(s) for s in (proto.sessions[S_STATE] == AWAY).nonzero()[0])
        assert len(proto._free) == len(set(proto._free)), "a slot is free twice"
        assert set(proto._free).isdisjoint(connected | away)
        assert len(proto._free) + len(connected) + len(away) == proto.capacity
        assert len(proto._by_client) == len(connected)
        assert set(proto._by_client.values()) == connected
        assert set(proto._away.values()) == away
        assert sum(proto._per_ip.values()) == len(connected)
        assert proto.world.alive_count() == len(connected) + len(away)


@pytest.fixture(scope="session")
def netkit() -> type[NetKit]:
    return NetKit


@pytest.fixture(autouse=True)
def _run_in_a_fresh_directory(tmp_path, monkeypatch):
    """Every test runs in its own empty directory: a server started with default settings
    writes its key, admin token, ledger and checkpoint there, never into the checkout, and
    no test resumes another's world."""
    monkeypatch.chdir(tmp_path)


# ---- cli: a clean environment and an admin token file (tests/test_cli*.py, bench, profile) --

@pytest.fixture
def no_xmarks_env(monkeypatch):
    """No XMARKS_* variable of the caller's shell reaches the CLI under test (modules opt in
    with pytestmark = pytest.mark.usefixtures("no_xmarks_env"))."""
    for name in list(os.environ):
        if name.startswith("XMARKS_"):
            monkeypatch.delenv(name)


@pytest.fixture
def token_file(tmp_path):
    """An admin token file holding tests.admin_fake.TOKEN, mode 0600; its path."""
    from tests.admin_fake import TOKEN
    path = tmp_path / "xmarks.admin-token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    return str(path)
