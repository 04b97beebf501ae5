"""The overrun policy and the timing ring, with time stepped by hand."""

import numpy as np

from tick.schedule import next_deadline
from tick.timings import COL_START, COL_TICK, FIRST_PHASE, PHASES, TickTimings

PERIOD = 50_000_000  # 20 Hz in ns


def test_on_time_ticks_keep_absolute_deadlines():
    deadline = 0
    for n in range(1, 100):
        done = deadline + PERIOD // 3  # each tick takes a third of its budget
        deadline, overran = next_deadline(deadline, done, PERIOD)
        assert deadline == n * PERIOD and not overran


def test_short_overrun_is_caught_up_without_drift():
    deadline, overran = next_deadline(0, PERIOD + PERIOD // 2, PERIOD)  # 1.5 periods
    assert overran and deadline == PERIOD  # the next tick starts at once, still on the grid
    deadline, overran = next_deadline(deadline, deadline + 10, PERIOD)
    assert not overran and deadline == 2 * PERIOD


def test_long_stall_drops_the_backlog_instead_of_spiralling():
    done = 7 * PERIOD + 123  # a GC pause or a slow disk: 7 periods in one tick
    deadline, overran = next_deadline(0, done, PERIOD)
    assert overran and deadline == done  # restart from now: no burst of catch-up ticks
    deadline, overran = next_deadline(deadline, deadline + 5, PERIOD)
    assert deadline == done + PERIOD and not overran


def test_sustained_overload_runs_one_tick_per_tick_time():
    # Every tick costs 2 periods: the loop must not run ticks back to back forever.
    deadline, now, overruns, ticks = 0, 0, 0, 0
    while now < 100 * PERIOD:
        now = max(now, deadline) + 2 * PERIOD  # sleep until deadline, then a 2-period tick
        deadline, overran = next_deadline(deadline, now, PERIOD)
        overruns += overran
        ticks += 1
    assert ticks == 50 and overruns == 50


def test_timing_ring_records_phase_durations_and_wraps():
    ring = TickTimings(16)
    for tick in range(40):
        start = tick * 1000
        marks = [start + k * (tick + 1) for k in range(len(PHASES) + 1)]
        ring.record(tick, marks)
    rows = ring.latest()
    assert rows.shape == (16, FIRST_PHASE + len(PHASES))
    assert list(rows[:, COL_TICK]) == list(range(24, 40))  # oldest first, newest kept
    assert list(rows[:, COL_START]) == [t * 1000 for t in range(24, 40)]
    assert np.all(rows[:, FIRST_PHASE:] == (rows[:, COL_TICK] + 1)[:, None])
    assert len(ring.latest(5)) == 5 and ring.latest(5)[-1, COL_TICK] == 39
    assert len(TickTimings(16).latest()) == 0
