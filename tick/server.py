"""The fixed-rate server loop: drain, decode, step, encode, send, on absolute deadlines.

Overrun policy (tick.schedule.next_deadline): a tick that ends after the next deadline is
counted as an overrun; more than a whole period behind, missed deadlines are dropped. The
simulation never runs ticks back to back to catch up, so under sustained overload the game
slows down (hunt clocks are in ticks) instead of spiralling.
"""

from __future__ import annotations

import gc
import logging
import signal
import threading
from collections.abc import Callable

import numpy as np

from net.batch import DatagramBatch
from net.drops import drops_by_reason
from net.events import PlayerJoined, PlayerLeft
from net.server import ServerProtocol
from net.udp import UdpEndpoint
from sim import schema as S
from sim.world import World, new_world
from net.security import parse_address
from tick.clock import now_ns, sleep_until_ns, unix_origin_ms
from tick.config import ServerConfig
from tick.schedule import next_deadline
from tick.timings import FIRST_PHASE, TickTimings
from tick.warmup import warm_up

log = logging.getLogger("xmarks.server")

#: Kernel buffer bytes one small datagram occupies (payload plus sk_buff overhead, about
#: 768-1280 B on Linux): socket buffers are sized for a tick of the largest world.
DATAGRAM_TRUESIZE = 1280
#: Drains per tick at most: with a full batch every time, the rest waits for the next tick
#: rather than starving the simulation.
MAX_DRAINS_PER_TICK = 16


class GameServer:
    """One world served over UDP. Construct, then run(); stop() from a signal or thread."""

    def __init__(self, config: ServerConfig, endpoint: UdpEndpoint | None = None, *,
                 key: bytes | Callable[[], bytes]) -> None:
        """key: the 32-byte token key (net.keys), shared with whoever issues tokens, or a
        function returning it, called once the socket is bound (so that a failed bind
        creates no key file)."""
        config.validate()
        self.config = config
        self.tick_rate = float(config.rates.tick_rate)
        self.period_ns = int(round(1e9 / self.tick_rate))
        self.world: World = new_world(config.rules, self.tick_rate)
        # a tick of inputs from every player, and a tick of snapshots to them, with room
        # for a late tick: the kernel caps this at rmem_max/wmem_max unless we are root
        buffer = 2 * config.rules.max_players * DATAGRAM_TRUESIZE
        self.endpoint = endpoint or UdpEndpoint(config.host, config.port, io=config.io,
                                                rcvbuf=buffer, sndbuf=buffer)
        # tokens name the address clients reach: the public one, else the one bound (whose
        # port is known only now when it was 0)
        security = config.security
        public = parse_address(security.public_address) if security.public_address else None
        # session-id nonces come from the OS, not the world seed: they must not be guessable
        if callable(key):
            key = key()
        self.protocol = ServerProtocol(self.world, config.limits, self.tick_rate,
                                       snapshot_every=config.rates.snapshot_every, key=key,
                                       address=public or self.endpoint.address,
                                       security=security, unix_origin_ms=unix_origin_ms())
        self.batch = DatagramBatch.allocate(config.limits.batch_size(config.rules.max_players))
        self.timings = TickTimings(config.rates.timing_ring)
        self.claims = 0
        self.packets_in = 0
        self.packets_out = 0
        self.bytes_out = 0
        self._stop = threading.Event()
        self._marks = [0] * 6  # phase boundaries of the current tick (ns)
        self._events: list = []  # session events of the current tick
        self._scheduled: list[tuple[float, object]] = []  # (seconds after start, callable)
        self._gc_at_start = 0

    @property
    def address(self) -> tuple[str, int]:
        return self.endpoint.address

    def stop(self) -> None:
        self._stop.set()

    def schedule(self, after_s: float, fn) -> None:
        """Call fn() between ticks once `after_s` seconds of run() have passed (e.g. the
        bench opening its measurement window). Checked once per tick; costs nothing when
        nothing is scheduled."""
        self._scheduled.append((after_s, fn))
        self._scheduled.sort(key=lambda item: item[0])

    def warm_up(self) -> None:
        warm_up(self.config.rules, self.config.limits, self.tick_rate)

    def run(self, duration: float | None = None) -> None:
        """Serve until stop() or for `duration` seconds; then tell clients and return."""
        period = self.period_ns
        # Everything allocated so far (world, buffers, compiled kernels) lives for the whole
        # run: move it out of the collector's sight so a collection never rescans it.
        gc.collect()
        gc.freeze()
        self._gc_at_start = _gc_collections()
        start = now_ns()
        end = start + int(duration * 1e9) if duration is not None else None
        deadline = start
        status_every = int(self.config.rates.status_every * 1e9)
        next_status = start + status_every if status_every else None
        rules = self.world.rules
        log.info("serving on %s:%d at %g Hz (world %gx%g, %d treasures, up to %d players, "
                 "%s UDP I/O)", *self.address, self.tick_rate, rules.world_width,
                 rules.world_height, rules.treasure_count, rules.max_players, self.endpoint.io)
        while not self._stop.is_set():
            if end is not None and now_ns() >= end:
                break
            done = self.run_tick()
            deadline, overran = next_deadline(deadline, done, period)
            self.timings.overruns += overran
            if next_status is not None and done >= next_status:
                next_status = done + status_every
                self._log_status()
            while self._scheduled and done - start >= self._scheduled[0][0] * 1e9:
                self._scheduled.pop(0)[1]()
            sleep_until_ns(deadline)
        self._shutdown()

    def run_tick(self) -> int:
        """One tick, every phase in order, timed; return when it ended (monotonic ns).

        Drain and decode alternate until a drain comes back short of a full batch (at most
        MAX_DRAINS_PER_TICK times); their times are summed per phase.
        """
        proto, world, endpoint, marks = self.protocol, self.world, self.endpoint, self._marks
        batch, events = self.batch, self._events
        start = now_ns()
        decode_ns = 0
        for _ in range(MAX_DRAINS_PER_TICK):
            t0 = now_ns()
            n = endpoint.drain(batch)
            t1 = now_ns()
            self.packets_in += n
            if n:
                got = proto.receive_batch(batch, t1)
                if got:
                    events += got
            t2 = now_ns()
            decode_ns += t2 - t1
            if n < batch.capacity:
                break
        t0 = now_ns()
        expired = proto.expire(t0)
        if expired:
            events += expired
        marks[0] = start
        marks[2] = now_ns()  # decode (with expiry) ends here; drain gets the loop's rest
        marks[1] = marks[2] - decode_ns - (marks[2] - t0)
        tick = world.tick
        claims = world.step()
        self.claims += claims
        # Claims can be dozens a tick at 10k players: they are walked in Python only when
        # logged (info); a hunt's end (rank events) is rare and always walked.
        if world.event_count > claims or (claims and log.isEnabledFor(logging.INFO)):
            self._on_world_events()
        marks[3] = now_ns()
        proto.encode()
        marks[4] = now_ns()
        replies = proto.datagrams_to_send()
        if replies:  # first: a new client's accept must arrive before its first snapshot
            sent, nbytes = endpoint.send_many(replies)
            self.packets_out += sent
            self.bytes_out += nbytes
        sent, nbytes = endpoint.send_batch(proto.out, proto.out_off, proto.out_ip,
                                           proto.out_port, proto.out_count)
        self.packets_out += sent
        self.bytes_out += nbytes
        marks[5] = done = now_ns()
        self.timings.record(tick, marks)
        if events:
            self._on_session_events(events)
            events.clear()
        return done

    def close(self) -> None:
        """Release the socket (after run() returned)."""
        self.endpoint.close()

    def _shutdown(self) -> None:
        left = self.protocol.shutdown()
        self.endpoint.send_many(self.protocol.datagrams_to_send())
        log.info("stopped at tick %d: %d players told, %d claims, %d overruns",
                 self.world.tick, len(left), self.claims, self.timings.overruns)

    def _on_session_events(self, events: list) -> None:
        for ev in events:
            if isinstance(ev, PlayerJoined):
                log.info("join: %s (slot %d) from %s:%d", ev.name, ev.slot, *ev.address)
            elif isinstance(ev, PlayerLeft):
                log.info("leave: %s (slot %d, %s)", ev.name, ev.slot, ev.reason)

    def _on_world_events(self) -> None:
        # (durability issue: these rows go to the ledger writer here)
        names = self.protocol.names
        for row in self.world.events[:self.world.event_count]:
            kind = row[S.EV_KIND]
            if kind == S.EVENT_CLAIM:
                slot = int(row[S.EV_A])
                log.info("claim: %s dug treasure #%d worth %d (score %d)", names[slot],
                         row[S.EV_C], row[S.EV_D], self.world.pi[S.P_SCORE, slot])
            elif kind == S.EVENT_HUNT_END:
                log.info("hunt %d over: %d ranked", row[S.EV_A], row[S.EV_B])
            elif kind == S.EVENT_RANK:
                log.info("  #%d %s: %d", row[S.EV_A] + 1, names[int(row[S.EV_B])], row[S.EV_D])

    def _log_status(self) -> None:
        recent = self.timings.latest(int(self.tick_rate * 5))
        total_ms = recent[:, FIRST_PHASE:].sum(axis=1) / 1e6
        p50, p99 = (np.percentile(total_ms, [50, 99]) if len(total_ms) else (0.0, 0.0))
        board = [f"{self.protocol.names[int(s)]}={int(sc)}" for s, _, sc in self.world.board
                 if s >= 0 and sc > 0][:5]
        drops = drops_by_reason(self.protocol.drops)
        collections = _gc_collections() - self._gc_at_start  # since the first tick
        log.info("tick %d | players %d | claims %d | tick ms p50 %.2f p99 %.2f | overruns %d"
                 " | gc %d | kernel drops %d | send errors %d | leaders %s | drops %s",
                 self.world.tick, self.protocol.connected_count(), self.claims, p50, p99,
                 self.timings.overruns, collections, self.endpoint.kernel_drops(),
                 self.endpoint.send_errors, " ".join(board) or "-", drops or "-")


def _gc_collections() -> int:
    return sum(s["collections"] for s in gc.get_stats())


def install_signal_handlers(server: GameServer) -> None:
    """SIGINT and SIGTERM stop the loop cleanly (clients are told, exit code 0)."""
    def handler(signum, frame):  # noqa: ARG001
        server.stop()
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
