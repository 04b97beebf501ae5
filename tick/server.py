"""The fixed-rate server loop: drain, decode, step, encode, send, on absolute deadlines.

Overrun policy (tick.schedule.next_deadline): a tick that ends after the next deadline is
counted as an overrun; more than a whole period behind, missed deadlines are dropped. The
simulation never runs ticks back to back to catch up, so under sustained overload the game
slows down (hunt clocks are in ticks) instead of spiralling.
"""

from __future__ import annotations

import gc
import importlib.util
import logging
import signal
import threading
from collections.abc import Callable

import numpy as np

from net.admin_http import AdminServer
from net.batch import DatagramBatch
from net.drops import drops_by_reason
from net.events import PlayerAway, PlayerJoined, PlayerLeft, PlayerMoved
from net.server import ServerProtocol
from net.udp import UdpEndpoint
from sim import schema as S
from sim.world import World, new_world
from net.security import parse_address
from sim.control import WORLD_COMMANDS, warm_up_control
from store.input_log import InputLog
from tick.admin import HuntMaster
from tick.clock import now_ns, sleep_until_ns, unix_ms, unix_origin_ms
from tick.config import ServerConfig
from tick.encoders import EncodeCrew
from tick.ledger_keeper import LedgerKeeper, StoreStartError
from tick.overrun_log import OverrunLimiter, log_overrun
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
#: Seconds the shutdown gives the ledger's flush and the last checkpoint, so that SIGTERM
#: to exit stays within 5 s (the loop ends within a tick of the signal).
SHUTDOWN_FLUSH_S = 3.5


class GameServer:
    """One world served over UDP. Construct, then run(); stop() from a signal or thread."""

    def __init__(self, config: ServerConfig, endpoint: UdpEndpoint | None = None, *,
                 key: bytes | Callable[[], bytes],
                 admin_token: str | Callable[[], str] | None = None) -> None:
        """key: the 32-byte token key (net.keys), shared with whoever issues tokens, or a
        function returning it, called once the socket is bound (so that a failed bind
        creates no key file). admin_token: the admin API's bearer token (net.admin_token),
        or a function returning it, called after the UDP bind; without one (or with
        config.admin.admin_enabled false) there is no admin API. A taken admin port raises
        net.admin_http.AdminBindError."""
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
        # the admin API: calls answered between ticks (tick.admin); applied commands are
        # logged here as (tick, name, args) for replays. Bound before the key is read, so
        # a taken admin port creates no key file either; served once construction is done
        self.admin_log: list[tuple[int, str, dict]] = []
        self.desk = HuntMaster()
        self.admin: AdminServer | None = None
        try:
            if admin_token is not None and config.admin.admin_enabled:
                if callable(admin_token):
                    admin_token = admin_token()
                self.admin = AdminServer(config.admin.admin_host, config.admin.admin_port,
                                         admin_token, self.desk.submit, _metrics_of(self))
            # session-id nonces come from the OS, not the world seed: not guessable
            if callable(key):
                key = key()
        except BaseException:
            if self.admin is not None:
                self.admin.close()
            if endpoint is None:  # ours: a failed start leaves no socket open
                self.endpoint.close()
            raise
        self.protocol = ServerProtocol(self.world, config.limits, self.tick_rate,
                                       snapshot_every=config.rates.snapshot_every, key=key,
                                       address=public or self.endpoint.address,
                                       security=security, unix_origin_ms=unix_origin_ms())
        self.batch = DatagramBatch.allocate(config.limits.batch_size(config.rules.max_players))
        self.encoders = EncodeCrew(self.protocol)  # net.limits encode_threads
        try:  # the ledger, checkpoints, and a resumed world if there is one on disk
            self.keeper = LedgerKeeper(config.store, self.world, self.protocol, self.tick_rate)
        except BaseException:
            self._release()
            raise
        self.ledger = self.keeper.ledger
        # what the simulation consumes, per tick, for `xmarks replay` (store.input_log)
        self.input_log = None
        if config.store.input_log:
            try:
                self.input_log = InputLog(config.store.input_log, self.world, self.tick_rate,
                                          unix_ms())
            except OSError as exc:
                self.ledger.close(1.0)
                self._release()
                raise StoreStartError(f"input_log {config.store.input_log}: cannot write it "
                                      f"({exc.strerror})") from None
        self.final_hash: str | None = None  # the world's state hash when run() ended
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
        self.started_ns = now_ns()  # reset when run() starts
        if self.admin is not None:
            self.admin.start()
            log.info("admin API on http://%s:%d", *self.admin.address)

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
        warm_up_control(self.config.rules, self.tick_rate)  # the admin API's world commands

    def run(self, duration: float | None = None) -> None:
        """Serve until stop() or for `duration` seconds; then tell clients and return."""
        period = self.period_ns
        # Everything allocated so far (world, buffers, compiled kernels) lives for the whole
        # run: move it out of the collector's sight so a collection never rescans it.
        gc.collect()
        gc.freeze()
        self._gc_at_start = _gc_collections()
        start = self.started_ns = now_ns()
        end = start + int(duration * 1e9) if duration is not None else None
        deadline = start
        status_every = int(self.config.rates.status_every * 1e9)
        next_status = start + status_every if status_every else None
        every_cp = self.keeper.every_ns
        next_checkpoint = start + every_cp if every_cp else None
        rules = self.world.rules
        overruns = OverrunLimiter()  # at most one overrun line a second
        log.info("serving on %s:%d at %g Hz (world %gx%g, %d treasures, up to %d players, "
                 "%s UDP I/O)", *self.address, self.tick_rate, rules.world_width,
                 rules.world_height, rules.treasure_count, rules.max_players, self.endpoint.io,
                 extra={"event": "start", "address": "%s:%d" % self.address,
                        "tick_rate": self.tick_rate, "world_width": rules.world_width,
                        "world_height": rules.world_height,
                        "treasure_count": rules.treasure_count,
                        "max_players": rules.max_players, "io": self.endpoint.io,
                        "hunt": int(self.world.clock[S.HUNT_ID])})
        while not self._stop.is_set():
            if end is not None and now_ns() >= end:
                break
            done = self.run_tick()
            deadline, overran = next_deadline(deadline, done, period)
            self.timings.overruns += overran
            if overran and (count := overruns.note(done)):
                log_overrun(log, self.timings.latest(1)[0], self.tick_rate, count,
                            self.timings.overruns)
            if next_status is not None and done >= next_status:
                next_status = done + status_every
                self._log_status()
            if next_checkpoint is not None and done >= next_checkpoint:
                next_checkpoint = done + every_cp
                self.keeper.checkpoint()  # a copy now; the checkpoint thread writes it
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
        if events:
            self._before_step(events)
        if self.input_log is not None:
            self.input_log.before_step(world)
        marks[0] = start
        marks[2] = now_ns()  # decode (with expiry) ends here; drain gets the loop's rest
        marks[1] = marks[2] - decode_ns - (marks[2] - t0)
        tick = world.tick
        hunt = world.clock[S.HUNT_ID]  # the hunt this tick's joins and leaves belong to
        claims = world.step()
        self.claims += claims
        # Claims can be dozens a tick at 10k players: they are walked in Python only when
        # logged (info); a hunt's end (rank events) is rare and always walked.
        if world.event_count > claims or (claims and log.isEnabledFor(logging.INFO)):
            self._on_world_events()
        self.keeper.after_step(tick, events, int(hunt))  # queued; durable tick published
        marks[3] = now_ns()
        self.encoders.encode()
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
        proto.snapshots_sent(marks[4])  # acks of this tick time their round trip (net.rtt)
        marks[5] = done = now_ns()
        self.timings.record(tick, marks)
        if events:
            self._on_session_events(events)
            events.clear()
        self.desk.serve_pending(self, done)  # operators' calls land between two ticks
        return done

    def close(self) -> None:
        """Release the socket, the encode workers and the admin API (after run() returned)."""
        self.desk.close()
        self._release()

    def _release(self) -> None:
        if self.admin is not None:
            self.admin.close()
        self.encoders.close()
        self.endpoint.close()

    def _shutdown(self) -> None:
        """Stop accepting, tell every client, then make everything durable: the leaves,
        a last checkpoint and the ledger's flush, within SHUTDOWN_FLUSH_S."""
        self.desk.close()  # calls still queued get 503: no tick will answer them
        left = self.protocol.shutdown()
        self.endpoint.send_many(self.protocol.datagrams_to_send())
        if self.input_log is not None:
            for ev in left:
                self.input_log.leave(ev.slot)
            self.final_hash = self.input_log.close(self.world)
        else:
            self.final_hash = self.world.state_hash()
        durable = self.keeper.close(left, SHUTDOWN_FLUSH_S)
        log.info("stopped at tick %d: %d players told, %d claims, %d overruns; ledger and "
                 "checkpoint %s; state hash %s", self.world.tick, len(left), self.claims,
                 self.timings.overruns, "written" if durable else "NOT fully written",
                 self.final_hash, extra={"event": "stop", "tick": self.world.tick,
                                         "durable": durable, "hash": self.final_hash})

    # ---- what changes the world between two steps --------------------------------------

    def _before_step(self, events: list) -> None:
        """The tick's joins and leaves, noted for the input log; rejoining players of a
        resumed hunt get their scores back."""
        in_log = self.input_log
        if in_log is not None:
            for ev in events:
                if isinstance(ev, PlayerJoined) and not ev.resumed:
                    in_log.join(ev.slot, ev.generation)
                elif isinstance(ev, PlayerLeft):
                    in_log.leave(ev.slot)
        for slot, score in self.keeper.before_step(events):
            if in_log is not None:
                in_log.score(slot, score)

    def between_ticks(self, events: list, world_events: bool = False) -> None:
        """An operator's command changed the world between two ticks (tick.admin): players
        it removed (PlayerLeft events) and, with world_events, the events it wrote to
        world.events (end_hunt_now resets them first; otherwise they are the last step's,
        already handled). Logged, recorded in the ledger and the input log like a tick's."""
        if self.input_log is not None:
            for ev in events:
                if isinstance(ev, PlayerLeft):
                    self.input_log.leave(ev.slot)
        if events:
            self._on_session_events(events)
        if world_events and self.world.event_count:
            self._on_world_events()
        self.keeper.between_ticks(events, world_events)

    def note_command(self, tick: int, name: str, args: dict) -> None:
        """An applied operator command: kept in admin_log, and in the input log when it
        changes the world (sim.control.WORLD_COMMANDS)."""
        self.admin_log.append((tick, name, dict(args)))
        if self.input_log is not None and name in WORLD_COMMANDS:
            self.input_log.command(name, dict(args))

    def _on_session_events(self, events: list) -> None:
        # joins and leaves are routine (debug); a kick is an operator's act (info)
        debug = log.isEnabledFor(logging.DEBUG)
        for ev in events:
            if isinstance(ev, PlayerJoined):
                if ev.resumed:  # rare and worth seeing: a client came back for its player
                    log.info("back: %s (slot %d) from %s:%d", ev.name, ev.slot, *ev.address,
                             extra={"event": "back", "slot": ev.slot, "player": ev.name,
                                    "address": "%s:%d" % ev.address})
                elif debug:
                    log.debug("join: %s (slot %d) from %s:%d", ev.name, ev.slot, *ev.address,
                              extra={"event": "join", "slot": ev.slot, "player": ev.name,
                                     "address": "%s:%d" % ev.address})
            elif isinstance(ev, PlayerAway):
                if debug:
                    log.debug("away: %s (slot %d) timed out; waiting for it to come back",
                              ev.name, ev.slot, extra={"event": "away", "slot": ev.slot,
                                                       "player": ev.name})
            elif isinstance(ev, PlayerMoved):
                if debug:
                    log.debug("moved: %s (slot %d) from %s:%d to %s:%d", ev.name, ev.slot,
                              *ev.old, *ev.new, extra={"event": "moved", "slot": ev.slot,
                                                       "player": ev.name,
                                                       "address": "%s:%d" % ev.new})
            elif isinstance(ev, PlayerLeft):
                if ev.reason == "kicked":
                    log.info("kick: %s (slot %d)", ev.name, ev.slot,
                             extra={"event": "kick", "slot": ev.slot, "player": ev.name,
                                    "reason": ev.reason})
                elif debug:
                    log.debug("leave: %s (slot %d, %s)", ev.name, ev.slot, ev.reason,
                              extra={"event": "leave", "slot": ev.slot, "player": ev.name,
                                     "reason": ev.reason})

    def _on_world_events(self) -> None:
        # (durability issue: these rows go to the ledger writer here)
        names = self.protocol.names
        hunt = None  # the id of a hunt that ended this tick
        for row in self.world.events[:self.world.event_count]:
            kind = row[S.EV_KIND]
            if kind == S.EVENT_CLAIM:
                slot = int(row[S.EV_A])
                score = int(self.world.pi[S.P_SCORE, slot])
                log.info("claim: %s dug treasure #%d worth %d (score %d)", names[slot],
                         row[S.EV_C], row[S.EV_D], score,
                         extra={"event": "claim", "slot": slot, "player": names[slot],
                                "treasure": int(row[S.EV_C]), "value": int(row[S.EV_D]),
                                "score": score})
            elif kind == S.EVENT_HUNT_END:
                hunt = int(row[S.EV_A])
                log.info("hunt %d over: %d ranked", hunt, row[S.EV_B],
                         extra={"event": "hunt_end", "hunt": hunt, "ranked": int(row[S.EV_B])})
            elif kind == S.EVENT_RANK:
                slot = int(row[S.EV_B])
                log.info("  #%d %s: %d", row[S.EV_A] + 1, names[slot], row[S.EV_D],
                         extra={"event": "rank", "rank": int(row[S.EV_A]) + 1, "slot": slot,
                                "player": names[slot], "score": int(row[S.EV_D])})
        if hunt is not None:  # a hunt's end opens the next one at once (sim.hunt.end_hunt)
            duration_s = self.world.kr.hunt_ticks / self.tick_rate
            log.info("hunt %d started (%g s)", hunt + 1, duration_s,
                     extra={"event": "hunt_start", "hunt": hunt + 1, "duration_s": duration_s})

    def _log_status(self) -> None:
        recent = self.timings.latest(int(self.tick_rate * 5))
        total_ms = recent[:, FIRST_PHASE:].sum(axis=1) / 1e6
        p50, p99 = (np.percentile(total_ms, [50, 99]) if len(total_ms) else (0.0, 0.0))
        board = [f"{self.protocol.names[int(s)]}={int(sc)}" for s, _, sc in self.world.board
                 if s >= 0 and sc > 0][:5]
        drops = drops_by_reason(self.protocol.drops)
        collections = _gc_collections() - self._gc_at_start  # since the first tick
        players, kernel_drops = self.protocol.connected_count(), self.endpoint.kernel_drops()
        log.info("tick %d | players %d | claims %d | tick ms p50 %.2f p99 %.2f | overruns %d"
                 " | gc %d | kernel drops %d | send errors %d | leaders %s | drops %s",
                 self.world.tick, players, self.claims, p50, p99,
                 self.timings.overruns, collections, kernel_drops,
                 self.endpoint.send_errors, " ".join(board) or "-",
                 " ".join(f"{k}={v}" for k, v in drops.items()) or "-",
                 extra={"event": "status", "tick": self.world.tick, "players": players,
                        "claims": self.claims, "p50_ms": round(float(p50), 3),
                        "p99_ms": round(float(p99), 3), "overruns": self.timings.overruns,
                        "gc": collections, "kernel_drops": kernel_drops,
                        "send_errors": self.endpoint.send_errors, "leaders": board,
                        "drops": drops})


def _gc_collections() -> int:
    return sum(s["collections"] for s in gc.get_stats())


def _metrics_of(server: GameServer) -> Callable[[], tuple[bytes, str]] | None:
    """GET /metrics's renderer (tick.metrics), or None where that module is absent."""
    if importlib.util.find_spec("tick.metrics") is None:
        return None
    from tick.metrics import ServerMetrics
    return ServerMetrics(server).render


def install_signal_handlers(server: GameServer) -> None:
    """SIGINT and SIGTERM stop the loop cleanly (clients are told, exit code 0)."""
    def handler(signum, frame):  # noqa: ARG001
        server.stop()
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
