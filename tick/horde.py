"""The bot horde's driver: thousands of protocol clients from one process, one socket.

Where tick/swarm.py runs one ClientProtocol and one Hunter per bot in Python (fine for 50
bots), the horde keeps every bot as a row of preallocated arrays (net.horde.HordeState) and
its loop makes a handful of kernel calls per iteration whatever the number of bots:

    drain the socket (batches of RX_BATCH, for up to 2 ms) -> receive_batch(now)
    write_connects -> send_batch      (the ramp, challenge responses, resends every 250 ms)
    write_inputs(now) -> send_batch   (every bot whose input time has come)
    sleep until poll_interval after the iteration began (unless datagrams are waiting)

The horde is its own token service: it holds the server's token key and issues one
connect token per bot (net.token.issue_tokens, over the API `xmarks token` uses) when it is
built; the kernels tag and check every packet with the tokens' session keys.

This module is the only part of the horde that reads the clock (tick.clock, and the
thread's CPU time for the saturation figures).

What the latency figure is: input->ack = from the loop iteration that wrote input seq k
(its `now`, just before the datagram is handed to the kernel) to the `now` taken right after
the drain that brought the first snapshot whose "a" >= k. It includes the wait for the
server's next tick (the server reads inputs once per tick: about half a tick on average),
the server's tick (decode, step, encode, send up to this client's snapshot), loopback both
ways, and the horde's own delays: its send, its poll (at most one poll_interval, 0.5 ms by
default), and its queue (a server sends a whole tick of snapshots at once; the last ones
wait in the socket while the horde reads the first: about 2-3 us each here, so some 20 ms
for 10k bots at the end of a tick's burst). Each input is timed once; inputs sent during
warm-up are not.

What the CPU figures are: the driver thread's CPU time over wall time after warm-up. On a
2-vCPU VM an idle iteration costs some 40 us (about 24 us of it the sleep's own system
call), so an idle horde shows about 7% busy at the default poll_interval.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from net import horde as K
from net.address import Address, ip_to_int
from net.batch import DatagramBatch
from net.drops import drops_by_reason
from net.token import issue_tokens
from net.udp import UdpEndpoint
from net.wire import CONNECT_REQUEST_SIZE
from tick.clock import now_ns, sleep_until_ns, unix_s

#: Datagrams per drain. An iteration drains for at most RX_BUDGET_NS, then sends what is
#: due and comes straight back: a burst of snapshots (a server sends a whole tick's at
#: once) never holds inputs back for long.
RX_BATCH = 1024
RX_BUDGET_NS = 2_000_000
#: CONNECT_REQUESTs written per loop iteration at most (new ones and resends).
CONNECT_CHUNK = 1024
RESEND_NS = 250_000_000  # docs/PROTOCOL.md 11.1
CHECK_NS = 100_000_000  # how often session timeouts and the end of the run are checked
#: Receive buffer per bot: one snapshot (at most 1200 bytes) and the kernel's overhead.
RCVBUF_PER_BOT = 1536
RCVBUF_MIN = 4 * 1024 * 1024
#: A bot is "below" when it got fewer than this fraction of the snapshots due (minus one
#: for the edges of its window).
BELOW_FRACTION = 0.95
#: Saturation: the driver's thread busier than this, or inputs later than one period on
#: average. (Skipped input times are reported but not part of it: on a VM a sleep can
#: overshoot by 10 ms now and then, which skips inputs at 120 Hz without any CPU limit.)
SATURATED_BUSY = 0.9
#: Seconds the bots' connect tokens live from the horde's construction: a token is only
#: checked while its bot connects, which may be late in a long run (the ramp, a server
#: still starting), so a day.
TOKEN_LIFETIME_S = 86_400


def thread_cpu_ns() -> int:
    """CPU time of the calling thread (the driver runs every kernel in its own thread, so a
    server in the same process does not count)."""
    return time.thread_time_ns()


@dataclass
class HordeReport:
    """What a run measured. Rates per bot are over each bot's own window (from its accept,
    or the end of warm-up if later, to its close or the end of the run)."""

    bots: int
    connected: int  # bots ever accepted
    errors: int  # bots stopped by something other than their own quit
    error_reasons: dict
    snapshots_received: int
    snapshots_full: int
    snapshots_delta: int
    snapshot_bytes_mean: float  # datagram bytes, header included
    snapshot_rate: float  # per bot per second, from CONNECT_ACCEPT
    snapshots_per_bot_per_s: dict  # {"mean", "min"} after warm-up
    clients_below_95pct: int
    claims: int
    inputs_sent: int  # after warm-up
    input_rate: float
    input_lag_ms: float  # mean lateness of inputs vs their schedule, after warm-up
    inputs_skipped: int  # input times missed entirely (the driver was > 1 period late)
    latency_ms: dict  # input->ack {"mean", "p50", "p99", "max", "count"}, after warm-up
    latency_untimed: int  # acked inputs with no send time (warm-up, or older than the ring)
    drops: dict  # datagrams the bots dropped, by reason
    cpu_busy_fraction: float  # driver thread CPU / wall, after warm-up
    bots_cpu_saturated: bool  # the figures above may be the horde's limit, not the server's
    kernel_rcvbuf_drops: int  # -1: unknown
    send_errors: int
    rcvbuf_bytes: int
    io: str
    duration_s: float
    measured_s: float

    def as_dict(self) -> dict:
        return asdict(self)


class Horde:
    """`count` bots against `server` from one UDP socket.

    input_rate: inputs per bot per second (default: the server's tick rate, from
    CONNECT_ACCEPT). connect_rate: new bots per second (a ramp, so the server does not get
    10k requests in one tick). io: the endpoint's I/O path ("auto", "batched", "portable").
    connect_timeout: seconds a bot keeps asking (default: the whole run, so a server still
    compiling its kernels is waited for). poll_interval: seconds between loop iterations
    (the resolution of receive times). endpoint: an open UdpEndpoint to use (tests).
    key: the server's 32-byte token key: the horde issues each bot a connect token for
    `server` with it (client ids random, so two hordes on one server never collide), valid
    for token_lifetime seconds from now. One run per Horde: run() closes the endpoint it
    opened.
    """

    def __init__(self, server: Address, count: int, seed: int = 0,
                 input_rate: float | None = None, connect_rate: float = 2000.0,
                 io: str = "auto", connect_timeout: float | None = None,
                 poll_interval: float = 0.0005, endpoint: UdpEndpoint | None = None, *,
                 key: bytes, token_lifetime: int = TOKEN_LIFETIME_S) -> None:
        host, port = server
        self.server_ip = ip_to_int(host)  # IPv4 only (docs/PROTOCOL.md 2)
        if not 0 < port <= 0xFFFF:
            raise ValueError(f"server port must be in 1..65535, got {port!r}")
        if not (isinstance(count, int) and 1 <= count <= 65535):  # a server's slots at most
            raise ValueError(f"count must be an integer in 1..65535, got {count!r}")
        for name, value in (("input_rate", input_rate), ("connect_timeout", connect_timeout)):
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number or None, got {value!r}")
        if not (math.isfinite(connect_rate) and connect_rate > 0):
            raise ValueError(f"connect_rate must be a positive number, got {connect_rate!r}")
        if not (math.isfinite(poll_interval) and 0 < poll_interval <= 0.05):
            raise ValueError(f"poll_interval must be in (0, 0.05] s, got {poll_interval!r}")
        self.server = (host, int(port))
        self.count = count
        self.input_rate = input_rate
        self.connect_rate = float(connect_rate)
        self.connect_timeout_ns = int(connect_timeout * 1e9) if connect_timeout else 0
        self.poll_ns = int(poll_interval * 1e9)
        # before the socket: a bad key or lifetime (TokenError, a ValueError) opens nothing
        tokens = issue_tokens(key, (host, int(port)), count, unix_s(), token_lifetime)
        self.state = K.HordeState(tokens, seed)  # state.tokens[b]: bot b's token
        self._own_endpoint = endpoint is None
        self.endpoint = endpoint or _open_endpoint(
            "127.0.0.1" if host.startswith("127.") else "0.0.0.0", io,
            max(RCVBUF_MIN, count * RCVBUF_PER_BOT))
        self._send_batch = getattr(self.endpoint, "send_batch", None) or self._send_portable
        self.send_errors = 0
        self.batch = DatagramBatch.allocate(RX_BATCH)
        self.conn_buf = np.zeros(CONNECT_CHUNK * CONNECT_REQUEST_SIZE, np.uint8)
        self.conn_off = np.zeros(CONNECT_CHUNK + 1, np.int32)
        self.in_buf = np.zeros(count * K.INPUT_ROOM, np.uint8)
        self.in_off = np.zeros(count + 1, np.int32)
        rows = max(count, CONNECT_CHUNK)
        self.dst_ip = np.full(rows, self.server_ip, np.int64)
        self.dst_port = np.full(rows, port, np.int64)
        K.warm_up()  # compile (or load) every kernel before the first datagram

    # ---- the loop ----------------------------------------------------------------------

    def run(self, duration: float, warmup: float = 0.0,
            stop: Callable[[], bool] | None = None) -> HordeReport:
        """Connect (ramped), hunt for `duration` seconds, disconnect every bot, report.

        Latency, rates, lag and CPU count only after the first `warmup` seconds. Returns
        early when stop() is true or every bot has stopped (denied, timed out, or told to
        leave by the server)."""
        st = self.state
        stats, bots = st.stats, st.bots
        stop = stop or (lambda: False)
        start = now_ns()
        end = start + int(duration * 1e9)
        measure_from = start + int(warmup * 1e9)
        base = np.zeros_like(stats)
        cpu0, wall0 = thread_cpu_ns(), start
        measuring = False
        next_check = start
        while True:
            began = now_ns()
            if began >= end or stop():
                break
            if not measuring and began >= measure_from:
                measuring = True
                base = stats.copy()
                cpu0, wall0 = thread_cpu_ns(), began
            backlog = self._receive(measure_from, began + RX_BUDGET_NS)
            now = now_ns()
            target = min(self.count, 1 + int(self.connect_rate * (now - start) / 1e9))
            allowance = target - int(stats[K.ST_STARTED])
            if allowance > 0 or stats[K.ST_CONNECTING] > 0:
                n = st.connects(now, allowance, RESEND_NS, self.connect_timeout_ns,
                                self.conn_buf, self.conn_off)
                self._send(self.conn_buf, self.conn_off, n)
            if st.srv[K.SRV_KNOWN]:
                n = st.inputs(now, self.input_period_ns(), self.in_buf, self.in_off)
                self._send(self.in_buf, self.in_off, n)
            if now >= next_check:  # a few times a second: timeouts, and the end
                next_check = now + CHECK_NS
                st.expire(now)
                if (stats[K.ST_STARTED] == self.count and stats[K.ST_CONNECTING] == 0
                        and not np.any(bots[:, K.B_STATE] == K.CONNECTED)):
                    break  # every bot is final (denied, timed out, told to leave)
            if not backlog:
                sleep_until_ns(began + self.poll_ns)
        loop_end = now_ns()
        cpu1 = thread_cpu_ns()
        n = st.disconnects(loop_end, self.in_buf, self.in_off)
        self._send(self.in_buf, self.in_off, n)
        kernel_drops = getattr(self.endpoint, "kernel_drops", None)
        drops_kernel = kernel_drops() if kernel_drops is not None else -1
        if self._own_endpoint:
            self.endpoint.close()
        return self._report(start, measure_from if measuring else start, loop_end,
                            (cpu1 - cpu0) / max(1, loop_end - wall0),
                            stats - base if measuring else stats, drops_kernel)

    def input_period_ns(self) -> int:
        """ns between two inputs of one bot (once the server's tick rate is known)."""
        rate = self.input_rate or float(self.state.srv[K.SRV_TICK_RATE]) or 20.0
        return max(1, int(round(1e9 / rate)))

    def _receive(self, measure_from: int, deadline: int) -> bool:
        """Drain and apply until the socket is empty or `deadline` (ns) has passed; return
        True if datagrams may still be waiting. Each batch is stamped with the time its drain
        returned: the receive time of every datagram in it."""
        ep, batch, st = self.endpoint, self.batch, self.state
        while True:
            got = ep.drain(batch)
            if got <= 0:
                return False
            now = now_ns()
            st.receive(batch, got, self.server_ip, self.server[1], now, measure_from)
            if got < batch.capacity:
                return False
            if now >= deadline:
                return True

    def _send(self, buf: np.ndarray, off: np.ndarray, n: int) -> None:
        if n > 0:
            sent, _nbytes = self._send_batch(buf, off, self.dst_ip, self.dst_port, n)
            self.send_errors += n - sent

    def _send_portable(self, buf: np.ndarray, off: np.ndarray, ip: np.ndarray,
                       port: np.ndarray, n: int) -> tuple[int, int]:
        """send_batch's contract, one Python call per datagram (an endpoint without it)."""
        view = memoryview(buf)
        sent = nbytes = 0
        for a, b in zip(off[:n].tolist(), off[1:n + 1].tolist()):
            if self.endpoint.send(view[a:b], self.server):
                sent += 1
                nbytes += b - a
        return sent, nbytes

    # ---- the report --------------------------------------------------------------------

    def _report(self, start: int, measure_from: int, loop_end: int, busy: float,
                stats: np.ndarray, kernel_drops: int) -> HordeReport:
        st = self.state
        bots = st.bots
        all_stats = st.stats
        rate = float(st.srv[K.SRV_SNAPSHOT_RATE])
        accepted = bots[:, K.B_ACCEPTED_AT] > 0
        closed_at = bots[:, K.B_CLOSED_AT]
        w0 = np.maximum(bots[:, K.B_ACCEPTED_AT], measure_from)
        w1 = np.where((closed_at > 0) & (closed_at < loop_end), closed_at, loop_end)
        window = (w1 - w0) / 1e9
        judged = accepted & (window * max(rate, 1e-9) >= 2.0)  # at least 2 snapshots due
        got = bots[:, K.B_SNAPS_MEASURED]
        per_s = got[judged] / window[judged]
        below = judged & (got < BELOW_FRACTION * rate * window - 1.0)
        lag_count = int(stats[K.ST_LAG_COUNT])
        lag_ms = int(stats[K.ST_LAG_SUM]) / lag_count / 1e6 if lag_count else 0.0
        skipped = int(stats[K.ST_SKIPPED])
        period_ms = self.input_period_ns() / 1e6
        saturated = bool(busy > SATURATED_BUSY or lag_ms > period_ms)
        reasons = st.error_reasons()
        return HordeReport(
            bots=self.count,
            connected=int(accepted.sum()),
            errors=int(np.count_nonzero(bots[:, K.B_ERROR])),
            error_reasons=reasons,
            snapshots_received=int(all_stats[K.ST_SNAPSHOTS]),
            snapshots_full=int(all_stats[K.ST_FULL]),
            snapshots_delta=int(all_stats[K.ST_DELTA]),
            snapshot_bytes_mean=round(int(all_stats[K.ST_SNAPSHOT_BYTES])
                                      / max(1, int(all_stats[K.ST_SNAPSHOTS])), 1),
            snapshot_rate=rate,
            snapshots_per_bot_per_s=dict(
                mean=round(float(per_s.mean()), 2) if per_s.size else 0.0,
                min=round(float(per_s.min()), 2) if per_s.size else 0.0),
            clients_below_95pct=int(below.sum()),
            claims=int(bots[:, K.B_CLAIMS].sum()),
            inputs_sent=int(stats[K.ST_INPUTS]),
            input_rate=round(1e3 / period_ms, 3),
            input_lag_ms=round(lag_ms, 3),
            inputs_skipped=skipped,
            latency_ms=K.latency_summary(st.hist, all_stats),
            latency_untimed=int(all_stats[K.ST_LAT_UNTIMED]),
            drops=drops_by_reason(st.drops),
            cpu_busy_fraction=round(busy, 3),
            bots_cpu_saturated=saturated,
            kernel_rcvbuf_drops=int(kernel_drops),
            send_errors=int(self.send_errors),
            rcvbuf_bytes=int(getattr(self.endpoint, "rcvbuf_bytes", -1)),
            io=str(getattr(self.endpoint, "io", "portable")),
            duration_s=round((loop_end - start) / 1e9, 3),
            measured_s=round((loop_end - measure_from) / 1e9, 3),
        )


def _open_endpoint(host: str, io: str, rcvbuf: int) -> UdpEndpoint:
    return UdpEndpoint(host, 0, io=io, rcvbuf=rcvbuf)
