"""An impaired network link, sans-IO: loss, duplication, reordering, latency with jitter, a
bandwidth cap, a queue limit and bit corruption, seeded. For the protocol tests (a server
and clients in memory, time stepped by hand) and for `xmarks proxy` (tick/proxy.py).

One `Link` is one direction: `send(datagram, now_ns)` schedules it, `deliver(now_ns)`
returns everything due by then. What happens to one datagram sent at `now`:

1. **loss**: with probability `loss` it is dropped (counted in `lost`);
2. **duplicate**: a surviving datagram is, with probability `duplicate`, sent twice (the
   copy counted in `duplicated`); each copy then goes through 3-6 on its own;
3. **rate**: with a bandwidth cap (`rate` bytes/s) it leaves once the datagrams before it
   have: departure = max(now, link free) + size / rate; without one, departure = now;
4. **delay**: due = departure + latency + a jitter drawn **uniformly in [-jitter, +jitter]**,
   clamped so that a datagram is never due before it departed. Jitter alone reorders
   datagrams whose spacing is below the jitter (as netem's does);
5. **reorder**: with probability `reorder` the datagram is held back `reorder_delay_ms`
   more, so that the ones sent after it overtake it (counted in `reordered`). netem's
   `reorder` does the mirror image (it sends the chosen ones *without* the delay); both
   change the order the same way, and this one also works with zero latency;
6. **corrupt**: with probability `corrupt` one random bit of it is flipped.

A datagram that finds `queue_limit` datagrams in the link is dropped (`queue_dropped`):
memory is bounded. Datagrams due at the same nanosecond leave in send order.

Every draw comes from the link's own `random.Random(seed)`, a fixed number per datagram
(one more for the bit of a corrupted one), so the same seed and the same sends give the
same schedule, bit for bit.

`Pipe` holds two links (up: client to server, down: server to client) per client address,
made on first use, and delivers whatever is due across all of them.
"""

from __future__ import annotations

import heapq
import math
import random
from dataclasses import asdict, dataclass, fields

from net.address import Address

#: Upper bounds that catch a unit mistake (seconds given as ms, bits as bytes).
MAX_DELAY_MS = 60_000.0
MAX_QUEUE_LIMIT = 10_000_000

UP, DOWN = 0, 1  # a Pipe's two directions: client -> server, server -> client


@dataclass(frozen=True)
class LinkSettings:
    """How one direction of a link misbehaves. Probabilities are in 0..1, per datagram."""

    loss: float = 0.0  # dropped
    duplicate: float = 0.0  # sent twice
    reorder: float = 0.0  # held back reorder_delay_ms, so later datagrams overtake it
    corrupt: float = 0.0  # one random bit flipped
    latency_ms: float = 0.0  # one-way delay
    jitter_ms: float = 0.0  # delay += uniform(-jitter, +jitter), never below zero
    reorder_delay_ms: float = 100.0  # the extra hold-back of a reordered datagram
    rate: float = 0.0  # bytes per second the link carries; 0 = no cap
    queue_limit: int = 10_000  # datagrams in the link at once; more are dropped

    def validate(self) -> None:
        """Raise ValueError naming the first bad setting."""
        for name in ("loss", "duplicate", "reorder", "corrupt"):
            value = getattr(self, name)
            if not (_number(value) and 0.0 <= value <= 1.0):
                raise ValueError(f"{name} must be a probability in 0..1, got {value!r}")
        for name in ("latency_ms", "jitter_ms", "reorder_delay_ms"):
            value = getattr(self, name)
            if not (_number(value) and 0.0 <= value <= MAX_DELAY_MS):
                raise ValueError(f"{name} must be a number of milliseconds in "
                                 f"0..{MAX_DELAY_MS:g}, got {value!r}")
        if not (_number(self.rate) and self.rate >= 0.0):
            raise ValueError(f"rate must be a number of bytes per second >= 0 (0: no cap), "
                             f"got {self.rate!r}")
        value = self.queue_limit
        if not (isinstance(value, int) and not isinstance(value, bool)
                and 1 <= value <= MAX_QUEUE_LIMIT):
            raise ValueError(f"queue_limit must be an integer in 1..{MAX_QUEUE_LIMIT}, "
                             f"got {value!r}")

    def describe(self) -> str:
        """One line for logs: only what is switched on."""
        parts = []
        if self.latency_ms or self.jitter_ms:
            parts.append(f"{self.latency_ms:g}+-{self.jitter_ms:g} ms")
        for name in ("loss", "duplicate", "reorder", "corrupt"):
            value = getattr(self, name)
            if value:
                parts.append(f"{name} {value * 100:g}%")
        if self.reorder:
            parts.append(f"held back {self.reorder_delay_ms:g} ms")
        if self.rate:
            parts.append(f"rate {self.rate:g} B/s")
        return ", ".join(parts) or "no impairment"


def _number(value: object) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


@dataclass
class LinkCounters:
    """Datagrams by fate. sent + duplicated = lost + queue_dropped + delivered + in flight."""

    sent: int = 0  # handed to send()
    lost: int = 0
    duplicated: int = 0  # extra copies made
    reordered: int = 0  # copies held back
    corrupted: int = 0
    queue_dropped: int = 0
    delivered: int = 0  # copies handed out by deliver()
    bytes_delivered: int = 0

    def add(self, other: "LinkCounters") -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class Link:
    """One direction of an impaired link (see the module docstring).

    seed: an int or str for a fresh random.Random, or a Random to draw from.
    """

    def __init__(self, settings: LinkSettings = LinkSettings(),
                 seed: int | str | random.Random = 0) -> None:
        settings.validate()
        self.settings = settings
        self.rng = seed if isinstance(seed, random.Random) else random.Random(seed)
        self.counters = LinkCounters()
        self._queue: list[tuple[int, int, bytes]] = []  # heap of (due ns, send order, bytes)
        self._order = 0
        self._free_at = 0  # ns when the bandwidth cap lets the next datagram leave
        self._latency = int(settings.latency_ms * 1_000_000)
        self._jitter = int(settings.jitter_ms * 1_000_000)
        self._hold = int(settings.reorder_delay_ms * 1_000_000)
        self._ns_per_byte = 1e9 / settings.rate if settings.rate else 0.0

    def __len__(self) -> int:
        """Datagrams in the link (sent, not yet delivered)."""
        return len(self._queue)

    def next_due(self) -> int | None:
        """When the next datagram is due (ns), or None if the link is empty."""
        return self._queue[0][0] if self._queue else None

    def send(self, datagram: bytes, now_ns: int) -> int:
        """Put one datagram on the link at `now_ns`; return how many copies were scheduled
        (0 if lost or the queue was full, 2 if duplicated)."""
        s, c, draw = self.settings, self.counters, self.rng.random
        c.sent += 1
        lost = draw() < s.loss
        twice = draw() < s.duplicate  # both drawn always: a fixed count per datagram
        if lost:
            c.lost += 1
            return 0
        scheduled = self._schedule(datagram, now_ns)
        if twice:
            c.duplicated += 1
            scheduled += self._schedule(datagram, now_ns)
        return scheduled

    def _schedule(self, datagram: bytes, now_ns: int) -> int:
        s, c, rng = self.settings, self.counters, self.rng
        held = rng.random() < s.reorder
        jitter = rng.random()
        flip = rng.random() < s.corrupt
        bit = rng.randrange(8 * len(datagram)) if flip and datagram else -1
        if len(self._queue) >= s.queue_limit:
            c.queue_dropped += 1
            return 0
        depart = now_ns
        if self._ns_per_byte:
            depart = max(now_ns, self._free_at) + int(math.ceil(len(datagram) * self._ns_per_byte))
            self._free_at = depart
        due = depart + max(0, self._latency + int((2.0 * jitter - 1.0) * self._jitter))
        if held:
            c.reordered += 1
            due += self._hold
        if bit >= 0:
            c.corrupted += 1
            data = bytearray(datagram)
            data[bit >> 3] ^= 1 << (bit & 7)
            datagram = bytes(data)
        heapq.heappush(self._queue, (due, self._order, datagram))
        self._order += 1
        return 1

    def deliver(self, now_ns: int) -> list[bytes]:
        """Every datagram due by `now_ns`, in due order (equal due times: send order)."""
        queue, out = self._queue, []
        while queue and queue[0][0] <= now_ns:
            out.append(heapq.heappop(queue)[2])
        if out:
            self.counters.delivered += len(out)
            self.counters.bytes_delivered += sum(len(d) for d in out)
        return out


@dataclass
class LinkPair:
    """The two links between one client address and the server: up (client to server)
    and down (server to client)."""

    client: Address
    server: Address
    up: Link
    down: Link
    index: int  # order of first use in its Pipe (it seeds the links)

    def link(self, direction: int) -> Link:
        return self.up if direction == UP else self.down


class Pipe:
    """Impaired links between one server address and many client addresses.

    Each client address gets its own LinkPair on first use, seeded from `seed`, the order
    clients appear and the direction, so runs that see the same clients in the same order
    get the same schedule. `up` impairs client-to-server datagrams, `down` the others
    (default: the same settings). At most `max_pairs` clients at once (more are refused)
    and `max_in_flight` datagrams across all links (more are counted as queue drops).
    """

    def __init__(self, up: LinkSettings = LinkSettings(), down: LinkSettings | None = None,
                 seed: int = 0, server: Address = ("0.0.0.0", 0), max_pairs: int = 4096,
                 max_in_flight: int = 100_000) -> None:
        down = up if down is None else down
        up.validate()
        down.validate()
        for name, value in (("max_pairs", max_pairs), ("max_in_flight", max_in_flight)):
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.settings = (up, down)
        self.seed = seed
        self.server = server
        self.max_pairs = max_pairs
        self.max_in_flight = max_in_flight
        self.pairs: dict[Address, LinkPair] = {}
        self.refused = 0  # datagrams from clients beyond max_pairs
        self._by_index: dict[int, LinkPair] = {}
        self._next_index = 0
        self._timers: list[tuple[int, int, int, int]] = []  # (due, order, pair index, dir)
        self._armed: dict[tuple[int, int], int] = {}  # (pair index, dir) -> due in _timers
        self._order = 0
        self._in_flight = 0
        self._retired = (LinkCounters(), LinkCounters())  # counters of removed pairs

    def pair(self, client: Address) -> LinkPair | None:
        """The client's LinkPair, made on first use; None when max_pairs are in use."""
        found = self.pairs.get(client)
        if found is not None:
            return found
        if len(self.pairs) >= self.max_pairs:
            return None
        index = self._next_index
        self._next_index += 1
        up, down = self.settings
        found = LinkPair(client, self.server, Link(up, f"xmarks-link:{self.seed}:{index}:up"),
                         Link(down, f"xmarks-link:{self.seed}:{index}:down"), index)
        self.pairs[client] = self._by_index[index] = found
        return found

    def to_server(self, datagram: bytes, client: Address, now_ns: int) -> bool:
        """Send `datagram` from `client` to the server; False if the client was refused."""
        return self._send(datagram, client, UP, now_ns)

    def to_client(self, datagram: bytes, client: Address, now_ns: int) -> bool:
        """Send `datagram` from the server to `client`; False if the client was refused."""
        return self._send(datagram, client, DOWN, now_ns)

    def _send(self, datagram: bytes, client: Address, direction: int, now_ns: int) -> bool:
        pair = self.pair(client)
        if pair is None:
            self.refused += 1
            return False
        link = pair.link(direction)
        if self._in_flight >= self.max_in_flight:
            link.counters.sent += 1
            link.counters.queue_dropped += 1
            return True
        self._in_flight += link.send(datagram, now_ns)
        self._arm(pair.index, direction, link)
        return True

    def _arm(self, index: int, direction: int, link: Link) -> None:
        """Keep one timer per link at its earliest due time (stale ones are skipped)."""
        due = link.next_due()
        key = (index, direction)
        armed = self._armed.get(key)
        if due is None or (armed is not None and armed <= due):
            return
        self._armed[key] = due
        heapq.heappush(self._timers, (due, self._order, index, direction))
        self._order += 1

    def next_due(self) -> int | None:
        """The earliest time (ns) something may be due, or None if every link is empty."""
        return self._timers[0][0] if self._timers else None

    def deliver(self, now_ns: int) -> tuple[list[tuple[bytes, Address]],
                                            list[tuple[bytes, Address]]]:
        """Everything due by `now_ns`: (to the server, to clients), each a list of
        (datagram, client address), in due order per link."""
        out: tuple[list, list] = ([], [])
        timers = self._timers
        while timers and timers[0][0] <= now_ns:
            due, _, index, direction = heapq.heappop(timers)
            key = (index, direction)
            if self._armed.get(key) != due:
                continue  # superseded by an earlier timer, or the pair was removed
            del self._armed[key]
            pair = self._by_index[index]
            link = pair.link(direction)
            got = link.deliver(now_ns)
            self._in_flight -= len(got)
            out[direction].extend((d, pair.client) for d in got)
            self._arm(index, direction, link)
        return out

    def remove(self, client: Address) -> None:
        """Forget a client's links (what was in them is lost); their counts are kept."""
        pair = self.pairs.pop(client, None)
        if pair is None:
            return
        del self._by_index[pair.index]
        for direction in (UP, DOWN):
            link = pair.link(direction)
            self._in_flight -= len(link)
            self._armed.pop((pair.index, direction), None)
            self._retired[direction].add(link.counters)

    def counters(self) -> dict[str, dict[str, int]]:
        """{"up": {...}, "down": {...}}: LinkCounters summed over every pair, past and
        present, plus "in_flight" per direction."""
        out = {}
        for direction, name in ((UP, "up"), (DOWN, "down")):
            total = LinkCounters()
            total.add(self._retired[direction])
            in_flight = 0
            for pair in self.pairs.values():
                link = pair.link(direction)
                total.add(link.counters)
                in_flight += len(link)
            out[name] = total.as_dict() | {"in_flight": in_flight}
        return out

