"""A swarm of hunting bots on one UDP socket, driven at the server's tick rate.

Sessions share the socket: replies are routed by session id (and, before a session
exists, by the salt echoed in CONNECT_ACCEPT / CONNECT_DENY).
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

from net.address import Address
from net.client import (CONNECTED, ClientProtocol, Connected, Denied, Disconnected,
                        Snapshot)
from net.hunter import Hunter
from net.udp import UdpEndpoint
from net.token import issue_token, issue_tokens
from net.wire import CHALLENGE, CONNECT_ACCEPT, CONNECT_DENY, HEADER_SIZE
from tick.clock import now_ns, now_s, sleep_until_ns, unix_s


log = logging.getLogger("xmarks.bots")

#: Seconds between two "n/N connected" lines while bots connect.
PROGRESS_EVERY_S = 1.0


def log_progress(line: str) -> None:
    """A progress line for people and CI logs (plain log lines, no bar): INFO on the
    `xmarks.bots` logger, so `xmarks bots --quiet` hides it."""
    log.info("%s", line, extra={"event": "bots_connecting"})


class ConnectProgress:
    """A line every `every_s` seconds while bots connect ("40/100 bots connected (2 s)"),
    one when the last has connected, and (finish()) one if the run ends before that."""

    def __init__(self, total: int, say: Callable[[str], None] = log_progress,
                 every_s: float = PROGRESS_EVERY_S) -> None:
        self.total = total
        self.say = say
        self.every_ns = int(every_s * 1e9)
        self.began = now_ns()
        self.next_at = self.began + self.every_ns
        self.done = False

    def poll(self, connected: Callable[[], int]) -> None:
        """Say how many are connected if a line is due (connected() is called only then:
        one clock read is all a call costs otherwise)."""
        if self.done:
            return
        now = now_ns()
        if now >= self.next_at:
            self.next_at = now + self.every_ns
            self.update(connected(), now)

    def update(self, connected: int, now: int | None = None) -> None:
        """`connected` bots are in: say so now (once more when that is all of them)."""
        if self.done:
            return
        elapsed = ((now or now_ns()) - self.began) / 1e9
        if connected >= self.total:
            self.done = True
            self.say(f"all {self.total} bots connected in {elapsed:.1f} s")
        else:
            self.say(f"{connected}/{self.total} bots connected ({elapsed:.0f} s)")

    def finish(self, connected: int) -> None:
        """The run is over: say how far connecting got, unless every bot made it."""
        if not self.done:
            self.done = True
            self.say(f"{connected}/{self.total} bots connected when the run ended")


def watch_horde_connects(horde, stop: Callable[[], bool],
                         say: Callable[[str], None] = log_progress) -> Callable[[], bool]:
    """`stop` for Horde.run (tick.horde) that also says, once a second until all are in,
    how many of the horde's bots are connected (its loop calls stop() every iteration)."""
    from net.horde import ST_ACCEPTS
    progress = ConnectProgress(horde.count, say)
    stats = horde.state.stats

    def check() -> bool:
        if not progress.done:  # until all are in: the last one is said at once
            n = int(stats[ST_ACCEPTS])
            if n >= progress.total:
                progress.update(n)
            else:
                progress.poll(lambda: n)
        return stop()
    return check


@dataclass
class Bot:
    client: ClientProtocol
    hunter: Hunter
    snapshots: int = 0
    connected_at: float | None = None
    closed_at: float | None = None
    claims: set = field(default_factory=set)
    denied: bool = False
    error: str | None = None
    latest: Snapshot | None = None


@dataclass
class SwarmReport:
    connected: int
    bots: int
    snapshots_received: int
    snapshots_per_bot_per_s: float
    claims: int
    confirmed_claims: int  # claims the server confirmed durable (in its ledger)
    errors: int
    error_reasons: dict
    drops: int
    duration_s: float

    def as_dict(self) -> dict:
        return dict(self.__dict__)


class Swarm:
    """`count` bots against `server`. Bots keep asking to connect for `connect_timeout`
    seconds (default: the whole run), so a server still compiling its kernels is waited for."""

    def __init__(self, server: Address, count: int, seed: int = 0, rate: float = 20.0,
                 name_prefix: str = "bot", connect_timeout: float | None = None, *,
                 key: bytes, token_lifetime: int = 3600,
                 progress: Callable[[str], None] | None = log_progress,
                 client_ids: list[int] | None = None) -> None:
        """progress: called with a line every second while bots connect (ConnectProgress;
        by default a log line); None: silent. client_ids: the bots' connect-token client
        ids (default: fresh random ones); the same ids again are the same players coming
        back (to a resumed server, or within the reconnect grace)."""
        self.server = server
        self.endpoint = UdpEndpoint("127.0.0.1" if server[0].startswith("127.") else "0.0.0.0", 0)
        rng = random.Random(seed)
        self.connect_timeout = connect_timeout
        # the bots are their own token service (they hold the server's key, as the
        # operator's backend would): tokens come from the same API `xmarks token` uses
        if client_ids is None:
            tokens = issue_tokens(key, server, count, unix_s(), token_lifetime,
                                  f"{name_prefix}-")
        else:
            if len(client_ids) != count:
                raise ValueError(f"{count} bots need {count} client ids, got {len(client_ids)}")
            tokens = [issue_token(key, cid, [server], f"{name_prefix}-{b}", unix_s(),
                                  token_lifetime) for b, cid in enumerate(client_ids)]
        self.bots = [Bot(ClientProtocol(token, salt=rng.getrandbits(64) | 1),
                         Hunter(random.Random(rng.getrandbits(64)))) for token in tokens]
        self.by_salt = {b.client.salt: b for b in self.bots}
        self.by_session: dict[int, Bot] = {}
        self.rate = rate
        self.progress = progress
        self._progress: ConnectProgress | None = None
        self.connected = 0  # bots accepted so far

    def run(self, duration: float, stop=lambda: False) -> SwarmReport:
        """Connect every bot, hunt for `duration` seconds, disconnect, and report."""
        start = now_s()
        if self.progress is not None:
            self._progress = ConnectProgress(len(self.bots), self.progress)
        for bot in self.bots:
            bot.client.connect_timeout = self.connect_timeout or duration
            self.endpoint.send(bot.client.connect(start), self.server)
        deadline = now_ns()
        while now_s() - start < duration and not stop() and not self._all_done():
            period = int(1e9 / self.rate)
            now = now_s()
            for data, _addr in self.endpoint.recv_all():
                self._route(data, now)
            for bot in self.bots:
                out, events = bot.client.poll(now)
                for data in out:
                    self.endpoint.send(data, self.server)
                self._handle(bot, events, now)
                if bot.client.state == CONNECTED and bot.latest is not None:
                    mx, my, dig = bot.hunter.decide(bot.latest, bot.client.info)
                    bot.latest = None
                    self.endpoint.send(bot.client.input(mx, my, dig, now), self.server)
            if self._progress is not None:
                self._progress.poll(lambda: self.connected)
            deadline += period
            if now_ns() > deadline + period:
                deadline = now_ns()
            sleep_until_ns(deadline)
        end = now_s()
        if self._progress is not None:
            self._progress.finish(self.connected)
        for bot in self.bots:
            packet = bot.client.disconnect()
            if packet is not None:
                self.endpoint.send(packet, self.server)
                bot.closed_at = end
        self.endpoint.close()
        return self._report(end - start, end)

    def _all_done(self) -> bool:
        """Every bot has been denied, timed out or told to leave: nothing more to measure."""
        return all(b.error is not None for b in self.bots)

    def _route(self, data: bytes, now: float) -> None:
        if len(data) < HEADER_SIZE:
            return
        ptype = data[3]
        if ptype in (CONNECT_ACCEPT, CONNECT_DENY, CHALLENGE) and len(data) >= HEADER_SIZE + 8:
            bot = self.by_salt.get(int.from_bytes(data[HEADER_SIZE:HEADER_SIZE + 8], "little"))
        else:
            bot = self.by_session.get(int.from_bytes(data[8:12], "little"))
        if bot is not None:
            self._handle(bot, bot.client.receive(data, now), now)

    def _handle(self, bot: Bot, events: list, now: float) -> None:
        for ev in events:
            if isinstance(ev, Snapshot):
                bot.snapshots += 1
                bot.latest = ev
                for tick, slot, treasure, value in ev.claims:
                    if slot == ev.slot:
                        bot.claims.add((tick, treasure))
                for tick, treasure, value, confirmed in ev.own_claims:  # "my": reliable
                    bot.claims.add((tick, treasure))
            elif isinstance(ev, Connected):
                bot.connected_at = now
                self.connected += 1
                if self._progress is not None and self.connected == len(self.bots):
                    self._progress.update(self.connected)
                self.by_session[ev.info.session_id] = bot
                self.rate = float(ev.info.tick_rate)  # one input per server tick
            elif isinstance(ev, Denied):
                bot.denied = True
                bot.error = f"denied ({ev.reason})"
            elif isinstance(ev, Disconnected):
                bot.closed_at = now
                bot.error = f"disconnected ({ev.reason})"

    def _report(self, duration: float, end: float) -> SwarmReport:
        connected = [b for b in self.bots if b.connected_at is not None]
        rates = [b.snapshots / max(1e-9, (b.closed_at or end) - b.connected_at)
                 for b in connected]
        return SwarmReport(
            connected=len(connected),
            bots=len(self.bots),
            snapshots_received=sum(b.snapshots for b in self.bots),
            snapshots_per_bot_per_s=round(sum(rates) / len(rates), 2) if rates else 0.0,
            claims=sum(len(b.claims) for b in self.bots),
            confirmed_claims=sum(len(b.client.confirmed) for b in self.bots),
            errors=sum(1 for b in self.bots if b.error is not None),
            error_reasons=dict(Counter(b.error for b in self.bots if b.error is not None)),
            drops=int(sum(int(b.client.drops.sum()) for b in self.bots)),
            duration_s=round(duration, 3),
        )
