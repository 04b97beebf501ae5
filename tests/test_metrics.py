"""Prometheus metrics (tick/metrics.py) over a fake server: names and types as exposed,
histogram buckets against a plain-Python count of the timing rows, each scrape folding only
the rows recorded since the last, the ring wrapping between scrapes, and the ledger hook."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from net.drops import REASONS, new_drop_counters
from tick.metrics import BUDGET_FRACTIONS, COMMIT_BUCKETS, ServerMetrics
from tick.timings import PHASES, TickTimings

PHASE_NAMES = (*PHASES, "total")


class FakeProtocol:
    def __init__(self) -> None:
        self.drops = new_drop_counters()
        self.players = 0

    def connected_count(self) -> int:
        return self.players


class FakeServer:
    """The attributes ServerMetrics reads of a GameServer."""

    def __init__(self, tick_rate: float = 20.0, ring: int = 1024) -> None:
        self.tick_rate = tick_rate
        self.timings = TickTimings(ring)
        self.protocol = FakeProtocol()
        self.packets_in = self.packets_out = self.bytes_out = self.claims = 0
        self.ledger = None
        self.log: list[list[int]] = []  # every row recorded: phase ns durations

    def record(self, durations_ns: list[int]) -> None:
        """One tick whose phases took `durations_ns` (one per phase)."""
        marks = [1_000]
        for d in durations_ns:
            marks.append(marks[-1] + d)
        self.timings.record(len(self.log), marks)
        self.log.append(list(durations_ns))


class FakeLedger:
    def __init__(self) -> None:
        self.on_commit = None
        self.state = {"faults": 0, "failing": False, "pending": 0, "lost": 0}

    def status(self) -> dict:
        return dict(self.state)


def scrape(metrics: ServerMetrics) -> dict:
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    return {f.name: f for f in text_string_to_metric_families(body.decode("utf-8"))}


def buckets_of(family, **labels) -> dict[float, float]:
    """{le: cumulative count} of one labelled histogram."""
    return {float(s.labels["le"]): s.value for s in family.samples
            if s.name.endswith("_bucket") and all(s.labels.get(k) == v for k, v in labels.items())}


def sample(family, suffix: str, **labels) -> float:
    [value] = [s.value for s in family.samples if s.name == family.name + suffix
               and all(s.labels.get(k) == v for k, v in labels.items())]
    return value


def reference_buckets(rows: list[list[int]], phase: str, budget_s: float) -> dict[float, int]:
    """Plain Python: for each bound, how many rows took at most that long in `phase`."""
    k = PHASE_NAMES.index(phase)
    values = [sum(r) if phase == "total" else r[k] for r in rows]
    out = {}
    for fraction in BUDGET_FRACTIONS:
        bound_ns = round(fraction * budget_s * 1e9)
        out[bound_ns / 1e9] = sum(1 for v in values if v <= bound_ns)
    out[float("inf")] = len(values)
    return out


def random_rows(rng: np.random.Generator, n: int, budget_ns: int) -> list[list[int]]:
    """Durations spread over 0..1.5 budget per phase, some exactly on a bucket bound."""
    rows = rng.integers(0, budget_ns * 3 // 2 // 5, size=(n, len(PHASES))).tolist()
    bounds = [round(f * budget_ns) for f in BUDGET_FRACTIONS]
    for i in range(0, n, 7):  # a duration equal to a bound counts in that bound's bucket
        rows[i][i % len(PHASES)] = bounds[i % len(bounds)]
    return rows


def test_names_types_and_values():
    server = FakeServer()
    server.protocol.players = 5
    server.protocol.drops[REASONS.index("bad_tag")] = 3
    server.packets_in, server.packets_out, server.bytes_out, server.claims = 11, 22, 3300, 4
    server.timings.overruns = 2
    families = scrape(ServerMetrics(server))
    types = {name: f.type for name, f in families.items()}
    assert types == {
        "xmarks_tick_duration_seconds": "histogram",
        "xmarks_ticks_over_budget": "counter",
        "xmarks_players": "gauge",
        "xmarks_packets_received": "counter",
        "xmarks_packets_sent": "counter",
        "xmarks_packets_dropped": "counter",
        "xmarks_bytes_sent": "counter",
        "xmarks_claims": "counter",
        "xmarks_tick_rate_hertz": "gauge",
        "xmarks_tick_budget_seconds": "gauge",
    }  # no ledger: no commit histogram
    assert sample(families["xmarks_ticks_over_budget"], "_total") == 2
    assert sample(families["xmarks_players"], "") == 5
    assert sample(families["xmarks_packets_received"], "_total") == 11
    assert sample(families["xmarks_packets_sent"], "_total") == 22
    assert sample(families["xmarks_bytes_sent"], "_total") == 3300
    assert sample(families["xmarks_claims"], "_total") == 4
    assert sample(families["xmarks_tick_rate_hertz"], "") == 20.0
    assert sample(families["xmarks_tick_budget_seconds"], "") == 0.05
    dropped = {s.labels["reason"]: s.value for s in families["xmarks_packets_dropped"].samples}
    assert set(dropped) == set(REASONS)  # every reason, zeros too: rate() needs them
    assert dropped["bad_tag"] == 3 and sum(dropped.values()) == 3
    ticks = families["xmarks_tick_duration_seconds"]
    assert {s.labels["phase"] for s in ticks.samples} == set(PHASE_NAMES)
    assert sorted(buckets_of(ticks, phase="total")) == sorted(
        [round(f * 0.05 * 1e9) / 1e9 for f in BUDGET_FRACTIONS] + [float("inf")])


def test_exposition_names_on_the_wire():
    body, _ = ServerMetrics(FakeServer()).render()
    text = body.decode()
    for name in ("xmarks_tick_duration_seconds_bucket{", "xmarks_tick_duration_seconds_sum{",
                 "xmarks_tick_duration_seconds_count{", "xmarks_ticks_over_budget_total ",
                 "xmarks_players ", "xmarks_packets_received_total ",
                 "xmarks_packets_sent_total ", 'xmarks_packets_dropped_total{reason="bad_tag"}',
                 "xmarks_bytes_sent_total ", "xmarks_claims_total "):
        assert name in text, name
    assert 'le="0.05"' in text  # the budget itself is a bound (20 Hz)


@pytest.mark.parametrize("tick_rate", [20.0, 30.0, 60.0])
def test_buckets_match_the_rows_and_a_second_scrape_adds_only_new_rows(tick_rate):
    rng = np.random.default_rng(int(tick_rate))
    server = FakeServer(tick_rate)
    budget_s = 1.0 / tick_rate
    budget_ns = round(budget_s * 1e9)
    metrics = ServerMetrics(server)
    for row in random_rows(rng, 300, budget_ns):
        server.record(row)
    first = scrape(metrics)["xmarks_tick_duration_seconds"]
    for phase in PHASE_NAMES:
        assert buckets_of(first, phase=phase) == reference_buckets(server.log, phase, budget_s)
        assert sample(first, "_count", phase=phase) == 300
    assert sample(first, "_sum", phase="step") == pytest.approx(
        sum(r[2] for r in server.log) / 1e9)

    again = scrape(metrics)["xmarks_tick_duration_seconds"]  # nothing new: nothing added
    assert buckets_of(again, phase="total") == buckets_of(first, phase="total")

    for row in random_rows(rng, 77, budget_ns):
        server.record(row)
    second = scrape(metrics)["xmarks_tick_duration_seconds"]
    for phase in PHASE_NAMES:
        assert buckets_of(second, phase=phase) == reference_buckets(server.log, phase, budget_s)
        assert sample(second, "_count", phase=phase) == 377
    assert sample(second, "_sum", phase="total") == pytest.approx(
        sum(sum(r) for r in server.log) / 1e9)
    assert metrics.lost_rows == 0


def test_rows_overwritten_between_scrapes_are_counted_lost_not_folded_twice():
    rng = np.random.default_rng(5)
    server = FakeServer(ring=16)
    metrics = ServerMetrics(server)
    budget_ns = 50_000_000
    for row in random_rows(rng, 10, budget_ns):
        server.record(row)
    scrape(metrics)
    for row in random_rows(rng, 40, budget_ns):  # the ring holds 16: 25 are gone
        server.record(row)
    ticks = scrape(metrics)["xmarks_tick_duration_seconds"]
    kept = server.log[:10] + server.log[-15:]  # the oldest kept row may be mid-overwrite
    assert metrics.lost_rows == 25
    for phase in PHASE_NAMES:
        assert buckets_of(ticks, phase=phase) == reference_buckets(kept, phase, 0.05)


def test_scrapes_from_threads_while_ticks_are_recorded_count_every_row_once():
    rng = np.random.default_rng(9)
    server = FakeServer(ring=1 << 14)
    metrics = ServerMetrics(server)
    rows = random_rows(rng, 3000, 50_000_000)
    done = threading.Event()

    def scraper():
        while not done.is_set():
            metrics.render()
    threads = [threading.Thread(target=scraper) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for row in rows:
            server.record(row)
    finally:
        done.set()
        for t in threads:
            t.join()
    ticks = scrape(metrics)["xmarks_tick_duration_seconds"]
    for phase in PHASE_NAMES:
        assert buckets_of(ticks, phase=phase) == reference_buckets(server.log, phase, 0.05)


def test_ledger_commits_feed_a_histogram_from_any_thread():
    server = FakeServer()
    server.ledger = FakeLedger()
    metrics = ServerMetrics(server)
    assert server.ledger.on_commit == metrics.observe_commit
    seconds = [0.0004, 0.001, 0.003, 0.02, 0.2, 5.0]  # 0.001 is a bound: le="0.001"

    def writer():
        for s in seconds * 100:
            server.ledger.on_commit(s, 3)
    threads = [threading.Thread(target=writer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    families = scrape(metrics)
    commits = families["xmarks_ledger_commit_seconds"]
    assert commits.type == "histogram"
    expected = {b: 400 * sum(1 for s in seconds if s <= b) for b in COMMIT_BUCKETS}
    expected[float("inf")] = 2400
    assert buckets_of(commits) == expected
    assert sample(commits, "_sum") == pytest.approx(400 * sum(seconds))
    assert sample(families["xmarks_ledger_records"], "_total") == 7200


def test_a_ledger_attached_later_is_hooked_at_the_next_scrape():
    server = FakeServer()
    metrics = ServerMetrics(server)
    server.ledger = FakeLedger()
    assert "xmarks_ledger_commit_seconds" in scrape(metrics)
    assert server.ledger.on_commit == metrics.observe_commit


def test_a_ledger_hook_taken_by_someone_else_is_left_alone():
    server = FakeServer()
    server.ledger = FakeLedger()
    mine = server.ledger.on_commit = lambda seconds, records: None
    families = scrape(ServerMetrics(server))
    assert server.ledger.on_commit is mine
    assert "xmarks_ledger_commit_seconds" not in families


def test_each_metrics_object_has_its_own_registry():
    from prometheus_client import REGISTRY
    a, b = ServerMetrics(FakeServer()), ServerMetrics(FakeServer())  # no duplicate error
    assert a.registry is not b.registry and a.registry is not REGISTRY
    assert b"xmarks_" not in __import__("prometheus_client").generate_latest(REGISTRY)


def test_a_real_server_is_read_as_the_fake_is():
    """GameServer has every attribute the collector reads, named as the fake names them."""
    from net.udp import UdpEndpoint
    from sim.rules import GameRules
    from tick.config import ServerConfig
    from tick.rates import TickRates
    from tick.server import GameServer

    rules = GameRules(world_width=256.0, world_height=256.0, max_players=8, treasure_count=8,
                      cell_size=64.0, seed=3)
    config = ServerConfig(rules=rules, rates=TickRates(tick_rate=30.0, status_every=0))
    server = GameServer(config, endpoint=UdpEndpoint("127.0.0.1", 0), key=bytes(32))
    try:
        metrics = ServerMetrics(server)
        for _ in range(12):
            server.run_tick()
        families = scrape(metrics)
    finally:
        server.close()
    ticks = families["xmarks_tick_duration_seconds"]
    rows = server.timings.latest()[:, 2:].tolist()
    for phase in PHASE_NAMES:
        assert sample(ticks, "_count", phase=phase) == 12
        assert buckets_of(ticks, phase=phase) == reference_buckets(rows, phase, 1 / 30.0)
    assert sample(families["xmarks_players"], "") == 0
    assert sample(families["xmarks_packets_received"], "_total") == server.packets_in
    assert sample(families["xmarks_tick_budget_seconds"], "") == pytest.approx(1 / 30.0)


def test_ledger_faults_pending_and_losses_are_exposed():
    server = FakeServer()
    server.ledger = FakeLedger()
    metrics = ServerMetrics(server)
    families = scrape(metrics)
    assert sample(families["xmarks_ledger_faults"], "_total") == 0
    assert sample(families["xmarks_ledger_failing"], "") == 0
    server.ledger.state.update(faults=3, failing=True, pending=120, lost=0)
    families = scrape(metrics)
    assert sample(families["xmarks_ledger_faults"], "_total") == 3
    assert sample(families["xmarks_ledger_failing"], "") == 1
    assert sample(families["xmarks_ledger_pending_records"], "") == 120
    assert sample(families["xmarks_ledger_lost_records"], "_total") == 0
