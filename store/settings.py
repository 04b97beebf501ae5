"""Where and how the server keeps its durable state: the ledger and the checkpoints."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from store.ledger import DEFAULT_QUEUE_LIMIT, Ledger, MemoryLedger, NullLedger
from store.sqlite_ledger import SqliteLedger

LEDGER_BACKENDS = ("sqlite", "memory", "none")


class StoreError(ValueError):
    """A store setting has a value the server cannot run with."""


@dataclass(frozen=True)
class StoreSettings:
    ledger_path: str = "xmarks-ledger.sqlite3"  # the SQLite ledger file
    checkpoint_path: str = "xmarks-checkpoint.npz"  # replaced atomically at each checkpoint
    checkpoint_every: float = 10.0  # seconds between checkpoints (0: never)
    # "sqlite": durable, embedded; "memory": lost at exit (tests, demos); "none": no
    # ledger (claims are confirmed at once, nothing survives a crash)
    ledger_backend: str = "sqlite"
    # records waiting for the disk at most; past it new ones are lost (loudly): about
    # 15 minutes of 50 claims a tick at 20 Hz
    ledger_queue_limit: int = DEFAULT_QUEUE_LIMIT
    ledger_sync: str = "full"  # SQLite synchronous: "full" (survives power loss) or "normal"
    # record what the simulation consumed, per tick, here ("": don't) for `xmarks replay`
    input_log: str = ""

    def validate(self) -> None:
        """Raise StoreError; the message starts with the setting's name."""
        for name in ("ledger_path", "checkpoint_path"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip() or "\0" in value:
                raise StoreError(f"{name} must be a file path, got {value!r}")
        every = self.checkpoint_every
        if (isinstance(every, bool) or not isinstance(every, (int, float))
                or not math.isfinite(every) or not (every == 0 or 0.1 <= every <= 86400)):
            raise StoreError(f"checkpoint_every must be 0 (never) or a number of seconds in "
                             f"0.1..86400, got {every!r}")
        if self.ledger_backend not in LEDGER_BACKENDS:
            raise StoreError(f"ledger_backend must be sqlite, memory or none, got "
                             f"{self.ledger_backend!r}")
        limit = self.ledger_queue_limit
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1000 <= limit <= 100_000_000:
            raise StoreError(f"ledger_queue_limit must be an integer in 1000..100000000, "
                             f"got {limit!r}")
        if not isinstance(self.input_log, str) or "\0" in self.input_log:
            raise StoreError(f"input_log must be a file path or empty, got {self.input_log!r}")
        if self.ledger_sync not in ("full", "normal"):
            raise StoreError(f"ledger_sync must be full or normal, got {self.ledger_sync!r}")


def open_ledger(settings: StoreSettings, world_uid: int, clock: Callable[[], float]) -> Ledger:
    """The ledger the settings ask for, its writer running. clock: tick.clock.now_s.
    Raises store.ledger.LedgerError (one line) if the SQLite file cannot be used."""
    if settings.ledger_backend == "sqlite":
        return SqliteLedger(settings.ledger_path, world_uid, clock=clock,
                            synchronous=settings.ledger_sync,
                            queue_limit=settings.ledger_queue_limit)
    if settings.ledger_backend == "memory":
        ledger = MemoryLedger(world_uid, clock, settings.ledger_queue_limit)
        ledger.start_writer()  # as the SQLite one: submit() never runs a commit
        return ledger
    return NullLedger(world_uid)
