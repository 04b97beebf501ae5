"""GCRA buckets against a plain-Python token bucket; the per-address table."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from net.ratelimit import (ADDRESS_TABLE_SIZE, address_slot, gcra_params, gcra_take,
                           new_address_table)


class RefBucket:
    """A token bucket counted in nanoseconds of credit: it holds up to interval * burst
    (= tolerance + interval), gains 1 per ns, and a packet costs interval. Starts full."""

    def __init__(self, interval: int, tolerance: int) -> None:
        self.cap = tolerance + interval
        self.cost = interval
        self.credit = self.cap
        self.last: int | None = None

    def take(self, now: int) -> bool:
        if self.last is not None:
            self.credit = min(self.cap, self.credit + max(0, now - self.last))
        self.last = now if self.last is None else max(self.last, now)
        if self.credit >= self.cost:
            self.credit -= self.cost
            return True
        return False


def test_params() -> None:
    assert gcra_params(10.0, 1.0) == (100_000_000, 0)
    assert gcra_params(10.0, 5.0) == (100_000_000, 400_000_000)
    assert gcra_params(3.0, 2.0) == (333_333_333, 333_333_333)
    assert gcra_params(10.0, 0.0) == (100_000_000, 0)  # burst below 1 counts as 1
    interval, tolerance = gcra_params(0.0, 5.0)
    assert interval == 0 and tolerance >= 2**62
    assert gcra_params(-1.0, 1.0) == gcra_params(0.0, 1.0)


@settings(max_examples=200, deadline=None)
@given(st.floats(0.5, 5000.0), st.floats(1.0, 40.0),
       st.lists(st.integers(0, 50_000_000), min_size=1, max_size=300),
       st.integers(1, 10**15))
def test_gcra_matches_token_bucket(rate: float, burst: float, gaps: list[int], t0: int) -> None:
    interval, tolerance = gcra_params(rate, burst)
    tat = np.zeros(3, np.int64)
    ref = RefBucket(interval, tolerance)
    now = t0
    for gap in gaps:
        now += gap
        assert gcra_take(tat, 1, now, interval, tolerance) == ref.take(now), now - t0
    assert tat[0] == 0 and tat[2] == 0  # only bucket i is touched


def test_burst_then_steady_rate() -> None:
    interval, tolerance = gcra_params(100.0, 8.0)  # 10 ms apart after 8 at once
    tat = np.zeros(1, np.int64)
    now = 5_000_000_000
    assert sum(gcra_take(tat, 0, now, interval, tolerance) for _ in range(20)) == 8
    assert not gcra_take(tat, 0, now + interval - 1, interval, tolerance)
    assert gcra_take(tat, 0, now + interval, interval, tolerance)
    # then at 1 ms steps: one every 10 ms, at ms 20, 30, .., 1000 (ms 10 was just taken)
    passed = [ms for ms in range(1, 1001)
              if gcra_take(tat, 0, now + ms * 1_000_000, interval, tolerance)]
    assert passed == list(range(20, 1001, 10))


def test_rate_zero_is_unlimited() -> None:
    interval, tolerance = gcra_params(0.0, 1.0)
    tat = np.zeros(1, np.int64)
    now = 10**18
    assert all(gcra_take(tat, 0, now, interval, tolerance) for _ in range(100_000))
    assert tat[0] == now  # never runs ahead of now


def test_rejected_take_leaves_bucket_alone() -> None:
    interval, tolerance = gcra_params(1.0, 1.0)
    tat = np.zeros(1, np.int64)
    assert gcra_take(tat, 0, 1000, interval, tolerance)
    t = tat[0]
    for _ in range(10):
        assert not gcra_take(tat, 0, 1001, interval, tolerance)
    assert tat[0] == t


def test_address_table_replacement() -> None:
    addr_ip, addr_tat = new_address_table()
    assert addr_ip.shape == addr_tat.shape == (ADDRESS_TABLE_SIZE,)
    interval, tolerance = gcra_params(1.0, 1.0)
    a = 0x7F000001
    slot = address_slot(addr_ip, addr_tat, a)
    assert 0 <= slot < ADDRESS_TABLE_SIZE and addr_ip[slot] == a
    assert gcra_take(addr_tat, slot, 10**12, interval, tolerance)
    assert address_slot(addr_ip, addr_tat, a) == slot  # same ip: same entry, bucket kept
    assert not gcra_take(addr_tat, slot, 10**12, interval, tolerance)
    # find another ip that maps to the same entry: it takes it over with a full bucket
    b = next(ip for ip in range(a + 1, a + 10**6)
             if address_slot(*new_address_table(), ip) == slot)
    assert address_slot(addr_ip, addr_tat, b) == slot
    assert addr_ip[slot] == b and addr_tat[slot] == 0
    assert gcra_take(addr_tat, slot, 10**12, interval, tolerance)
    # and a comes back to a fresh bucket in turn
    assert address_slot(addr_ip, addr_tat, a) == slot and addr_tat[slot] == 0


def test_address_hash_spreads() -> None:
    """Neighbouring addresses, a /16 at a stride, and random ones all spread evenly."""
    rng = random.Random(3)
    cases = {"neighbours": range(0x0A000000, 0x0A000000 + 4 * ADDRESS_TABLE_SIZE),
             "stride 256": range(0xC0A80000, 0xC0A80000 + 256 * 4 * ADDRESS_TABLE_SIZE, 256),
             "random": [rng.getrandbits(32) for _ in range(4 * ADDRESS_TABLE_SIZE)]}
    for name, ips in cases.items():
        addr_ip, addr_tat = new_address_table()
        counts = np.bincount([address_slot(addr_ip, addr_tat, ip) for ip in ips],
                             minlength=ADDRESS_TABLE_SIZE)
        assert counts.max() <= 16, name  # 4 expected per entry
        assert (counts == 0).sum() < ADDRESS_TABLE_SIZE // 10, name


def test_address_slot_extremes_and_sizes() -> None:
    for size in (1, 2, 64, ADDRESS_TABLE_SIZE):
        addr_ip, addr_tat = new_address_table(size)
        for ip in (0, 1, 2**31 - 1, 2**31, 2**32 - 1):
            assert 0 <= address_slot(addr_ip, addr_tat, ip) < size
    with pytest.raises(ValueError):
        new_address_table(1000)
