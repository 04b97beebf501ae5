"""The embedded ledger backend: one SQLite file in WAL mode, written by one writer thread.

The writer has its own connection and group-commits (store.ledger.QueuedLedger): each
commit is one transaction of INSERT OR IGNORE rows, so a batch retried after a failure
that half-landed adds nothing twice. Readers (recovery, admin) use a separate connection:
in WAL mode they never block the writer, nor it them.

Schema (version SCHEMA_VERSION, in PRAGMA user_version), created on first open:
  ledger(world, seq, tick, kind, hunt, client_id, slot, name, treasure, treasure_gen,
         value, score, unix_ms, detail), primary key (world, seq), WITHOUT ROWID
  meta(key, value): 'world_uid' = the world that opened the file last
client ids are u64: ids of 2**63 and more are stored as the signed integer with the same
bits (SQLite integers are signed 64-bit) and turned back when read.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence

from store.ledger import DEFAULT_QUEUE_LIMIT, LedgerError, QueuedLedger
from store.records import CLAIM, JOIN, RANK, SCORE, LedgerRecord

SCHEMA_VERSION = 1
SYNCHRONOUS = ("FULL", "NORMAL")

_SCHEMA = f"""
CREATE TABLE ledger (
    world INTEGER NOT NULL, seq INTEGER NOT NULL, tick INTEGER NOT NULL, kind TEXT NOT NULL,
    hunt INTEGER NOT NULL, client_id INTEGER, slot INTEGER, name TEXT, treasure INTEGER,
    treasure_gen INTEGER, value INTEGER, score INTEGER, unix_ms INTEGER NOT NULL,
    detail TEXT,
    PRIMARY KEY (world, seq)
) WITHOUT ROWID;
CREATE INDEX ledger_by_hunt ON ledger (world, hunt, kind);
CREATE INDEX ledger_by_tick ON ledger (world, tick);
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
PRAGMA user_version = {SCHEMA_VERSION};
"""
_INSERT = "INSERT OR IGNORE INTO ledger VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
# A ClaimBatch as one JSON text (ClaimBatch.json_text, store.claim_json): one statement
# stores every claim of it, json_each walking the rows in order
_INSERT_CLAIMS = (
    "INSERT OR IGNORE INTO ledger SELECT ?1, json_extract(value, '$[0]'), "
    "json_extract(value, '$[1]'), '%s', ?2, json_extract(value, '$[2]'), "
    "json_extract(value, '$[3]'), json_extract(value, '$[4]'), json_extract(value, '$[5]'), "
    "json_extract(value, '$[6]'), json_extract(value, '$[7]'), json_extract(value, '$[8]'), "
    "?3, NULL FROM json_each(?4)" % CLAIM)
_COLUMNS = ("world, seq, tick, kind, hunt, client_id, slot, name, treasure, treasure_gen, "
            "value, score, unix_ms, detail")

_U64 = 1 << 64
_I64_TOP = 1 << 63


def _to_row(r: LedgerRecord) -> LedgerRecord:
    cid = r.client_id
    return r if cid is None or cid < _I64_TOP else r._replace(client_id=cid - _U64)


def _parts(records: Iterable) -> Iterator:
    """The plain sequences of `records`, chains walked (store.records.RecordChain)."""
    for part in getattr(records, "parts", (records,)):
        if hasattr(part, "parts"):
            yield from _parts(part)
        else:
            yield part


def _from_row(row: tuple) -> LedgerRecord:
    r = LedgerRecord(*row)
    return r if r.client_id is None or r.client_id >= 0 else r._replace(client_id=r.client_id + _U64)


def _one_line(exc: BaseException) -> str:
    return f"{exc}".splitlines()[0] if f"{exc}" else type(exc).__name__


def read_world_uid(path: str) -> int | None:
    """The uid of the world that opened the ledger at `path` last (None: no such file, or
    no world yet). Raises LedgerError if it is not a ledger."""
    if not os.path.exists(path):
        return None
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'world_uid'").fetchone()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise LedgerError(f"ledger {path}: not readable as an xmarks ledger ({_one_line(exc)})") from None
    return None if row is None else int(row[0])


class SqliteLedger(QueuedLedger):
    """The ledger of world `world_uid` in the SQLite file `path` (created if missing).

    synchronous: "FULL" (default) or "NORMAL" (either case). FULL because a claim we tell the player is
    confirmed must survive a power loss, not only a crash of the process: in WAL mode,
    NORMAL syncs the log only at checkpoints, so the last commits before a power cut can
    roll back although their claims were already shown as confirmed. FULL syncs the log at
    every commit; one commit per tick (group commit) keeps that to at most tick_rate fsyncs
    a second (profiling/ledger_bench.py measures both).
    clock: monotonic seconds (tick.clock.now_s), to time commits. Raises LedgerError (one
    line) if the file cannot be opened or created, or is not a ledger of this version.
    """

    backend = "sqlite"

    def __init__(self, path: str, world_uid: int, *, clock: Callable[[], float],
                 synchronous: str = "FULL", queue_limit: int = DEFAULT_QUEUE_LIMIT,
                 busy_timeout_ms: int = 100) -> None:
        if not isinstance(synchronous, str) or synchronous.upper() not in SYNCHRONOUS:
            raise ValueError(f"synchronous must be FULL or NORMAL, got {synchronous!r}")
        synchronous = synchronous.upper()  # StoreSettings.ledger_sync is lower case
        if not 1 <= world_uid < 2**63:
            raise ValueError(f"world_uid must be in 1..2**63-1, got {world_uid!r}")
        self.path = path
        self.synchronous = synchronous
        self.busy_timeout_ms = busy_timeout_ms
        seq, tick = self._open_file(path, world_uid)
        super().__init__(world_uid, clock, queue_limit, confirmed_seq=seq, confirmed_tick=tick)
        self._conn: sqlite3.Connection | None = None  # the writer's, on the writer thread
        self._reader: sqlite3.Connection | None = None
        self._read_lock = threading.Lock()  # readers only: the writer never takes it
        self.start_writer()

    # ---- opening ---------------------------------------------------------------------

    def _open_file(self, path: str, world_uid: int) -> tuple[int, int]:
        """Create or check the schema, record the world; return its last (seq, tick)."""
        try:
            conn = sqlite3.connect(path, isolation_level=None)
        except sqlite3.Error as exc:
            raise LedgerError(f"ledger {path}: cannot open ({_one_line(exc)})") from None
        try:
            try:  # claim batches are written through json_each (store.claim_json)
                conn.execute("SELECT json_extract(value, '$[0]') FROM json_each('[[1]]')")
            except sqlite3.OperationalError:
                raise LedgerError(f"ledger {path}: this SQLite ({sqlite3.sqlite_version}) has "
                                  f"no JSON functions; xmarks needs SQLite with JSON1 "
                                  f"(built in since 3.38)") from None
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
                if tables:
                    raise LedgerError(f"ledger {path}: an SQLite file that is not an xmarks ledger")
                conn.execute("PRAGMA journal_mode = WAL")  # stays set in the file
                conn.executescript("BEGIN IMMEDIATE;" + _SCHEMA + "COMMIT;")
            elif version > SCHEMA_VERSION:
                raise LedgerError(f"ledger {path}: schema version {version}; this xmarks "
                                  f"reads up to {SCHEMA_VERSION}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise LedgerError(f"ledger {path}: cannot use WAL mode (journal mode {mode})")
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('world_uid', ?)", (world_uid,))
            seq, tick = conn.execute("SELECT max(seq), max(tick) FROM ledger WHERE world = ?",
                                     (world_uid,)).fetchone()
        except sqlite3.Error as exc:
            raise LedgerError(f"ledger {path}: {_one_line(exc)}") from None
        finally:
            conn.close()
        return (seq or 0), (-1 if tick is None else tick)

    def _open_writer(self) -> sqlite3.Connection:
        """The writer's connection (opened on the writer thread; again after a failure)."""
        conn = sqlite3.connect(self.path, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
        conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        return conn

    # ---- writer thread ---------------------------------------------------------------

    def _write(self, records: Sequence[LedgerRecord]) -> None:
        conn = self._conn
        try:
            if conn is None:
                conn = self._conn = self._open_writer()
            conn.execute("BEGIN IMMEDIATE")
            for part in _parts(records):
                if hasattr(part, "json_text") and part.json_ok:  # claims, from their arrays
                    conn.execute(_INSERT_CLAIMS, (part.world, part.hunt, part.unix_ms,
                                                  part.json_text()))
                elif len(part):
                    conn.executemany(_INSERT, map(_to_row, part))
            conn.execute("COMMIT")
        except BaseException:
            # a fresh connection next time: a read-only or broken one would stay so, and
            # closing rolls back whatever the failed transaction left open
            self._conn = None
            if conn is not None:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            raise

    def _release(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except sqlite3.Error:
                pass
            self._conn = None

    # ---- reads (any thread) -----------------------------------------------------------

    def _read(self, sql: str, args: tuple) -> list[tuple]:
        with self._read_lock:
            try:
                if self._reader is None:
                    self._reader = sqlite3.connect(self.path, check_same_thread=False)
                return self._reader.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise LedgerError(f"ledger {self.path}: read failed ({_one_line(exc)})") from None

    def close_reader(self) -> None:
        with self._read_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None

    def close(self, timeout_s: float = 5.0) -> bool:
        done = super().close(timeout_s)
        self.close_reader()
        return done

    def last_seq(self) -> int:
        (seq,), = self._read("SELECT max(seq) FROM ledger WHERE world = ?", (self.world_uid,))
        return seq or 0

    def records_since(self, seq: int) -> list[LedgerRecord]:
        """Committed records with seq > `seq`, in seq order."""
        rows = self._read(f"SELECT {_COLUMNS} FROM ledger WHERE world = ? AND seq > ? "
                          "ORDER BY seq", (self.world_uid, seq))
        return [_from_row(r) for r in rows]

    def claims_since(self, tick: int) -> list[LedgerRecord]:
        """Committed claims of tick `tick` and later, in seq order."""
        rows = self._read(f"SELECT {_COLUMNS} FROM ledger WHERE world = ? AND tick >= ? "
                          "AND kind = ? ORDER BY seq", (self.world_uid, tick, CLAIM))
        return [_from_row(r) for r in rows]

    def scores(self, hunt: int) -> dict[int, int]:
        """client id -> its score as of its last join, claim or score record in `hunt`."""
        # SQLite takes the bare columns of a max() aggregate from the row holding the max
        rows = self._read("SELECT client_id, score, max(seq) FROM ledger WHERE world = ? AND "
                          "hunt = ? AND kind IN (?, ?, ?) GROUP BY client_id",
                          (self.world_uid, hunt, JOIN, CLAIM, SCORE))
        return {(cid + _U64 if cid < 0 else cid): score for cid, score, _ in rows}

    def final_board(self, hunt: int) -> list[tuple[int, int, str | None, int]]:
        """[(rank, client id, name, final score)] of `hunt`, best first ([] if not over)."""
        rows = self._read("SELECT value, client_id, name, score FROM ledger WHERE world = ? "
                          "AND hunt = ? AND kind = ? ORDER BY value",
                          (self.world_uid, hunt, RANK))
        return [(rank, cid + _U64 if cid < 0 else cid, name, score)
                for rank, cid, name, score in rows]
