"""store/ledger.py: the group-commit queue (confirmations, failures, retries, the bound)
through MemoryLedger, inline and on a writer thread."""

from __future__ import annotations

import logging
import threading
import time

from store.ledger import MemoryLedger
from store.records import CLAIM, JOIN, RANK, LedgerRecord, Recorder

UID = 42


class Clock:
    """Time stepped by hand (seconds)."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def claims(recorder: Recorder, tick: int, n: int, hunt: int = 0) -> list[LedgerRecord]:
    """n claim records of `tick` by client 1000 + i, each worth i + 1."""
    return [recorder._record(tick, CLAIM, hunt, 0, 1000 + i, i, f"p{i}", i, 0, i + 1, 10 * tick + i)
            for i in range(n)]


def test_submit_commits_and_confirms_in_order():
    ledger = MemoryLedger(UID)
    rec = Recorder(UID, 8)
    assert (ledger.confirmed_seq(), ledger.confirmed_tick()) == (0, -1)
    ledger.submit(0, claims(rec, 0, 3))
    ledger.submit(1, [])
    assert (ledger.confirmed_seq(), ledger.confirmed_tick()) == (3, 1)
    ledger.submit(2, claims(rec, 2, 2))
    st = ledger.status()
    assert st["backend"] == "memory" and st["pending"] == 0 and st["committed"] == 5
    assert st["faults"] == 0 and st["last_error"] is None and st["lost"] == 0
    assert (st["confirmed_seq"], st["confirmed_tick"]) == (5, 2)
    assert ledger.last_seq() == 5
    assert [r.seq for r in ledger.records_since(2)] == [3, 4, 5]
    assert [r.seq for r in ledger.claims_since(2)] == [4, 5]
    assert ledger.close() is True


def test_failed_commits_keep_everything_and_retry_commits_each_record_once(caplog):
    caplog.set_level(logging.INFO, "xmarks.ledger")
    ledger = MemoryLedger(UID)
    rec = Recorder(UID, 8)
    ledger.submit(0, claims(rec, 0, 2))
    ledger.fail_next(3, "disk full")
    for tick in (1, 2, 3):
        ledger.submit(tick, claims(rec, tick, 2))
        assert ledger.confirmed_tick() == 0 and ledger.confirmed_seq() == 2
    st = ledger.status()
    assert st["pending"] == 6 and st["faults"] == 3 and st["failing"] is True
    assert st["last_error"] == "LedgerFault: disk full"
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "disk full" in errors[0].getMessage()  # once per error
    ledger.submit(4, claims(rec, 4, 1))  # the fourth try goes through: one group commit
    assert ledger.commits == 2
    assert (ledger.confirmed_seq(), ledger.confirmed_tick()) == (9, 4)
    assert ledger.status()["last_error"] is None and ledger.status()["pending"] == 0
    assert [r.seq for r in ledger.records_since(0)] == list(range(1, 10))
    assert any("committing again" in r.getMessage() for r in caplog.records)


def test_a_distinct_error_is_logged_and_a_lasting_one_is_recalled(caplog):
    caplog.set_level(logging.ERROR, "xmarks.ledger")
    clock = Clock()
    ledger = MemoryLedger(UID, clock)
    rec = Recorder(UID, 8)
    ledger.fail_with = "read-only file"
    for tick in range(5):
        ledger.submit(tick, claims(rec, tick, 1))
        clock.now += 1.0
    assert len(caplog.records) == 1
    clock.now += 30.0
    ledger.submit(5, [])
    assert len(caplog.records) == 2 and "still failing after 6 attempts" in caplog.records[1].getMessage()
    ledger.fail_with = "locked"
    ledger.submit(6, [])
    assert len(caplog.records) == 3 and "locked" in caplog.records[2].getMessage()
    ledger.fail_with = None
    assert ledger.flush() and ledger.confirmed_seq() == 5 and ledger.confirmed_tick() == 6


def test_retrying_a_batch_that_already_landed_adds_nothing():
    ledger = MemoryLedger(UID)
    rec = Recorder(UID, 8)
    batch = claims(rec, 3, 4)
    ledger.submit(3, batch)
    ledger.submit(3, batch)  # the same records again: a retry after an unknown outcome
    assert len(ledger.records_since(0)) == 4
    assert ledger.scores(0) == {1000: 30, 1001: 31, 1002: 32, 1003: 33}


def test_past_the_queue_limit_records_are_lost_loudly_and_never_confirmed(caplog):
    caplog.set_level(logging.ERROR, "xmarks.ledger")
    ledger = MemoryLedger(UID, queue_limit=5)
    rec = Recorder(UID, 8)
    ledger.fail_with = "disk full"
    ledger.submit(0, claims(rec, 0, 3))
    ledger.submit(1, claims(rec, 1, 2))  # exactly at the limit
    ledger.submit(2, claims(rec, 2, 1))  # over: lost
    ledger.submit(3, claims(rec, 3, 2))  # lost too
    st = ledger.status()
    assert st["lost"] == 3 and st["lost_batches"] == 2 and st["pending"] == 5
    assert st["unconfirmed_from"] == 2
    assert sum("LOST" in r.getMessage() for r in caplog.records) == 1
    ledger.fail_with = None
    assert ledger.flush()
    assert ledger.confirmed_seq() == 5 and ledger.confirmed_tick() == 1
    ledger.submit(4, claims(rec, 4, 1))
    # tick 4 is durable, but ticks 2 and 3 lost records: nothing past tick 1 is confirmed
    assert ledger.confirmed_seq() == 9 and ledger.confirmed_tick() == 1
    ledger.checkpointed(3)  # a checkpoint before tick 3 covers tick 2, not tick 3
    assert ledger.confirmed_tick() == 2
    ledger.checkpointed(4)
    assert ledger.confirmed_tick() == 4 and ledger.status()["unconfirmed_from"] is None
    assert [r.tick for r in ledger.records_since(0)] == [0, 0, 0, 1, 1, 4]


def test_on_commit_gets_seconds_and_records_and_a_failing_hook_is_harmless():
    clock = Clock()
    ledger = MemoryLedger(UID, clock)
    rec = Recorder(UID, 8)
    seen = []

    def hook(seconds, n):
        seen.append((seconds, n))
        raise RuntimeError("metrics broke")

    ledger.on_commit = hook
    ledger.submit(0, claims(rec, 0, 3))
    ledger.submit(1, [])  # nothing to commit: no call
    ledger.submit(2, claims(rec, 2, 1))
    assert seen == [(0.0, 3), (0.0, 1)]
    assert ledger.confirmed_tick() == 2


def test_close_reports_what_could_not_be_committed_and_refuses_later_records():
    ledger = MemoryLedger(UID)
    rec = Recorder(UID, 8)
    ledger.fail_with = "disk full"
    ledger.submit(0, claims(rec, 0, 2))
    assert ledger.close() is False
    ledger.fail_with = None
    ledger.submit(1, claims(rec, 1, 1))
    assert ledger.status()["lost"] == 1 and ledger.records_since(0) == []


def test_scores_and_final_board_readers():
    ledger = MemoryLedger(UID)
    rec = Recorder(UID, 8)
    rows = [rec.joined(0, 0, 1, 7, "a", 0), rec.joined(0, 0, 2, 8, "b", 0),
            rec._record(1, CLAIM, 0, 0, 7, 1, "a", 3, 0, 4, 4),
            rec._record(2, CLAIM, 0, 0, 7, 1, "a", 4, 0, 2, 6),
            rec._record(3, RANK, 0, 0, 7, 1, "a", value=0, score=6),
            rec._record(3, RANK, 0, 0, 8, 2, "b", value=1, score=0),
            rec.joined(4, 1, 2, 8, "b", 0),
            rec._record(5, JOIN, 1, 0, 9, 3, "c", score=0)]
    ledger.submit(5, rows)
    assert ledger.scores(0) == {7: 6, 8: 0}
    assert ledger.scores(1) == {8: 0, 9: 0}
    assert ledger.final_board(0) == [(0, 7, "a", 6), (1, 8, "b", 0)]
    assert ledger.final_board(1) == []


def _wait(predicate, timeout=10.0):
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            return False
        time.sleep(0.005)
    return True


def test_writer_thread_group_commits_retries_with_backoff_and_flushes_on_close():
    ledger = MemoryLedger(UID, time.monotonic)
    ledger.start_writer()
    rec = Recorder(UID, 8)
    commits = []
    ledger.on_commit = lambda s, n: commits.append(n)
    ledger.fail_with = "disk full"
    for tick in range(20):
        ledger.submit(tick, claims(rec, tick, 2))
    assert _wait(lambda: ledger.status()["faults"] >= 2)
    assert ledger.confirmed_tick() == -1  # nothing durable, nothing confirmed
    ledger.fail_with = None
    assert _wait(lambda: ledger.confirmed_tick() == 19)
    assert sum(commits) == 40 and len(commits) < 20  # taken together, not tick by tick
    for tick in range(20, 30):
        ledger.submit(tick, claims(rec, tick, 1))
    assert ledger.close(5.0) is True
    assert [r.seq for r in ledger.records_since(0)] == list(range(1, 51))
    assert ledger.status()["pending"] == 0


def test_close_gives_up_on_a_writer_that_keeps_failing():
    ledger = MemoryLedger(UID, time.monotonic)
    ledger.start_writer()
    rec = Recorder(UID, 8)
    ledger.fail_with = "read-only file"
    ledger.submit(0, claims(rec, 0, 1))
    assert ledger.close(0.2) is False
    assert not ledger._thread.is_alive()
    assert ledger.status()["pending"] == 1


def test_submit_never_waits_for_a_slow_commit():
    """The tick thread's submit returns while the writer is stuck inside a commit."""
    release = threading.Event()
    inside = threading.Event()

    class Slow(MemoryLedger):
        def _write(self, records):
            inside.set()
            release.wait(10.0)
            super()._write(records)

    ledger = Slow(UID, time.monotonic)
    ledger.start_writer()
    rec = Recorder(UID, 8)
    ledger.submit(0, claims(rec, 0, 1))
    assert inside.wait(10.0)
    done = threading.Event()

    def tick_thread():
        for tick in range(1, 50):
            ledger.submit(tick, claims(rec, tick, 1))
            ledger.confirmed_tick()
            ledger.status()
        done.set()

    threading.Thread(target=tick_thread).start()
    assert done.wait(10.0), "submit blocked on the writer"
    assert ledger.confirmed_tick() == -1
    release.set()
    assert ledger.close(10.0) and ledger.confirmed_tick() == 49


def test_memory_ledger_refuses_a_record_of_another_world():
    ledger = MemoryLedger(UID)
    ledger.submit(0, claims(Recorder(UID + 1, 8), 0, 1))
    assert ledger.status()["faults"] == 1 and "world" in ledger.status()["last_error"]
    assert ledger.flush() is False and ledger.records_since(0) == []
