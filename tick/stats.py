"""A measurement window over a running GameServer: what `xmarks bench` reads of the server.

The window opens between two ticks (GameServer.schedule, or SIGUSR1 from the bench when
its bots finish warming up) and closes between two ticks (`for_s` seconds later, or when
the server stops). At each edge it takes a snapshot of the server's counters; the figures
are the differences, so whatever happened before the window (kernel compiles, the bots'
connect ramp) is not in them:

- ticks: timing rows recorded in the window (their start is inside it); per phase p50 /
  p99 / max from those rows; overruns as the loop counts them (tick.schedule);
- snapshot sizes from the protocol's size histogram (end minus start);
- packets and bytes out, packets in; CPU seconds of the whole process (getrusage: every
  thread, user + system) -> server_cpu_us_per_client_tick;
- gross Python allocations (profiling.allocs.AllocationCounter, installed at the open,
  read at the close), gc collections, RSS (VmRSS, VmHWM), kernel receive drops of the
  server's socket (/proc/net/udp) and of the whole system (/proc/net/snmp RcvbufErrors).

Pure helpers (percentiles, histogram summaries, /proc parsing) take arrays or text, so they
are tested without a server. This module reads the clock: it is part of tick/.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import os
import resource
import signal
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from tick.clock import now_ns
from tick.timings import COL_START, FIRST_PHASE, PHASES

log = logging.getLogger("xmarks.stats")

PROC_STATUS = "/proc/self/status"
PROC_SNMP = "/proc/net/snmp"
PROC_SCHEDSTAT = "/proc/thread-self/schedstat"  # the tick loop's own thread


# ---- pure helpers ------------------------------------------------------------------------

def phase_figures(rows: np.ndarray) -> dict[str, dict[str, float]]:
    """{phase: {p50_ms, p99_ms, max_ms}} for each phase and "total" (their sum) over timing
    rows (int64[n, COLUMNS], tick.timings). Linear-interpolated percentiles (numpy's
    default); all zeros when there are no rows."""
    names = (*PHASES, "total")
    if len(rows) == 0:
        return {name: {"p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0} for name in names}
    ms = rows[:, FIRST_PHASE:FIRST_PHASE + len(PHASES)].astype(np.float64) / 1e6
    columns = [ms[:, k] for k in range(len(PHASES))] + [ms.sum(axis=1)]
    out = {}
    for name, values in zip(names, columns):
        p50, p99 = np.percentile(values, [50, 99])
        out[name] = {"p50_ms": round(float(p50), 4), "p99_ms": round(float(p99), 4),
                     "max_ms": round(float(values.max()), 4)}
    return out


def histogram_percentile(hist: np.ndarray, q: float) -> int:
    """The nearest-rank q-quantile (0 < q <= 1) of a histogram whose bin k counts the
    value k (e.g. datagram sizes): the smallest k with at least ceil(q * total) samples
    <= k. 0 for an empty histogram."""
    total = int(hist.sum())
    if total == 0:
        return 0
    rank = max(1, math.ceil(q * total))
    return int(np.searchsorted(np.cumsum(hist), rank))


def histogram_summary(hist: np.ndarray) -> dict[str, float]:
    """{count, mean, p50, p99, max} of a value histogram (int64[K]; bin k counts value k)."""
    total = int(hist.sum())
    if total == 0:
        return {"count": 0, "mean": 0.0, "p50": 0, "p99": 0, "max": 0}
    values = np.arange(hist.shape[0], dtype=np.float64)
    nonzero = np.flatnonzero(hist)
    return {"count": total, "mean": round(float((hist * values).sum() / total), 2),
            "p50": histogram_percentile(hist, 0.50), "p99": histogram_percentile(hist, 0.99),
            "max": int(nonzero[-1])}


def parse_proc_status(text: str) -> dict[str, float]:
    """{"rss_mb", "hwm_mb"} (MiB) from the text of /proc/<pid>/status (VmRSS, VmHWM in kB);
    -1.0 for a field that is missing."""
    out = {"rss_mb": -1.0, "hwm_mb": -1.0}
    keys = {"VmRSS:": "rss_mb", "VmHWM:": "hwm_mb"}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] in keys and fields[1].isdigit():
            out[keys[fields[0]]] = round(int(fields[1]) / 1024.0, 1)
    return out


def parse_snmp_udp(text: str) -> dict[str, int]:
    """The Udp counters of /proc/net/snmp as {name: value} (a header line of names, then a
    line of values; "UdpLite:" lines are not these)."""
    names: list[str] | None = None
    for line in text.splitlines():
        if not line.startswith("Udp: "):
            continue
        fields = line.split()[1:]
        if names is None:
            names = fields
        else:
            try:
                return {n: int(v) for n, v in zip(names, fields)}
            except ValueError:
                return {}
    return {}


def parse_schedstat(text: str) -> tuple[int, int]:
    """(ns on a CPU, ns runnable but waiting for a CPU) from /proc/<pid>/schedstat (three
    numbers: run ns, run-queue wait ns, timeslices); (-1, -1) if unreadable."""
    fields = text.split()
    if len(fields) < 2 or not (fields[0].isdigit() and fields[1].isdigit()):
        return -1, -1
    return int(fields[0]), int(fields[1])


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def system_rcvbuf_errors() -> int:
    """RcvbufErrors of every UDP socket of this network namespace; -1 if unknown."""
    return parse_snmp_udp(_read(PROC_SNMP)).get("RcvbufErrors", -1)


def write_json_atomic(path: str, obj: Any) -> None:
    """Write obj as JSON to path via a temporary file and a rename, so a reader polling
    for the file never sees half of it."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.replace(tmp, path)


def thread_cpu_ns() -> int:
    """CPU time of the calling thread (ns): what the floor probe times, so that another
    task taking the CPU mid-measurement does not count as cost."""
    return time.thread_time_ns()


def _gc_collections() -> int:
    return sum(s["collections"] for s in gc.get_stats())


def _cpu_s() -> tuple[float, int]:
    """(user + system CPU seconds of the process, involuntary context switches)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime, r.ru_nivcsw


# ---- the window ----------------------------------------------------------------------------

@dataclass
class _Edge:
    """The server's counters at one edge of the window."""

    t_ns: int
    recorded: int
    overruns: int
    packets_in: int
    packets_out: int
    bytes_out: int
    sizes: np.ndarray
    cpu_s: float
    preempted: int
    wait_ns: int
    allocs: int
    gc: int
    kernel_drops: int
    system_drops: int
    send_errors: int
    connected: int


class StatsWindow:
    """Counters of `server` over one window; figures written as JSON to `path` when the
    window closes (and the same dict kept in `figures`).

    after_s: open this long after run() began (0: at the first tick; None: only when
    install_signal()'s signal arrives: the bench sends SIGUSR1 when its bots have warmed
    up). for_s: close this long after opening (None: when the server stops; call finish()
    after run()). The window opens once: later opening calls are ignored.
    count_allocs: install profiling.allocs.AllocationCounter while open (its hooks are
    compiled in attach(), before the first tick, so opening costs no compile).
    """

    def __init__(self, server, path: str | None = None, after_s: float | None = 0.0,
                 for_s: float | None = None, count_allocs: bool = True) -> None:
        self.server = server
        self.path = path
        self.after_s = after_s
        self.for_s = for_s
        self.count_allocs = count_allocs
        self.figures: dict | None = None
        self._run_start_ns = 0
        self._open: _Edge | None = None
        self._closed = False
        self._counter = None
        self._alloc_note = ""

    # -- wiring --------------------------------------------------------------------------

    def attach(self) -> None:
        """Schedule the window on the server (call before server.run())."""
        if self.count_allocs:
            self._prepare_counter()
        else:
            self._alloc_note = "not counted (count_allocs=False)"
        self.server.schedule(0.0, self._mark_start)
        if self.after_s:
            self.server.schedule(self.after_s, self.open)

    def install_signal(self, signum: int = signal.SIGUSR1) -> None:
        """`signum` opens the window at the next tick boundary."""
        signal.signal(signum, lambda *_: self.server.schedule(0.0, self.open))

    def _prepare_counter(self) -> None:
        try:
            from profiling.allocs import AllocationCounter, available
        except ImportError as exc:  # profiling/ is optional for a server
            self._alloc_note = f"profiling.allocs unavailable: {exc}"
            return
        ok, why = available()
        if not ok:
            self._alloc_note = why
            return
        self._counter = AllocationCounter()
        self._counter.install().uninstall()  # compile the hooks now, not inside the run

    def _mark_start(self) -> None:
        # run()'s own start is the first tick's start (schedule() counts from it), which
        # may be long before now if that tick was slow
        first = self.server.timings.latest(1)
        self._run_start_ns = int(first[0, COL_START]) if len(first) else now_ns()
        if self.after_s is not None and not self.after_s:
            self.open()

    # -- edges ---------------------------------------------------------------------------

    def _edge(self) -> _Edge:
        s = self.server
        counter = self._counter
        cpu_s, preempted = _cpu_s()
        return _Edge(
            t_ns=now_ns(), recorded=s.timings.recorded, overruns=s.timings.overruns,
            packets_in=s.packets_in, packets_out=s.packets_out, bytes_out=s.bytes_out,
            sizes=s.protocol.snapshot_sizes.copy(), cpu_s=cpu_s, preempted=preempted,
            wait_ns=parse_schedstat(_read(PROC_SCHEDSTAT))[1],
            allocs=counter.count if counter is not None and counter.installed else 0,
            gc=_gc_collections(), kernel_drops=s.endpoint.kernel_drops(),
            system_drops=system_rcvbuf_errors(), send_errors=s.endpoint.send_errors,
            connected=s.protocol.connected_count())

    @property
    def is_open(self) -> bool:
        return self._open is not None and not self._closed

    def open(self) -> None:
        """Start the window now (once); schedule its close if for_s is set."""
        if self._open is not None:
            return
        counter = self._counter
        if counter is not None:
            try:
                counter.install()
            except RuntimeError as exc:
                self._alloc_note = str(exc)
                self._counter = None
        self._open = self._edge()
        if self.for_s:
            start = self._run_start_ns or self._open.t_ns
            self.server.schedule((self._open.t_ns - start) / 1e9 + self.for_s, self.close)
        log.debug("stats window opened")

    def close(self) -> None:
        """End the window now (once; nothing if it never opened) and write the figures."""
        if self._closed or self._open is None:
            return
        end = self._edge()
        counter = self._counter
        if counter is not None and counter.installed:
            counter.uninstall()
        self._closed = True
        self.figures = self.compute(self._open, end)
        if self.path:
            write_json_atomic(self.path, self.figures)

    def finish(self) -> dict | None:
        """After server.run() returned: close the window if still open; the figures
        (None if it never opened)."""
        self.close()
        return self.figures

    # -- figures -------------------------------------------------------------------------

    def compute(self, a: _Edge, b: _Edge) -> dict:
        """The window's figures from its two edges (see the module docstring)."""
        s = self.server
        ticks = b.recorded - a.recorded
        rows = s.timings.latest(ticks)
        rows = rows[(rows[:, COL_START] >= a.t_ns) & (rows[:, COL_START] < b.t_ns)]
        window_s = (b.t_ns - a.t_ns) / 1e9
        period_ms = 1000.0 / s.tick_rate
        total_ms = rows[:, FIRST_PHASE:FIRST_PHASE + len(PHASES)].sum(axis=1) / 1e6
        overruns = b.overruns - a.overruns
        sizes = b.sizes - a.sizes
        snap = histogram_summary(sizes)
        cpu_s = b.cpu_s - a.cpu_s
        # client-ticks served: each snapshot stands for snapshot_every ticks of one client
        # (exact even when clients come and go during the window)
        every = s.protocol.snapshot_every
        client_ticks = snap["count"] * every or ticks * (a.connected + b.connected) / 2.0
        status = parse_proc_status(_read(PROC_STATUS))
        allocs = b.allocs - a.allocs if self._counter is not None else -1
        return {
            "window_s": round(window_s, 3),
            "tick_rate": s.tick_rate,
            "snapshot_every": s.protocol.snapshot_every,
            "ticks": ticks,
            "ticks_expected": int(round(window_s * s.tick_rate)),
            "ticks_timed": int(len(rows)),  # < ticks only if the ring was too small
            "budget_ms": round(period_ms, 4),
            "ticks_over_budget": int(overruns),
            "overrun_pct": round(100.0 * overruns / ticks, 3) if ticks else 0.0,
            "ticks_work_over_budget": int(np.count_nonzero(total_ms > period_ms)),
            "phases": phase_figures(rows),
            "snapshot_bytes": {"mean": snap["mean"], "p50": snap["p50"], "p99": snap["p99"],
                               "max": snap["max"]},
            "snapshots": snap["count"],
            "snapshot_size_hist": _compact_hist(sizes),
            "packets_in": b.packets_in - a.packets_in,
            "packets_out": b.packets_out - a.packets_out,
            "bytes_out": b.bytes_out - a.bytes_out,
            "bandwidth_out_mbps": round((b.bytes_out - a.bytes_out) * 8 / window_s / 1e6, 3)
            if window_s > 0 else 0.0,
            "players_connected": {"open": a.connected, "close": b.connected},
            "clients_per_tick": round(client_ticks / ticks, 2) if ticks else 0.0,
            "server_cpu_s": round(cpu_s, 4),
            "server_cpu_busy_fraction": round(cpu_s / window_s, 4) if window_s > 0 else 0.0,
            "server_cpu_us_per_client_tick": round(cpu_s * 1e6 / client_ticks, 4)
            if client_ticks else 0.0,
            # time the tick thread was runnable but another task had its CPU: how much the
            # machine, not the server, stretched the ticks
            "server_cpu_wait_fraction": round((b.wait_ns - a.wait_ns) / 1e9 / window_s, 4)
            if min(a.wait_ns, b.wait_ns) >= 0 and window_s > 0 else -1.0,
            "server_preemptions": b.preempted - a.preempted,
            "py_allocs": allocs,
            "py_allocs_per_tick": round(allocs / ticks, 2) if ticks and allocs >= 0 else -1.0,
            "py_allocs_note": self._alloc_note,
            "gc_collections": b.gc - a.gc,
            "rss_mb": status["hwm_mb"],
            "rss_current_mb": status["rss_mb"],
            "kernel_rcvbuf_drops": (b.kernel_drops - a.kernel_drops)
            if min(a.kernel_drops, b.kernel_drops) >= 0 else -1,
            "kernel_rcvbuf_drops_system": (b.system_drops - a.system_drops)
            if min(a.system_drops, b.system_drops) >= 0 else -1,
            # datagrams the server could not send (buffer still full after retries, refused)
            "send_errors": b.send_errors - a.send_errors,
            "rcvbuf_bytes": int(getattr(s.endpoint, "rcvbuf_bytes", -1)),
            "sndbuf_bytes": int(getattr(s.endpoint, "sndbuf_bytes", -1)),
            "io": str(getattr(s.endpoint, "io", "portable")),
        }


def _compact_hist(hist: np.ndarray) -> list[list[int]]:
    """[[value, count], ...] for the non-zero bins of a histogram (for the probe)."""
    nz = np.flatnonzero(hist)
    return [[int(k), int(hist[k])] for k in nz]


def write_ready(path: str, address: tuple[str, int]) -> None:
    """Announce a process ready: {host, port, pid, t_ns} (t_ns: CLOCK_MONOTONIC, which
    every process of the machine shares, so the bench can line windows up with it)."""
    host, port = address
    write_json_atomic(path, {"host": host, "port": int(port), "pid": os.getpid(),
                             "t_ns": now_ns()})
