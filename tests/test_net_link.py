"""net.link: the seeded link simulator, in memory with time stepped by hand.

Statistical checks use fixed seeds, so each one is a fixed computation (no flakes); their
tolerances are still about 5 standard deviations wide, so another seed would pass too.
"""

from __future__ import annotations

import math

import pytest

from net.link import DOWN, UP, Link, LinkSettings, Pipe

MS = 1_000_000
N = 10_000


def payload(i: int) -> bytes:
    return i.to_bytes(4, "big") + b"x" * 20


def index(datagram: bytes) -> int:
    return int.from_bytes(datagram[:4], "big")


def run(link: Link, count: int = N, spacing_ns: int = MS) -> list[tuple[int, int]]:
    """Send datagram i at i * spacing; deliver at every due time exactly.
    Return [(datagram index, delivery time ns)] in delivery order."""
    out = []
    for i in range(count):
        now = i * spacing_ns
        while (due := link.next_due()) is not None and due < now:
            out += [(index(d), due) for d in link.deliver(due)]
        link.send(payload(i), now)
    while (due := link.next_due()) is not None:
        out += [(index(d), due) for d in link.deliver(due)]
    return out


def tolerance(p: float, n: int) -> float:
    return 5 * math.sqrt(p * (1 - p) / n)


def check_balance(link: Link) -> None:
    c = link.counters
    assert c.sent + c.duplicated == c.lost + c.queue_dropped + c.delivered + len(link)


# ---- statistics ---------------------------------------------------------------------------

def test_loss_fraction():
    link = Link(LinkSettings(loss=0.2, latency_ms=5), seed=1)
    got = run(link)
    c = link.counters
    assert c.sent == N and c.duplicated == 0 and c.queue_dropped == 0
    assert abs(c.lost / N - 0.2) < tolerance(0.2, N)
    assert len(got) == c.delivered == N - c.lost
    assert len({i for i, _ in got}) == len(got)  # nothing twice
    check_balance(link)


def test_duplicate_fraction_and_copies_arrive():
    link = Link(LinkSettings(duplicate=0.1, loss=0.05, latency_ms=5), seed=2)
    got = run(link)
    c = link.counters
    survivors = N - c.lost
    assert abs(c.duplicated / survivors - 0.1) < tolerance(0.1, survivors)
    seen: dict[int, int] = {}
    for i, _ in got:
        seen[i] = seen.get(i, 0) + 1
    assert sum(1 for n in seen.values() if n == 2) == c.duplicated
    assert max(seen.values()) <= 2
    assert c.delivered == survivors + c.duplicated
    check_balance(link)


def late_ones(got: list[tuple[int, int]]) -> int:
    """Datagrams delivered after one that was sent later."""
    late, newest = 0, -1
    for i, _ in got:
        if i < newest:
            late += 1
        newest = max(newest, i)
    return late


def test_reorder_holds_back_and_later_ones_overtake():
    # one datagram a ms, held back 10 ms: each held one is overtaken by the next ones
    link = Link(LinkSettings(reorder=0.05, reorder_delay_ms=10), seed=3)
    got = run(link)
    c = link.counters
    assert abs(c.reordered / N - 0.05) < tolerance(0.05, N)
    assert late_ones(got) == c.reordered
    assert len(got) == N and sorted(i for i, _ in got) == list(range(N))
    held = [(i, t) for i, t in got if t != i * MS]
    assert len(held) == c.reordered and all(t == i * MS + 10 * MS for i, t in held)


def test_delay_is_latency_plus_uniform_jitter():
    link = Link(LinkSettings(latency_ms=50, jitter_ms=20), seed=4)
    delays = [t - i * MS for i, t in run(link)]
    assert len(delays) == N
    assert min(delays) >= 30 * MS and max(delays) <= 70 * MS
    assert min(delays) < 31 * MS and max(delays) > 69 * MS  # the whole range is used
    mean = sum(delays) / N
    # uniform on [-20, 20] ms: sd 11.5 ms, so the mean of 10k is within 5 sd = 0.6 ms
    assert abs(mean - 50 * MS) < 0.6 * MS
    quarters = [sum(1 for d in delays if 30 * MS + q * 10 * MS <= d < 40 * MS + q * 10 * MS)
                for q in range(4)]
    assert all(abs(n / N - 0.25) < tolerance(0.25, N) for n in quarters), quarters


def test_jitter_beyond_latency_is_clamped_at_zero():
    link = Link(LinkSettings(latency_ms=10, jitter_ms=30), seed=5)
    delays = [t - i * 100 * MS for i, t in run(link, spacing_ns=100 * MS)]
    assert min(delays) == 0 and max(delays) <= 40 * MS
    zero = sum(1 for d in delays if d == 0) / N  # P(jitter <= -10 ms) = 20 / 60
    assert abs(zero - 1 / 3) < tolerance(1 / 3, N)


def test_order_is_kept_without_reorder_and_jitter():
    link = Link(LinkSettings(latency_ms=40, loss=0.1, duplicate=0.1), seed=6)
    got = run(link)
    order = [i for i, _ in got]
    assert order == sorted(order)
    assert all(t == i * MS + 40 * MS for i, t in got)
    assert link.counters.lost > 0 and link.counters.duplicated > 0


def test_equal_due_times_keep_send_order():
    link = Link(LinkSettings(latency_ms=5), seed=7)
    for i in range(50):
        link.send(payload(i), 0)
    assert link.deliver(5 * MS - 1) == []
    assert [index(d) for d in link.deliver(5 * MS)] == list(range(50))
    assert link.deliver(10**12) == [] and len(link) == 0


def test_deliver_gives_everything_due_in_due_order():
    link = Link(LinkSettings(latency_ms=100, jitter_ms=100), seed=8)
    for i in range(200):
        link.send(payload(i), i * MS)
    first = link.deliver(150 * MS)
    times = {index(d): None for d in first}
    assert first and len(link) == 200 - len(first)
    rest = link.deliver(10**12)
    assert len(first) + len(rest) == 200 and not set(times) & {index(d) for d in rest}


def test_corrupt_flips_exactly_one_bit():
    link = Link(LinkSettings(corrupt=1.0), seed=9)
    originals = [payload(i) for i in range(500)]
    for i, data in enumerate(originals):
        link.send(data, i)
    got = link.deliver(10**9)
    assert link.counters.corrupted == 500 and len(got) == 500
    for a, b in zip(originals, got):
        assert len(a) == len(b)
        assert sum(bin(x ^ y).count("1") for x, y in zip(a, b)) == 1
    link.send(b"", 0)  # nothing to flip
    assert link.deliver(10**9) == [b""]


def test_rate_cap_spaces_datagrams_by_their_size():
    link = Link(LinkSettings(rate=100_000, latency_ms=1), seed=10)
    for i in range(20):
        link.send(payload(i) + bytes(976), 0)  # 1000 bytes: 10 ms each at 100 kB/s
    got = run(link, count=0)
    assert [i for i, _ in got] == list(range(20))
    assert [t for _, t in got] == [(k + 1) * 10 * MS + MS for k in range(20)]


# ---- determinism and bounds ------------------------------------------------------------

PROFILE = LinkSettings(loss=0.05, duplicate=0.1, reorder=0.04, corrupt=0.01, latency_ms=250,
                       jitter_ms=250)


def test_same_seed_same_schedule():
    a = run(Link(PROFILE, seed=42), count=3000)
    b = run(Link(PROFILE, seed=42), count=3000)
    c = run(Link(PROFILE, seed=43), count=3000)
    assert a == b
    assert a != c


def test_a_random_instance_is_drawn_from():
    import random
    rng = random.Random(11)
    assert run(Link(PROFILE, seed=rng), count=500) == run(Link(PROFILE, seed=random.Random(11)),
                                                          count=500)


def test_queue_limit_bounds_memory():
    link = Link(LinkSettings(latency_ms=1000, duplicate=0.5, queue_limit=100), seed=12)
    for i in range(1000):
        link.send(payload(i), i)
        assert len(link) <= 100
    c = link.counters
    assert len(link) == 100 and c.queue_dropped == 1000 + c.duplicated - 100
    check_balance(link)
    assert len(link.deliver(10**12)) == 100
    assert link.send(payload(0), 10**12) == len(link) >= 1  # room again
    check_balance(link)


def test_counters_balance_under_every_impairment():
    link = Link(PROFILE, seed=13)
    run(link, count=2000)
    c = link.counters
    assert min(c.lost, c.duplicated, c.reordered, c.corrupted) > 0
    check_balance(link)
    assert c.bytes_delivered == 24 * c.delivered


@pytest.mark.parametrize("field,value", [
    ("loss", -0.1), ("loss", 1.5), ("duplicate", float("nan")), ("reorder", 2),
    ("corrupt", True), ("latency_ms", -1), ("jitter_ms", float("inf")),
    ("latency_ms", 120_000), ("reorder_delay_ms", "5"), ("rate", -1.0),
    ("queue_limit", 0), ("queue_limit", 1.5), ("queue_limit", True),
])
def test_bad_settings_are_one_line_errors_naming_the_setting(field, value):
    with pytest.raises(ValueError) as err:
        Link(LinkSettings(**{field: value}))
    message = str(err.value)
    assert message.startswith(field + " ") and "\n" not in message


def test_describe_names_only_what_is_on():
    assert LinkSettings().describe() == "no impairment"
    text = LinkSettings(loss=0.2, latency_ms=100, reorder=0.04).describe()
    assert text == "100+-0 ms, loss 20%, reorder 4%, held back 100 ms"


# ---- Pipe --------------------------------------------------------------------------------

A = ("10.0.0.1", 4000)
B = ("10.0.0.2", 4001)
C = ("10.0.0.3", 4002)


def test_pipe_routes_both_directions_per_client():
    pipe = Pipe(LinkSettings(latency_ms=10), LinkSettings(latency_ms=30), seed=1,
                server=("192.0.2.1", 7777))
    pipe.to_server(b"a-up", A, 0)
    pipe.to_server(b"b-up", B, 1)
    pipe.to_client(b"a-down", A, 2)
    assert pipe.next_due() == 10 * MS
    assert pipe.deliver(10 * MS - 1) == ([], [])
    assert pipe.deliver(10 * MS) == ([(b"a-up", A)], [])
    assert pipe.deliver(20 * MS) == ([(b"b-up", B)], [])  # due 10 ms + 1 ns
    assert pipe.deliver(10**9) == ([], [(b"a-down", A)])
    assert pipe.next_due() is None
    assert pipe.pair(A).server == ("192.0.2.1", 7777) and pipe.pair(A).client == A
    counts = pipe.counters()
    assert counts["up"]["delivered"] == 2 and counts["down"]["delivered"] == 1
    assert counts["up"]["in_flight"] == 0


def test_pipe_clients_get_independent_deterministic_links():
    def schedule(seed):
        pipe = Pipe(PROFILE, seed=seed)
        got = {A: [], B: []}
        for i in range(400):
            for addr in (A, B):
                pipe.to_server(payload(i), addr, i * 20 * MS)
            for data, addr in pipe.deliver(i * 20 * MS)[0]:
                got[addr].append(index(data))
        return got
    first = schedule(5)
    assert first == schedule(5)
    assert first[A] != first[B]  # each client's links draw on their own
    assert first != schedule(6)


def test_pipe_refuses_clients_beyond_max_pairs_and_removes_keep_counts():
    pipe = Pipe(LinkSettings(latency_ms=5), max_pairs=2)
    assert pipe.to_server(b"1", A, 0) and pipe.to_server(b"2", B, 0)
    assert not pipe.to_server(b"3", C, 0) and pipe.refused == 1
    pipe.to_client(b"4", A, 0)
    pipe.remove(A)  # its two datagrams in flight are gone
    assert pipe.deliver(10**9) == ([(b"2", B)], [])
    assert pipe.to_server(b"5", C, 10**9)  # room again
    counts = pipe.counters()
    assert counts["up"]["sent"] == 3 and counts["down"]["sent"] == 1
    assert counts["up"]["delivered"] == 1
    assert set(pipe.pairs) == {B, C}
    pipe.remove(A)  # twice: nothing


def test_pipe_bounds_datagrams_in_flight():
    pipe = Pipe(LinkSettings(latency_ms=100), max_in_flight=50)
    for i in range(80):
        pipe.to_server(payload(i), A, 0)
        pipe.to_client(payload(i), B, 0)
    counts = pipe.counters()
    assert counts["up"]["in_flight"] + counts["down"]["in_flight"] == 50
    assert counts["up"]["queue_dropped"] + counts["down"]["queue_dropped"] == 110
    up, down = pipe.deliver(10**9)
    assert len(up) + len(down) == 50
    pipe.to_server(payload(0), A, 10**9)
    assert pipe.counters()["up"]["in_flight"] == 1


def test_pipe_timers_follow_earlier_sends():
    # a later send due earlier (jitter) must be delivered on time, not after the first
    pipe = Pipe(LinkSettings(latency_ms=100, jitter_ms=100), seed=3)
    sent = {}
    for i in range(300):
        pipe.to_server(payload(i), A, i * MS)
        sent[i] = i * MS
    link = pipe.pair(A).up
    dues = sorted(due for due, _, _ in link._queue)
    now, got = 0, []
    for due in dues:
        assert pipe.next_due() <= due
        now = due
        got += pipe.deliver(now)[0]
    assert len(got) == 300 and pipe.next_due() is None
    assert len(pipe._timers) == 0
    assert UP == 0 and DOWN == 1
