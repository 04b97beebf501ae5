"""store/sqlite_ledger.py: the SQLite ledger on disk: schema, WAL, round trips, and write
failures (read-only file, full disk, a connection that raises), each followed by recovery
with every record committed exactly once."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time

import pytest

from store.ledger import LedgerError
from store.records import CLAIM, LedgerRecord, Recorder
from store.sqlite_ledger import SCHEMA_VERSION, SqliteLedger, read_world_uid

UID = 123456789


def _wait(predicate, timeout=15.0) -> bool:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            return False
        time.sleep(0.005)
    return True


def claims(rec: Recorder, tick: int, n: int) -> list[LedgerRecord]:
    """n claims of `tick`, with long names (so a few hundred of them need new pages)."""
    return [rec._record(tick, CLAIM, 0, 1_800_000_000_000 + tick, (2**64 - 1 - i) if i % 2 else i + 1,
                        i, "n" * 40 + str(i), i % 7, tick, 1 + i % 5, tick * 100 + i)
            for i in range(n)]


def rows_in(path: str) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT world, seq FROM ledger ORDER BY world, seq").fetchall()
    finally:
        conn.close()


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "ledger.sqlite3")


def test_schema_wal_and_meta_on_first_open(path):
    ledger = SqliteLedger(path, UID, clock=time.monotonic)
    assert ledger.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("SELECT value FROM meta WHERE key = 'world_uid'").fetchone()[0] == UID
    cols = [r[1] for r in conn.execute("PRAGMA table_info(ledger)")]
    assert cols == list(LedgerRecord._fields)
    conn.close()
    assert read_world_uid(path) == UID


def test_records_round_trip_with_u64_client_ids_and_reopen_continues(path):
    ledger = SqliteLedger(path, UID, clock=time.monotonic)
    rec = Recorder(UID, 8)
    sent = []
    for tick in range(5):
        batch = claims(rec, tick, 3) + [rec.joined(tick, 0, 7, 2**63, "edge", 5)]
        sent += batch
        ledger.submit(tick, batch)
    ledger.submit(5, [])
    assert _wait(lambda: ledger.confirmed_tick() == 5)
    assert ledger.confirmed_seq() == len(sent) == ledger.last_seq()
    assert ledger.records_since(0) == sent  # every field, None and u64 alike
    assert ledger.records_since(18) == sent[18:]
    assert ledger.claims_since(3) == [r for r in sent if r.kind == CLAIM and r.tick >= 3]
    assert ledger.scores(0)[2**64 - 2] == 401  # client 2**64-1-1: last claim at tick 4
    assert ledger.scores(0)[2**63] == 0
    assert ledger.close()
    again = SqliteLedger(path, UID, clock=time.monotonic)
    assert (again.confirmed_seq(), again.confirmed_tick()) == (20, 4)
    assert again.records_since(0) == sent
    assert again.close()


def test_worlds_share_a_file_without_seeing_each_other(path):
    a = SqliteLedger(path, 1, clock=time.monotonic)
    a.submit(0, claims(Recorder(1, 8), 0, 2))
    assert a.close()
    b = SqliteLedger(path, 2, clock=time.monotonic)
    assert b.last_seq() == 0 and b.confirmed_tick() == -1
    b.submit(0, claims(Recorder(2, 8), 0, 3))
    assert b.close()
    assert rows_in(path) == [(1, 1), (1, 2), (2, 1), (2, 2), (2, 3)]
    assert read_world_uid(path) == 2


@pytest.mark.parametrize("mode, code", [("FULL", 2), ("NORMAL", 1)])
def test_synchronous_mode_is_set_on_the_writer(path, mode, code):
    ledger = SqliteLedger(path, UID, clock=time.monotonic, synchronous=mode)
    conn = ledger._open_writer()
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == code
    conn.close()
    assert ledger.close()
    with pytest.raises(ValueError, match="synchronous"):
        SqliteLedger(path, UID, clock=time.monotonic, synchronous="OFF")


def test_a_file_that_is_not_a_ledger_is_refused_in_one_line(tmp_path):
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"this is not sqlite" * 100)
    other = tmp_path / "other.sqlite3"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    future = tmp_path / "future.sqlite3"
    SqliteLedger(str(future), UID, clock=time.monotonic).close()
    conn = sqlite3.connect(future)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    for bad, why in ((garbage, "not a database"), (other, "not an xmarks ledger"),
                     (future, "schema version"), (tmp_path, "cannot open"),
                     (tmp_path / "no" / "such" / "dir.sqlite3", "cannot open")):
        with pytest.raises(LedgerError, match=why) as info:
            SqliteLedger(str(bad), UID, clock=time.monotonic)
        assert "\n" not in str(info.value)
    with pytest.raises(LedgerError):
        read_world_uid(str(garbage))
    assert read_world_uid(str(tmp_path / "missing")) is None


class ReadOnlyAtFirst(SqliteLedger):
    """A writer that finds the file read-only (as after chmod 0444, which root ignores;
    SQLite's mode=ro gives the same SQLITE_READONLY) until `read_only` is cleared."""

    read_only = True

    def _open_writer(self):
        if self.read_only:
            return sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, isolation_level=None)
        return super()._open_writer()


def test_read_only_file_faults_loudly_keeps_records_and_recovers(path, caplog):
    caplog.set_level(logging.INFO, "xmarks.ledger")
    ledger = ReadOnlyAtFirst(path, UID, clock=time.monotonic)
    rec = Recorder(UID, 8)
    for tick in range(10):
        ledger.submit(tick, claims(rec, tick, 3))
    assert _wait(lambda: ledger.status()["faults"] >= 3)
    st = ledger.status()
    assert st["failing"] and "readonly" in st["last_error"] and st["pending"] == 30
    assert ledger.confirmed_tick() == -1 and ledger.confirmed_seq() == 0
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "readonly" in errors[0].getMessage()
    ledger.read_only = False
    assert _wait(lambda: ledger.confirmed_tick() == 9)
    assert ledger.close() and ledger.status()["last_error"] is None
    assert rows_in(path) == [(UID, s) for s in range(1, 31)]


class SmallDisk(SqliteLedger):
    """A writer whose database may not grow past `pages` pages (a full disk)."""

    pages: int | None = None

    def _open_writer(self):
        conn = super()._open_writer()
        if self.pages is not None:
            conn.execute(f"PRAGMA max_page_count = {self.pages}")
        return conn


def test_full_disk_faults_then_everything_commits_once_space_is_back(path):
    ledger = SmallDisk(path, UID, clock=time.monotonic)
    conn = sqlite3.connect(path)
    ledger.pages = conn.execute("PRAGMA page_count").fetchone()[0]  # not one page more
    conn.close()
    rec = Recorder(UID, 8)
    for tick in range(5):
        ledger.submit(tick, claims(rec, tick, 200))
    assert _wait(lambda: ledger.status()["faults"] >= 2)
    assert "full" in ledger.status()["last_error"]
    assert ledger.confirmed_tick() == -1 and ledger.status()["pending"] == 1000
    ledger.pages = None
    assert _wait(lambda: ledger.confirmed_tick() == 4)
    assert ledger.close()
    assert rows_in(path) == [(UID, s) for s in range(1, 1001)]


class Flaky(sqlite3.Connection):
    """A connection whose COMMITs follow `plan`: "locked" raises before committing,
    "landed" commits and then raises anyway (the writer cannot know it went through)."""

    plan: list[str] = []

    def execute(self, sql, *args):
        if sql == "COMMIT" and Flaky.plan:
            what = Flaky.plan.pop(0)
            if what == "locked":
                raise sqlite3.OperationalError("database is locked")
            super().execute(sql, *args)
            raise sqlite3.OperationalError("disk I/O error")
        return super().execute(sql, *args)


class FlakyLedger(SqliteLedger):
    def _open_writer(self):
        conn = sqlite3.connect(self.path, isolation_level=None, factory=Flaky)
        conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        return conn


def test_a_connection_that_raises_is_retried_and_a_landed_batch_is_not_doubled(path, caplog):
    caplog.set_level(logging.ERROR, "xmarks.ledger")
    Flaky.plan = ["locked", "locked", "landed", "locked"]
    ledger = FlakyLedger(path, UID, clock=time.monotonic)
    rec = Recorder(UID, 8)
    for tick in range(8):
        ledger.submit(tick, claims(rec, tick, 4))
    assert ledger.close(15.0)
    assert Flaky.plan == []
    assert ledger.status()["faults"] == 4
    # a distinct error gets its line: locked, disk I/O, locked again
    assert [("locked" in r.getMessage()) for r in caplog.records] == [True, False, True]
    assert rows_in(path) == [(UID, s) for s in range(1, 33)]
    assert ledger.confirmed_seq() == 32 and ledger.confirmed_tick() == 7


def test_close_gives_up_on_a_failing_disk_and_nothing_half_lands(path):
    ledger = ReadOnlyAtFirst(path, UID, clock=time.monotonic)
    rec = Recorder(UID, 8)
    ledger.submit(0, claims(rec, 0, 3))
    assert ledger.close(0.3) is False
    assert not ledger._thread.is_alive()
    assert rows_in(path) == []


def test_readers_run_beside_the_writer(path):
    ledger = SqliteLedger(path, UID, clock=time.monotonic, synchronous="NORMAL")
    rec = Recorder(UID, 8)
    seen, problems = [], []
    stop = threading.Event()

    def reader():
        try:
            while not stop.is_set():
                rows = ledger.records_since(0)
                seen.append(len(rows))
                # a reader sees whole commits only: ticks of 5 records each
                if len(rows) % 5:
                    problems.append(len(rows))
        except Exception as exc:  # noqa: BLE001
            problems.append(exc)

    t = threading.Thread(target=reader)
    t.start()
    for tick in range(200):
        ledger.submit(tick, claims(rec, tick, 5))
        if tick % 20 == 0:
            time.sleep(0.01)
    assert _wait(lambda: ledger.confirmed_tick() == 199)
    stop.set()
    t.join()
    assert ledger.close()
    assert problems == [] and seen and seen == sorted(seen)
    assert len(ledger.records_since(0)) == 1000


def test_a_damaged_ledger_file_reads_fail_in_one_line(path):
    ledger = SqliteLedger(path, UID, clock=time.monotonic)
    assert ledger.close()
    with open(path, "r+b") as f:
        f.write(b"garbage!" * 64)
    with pytest.raises(LedgerError, match="read failed"):
        ledger.last_seq()


def test_claim_batches_are_stored_as_the_records_they_stand_for(path):
    """The writer stores a ClaimBatch from its arrays (one JSON text, store.claim_json),
    not from LedgerRecords: what it reads back must be exactly the records, u64 ids and
    names that need escaping included (the longest: 32 control characters), in batches
    chained with plain records."""
    from sim import schema as S
    from sim.world import new_world
    from store.records import ClaimBatch, RecordChain
    from tests.test_store_records import RULES, TICK_RATE, _with_events

    world = new_world(RULES, TICK_RATE)
    rec = Recorder(UID, RULES.max_players)
    sent = []
    names = {1: 'q"uo\\te', 2: "\x01" * 32, 3: "h\u00e9llo \U0001f600\n", 4: "", 5: "a\x00b"}
    for slot, cid in ((1, 2**64 - 1), (2, 2**63), (3, 2**63 - 1), (4, 7)):
        world.join(slot)
        sent.append(rec.joined(0, 0, slot, client_id=cid, name=names[slot], unix_ms=5))
        world.pi[S.P_SCORE, slot] = 100 * slot
    _with_events(world, [(S.EVENT_CLAIM, 3, s, 1, s + 6, 300 + s) for s in (1, 2, 3, 4)])
    batch = rec.tick_records(3, world, [], lambda s: 0, 77)
    assert isinstance(batch, ClaimBatch) and len(batch) == 4
    _with_events(world, [(S.EVENT_CLAIM, 4, 2, 1, 9, 5)])
    later = rec.tick_records(4, world, [], lambda s: 0, 78)
    chained = RecordChain(later, [rec.score_restored(4, 0, 1, 999, 78)], [])
    # a name JSON cannot carry (NUL): that batch goes the plain way, name intact
    world.join(5)
    sent.append(rec.joined(4, 0, 5, client_id=2**64 - 2, name=names[5], unix_ms=78))
    _with_events(world, [(S.EVENT_CLAIM, 5, 5, 1, 11, 2), (S.EVENT_CLAIM, 5, 1, 1, 12, 3)])
    plain = rec.tick_records(5, world, [], lambda s: 0, 79)
    assert batch.json_ok and not plain.json_ok
    ledger = SqliteLedger(path, UID, clock=time.monotonic)
    ledger.submit(0, sent)
    ledger.submit(3, batch)
    ledger.submit(4, chained)
    ledger.submit(5, plain)
    assert _wait(lambda: ledger.confirmed_tick() == 5)
    want = sent[:4] + list(batch) + list(chained) + sent[4:] + list(plain)
    assert ledger.records_since(0) == want
    assert ledger.confirmed_seq() == want[-1].seq == ledger.last_seq()
    assert [r.client_id for r in want if r.kind == CLAIM] == [2**64 - 1, 2**63, 2**63 - 1, 7, 2**63,
                                                              2**64 - 2, 2**64 - 1]
    assert [r.name for r in want if r.kind == CLAIM][-2] == "a\x00b"
    assert ledger.close()
