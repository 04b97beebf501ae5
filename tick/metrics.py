"""Prometheus metrics of a running GameServer, read at scrape time (GET /metrics).

Nothing runs per packet or per tick for metrics: a scrape reads the server's counters and
folds the tick timing rows (tick.timings) recorded since the previous scrape into
cumulative histogram buckets. The one exception is the ledger's commit histogram, fed by
`ledger.on_commit(seconds, records)` from the ledger's writer thread once per commit.

Scrapes run on the admin HTTP threads while the tick thread runs: counters are read as they
are at that instant (Python ints, numpy counters), and a timing row is read only once it is
complete (index < timings.recorded) and not being overwritten (see `_fold_timings`).
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterator, Sequence

import numpy as np
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                    HistogramMetricFamily, Metric)
from prometheus_client.utils import floatToGoString

from net.drops import REASONS
from tick.timings import FIRST_PHASE, PHASES

#: Tick duration buckets as fractions of the tick budget (1 / tick_rate).
BUDGET_FRACTIONS = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 4.0)
#: Histogram phases: the timed phases, then their sum.
HISTOGRAM_PHASES = (*PHASES, "total")
#: Ledger commit buckets (seconds): an fsync on SSD is ~0.1-2 ms, on a busy disk 10-100 ms.
COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class _Histogram:
    """Bucket counts (non-cumulative, the last one +Inf) and a sum, for exposition."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = list(bounds)
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        # bisect_left: a value equal to a bound belongs to that bound's bucket (le)
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def buckets(self) -> list[tuple[str, float]]:
        out, running = [], 0
        for bound, n in zip([*self.bounds, float("inf")], self.counts):
            running += n
            out.append((floatToGoString(bound), running))
        return out


class ServerMetrics:
    """A prometheus_client Collector over one GameServer, on its own CollectorRegistry.

    `server` needs: tick_rate, timings (tick.timings.TickTimings: rows, recorded,
    overruns), protocol (connected_count(), drops: int64[len(REASONS)]), packets_in,
    packets_out, bytes_out, claims, and optionally ledger (with an `on_commit` attribute).

    The constructor reads only server.tick_rate and server.ledger, so it may run while the
    GameServer is still being built; everything else is read at scrape time.

    `render()` is the GET /metrics answer: (body, content type). Thread-safe: scrapes may
    come from several HTTP threads, commits from the ledger's writer thread.
    """

    def __init__(self, server) -> None:
        self.server = server
        self.tick_rate = float(server.tick_rate)
        period_ns = 1e9 / self.tick_rate
        # bounds in whole ns, compared with the ns durations exactly; labels in seconds
        self.bounds_ns = np.array([round(f * period_ns) for f in BUDGET_FRACTIONS], np.int64)
        self._labels = [floatToGoString(b / 1e9) for b in self.bounds_ns] + ["+Inf"]
        n_buckets = len(BUDGET_FRACTIONS) + 1
        self._counts = np.zeros((len(HISTOGRAM_PHASES), n_buckets), np.int64)
        self._sums_ns = np.zeros(len(HISTOGRAM_PHASES), np.int64)
        self._folded = 0  # timing rows seen (folded or lost) so far
        self.lost_rows = 0  # rows overwritten in the ring before a scrape could fold them
        self._commits = _Histogram(COMMIT_BUCKETS)
        self._commit_records = 0
        self._lock = threading.Lock()
        self._hooked = None
        self._hook_ledger()
        self.registry = CollectorRegistry()
        self.registry.register(self)

    # ---- the ledger hook ----------------------------------------------------------

    def observe_commit(self, seconds: float, records: int) -> None:
        """ledger.on_commit: one group commit took `seconds` and wrote `records` rows.
        Called from the ledger's writer thread."""
        with self._lock:
            self._commits.observe(float(seconds))
            self._commit_records += int(records)

    def _hook_ledger(self) -> None:
        """Take the ledger's on_commit if it is free (the ledger may be attached after
        this object was made: checked again at every scrape). The commit histogram is
        exported once hooked."""
        ledger = getattr(self.server, "ledger", None)
        if (ledger is not None and ledger is not self._hooked
                and getattr(ledger, "on_commit", None) is None):
            ledger.on_commit = self.observe_commit
            self._hooked = ledger

    # ---- scraping -----------------------------------------------------------------

    def render(self) -> tuple[bytes, str]:
        """The exposition text of every metric, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            self._hook_ledger()
            self._fold_timings()
            families = list(self._families())
        yield from families

    def _fold_timings(self) -> None:
        """Add the timing rows recorded since the last scrape to the histograms.

        Row i lives at rows[i % capacity]; rows below `recorded` are complete. While we copy,
        the tick thread may record rows `recorded`.. and so overwrite rows
        `recorded - capacity`..: only rows above (recorded after the copy) - capacity are
        kept, the older ones are counted in `lost_rows` (a scrape interval longer than the
        ring: 65536 ticks by default, 55 minutes at 20 Hz).
        """
        timings = self.server.timings
        rows = timings.rows
        cap = rows.shape[0]
        end = int(timings.recorded)
        if end <= self._folded:
            return
        begin = max(self._folded, end - cap + 1)  # row end - cap may be being overwritten
        block = rows[np.arange(begin, end) % cap, FIRST_PHASE:FIRST_PHASE + len(PHASES)]
        after = int(timings.recorded)
        keep_from = max(begin, after - cap + 1)
        block = block[keep_from - begin:]
        self.lost_rows += keep_from - self._folded
        self._folded = end
        if len(block) == 0:
            return
        durations = np.concatenate([block, block.sum(axis=1, keepdims=True)], axis=1)
        n_buckets = self._counts.shape[1]
        for k in range(durations.shape[1]):
            column = durations[:, k]
            # side="left": a duration equal to a bound is in that bound's (le) bucket
            index = np.searchsorted(self.bounds_ns, column, side="left")
            self._counts[k] += np.bincount(index, minlength=n_buckets)
            self._sums_ns[k] += int(column.sum())

    def _families(self) -> Iterator[Metric]:
        s = self.server
        ticks = HistogramMetricFamily(
            "xmarks_tick_duration_seconds",
            "Time of each tick phase, and of the whole tick (total), per tick.",
            labels=["phase"])
        for k, phase in enumerate(HISTOGRAM_PHASES):
            cumulative = np.cumsum(self._counts[k])
            ticks.add_metric([phase], list(zip(self._labels, cumulative.tolist())),
                             sum_value=int(self._sums_ns[k]) / 1e9)
        yield ticks
        yield CounterMetricFamily("xmarks_ticks_over_budget", "Ticks that ended after the "
                                  "next tick's deadline (overruns).", value=s.timings.overruns)
        yield GaugeMetricFamily("xmarks_players", "Players connected now.",
                                value=s.protocol.connected_count())
        yield CounterMetricFamily("xmarks_packets_received", "UDP datagrams drained.",
                                  value=s.packets_in)
        yield CounterMetricFamily("xmarks_packets_sent", "UDP datagrams sent.",
                                  value=s.packets_out)
        yield CounterMetricFamily("xmarks_bytes_sent", "UDP payload bytes sent.",
                                  value=s.bytes_out)
        yield CounterMetricFamily("xmarks_claims", "Treasures claimed.", value=s.claims)
        dropped = CounterMetricFamily("xmarks_packets_dropped", "Datagrams dropped, by "
                                      "reason (docs/PROTOCOL.md Appendix A).", labels=["reason"])
        for reason, count in zip(REASONS, np.array(s.protocol.drops).tolist()):
            dropped.add_metric([reason], count)
        yield dropped
        yield GaugeMetricFamily("xmarks_tick_rate_hertz", "Ticks per second the loop aims at.",
                                value=self.tick_rate)
        yield GaugeMetricFamily("xmarks_tick_budget_seconds",
                                "Time one tick may take (1 / tick rate).",
                                value=1.0 / self.tick_rate)
        if self._hooked is not None:
            commits = HistogramMetricFamily("xmarks_ledger_commit_seconds",
                                            "Time of each ledger group commit.")
            commits.add_metric([], self._commits.buckets(), sum_value=self._commits.total)
            yield commits
            yield CounterMetricFamily("xmarks_ledger_records", "Ledger records committed.",
                                      value=self._commit_records)
            # a failing disk must show on a dashboard, not only in the log
            status = self._hooked.status()
            yield CounterMetricFamily("xmarks_ledger_faults", "Ledger commits that failed "
                                      "(each is retried; nothing confirmed is lost).",
                                      value=status["faults"])
            yield GaugeMetricFamily("xmarks_ledger_failing", "1 while ledger commits fail.",
                                    value=1.0 if status["failing"] else 0.0)
            yield GaugeMetricFamily("xmarks_ledger_pending_records",
                                    "Ledger records waiting for the disk.",
                                    value=status["pending"])
            yield CounterMetricFamily("xmarks_ledger_lost_records", "Ledger records dropped "
                                      "because the queue was full (never confirmed).",
                                      value=status["lost"])
