"""The hunt ledger: what a backend offers (Ledger), the group-commit queue every backend
shares (QueuedLedger), and an in-memory backend for tests (MemoryLedger).

The tick thread only ever calls submit(), which appends to a queue and returns: it never
touches the disk and never waits for a lock the writer holds during I/O. The writer takes
everything queued (several ticks, if it fell behind), writes it in one transaction,
commits, and only then publishes confirmed_seq / confirmed_tick: a claim is confirmed to its
player once confirmed_tick() reaches the claim's tick, never before it is durable.

A failed commit keeps its records (the batch is retried, with backoff, until it goes
through: (world, seq) is the primary key, so a retry that partly landed before cannot count
anything twice). The queue is bounded in records; past the bound, see QueuedLedger.submit.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol

from store.records import CLAIM, JOIN, RANK, SCORE, LedgerRecord, RecordChain, last_seq

log = logging.getLogger("xmarks.ledger")

#: Retry delays after a failed commit: doubling from BACKOFF_MIN_S, capped at BACKOFF_MAX_S.
BACKOFF_MIN_S = 0.05
BACKOFF_MAX_S = 2.0
#: While commits keep failing, the error is logged again this often (seconds).
REMIND_EVERY_S = 30.0
#: Records written in one transaction at most: after a long outage the backlog goes in
#: several commits of bounded latency rather than one huge one.
MAX_RECORDS_PER_COMMIT = 100_000
DEFAULT_QUEUE_LIMIT = 1_000_000

CommitHook = Callable[[float, int], None]

#: Record kinds whose score field is the player's score after them.
_SCORED = (JOIN, CLAIM, SCORE)


class LedgerError(Exception):
    """A ledger could not be opened or read; the message is one line."""


class LedgerFault(Exception):
    """A simulated write failure (MemoryLedger)."""


class Ledger(Protocol):
    """What the server needs from a ledger backend (SQLite here; Redis for a fleet later).

    Writes: submit() from the tick thread, never blocking. Confirmations: confirmed_seq() /
    confirmed_tick(), the newest record / tick that is durable (all ticks up to it are).
    on_commit(seconds, records), if set, is called by the writer after each commit.
    Reads (recovery, admin): from committed records only, safe from any thread.
    """

    world_uid: int
    on_commit: CommitHook | None

    def submit(self, tick: int, records: Sequence[LedgerRecord]) -> None: ...
    def confirmed_seq(self) -> int: ...
    def confirmed_tick(self) -> int: ...
    def checkpointed(self, tick: int) -> None: ...
    def status(self) -> dict: ...
    def close(self, timeout_s: float = 5.0) -> bool: ...
    def last_seq(self) -> int: ...
    def records_since(self, seq: int) -> list[LedgerRecord]: ...
    def claims_since(self, tick: int) -> list[LedgerRecord]: ...
    def scores(self, hunt: int) -> dict[int, int]: ...
    def final_board(self, hunt: int) -> list[tuple[int, int, str | None, int]]: ...


def scores_of(records: Sequence[LedgerRecord], hunt: int) -> dict[int, int]:
    """client id -> its score as of its last join, claim or score record in `hunt`
    (records in seq order)."""
    return {r.client_id: r.score for r in records if r.kind in _SCORED and r.hunt == hunt}


def board_of(records: Sequence[LedgerRecord], hunt: int) -> list[tuple[int, int, str | None, int]]:
    """[(rank, client id, name, final score)] of `hunt`, best first ([] if not over)."""
    return sorted((r.value, r.client_id, r.name, r.score) for r in records
                  if r.kind == RANK and r.hunt == hunt)


class QueuedLedger:
    """The group-commit queue, fault accounting and confirmations, for any backend.

    A backend implements _write(records) (one transaction; raise on failure, leaving nothing
    half-written), and the reads. Writes run on a writer thread (start_writer) or, for
    MemoryLedger, inline in submit().

    clock: seconds from a monotonic clock, injected (only tick/ reads the clock): it times
    commits and spaces the failure reminders.
    """

    backend = "?"

    def __init__(self, world_uid: int, clock: Callable[[], float],
                 queue_limit: int = DEFAULT_QUEUE_LIMIT, confirmed_seq: int = 0,
                 confirmed_tick: int = -1) -> None:
        if not isinstance(queue_limit, int) or queue_limit < 1:
            raise ValueError(f"ledger_queue_limit must be an integer >= 1, got {queue_limit!r}")
        self.world_uid = world_uid
        self.on_commit: CommitHook | None = None
        self.queue_limit = queue_limit
        self._clock = clock
        self._queue: deque[tuple[int, Sequence[LedgerRecord]]] = deque()
        self._held: list[tuple[int, Sequence[LedgerRecord]]] = []  # taken, not yet committed
        self._held_records = 0
        # counters each written by one thread only; readers see a recent value
        self._submitted = 0  # tick thread
        self._committed = 0  # writer
        self._confirmed_seq = confirmed_seq
        self._confirmed_tick = confirmed_tick
        self._lock = threading.Lock()  # guards the fields below; never held during I/O
        self._lost = 0
        self._lost_batches = 0
        self._hole: int | None = None  # first tick whose records were lost, until healed
        self._last_lost_tick = -1
        self._faults = 0
        self._failing_since_faults = 0
        self._last_error: str | None = None
        self._logged_error: str | None = None
        self._logged_at = 0.0
        self._last_commit_s = 0.0
        self._closed = False
        self._closing = False
        self._abandon = False
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- tick thread -----------------------------------------------------------------

    def submit(self, tick: int, records: Sequence[LedgerRecord]) -> None:
        """Queue the records of `tick` (in seq order; may be empty: the tick is then
        confirmed as soon as everything before it is). Never blocks, never raises.

        Past queue_limit pending records (the disk has been failing for a long time) the
        records are dropped and counted as lost, loudly. Blocking the tick instead would
        stop the game for every player, and an unbounded queue would end in the OOM
        killer taking every unconfirmed claim with it. Nothing lost was ever confirmed:
        confirmed_tick() stops below the first lost tick until a checkpoint written after
        it (checkpointed()) holds the world those records described.
        """
        n = len(records)
        if self._closed or (n and self._submitted - self._committed + n > self.queue_limit):
            self._lose(tick, n)
            return
        if not n and self._submitted == self._committed and not self._queue:
            # everything before is durable: confirm the quiet tick without waking the
            # writer (that wake-up is most of submit's cost)
            with self._lock:
                if tick > self._confirmed_tick:
                    self._confirmed_tick = tick
            return
        self._submitted += n
        self._queue.append((tick, records))
        if not self._wake.is_set():  # set() takes a lock: skip it while the writer is busy
            self._wake.set()
        if self._thread is None:
            self._drain()

    def _lose(self, tick: int, n: int) -> None:
        with self._lock:
            first = self._hole is None
            self._lost += n
            self._lost_batches += 1
            if first:
                self._hole = tick
            self._last_lost_tick = max(self._last_lost_tick, tick)
        if first:
            why = "the ledger is closed" if self._closed else (
                f"{self.queue_limit} records are waiting for the disk")
            log.error("ledger: LOST %d records of tick %d: %s; claims are not confirmed from "
                      "this tick until a checkpoint covers it", n, tick, why)

    def checkpointed(self, tick: int) -> None:
        """A checkpoint of the world before tick `tick` is durable: lost records of earlier
        ticks no longer matter (the checkpoint holds their effects)."""
        with self._lock:
            if self._hole is None or self._hole >= tick:
                return
            self._hole = tick if self._last_lost_tick >= tick else None
        if self._hole is None:
            log.warning("ledger: a checkpoint now covers the lost records; claims are "
                        "confirmed again")

    # ---- any thread ------------------------------------------------------------------

    def confirmed_seq(self) -> int:
        """The highest seq committed (0: none). Lost records' seqs may lie below it."""
        return self._confirmed_seq

    def confirmed_tick(self) -> int:
        """The highest tick all of whose records, and all earlier ticks', are durable."""
        tick, hole = self._confirmed_tick, self._hole
        return tick if hole is None else min(tick, hole - 1)

    def pending(self) -> int:
        """Records submitted and not yet committed."""
        return self._submitted - self._committed

    def status(self) -> dict:
        """backend, pending, committed, faults, last_error (None while commits succeed),
        last_commit_s, and: lost, lost_batches, failing, unconfirmed_from (first lost
        tick not yet covered by a checkpoint, or None), confirmed_seq, confirmed_tick,
        queue_limit."""
        with self._lock:
            return {"backend": self.backend, "pending": self.pending(),
                    "committed": self._committed, "faults": self._faults,
                    "last_error": self._last_error, "last_commit_s": self._last_commit_s,
                    "lost": self._lost, "lost_batches": self._lost_batches,
                    "failing": self._last_error is not None, "unconfirmed_from": self._hole,
                    "confirmed_seq": self._confirmed_seq,
                    "confirmed_tick": self.confirmed_tick(), "queue_limit": self.queue_limit}

    # ---- writer ----------------------------------------------------------------------

    def _write(self, records: Sequence[LedgerRecord]) -> None:
        """Write `records` (iterate them once) in one transaction and commit; raise if it
        did not commit."""
        raise NotImplementedError

    def _release(self) -> None:
        """Close the writer's resources (on the writer thread, as it ends)."""

    def _drain(self) -> bool:
        """Take what is queued (up to MAX_RECORDS_PER_COMMIT more) and try one commit.
        Returns True if everything taken is committed now."""
        queue, held = self._queue, self._held
        while queue and (not held or self._held_records < MAX_RECORDS_PER_COMMIT):
            tick, records = queue.popleft()
            held.append((tick, records))
            self._held_records += len(records)
        if not held:
            return True
        n = self._held_records
        if n:
            # one sequence over everything held, iterated once by the backend: claim
            # batches stay arrays until then (store.records.ClaimBatch.json_text)
            rows = RecordChain(*(records for _, records in held))
            t0 = self._clock()
            try:
                self._write(rows)
            except Exception as exc:  # noqa: BLE001: the writer must outlive any failure
                self._fault(exc)
                return False
            seconds = self._clock() - t0
            seq = last_seq(rows)
        last_tick = held[-1][0]
        self._held = []
        self._held_records = 0
        with self._lock:
            recovered = self._last_error is not None
            self._committed += n
            if n:
                self._confirmed_seq = max(self._confirmed_seq, seq)
                self._last_commit_s = seconds
            self._confirmed_tick = max(self._confirmed_tick, last_tick)
            self._last_error = None
            self._logged_error = None
            failed, self._failing_since_faults = self._failing_since_faults, 0
        if recovered:
            log.warning("ledger: committing again after %d failed attempts (%d records "
                        "written)", failed, n)
        if n and self.on_commit is not None:
            try:
                self.on_commit(seconds, n)
            except Exception:  # noqa: BLE001: a metrics hook must not stop the writer
                log.exception("ledger: on_commit hook failed")
        return True

    def _fault(self, exc: BaseException) -> None:
        error = f"{type(exc).__name__}: {exc}"
        now = self._clock()
        with self._lock:
            self._faults += 1
            self._failing_since_faults += 1
            self._last_error = error
            new = error != self._logged_error
            remind = not new and now - self._logged_at >= REMIND_EVERY_S
            if new or remind:
                self._logged_error, self._logged_at = error, now
            faults = self._failing_since_faults
        if new:
            log.error("ledger: commit failed (%s); %d records pending, retrying", error,
                      self.pending())
        elif remind:
            log.error("ledger: still failing after %d attempts (%s); %d records pending",
                      faults, error, self.pending())

    def start_writer(self, name: str = "xmarks-ledger") -> None:
        """Commit on a writer thread from now on (submit() only queues)."""
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        backoff = 0.0
        try:
            while not self._abandon:
                if not self._held and not self._queue:
                    if self._closing:
                        break
                    self._wake.wait()
                    self._wake.clear()
                    continue
                if self._drain():
                    backoff = 0.0
                    continue
                backoff = min(BACKOFF_MAX_S, max(BACKOFF_MIN_S, 2 * backoff))
                self._stop.wait(backoff)
        finally:
            self._release()

    def close(self, timeout_s: float = 5.0) -> bool:
        """Flush what is pending (retrying failures until `timeout_s` has passed) and stop
        the writer. True if every record submitted was committed."""
        if self._closed:
            return self.pending() == 0
        self._closed = True
        thread = self._thread
        if thread is None:
            self._drain()
            self._release()
        else:
            self._closing = True
            self._wake.set()
            thread.join(timeout_s)
            if thread.is_alive():  # still failing: give up, the records stay unconfirmed
                self._abandon = True
                self._stop.set()
                self._wake.set()
                thread.join(BACKOFF_MAX_S + 1.0)
        left = self.pending()
        if left:
            log.error("ledger: closed with %d records not committed (last error: %s)", left,
                      self._last_error)
        return left == 0


class MemoryLedger(QueuedLedger):
    """A ledger in memory, committing inline in submit() (deterministic for tests).

    Failures on demand: while `fail_with` is a message, or for the next fail_next(n)
    commits, a commit raises LedgerFault and its records stay queued; flush() retries.
    """

    backend = "memory"

    def __init__(self, world_uid: int, clock: Callable[[], float] = lambda: 0.0,
                 queue_limit: int = DEFAULT_QUEUE_LIMIT) -> None:
        super().__init__(world_uid, clock, queue_limit)
        self.fail_with: str | None = None
        self._fail_count = 0
        self._fail_message = ""
        self._rows: dict[int, LedgerRecord] = {}  # seq -> record: a retry overwrites nothing
        self.commits = 0

    def fail_next(self, count: int = 1, message: str = "simulated disk failure") -> None:
        self._fail_count = count
        self._fail_message = message

    def flush(self) -> bool:
        """Retry what is pending now; True if nothing is pending afterwards."""
        while self._queue or self._held:
            if not self._drain():
                return False
        return True

    def _write(self, records: Sequence[LedgerRecord]) -> None:
        if self._fail_count > 0:
            self._fail_count -= 1
            raise LedgerFault(self._fail_message)
        if self.fail_with is not None:
            raise LedgerFault(self.fail_with)
        for r in records:
            if r.world != self.world_uid:
                raise LedgerFault(f"record of world {r.world} in the ledger of {self.world_uid}")
            self._rows.setdefault(r.seq, r)
        self.commits += 1

    def _sorted(self) -> list[LedgerRecord]:
        return [self._rows[s] for s in sorted(self._rows)]

    def last_seq(self) -> int:
        return max(self._rows, default=0)

    def records_since(self, seq: int) -> list[LedgerRecord]:
        """Committed records with seq > `seq`, in seq order."""
        return [r for r in self._sorted() if r.seq > seq]

    def claims_since(self, tick: int) -> list[LedgerRecord]:
        """Committed claims of tick `tick` and later, in seq order."""
        return [r for r in self._sorted() if r.kind == CLAIM and r.tick >= tick]

    def scores(self, hunt: int) -> dict[int, int]:
        return scores_of(self._sorted(), hunt)

    def final_board(self, hunt: int) -> list[tuple[int, int, str | None, int]]:
        return board_of(self._sorted(), hunt)


class NullLedger(QueuedLedger):
    """No ledger (ledger_backend = "none"): every tick is confirmed at once and nothing
    is kept; recovery then has only the checkpoint."""

    backend = "none"

    def __init__(self, world_uid: int) -> None:
        super().__init__(world_uid, lambda: 0.0)

    def _write(self, records: Sequence[LedgerRecord]) -> None:
        pass

    def last_seq(self) -> int:
        return 0

    def records_since(self, seq: int) -> list[LedgerRecord]:
        return []

    def claims_since(self, tick: int) -> list[LedgerRecord]:
        return []

    def scores(self, hunt: int) -> dict[int, int]:
        return {}

    def final_board(self, hunt: int) -> list[tuple[int, int, str | None, int]]:
        return []
