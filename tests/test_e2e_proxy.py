"""tick.proxy over loopback UDP: first against a plain echo server (forwarding, one upstream
socket per client, rebinding, expiry, limits), then a real GameServer with Swarm bots
playing through it at 5% loss and 50 ms.

Every wait has a timeout, so a hang fails the test instead of the suite; rates are checked
with room for a shared 2-core machine.
"""

from __future__ import annotations

import threading
import time

import pytest

from net import drops as D
from net.client import Snapshot
from net.link import LinkSettings
from net.security import SecuritySettings
from net.udp import EndpointPoller, UdpEndpoint
from sim.rules import GameRules
from tick.config import ServerConfig
from tick.proxy import Proxy, ProxySettings
from tick.rates import TickRates
from tick.server import GameServer
from tick.swarm import Swarm
from tests.conftest import NetKit


def text(address) -> str:
    return "%s:%d" % address


class Echo:
    """A UDP server in a thread that sends every datagram back to where it came from and
    remembers the source addresses it saw."""

    def __init__(self) -> None:
        self.endpoint = UdpEndpoint("127.0.0.1", 0, io="portable")
        self.sources: list[tuple[str, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        poller = EndpointPoller()
        poller.add(self.endpoint)
        while not self._stop.is_set():
            if poller.wait(0.02):
                for data, addr in self.endpoint.recv_all():
                    self.sources.append(addr)
                    self.endpoint.send(data, addr)
        poller.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.endpoint.close()


class Running:
    """A Proxy running in a thread: `with Running(settings) as p:`."""

    def __init__(self, server, link: LinkSettings = LinkSettings(), **kw) -> None:
        listen = UdpEndpoint("127.0.0.1", 0, io="portable")
        settings = ProxySettings(listen=text(listen.address), server=text(server), up=link,
                                 down=link, **kw)
        self.proxy = Proxy(settings, listen=listen)
        self.result: dict | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.result = self.proxy.run()

    def __enter__(self) -> Proxy:
        self._thread.start()
        return self.proxy

    def __exit__(self, *exc) -> None:
        self.proxy.stop()
        self._thread.join(timeout=5)
        assert not self._thread.is_alive(), "the proxy loop did not stop"
        self.proxy.close()


def exchange(client: UdpEndpoint, to, payloads: list[bytes], wait_s: float = 2.0,
             expect: int | None = None) -> list[tuple[bytes, tuple[str, int]]]:
    """Send each payload to `to` and collect what comes back until `expect` datagrams
    arrived or `wait_s` passed."""
    for p in payloads:
        client.send(p, to)
    poller = EndpointPoller()
    poller.add(client)
    got = []
    deadline = time.monotonic() + wait_s
    want = len(payloads) if expect is None else expect
    while len(got) < want and time.monotonic() < deadline:
        if poller.wait(0.02):
            got += client.recv_all()
    poller.close()
    return got


@pytest.fixture
def echo():
    server = Echo()
    yield server
    server.close()


# ---- the proxy on its own ---------------------------------------------------------------

def test_forwards_both_ways_with_one_upstream_socket_per_client(echo):
    a = UdpEndpoint("127.0.0.1", 0, io="portable")
    b = UdpEndpoint("127.0.0.1", 0, io="portable")
    try:
        with Running(echo.endpoint.address) as proxy:
            got_a = exchange(a, proxy.address, [b"a%d" % i for i in range(20)])
            got_b = exchange(b, proxy.address, [b"b%d" % i for i in range(20)])
            assert sorted(d for d, _ in got_a) == sorted(b"a%d" % i for i in range(20))
            assert sorted(d for d, _ in got_b) == sorted(b"b%d" % i for i in range(20))
            assert {addr for _, addr in got_a + got_b} == {proxy.address}  # replies from it
            assert set(proxy.clients) == {a.address, b.address}
            upstream = {proxy.clients[c].endpoint.address for c in proxy.clients}
            assert set(echo.sources) == upstream and len(upstream) == 2
            assert not upstream & {a.address, b.address, proxy.address}
        counts = proxy.counters()
        assert counts["clients_seen"] == 2 and counts["up"]["delivered"] == 40
        assert counts["down"]["delivered"] == 40 and counts["up"]["lost"] == 0
    finally:
        a.close()
        b.close()


def test_loss_duplicates_and_latency_are_applied_and_counted(echo):
    client = UdpEndpoint("127.0.0.1", 0, io="portable")
    link = LinkSettings(loss=0.3, duplicate=0.2, latency_ms=30)
    try:
        with Running(echo.endpoint.address, link, seed=3) as proxy:
            started = time.monotonic()
            got = exchange(client, proxy.address, [b"%d" % i for i in range(300)],
                           wait_s=1.5, expect=10**6)
            assert got and time.monotonic() - started >= 0.06  # two ways of 30 ms
        counts = proxy.counters()
        up, down = counts["up"], counts["down"]
        assert up["sent"] == 300 and 40 < up["lost"] < 140 and up["duplicated"] > 10
        assert down["sent"] == up["delivered"] and down["lost"] > 0
        assert len(got) == down["delivered"]
        assert up["in_flight"] == down["in_flight"] == 0
    finally:
        client.close()


def test_rebinding_moves_the_upstream_to_a_new_port(echo):
    client = UdpEndpoint("127.0.0.1", 0, io="portable")
    try:
        with Running(echo.endpoint.address, rebind_every=0.2) as proxy:
            answered = 0
            started = time.monotonic()
            for i in range(8):  # 0.8 s of traffic at least: three or four rebinds
                # a reply still on its way when the port moves is lost, as behind a NAT
                answered += len(exchange(client, proxy.address, [b"%d" % i], wait_s=0.5))
                time.sleep(0.1)
            rebinds = proxy.rebinds
            elapsed = time.monotonic() - started
        assert answered >= 4
        assert 2 <= rebinds <= elapsed / 0.2 + 1  # never more often than asked
        assert len(set(echo.sources)) >= 3  # the server saw the client move
        counts = proxy.counters()
        assert counts["clients_seen"] == 1 and counts["rebinds"] >= rebinds  # one client
    finally:
        client.close()


def test_idle_clients_expire_and_new_ones_beyond_the_limit_are_refused(echo):
    a = UdpEndpoint("127.0.0.1", 0, io="portable")
    b = UdpEndpoint("127.0.0.1", 0, io="portable")
    try:
        with Running(echo.endpoint.address, max_clients=1, idle_timeout=1.0) as proxy:
            assert exchange(a, proxy.address, [b"a"]) == [(b"a", proxy.address)]
            assert exchange(b, proxy.address, [b"b"], wait_s=0.2) == []  # the one slot is a's
            deadline = time.monotonic() + 10
            while proxy.clients and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not proxy.clients  # a went silent: expired
            assert exchange(b, proxy.address, [b"b"]) == [(b"b", proxy.address)]
        counts = proxy.counters()
        assert counts["clients_refused"] == 1 and counts["clients_expired"] >= 1
        assert counts["clients_seen"] == 2
    finally:
        a.close()
        b.close()


def test_datagrams_from_others_than_the_server_are_stray(echo):
    client = UdpEndpoint("127.0.0.1", 0, io="portable")
    intruder = UdpEndpoint("127.0.0.1", 0, io="portable")
    try:
        with Running(echo.endpoint.address) as proxy:
            assert exchange(client, proxy.address, [b"x"]) != []
            upstream = proxy.clients[client.address].endpoint.address
            intruder.send(b"forged", upstream)
            deadline = time.monotonic() + 2
            while proxy.stray == 0 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert proxy.stray == 1
            assert exchange(client, proxy.address, [], wait_s=0.2, expect=1) == []
    finally:
        client.close()
        intruder.close()


@pytest.mark.parametrize("field,value,words", [
    ("listen", "localhost:7000", "listen must be IPV4:PORT"),
    ("server", "127.0.0.1:0", "server must be IPV4:PORT"),
    ("max_clients", 0, "max_clients must be"),
    ("idle_timeout", 0.0, "idle_timeout must be"),
    ("rebind_every", float("nan"), "rebind_every must be"),
    ("report_every", -1.0, "report_every must be"),
    ("seed", 1.5, "seed must be"),
    ("up", LinkSettings(loss=2.0), "loss must be"),
])
def test_bad_proxy_settings_name_the_setting(field, value, words):
    with pytest.raises(ValueError) as err:
        ProxySettings(**{field: value}).validate()
    assert str(err.value).startswith(words)


# ---- a game through the proxy -----------------------------------------------------------

TICK_RATE = 20.0
SMALL_DENSE = GameRules(world_width=256.0, world_height=256.0, max_players=16,
                        treasure_count=32, cell_size=64.0, dig_time=0.2, reveal_radius=128.0,
                        respawn_delay=0.5, seed=3)


def game_server(public_address: str) -> GameServer:
    config = ServerConfig(rules=SMALL_DENSE,
                          rates=TickRates(tick_rate=TICK_RATE, status_every=0),
                          security=SecuritySettings(public_address=public_address))
    server = GameServer(config, endpoint=UdpEndpoint("127.0.0.1", 0), key=NetKit.KEY)
    server.warm_up()
    return server


class AckingSwarm(Swarm):
    """A Swarm that also remembers the newest input each bot saw acknowledged."""

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.acks: dict[int, int] = {}

    def _handle(self, bot, events, now) -> None:
        for ev in events:
            if isinstance(ev, Snapshot):
                self.acks[id(bot)] = max(self.acks.get(id(bot), 0), ev.ack)
        super()._handle(bot, events, now)


@pytest.fixture
def proxied_game():
    """A proxy (5% loss, 50 ms each way) in front of a GameServer whose public_address is
    the proxy's listening address; yields (server, proxy)."""
    listen = UdpEndpoint("127.0.0.1", 0, io="portable")
    server = game_server(text(listen.address))
    settings = ProxySettings(listen=text(listen.address), server=text(server.address),
                             up=LinkSettings(loss=0.05, latency_ms=50),
                             down=LinkSettings(loss=0.05, latency_ms=50), seed=1)
    proxy = Proxy(settings, listen=listen)
    threads = [threading.Thread(target=server.run, daemon=True),
               threading.Thread(target=proxy.run, daemon=True)]
    for t in threads:
        t.start()
    yield server, proxy
    server.stop()
    proxy.stop()
    for t in threads:
        t.join(timeout=5)
    assert not any(t.is_alive() for t in threads)
    server.close()
    proxy.close()


def test_bots_play_through_the_proxy(proxied_game):
    server, proxy = proxied_game
    swarm = AckingSwarm(proxy.address, 8, seed=1, rate=TICK_RATE, key=NetKit.KEY)
    report = swarm.run(5.0)

    assert report.connected == 8 and report.errors == 0, report.error_reasons
    # 20 a second less 5% lost, a few late: at least half of it on a busy machine
    assert report.snapshots_per_bot_per_s >= 0.5 * TICK_RATE, report
    assert len(swarm.acks) == 8 and min(swarm.acks.values()) > 0  # inputs were applied
    counts = proxy.counters()
    assert counts["clients_seen"] == 1  # a swarm is one socket: one upstream
    assert counts["up"]["lost"] > 0 and counts["down"]["lost"] > 0
    assert counts["down"]["delivered"] >= report.snapshots_received
    assert server.protocol.drops[D.WRONG_SERVER] == 0


def test_without_the_proxys_public_address_the_server_refuses_the_tokens():
    server = game_server("")  # tokens must then name the server's own address
    listen = UdpEndpoint("127.0.0.1", 0, io="portable")
    proxy = Proxy(ProxySettings(listen=text(listen.address), server=text(server.address)),
                  listen=listen)
    threads = [threading.Thread(target=server.run, daemon=True),
               threading.Thread(target=proxy.run, daemon=True)]
    for t in threads:
        t.start()
    try:
        report = Swarm(proxy.address, 2, seed=2, rate=TICK_RATE, key=NetKit.KEY).run(1.0)
        assert report.connected == 0
        assert server.protocol.drops[D.WRONG_SERVER] > 0
    finally:
        server.stop()
        proxy.stop()
        for t in threads:
            t.join(timeout=5)
        server.close()
        proxy.close()
