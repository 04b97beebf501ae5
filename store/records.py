"""Ledger records: one row per thing that happened in a hunt, and the tick-side recorder.

A record is a flat tuple (LedgerRecord), so the SQLite writer hands a batch straight to
executemany; a tick's claims (ClaimBatch) stay arrays and reach SQLite as one JSON text
(store.claim_json). Kinds and what their fields mean:

| kind       | client_id / slot / name | treasure, treasure_gen | value            | score        | detail |
|------------|-------------------------|------------------------|------------------|--------------|--------|
| hunt_end   | -                       | -                      | players ranked   | -            | -      |
| rank       | the ranked player       | -                      | rank (0 = first) | final score  | -      |
| hunt_start | -                       | -                      | -                | -            | -      |
| join       | the player              | -                      | -                | 0            | -      |
| leave      | the player              | -                      | -                | -            | reason |
| claim      | the claimer             | the treasure dug       | treasure's value | score after  | -      |
| score      | the player              | -                      | -                | score set    | why    |

"-" is None. A hunt's end is its hunt_end, then its ranks, then the next hunt's
hunt_start, all at the tick it ended (that tick's claims follow, in the new hunt).
A claim carries the claimer's score after it (what the snapshot showed), a rank the final
one; a join says the player starts at 0 (as World.join does), and a score record that the
server set it otherwise (given back on rejoin after a restart). So a player's latest
join / claim / score record in a hunt holds its score.

Players are named by the connect token's client id (u64): slots are reused and change
across reconnects and restarts, client ids do not. `seq` numbers the records of one world
1, 2, 3, ... (records lost to a full queue leave gaps): (world, seq) is the primary key, so
a retried batch is a no-op.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import NamedTuple

import numpy as np

from sim import schema as S
from sim.jit import bind
from store.claim_json import NAME_JSON_MAX, ROW_MAX, claims_json, name_json
from sim.world import World

HUNT_START, HUNT_END, JOIN, LEAVE, CLAIM, RANK, SCORE = (
    "hunt_start", "hunt_end", "join", "leave", "claim", "rank", "score")
KINDS = (HUNT_START, HUNT_END, JOIN, LEAVE, CLAIM, RANK, SCORE)

#: Reason of the leave records recovery writes for players the crash disconnected.
CRASH = "crash"

_EMPTY: tuple = ()


class LedgerRecord(NamedTuple):
    """One ledger row. Integers are Python ints; client_id is a u64 (0: none)."""

    world: int  # world uid, 1..2**63-1
    seq: int  # 1, 2, 3, ... per world
    tick: int  # the tick it happened in
    kind: str  # one of KINDS
    hunt: int  # the hunt it belongs to
    client_id: int | None
    slot: int | None
    name: str | None
    treasure: int | None
    treasure_gen: int | None
    value: int | None
    score: int | None
    unix_ms: int  # wall-clock time of the tick (the tick's clock reads it, not the ledger)
    detail: str | None


class ClaimBatch:
    """The claim records of one tick, kept as arrays until the ledger's writer iterates
    them: the tick thread pays a few array copies per tick, not a tuple per claim (claims
    come by the dozen each tick at 10,000 players).

    A Sequence of LedgerRecords as far as the ledger is concerned (len, iteration); seqs
    first_seq .. first_seq + len - 1 in event order. names: the recorder's slot -> name list
    as it was (never mutated afterwards: the recorder copies it before its next change).
    """

    __slots__ = ("world", "first_seq", "hunt", "unix_ms", "ticks", "slots", "client_ids",
                 "treasures", "gens", "values", "scores", "names", "name_rows", "name_lens")

    def __init__(self, world: int, first_seq: int, hunt: int, unix_ms: int, events: np.ndarray,
                 client_ids: np.ndarray, names: list[str], pi: np.ndarray, ti: np.ndarray,
                 name_rows: np.ndarray, name_lens: np.ndarray):
        self.world, self.first_seq, self.hunt, self.unix_ms = world, first_seq, hunt, unix_ms
        self.ticks = events[:, S.EV_TICK].copy()
        self.slots = events[:, S.EV_A].copy()
        self.treasures = events[:, S.EV_C].copy()
        self.values = events[:, S.EV_D].copy()
        self.client_ids = client_ids[self.slots]
        self.gens = ti[S.T_GEN, self.treasures]
        self.scores = pi[S.P_SCORE, self.slots]
        self.names = names
        # the claimers' names as JSON (Recorder.name_rows), copied: the slots may change
        self.name_rows = name_rows[self.slots]
        self.name_lens = name_lens[self.slots]

    def __len__(self) -> int:
        return len(self.ticks)

    def __iter__(self):
        names, world, hunt, unix_ms = self.names, self.world, self.hunt, self.unix_ms
        for k, (tick, slot, cid, t, gen, value, score) in enumerate(zip(
                self.ticks.tolist(), self.slots.tolist(), self.client_ids.tolist(),
                self.treasures.tolist(), self.gens.tolist(), self.values.tolist(),
                self.scores.tolist())):
            yield LedgerRecord(world, self.first_seq + k, tick, CLAIM, hunt, cid, slot,
                               names[slot], t, gen, value, score, unix_ms, None)

    def __getitem__(self, i):  # readers and tests; the writer only iterates
        return list(self)[i]

    @property
    def last_seq(self) -> int:
        """The seq of the last record (the batch is never empty when submitted)."""
        return self.first_seq + len(self.ticks) - 1

    @property
    def json_ok(self) -> bool:
        """True if json_text carries every claim exactly (no claimer's name is one JSON
        cannot carry: store.claim_json.name_json); otherwise write the records."""
        return bool(self.name_lens.all())

    def json_text(self) -> str:
        """The claims as one JSON text for the SQLite writer (store.claim_json): no
        LedgerRecord and no integer object per claim."""
        out = np.empty(len(self.ticks) * ROW_MAX + 2, np.uint8)
        n = _claims_json(self.first_seq, self.ticks, self.client_ids.view(np.int64),
                         self.slots, self.name_rows, self.name_lens, self.treasures,
                         self.gens, self.values, self.scores, out)
        return out[:n].tobytes().decode("ascii")


def _claims_json(*args) -> int:
    """claims_json through its compiled entry point (bound on first use: a dispatcher call
    types every argument again, a few objects each)."""
    global _claims_json_entry
    if _claims_json_entry is None:
        _claims_json_entry = bind(claims_json, *args)
    return _claims_json_entry(*args)


_claims_json_entry = None


class RecordChain:
    """Several record sequences of one tick, one after another, as one Sequence."""

    __slots__ = ("parts",)

    def __init__(self, *parts) -> None:
        self.parts = parts

    def __len__(self) -> int:
        return sum(len(p) for p in self.parts)

    def __iter__(self):
        for part in self.parts:
            yield from part

    def __getitem__(self, i):  # readers and tests; the writer only iterates
        return list(self)[i]

    @property
    def last_seq(self) -> int:
        """The seq of the last record of the last non-empty part."""
        for part in reversed(self.parts):
            if len(part):
                return last_seq(part)
        raise IndexError("an empty chain has no last record")


def last_seq(records) -> int:
    """The seq of the last record of a non-empty record sequence, without building the
    others (ClaimBatch and RecordChain know it; a list is indexed)."""
    known = getattr(records, "last_seq", None)
    return records[-1].seq if known is None else known


def new_world_uid() -> int:
    """A random world uid in 1..2**63-1 (fits SQLite's signed INTEGER as it is)."""
    return int.from_bytes(os.urandom(8), "little") % (2**63 - 1) + 1


class Recorder:
    """Turns a tick's world events and session events into LedgerRecords, numbered.

    Lives on the tick thread. Keeps slot -> client id and name for the players in the world
    (a leave arrives after the session is gone, and claims name slots). Costs O(events) per
    tick and nothing on a tick without events.

    world_uid: the world's uid; capacity: max_players; next_seq: the first seq to hand out
    (1 for a new world, RecoveryReport.next_seq after a restart).
    """

    def __init__(self, world_uid: int, capacity: int, next_seq: int = 1) -> None:
        if not 1 <= world_uid < 2**63:
            raise ValueError(f"world_uid must be in 1..2**63-1, got {world_uid!r}")
        self.world_uid = world_uid
        self.next_seq = next_seq
        self.client_ids = np.zeros(capacity, np.uint64)  # 0: nobody in the slot
        self.names: list[str] = [""] * capacity
        self._names_shared = False  # a ClaimBatch refers to self.names as it is
        # every slot's name as JSON (store.claim_json.name_json), for claim batches
        self.name_rows = np.zeros((capacity, NAME_JSON_MAX), np.uint8)
        self.name_rows[:, :2] = ord('"')  # "": nobody's name yet
        self.name_lens = np.full(capacity, 2, np.int32)  # 0: a name JSON cannot carry

    def _name(self, slot: int, name: str) -> None:
        encoded = name_json(name)  # first: it may refuse, and nothing has changed yet
        if self._names_shared:  # a ClaimBatch holds the list: change a copy
            self.names = list(self.names)
            self._names_shared = False
        self.names[slot] = name
        if encoded is None:
            self.name_lens[slot] = 0
        else:
            self.name_rows[slot, :len(encoded)] = np.frombuffer(encoded, np.uint8)
            self.name_lens[slot] = len(encoded)

    @property
    def last_seq(self) -> int:
        """The seq of the last record handed out (0: none yet)."""
        return self.next_seq - 1

    def _record(self, tick: int, kind: str, hunt: int, unix_ms: int, client_id=None,
                slot=None, name=None, treasure=None, treasure_gen=None, value=None,
                score=None, detail=None) -> LedgerRecord:
        seq = self.next_seq
        self.next_seq = seq + 1
        return LedgerRecord(self.world_uid, seq, tick, kind, hunt, client_id, slot, name,
                            treasure, treasure_gen, value, score, unix_ms, detail)

    def hunt_started(self, tick: int, hunt: int, unix_ms: int) -> LedgerRecord:
        """The record of a hunt's start (the server writes hunt 0's when a world is new)."""
        return self._record(tick, HUNT_START, hunt, unix_ms)

    def joined(self, tick: int, hunt: int, slot: int, client_id: int, name: str,
               unix_ms: int) -> LedgerRecord:
        """A player entered `slot`: remember who it is and return the join record."""
        self.client_ids[slot] = client_id
        self._name(slot, name)
        return self._record(tick, JOIN, hunt, unix_ms, client_id, slot, name, score=0)

    def left(self, tick: int, hunt: int, slot: int, reason: str, unix_ms: int) -> LedgerRecord:
        """The player in `slot` left: return the leave record and forget the slot."""
        client_id, name = int(self.client_ids[slot]), self.names[slot]
        self.client_ids[slot] = 0
        self._name(slot, "")
        return self._record(tick, LEAVE, hunt, unix_ms, client_id, slot, name, detail=reason)

    def score_restored(self, tick: int, hunt: int, slot: int, score: int,
                       unix_ms: int, why: str = "restored") -> LedgerRecord:
        """The server set the score of the player in `slot` (after writing it to
        world.pi[P_SCORE, slot]), e.g. RecoveryReport.scores_by_client on its rejoin."""
        return self._record(tick, SCORE, hunt, unix_ms, int(self.client_ids[slot]), slot,
                            self.names[slot], score=score, detail=why)

    def crash_leaves(self, tick: int, hunt: int, connected: dict[int, tuple[int, str]],
                     unix_ms: int) -> list[LedgerRecord]:
        """Leave records (reason "crash") for the players a crash disconnected
        (RecoveryReport.connected_at_crash: client id -> (slot, name)), so every join in
        the ledger has its leave. Submit them before anything else after a recovery."""
        return [self._record(tick, LEAVE, hunt, unix_ms, cid, slot, name, detail=CRASH)
                for cid, (slot, name) in sorted(connected.items())]

    def world_records(self, world: World, unix_ms: int) -> "list[LedgerRecord] | ClaimBatch":
        """Records of the events of the tick the world just ran (world.events).

        Call right after world.step(), before the next one: a claim's score after and
        treasure generation are read from the world arrays as the step left them (a
        treasure is never buried again in the tick it was claimed: sim.step runs
        age_treasures before dig).
        """
        n = world.event_count
        if n == 0:
            return []
        events = world.events[:n]
        if (events[:, S.EV_KIND] == S.EVENT_CLAIM).all():  # the common tick: claims only
            batch = ClaimBatch(self.world_uid, self.next_seq, int(world.clock[S.HUNT_ID]),
                               unix_ms, events, self.client_ids, self.names, world.pi,
                               world.ti, self.name_rows, self.name_lens)
            self.next_seq += n
            self._names_shared = True
            return batch
        out = []
        pi, ti, ids, names = world.pi, world.ti, self.client_ids, self.names
        hunt = int(world.clock[S.HUNT_ID])  # claims come after a hunt end in a tick
        starts = -1  # the tick of a hunt end whose ranks are being read
        for kind, tick, a, b, c, d in world.events[:n].tolist():
            if kind == S.EVENT_RANK:
                # ranks follow their hunt end in the same tick: the hunt that just ended
                out.append(self._record(tick, RANK, hunt - 1, unix_ms, int(ids[b]), b,
                                        names[b], value=a, score=d))
                continue
            if starts >= 0:
                out.append(self._record(starts, HUNT_START, hunt, unix_ms))
                starts = -1
            if kind == S.EVENT_CLAIM:
                out.append(self._record(tick, CLAIM, hunt, unix_ms, int(ids[a]), a, names[a],
                                        c, int(ti[S.T_GEN, c]), d, int(pi[S.P_SCORE, a])))
            elif kind == S.EVENT_HUNT_END:
                out.append(self._record(tick, HUNT_END, a, unix_ms, value=b))
                starts = tick
        if starts >= 0:
            out.append(self._record(starts, HUNT_START, hunt, unix_ms))
        return out

    def tick_records(self, tick: int, world: World, session_events: Iterable,
                     client_id_of: Callable[[int], int], unix_ms: int,
                     hunt_before: int | None = None) -> list | tuple:
        """All records of tick `tick`: its session events (net.events.PlayerJoined /
        PlayerLeft, in order), then its world events. Call after world.step() ran `tick`.

        Joins and leaves happen before the step (decode phase), so they come first: a slot
        freed and taken again in one tick credits its claims to the new player.
        client_id_of(slot) gives a joined player's client id (ServerProtocol.client_id) when
        the event does not carry one. hunt_before: the hunt id before the step (the hunt the
        joins and leaves happened in; by default worked out from the clock, which is right
        unless an operator ended a hunt between the ticks). Returns an empty tuple on a
        tick with nothing.
        """
        out: list | None = None
        hunt = -1
        for ev in session_events:
            if out is None:
                out = []
                # the hunt the joins happened in: the step may have ended it since
                if hunt_before is not None:
                    hunt = hunt_before
                else:
                    hunt = int(world.clock[S.HUNT_ID])
                    if int(world.clock[S.LAST_HUNT_END]) == tick:
                        hunt -= 1
            slot = ev.slot
            # duck-typed: store/ sits below net/ and does not import it
            if hasattr(ev, "session_id"):  # PlayerJoined
                client_id = getattr(ev, "client_id", 0)  # 0: the event does not say
                if not client_id:
                    client_id = client_id_of(slot)
                out.append(self.joined(tick, hunt, slot, client_id, ev.name, unix_ms))
            else:  # PlayerLeft
                out.append(self.left(tick, hunt, slot, ev.reason, unix_ms))
        if world.event_count:
            if out is None:
                return self.world_records(world, unix_ms)
            return RecordChain(out, self.world_records(world, unix_ms))
        return _EMPTY if out is None else out
