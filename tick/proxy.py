"""The loop of `xmarks proxy`: a user-space UDP proxy that impairs the traffic between
clients and one server (loss, duplicates, reordering, latency, jitter, a bandwidth cap,
corruption: net.link), for live runs where tc netem is not available.

Clients send to the proxy's listening address. For each client address the proxy opens
its own upstream socket towards the server, so the server sees one address per client
(and the replies find their way back), and gives it a net.link.Pipe pair: one Link
client -> server, one server -> client, seeded from the proxy's seed and the order the
clients appeared. At most `max_clients` clients at once; one silent for `idle_timeout`
seconds is forgotten (its socket closed, what its links held lost).

`rebind_every` moves every client's upstream to a new socket (a new source port) that
often, as a NAT that rebinds: datagrams the server sends to the old port are lost, the
client's next ones arrive from the new port. That is what the server's address migration
must survive, and it must move a session to a new address only for a packet that
authenticates (a valid tag from the session's key): the proxy could just as well be an
attacker forging source addresses.

Connect tokens name the address the client connects to: the proxy's. Start the server with
`public_address` set to the proxy's listening address (README, Security).

This module reads the clock (tick.clock); sockets come from net.udp.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from net.address import Address, parse_endpoint
from net.link import LinkSettings, Pipe
from net.udp import EndpointPoller, UdpEndpoint
from tick.clock import now_ns

#: The longest the loop sleeps: how late a stop, a report or housekeeping can be.
MAX_WAIT_NS = 50_000_000
#: How often idle clients and due rebinds are looked for.
HOUSEKEEPING_NS = 100_000_000
#: Datagrams read from one socket per wake-up at most, so one busy socket cannot starve
#: the deliveries.
RECV_LIMIT = 4096
#: Socket buffers: the listening socket carries every client; an upstream one only its own.
LISTEN_BUFFER = 4 * 1024 * 1024
UPSTREAM_BUFFER = 1024 * 1024


@dataclass(frozen=True)
class ProxySettings:
    """What `xmarks proxy` runs. `up` impairs client -> server, `down` server -> client."""

    listen: str = "127.0.0.1:7000"  # IPV4:PORT clients send to
    server: str = "127.0.0.1:7777"  # IPV4:PORT of the game server
    up: LinkSettings = field(default_factory=LinkSettings)
    down: LinkSettings = field(default_factory=LinkSettings)
    seed: int = 0
    max_clients: int = 4096
    idle_timeout: float = 60.0  # seconds without a datagram from a client
    rebind_every: float = 0.0  # seconds between two upstream sockets of a client; 0 = never
    report_every: float = 5.0  # seconds between two progress reports; 0 = none
    max_in_flight: int = 100_000  # datagrams held in all links together

    def validate(self) -> None:
        """Raise ValueError naming the first bad setting."""
        for name in ("listen", "server"):
            text = getattr(self, name)
            try:
                parse_endpoint(text)
            except (TypeError, ValueError):
                raise ValueError(f"{name} must be IPV4:PORT such as 127.0.0.1:7000, "
                                 f"got {text!r}") from None
        self.up.validate()
        self.down.validate()
        if not (isinstance(self.seed, int) and not isinstance(self.seed, bool)):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        for name, low in (("max_clients", 1), ("max_in_flight", 1)):
            value = getattr(self, name)
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= low):
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        for name, positive in (("idle_timeout", True), ("rebind_every", False),
                               ("report_every", False)):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and not isinstance(value, bool)
                    and math.isfinite(value) and (value > 0 if positive else value >= 0)):
                raise ValueError(f"{name} must be a number of seconds "
                                 f"{'> 0' if positive else '>= 0 (0: never)'}, got {value!r}")

    def endpoints(self) -> tuple[Address, Address]:
        """(listen, server) as (host, port)."""
        return parse_endpoint(self.listen), parse_endpoint(self.server)


@dataclass
class Upstream:
    """One client's way to the server: its own socket, and when it was last heard from."""

    client: Address
    endpoint: UdpEndpoint
    last_heard_ns: int
    rebind_at_ns: int  # 0: never


class Proxy:
    """Forwards between clients and the server through impaired links. Build, run(), then
    close(); stop() from a signal handler or another thread."""

    def __init__(self, settings: ProxySettings, listen: UdpEndpoint | None = None) -> None:
        """listen: an endpoint already bound (tests: to learn the address before the
        server starts); otherwise settings.listen is bound here (OSError if it cannot)."""
        settings.validate()
        self.settings = settings
        listen_at, self.server = settings.endpoints()
        self.listen = listen or UdpEndpoint(*listen_at, io="portable", rcvbuf=LISTEN_BUFFER,
                                            sndbuf=LISTEN_BUFFER)
        self._address = self.listen.address  # kept: counters() still works after close()
        self.pipe = Pipe(settings.up, settings.down, seed=settings.seed, server=self.server,
                         max_pairs=settings.max_clients, max_in_flight=settings.max_in_flight)
        self.clients: dict[Address, Upstream] = {}
        self._by_endpoint: dict[int, Upstream] = {}  # id(endpoint) -> its client
        self._upstream_host = "127.0.0.1" if self.server[0].startswith("127.") else "0.0.0.0"
        self.poller = EndpointPoller()
        self.poller.add(self.listen)
        self._stop = threading.Event()
        self.clients_seen = 0
        self.clients_refused = 0  # datagrams from new clients beyond max_clients
        self.clients_expired = 0
        self.rebinds = 0
        self.stray = 0  # datagrams on an upstream socket from anyone but the server
        self._send_errors = 0  # of closed upstream endpoints
        self._recv_errors = 0
        self._started_ns = 0
        self._elapsed_ns = 0

    @property
    def address(self) -> Address:
        """Where clients send (the address the server's public_address must name)."""
        return self._address

    def stop(self) -> None:
        self._stop.set()

    # ---- the loop ---------------------------------------------------------------------

    def run(self, duration: float | None = None,
            report: Callable[[dict], None] | None = None) -> dict:
        """Forward until stop() or for `duration` seconds; call report(counters()) every
        report_every seconds; return the final counters."""
        start = self._started_ns = now_ns()
        end = start + int(duration * 1e9) if duration is not None else None
        every = int(self.settings.report_every * 1e9)
        next_report = start + every if every and report else None
        next_housekeeping = start + HOUSEKEEPING_NS
        pipe, poller, listen = self.pipe, self.poller, self.listen
        while not self._stop.is_set():
            now = now_ns()
            if end is not None and now >= end:
                break
            wake = min(now + MAX_WAIT_NS, next_housekeeping)
            due = pipe.next_due()
            if due is not None:
                wake = min(wake, due)
            if end is not None:
                wake = min(wake, end)
            ready = poller.wait((wake - now) / 1e9)
            now = now_ns()
            for endpoint in ready:
                if endpoint is listen:
                    self._from_clients(now)
                else:
                    self._from_server(endpoint, now)
            self._forward(now)
            if now >= next_housekeeping:
                next_housekeeping = now + HOUSEKEEPING_NS
                self._housekeeping(now)
            if next_report is not None and now >= next_report:
                next_report = now + every
                self._elapsed_ns = now - start
                report(self.counters())
        self._elapsed_ns = now_ns() - start
        return self.counters()

    def _from_clients(self, now: int) -> None:
        pipe = self.pipe
        for data, addr in self.listen.recv_all(RECV_LIMIT):
            upstream = self.clients.get(addr)
            if upstream is None:
                upstream = self._open(addr, now)
                if upstream is None:
                    continue
            upstream.last_heard_ns = now
            pipe.to_server(data, addr, now)

    def _from_server(self, endpoint: UdpEndpoint, now: int) -> None:
        upstream = self._by_endpoint.get(id(endpoint))
        if upstream is None:
            return
        for data, addr in endpoint.recv_all(RECV_LIMIT):
            if addr != self.server:
                self.stray += 1
                continue
            self.pipe.to_client(data, upstream.client, now)

    def _forward(self, now: int) -> None:
        up, down = self.pipe.deliver(now)
        server, clients = self.server, self.clients
        for data, client in up:
            upstream = clients.get(client)
            if upstream is not None:
                upstream.endpoint.send(data, server)
        if down:
            self.listen.send_many(down)

    # ---- clients ----------------------------------------------------------------------

    def _open(self, client: Address, now: int) -> Upstream | None:
        if len(self.clients) >= self.settings.max_clients:
            self.clients_refused += 1
            return None
        try:
            endpoint = self._new_endpoint()
        except OSError:  # out of ports or file descriptors: this client waits
            self.clients_refused += 1
            return None
        every = self.settings.rebind_every
        upstream = Upstream(client, endpoint, now, now + int(every * 1e9) if every else 0)
        self.clients[client] = upstream
        self._by_endpoint[id(endpoint)] = upstream
        self.poller.add(endpoint)
        self.clients_seen += 1
        return upstream

    def _new_endpoint(self) -> UdpEndpoint:
        return UdpEndpoint(self._upstream_host, 0, io="portable", rcvbuf=UPSTREAM_BUFFER,
                           sndbuf=UPSTREAM_BUFFER)

    def _close_endpoint(self, endpoint: UdpEndpoint) -> None:
        self.poller.remove(endpoint)
        self._by_endpoint.pop(id(endpoint), None)
        self._send_errors += endpoint.send_errors
        self._recv_errors += endpoint.recv_errors
        endpoint.close()

    def _housekeeping(self, now: int) -> None:
        idle = int(self.settings.idle_timeout * 1e9)
        for client, upstream in list(self.clients.items()):
            if now - upstream.last_heard_ns > idle:
                self.clients_expired += 1
                del self.clients[client]
                self._close_endpoint(upstream.endpoint)
                self.pipe.remove(client)
            elif upstream.rebind_at_ns and now >= upstream.rebind_at_ns:
                self.rebind(upstream, now)

    def rebind(self, upstream: Upstream, now: int) -> None:
        """Move one client's upstream to a new socket (a new source port), as a NAT that
        rebinds; the old socket is closed, so what the server sends to it is lost."""
        try:
            endpoint = self._new_endpoint()
        except OSError:
            return  # no port free: try again at the next housekeeping
        old = upstream.endpoint
        upstream.endpoint = endpoint
        self._by_endpoint[id(endpoint)] = upstream
        self.poller.add(endpoint)
        self._close_endpoint(old)
        every = self.settings.rebind_every
        upstream.rebind_at_ns = now + int(every * 1e9) if every else 0
        self.rebinds += 1

    # ---- figures ----------------------------------------------------------------------

    def counters(self) -> dict:
        """Everything counted so far, JSON-ready: the links' counters per direction (up:
        client -> server) and the proxy's own."""
        live = list(self.clients.values())
        send_errors = (self._send_errors + self.listen.send_errors
                       + sum(u.endpoint.send_errors for u in live))
        recv_errors = (self._recv_errors + self.listen.recv_errors
                       + sum(u.endpoint.recv_errors for u in live))
        return {"listen": "%s:%d" % self.address, "server": "%s:%d" % self.server,
                "duration_s": round(self._elapsed_ns / 1e9, 3),
                "clients": len(self.clients), "clients_seen": self.clients_seen,
                "clients_refused": self.clients_refused,
                "clients_expired": self.clients_expired, "rebinds": self.rebinds,
                "stray": self.stray, "send_errors": send_errors, "recv_errors": recv_errors,
                **self.pipe.counters()}

    def close(self) -> None:
        """Close every socket (after run() returned)."""
        for upstream in list(self.clients.values()):
            self._close_endpoint(upstream.endpoint)
        self.clients.clear()
        self.poller.remove(self.listen)
        self.poller.close()
        self.listen.close()
