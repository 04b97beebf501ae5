"""The server's durable side, run from the tick: the hunt ledger, checkpoints, recovery.

At start: with no ledger file yet, a new world gets a new uid and its hunt 0 is recorded.
With one, the world is resumed: the last checkpoint (if any, of the same world) and then
every ledger record after it (store.recovery): confirmed claims stay claimed, scores come
back by client id when their players rejoin, and the hunt goes on.

Each tick (after the step) the tick's joins, leaves and world events become ledger records
and are submitted: that is a queue append, never disk I/O on the tick thread. The newest
tick the ledger made durable goes into the protocol, so the snapshots confirm the claims
up to it. Every `checkpoint_every` seconds the world's arrays are copied (about 0.1 ms at
10,000 players) and written by the checkpoint thread. At shutdown: the leaves, a last
checkpoint and the flush, within a deadline.
"""

from __future__ import annotations

import logging
import os

from net.events import PlayerJoined, PlayerLeft
from net.server import ServerProtocol
from sim import schema as S
from sim.world import World
from store.checkpoint import CheckpointError, CheckpointWriter, capture, load_checkpoint
from store.ledger import Ledger
from store.records import Recorder, new_world_uid
from store.recovery import RecoveryError, RecoveryReport, recover
from store.settings import StoreSettings, open_ledger
from store.sqlite_ledger import read_world_uid
from tick.clock import now_s, unix_ms

log = logging.getLogger("xmarks.ledger")


class StoreStartError(Exception):
    """The durable state on disk cannot be used by this server; one line, says why."""


class LedgerKeeper:
    """Owns the ledger, the recorder and the checkpoint writer of one GameServer."""

    def __init__(self, settings: StoreSettings, world: World, protocol: ServerProtocol,
                 tick_rate: float) -> None:
        self.settings = settings
        self.world = world
        self.protocol = protocol
        self.recovery: RecoveryReport | None = None
        self.restored_scores = 0
        capacity = world.rules.max_players
        uid = self._existing_world_uid()
        checkpoint = None
        if uid is not None and settings.checkpoint_every > 0 and os.path.exists(
                settings.checkpoint_path):
            try:
                checkpoint = load_checkpoint(settings.checkpoint_path, world.rules, tick_rate)
            except CheckpointError as exc:
                raise StoreStartError(f"{exc} (move it away to start from the ledger "
                                      "alone)") from None
            if checkpoint.world_uid != uid:
                raise StoreStartError(
                    f"checkpoint {settings.checkpoint_path} is of another world than ledger "
                    f"{settings.ledger_path}: move one of them away")
        self.ledger: Ledger = open_ledger(settings, uid or new_world_uid(), now_s)
        if uid is None:
            self.recorder = Recorder(self.ledger.world_uid, capacity)
            self.ledger.submit(world.tick, [self.recorder.hunt_started(
                world.tick, int(world.clock[S.HUNT_ID]), unix_ms())])
        else:
            try:
                report = recover(world, checkpoint, self.ledger)
            except RecoveryError as exc:
                self.ledger.close(1.0)
                raise StoreStartError(str(exc)) from None
            self.recovery = report
            self.recorder = Recorder(self.ledger.world_uid, capacity, next_seq=report.next_seq)
            if report.connected_at_crash:
                self.ledger.submit(report.tick, self.recorder.crash_leaves(
                    report.tick, report.hunt, report.connected_at_crash, unix_ms()))
            log.info("resumed world %d at tick %d, hunt %d: checkpoint %s, %d ledger records "
                     "replayed (%d claims), %d scores to give back on rejoin",
                     self.ledger.world_uid, report.tick, report.hunt,
                     "none" if report.checkpoint_tick is None else
                     f"of tick {report.checkpoint_tick}", report.replayed,
                     report.claims_applied, len(report.scores_by_client),
                     extra={"event": "resume", "tick": report.tick, "hunt": report.hunt,
                            "claims": report.claims_applied})
        self.checkpoints: CheckpointWriter | None = None
        if settings.checkpoint_every > 0 and settings.ledger_backend != "none":
            self.checkpoints = CheckpointWriter(settings.checkpoint_path, now_s)
            self.checkpoints.on_saved = lambda cp: self.ledger.checkpointed(cp.tick)
        self.every_ns = int(settings.checkpoint_every * 1e9)
        self._restored: list[tuple[int, int]] = []  # (slot, score) given back this tick
        self._publish()

    def _existing_world_uid(self) -> int | None:
        s = self.settings
        if s.ledger_backend != "sqlite" or not os.path.exists(s.ledger_path):
            return None
        try:
            return read_world_uid(s.ledger_path)
        except Exception as exc:  # noqa: BLE001 - any unreadable file: one line
            raise StoreStartError(f"ledger {s.ledger_path}: cannot read it ({exc})") from None

    def _publish(self) -> None:
        """The snapshots confirm claims up to the ledger's durable tick."""
        if self.settings.ledger_backend != "none":
            self.protocol.durable[0] = self.ledger.confirmed_tick()

    # ---- the tick thread ------------------------------------------------------------

    def before_step(self, events: list) -> list[tuple[int, int]]:
        """A player of a resumed hunt who rejoins gets its score back (before the step, so
        that its claims this tick add to it); return those (slot, score)."""
        scores = self.recovery.scores_by_client if self.recovery is not None else None
        if not scores:
            return []
        given = []
        for ev in events:
            if isinstance(ev, PlayerJoined) and not ev.resumed:
                score = scores.pop(ev.client_id, None)
                if score:
                    self.world.pi[S.P_SCORE, ev.slot] = score
                    given.append((ev.slot, score))
        self._restored += given
        return given

    def after_step(self, tick: int, events: list, hunt_before: int) -> None:
        """Submit the records of the tick that just ran (its session events, which
        happened in hunt `hunt_before`, then its world events) and publish the durable
        tick."""
        if self.settings.ledger_backend == "none":  # nothing keeps them: build none
            return
        records = self.recorder.tick_records(tick, self.world,
                                             _comings_and_goings(events) if events else events,
                                             self.protocol.client_id, unix_ms(),
                                             hunt_before)
        if self._restored:
            hunt = int(self.world.clock[S.HUNT_ID])
            records = list(records) + [self.recorder.score_restored(tick, hunt, slot, score,
                                                                     unix_ms())
                                       for slot, score in self._restored]
            self.restored_scores += len(self._restored)
            self._restored = []
        self.ledger.submit(tick, records)
        self._publish()

    def between_ticks(self, events: list, world_events: bool) -> None:
        """Record what an operator's command did between two ticks: players it removed
        (kicks) and, with world_events, the events it wrote to world.events (a hunt ended
        now; otherwise world.events still holds the last step's, already recorded)."""
        if self.settings.ledger_backend == "none":
            return
        tick, hunt = self.world.tick, int(self.world.clock[S.HUNT_ID])
        records = [self.recorder.left(tick, hunt, ev.slot, ev.reason, unix_ms())
                   for ev in events if isinstance(ev, PlayerLeft)]
        if world_events and self.world.event_count:
            records += self.recorder.world_records(self.world, unix_ms())
        if records:
            self.ledger.submit(tick, records)

    def checkpoint(self) -> None:
        """Copy the world now (between ticks) for the checkpoint thread to write."""
        if self.checkpoints is not None:
            self.checkpoints.submit(capture(self.world, self.recorder))

    def status(self) -> dict:
        out = dict(self.ledger.status())
        if self.checkpoints is not None:
            out["checkpoint"] = self.checkpoints.status()
        return out

    # ---- shutdown -------------------------------------------------------------------

    def close(self, left: list, timeout_s: float) -> bool:
        """Record the players who left at shutdown, write a last checkpoint and flush the
        ledger, within timeout_s; True if everything is on disk."""
        tick = self.world.tick
        hunt = int(self.world.clock[S.HUNT_ID])
        records = [self.recorder.left(tick, hunt, ev.slot, ev.reason, unix_ms())
                   for ev in left if isinstance(ev, PlayerLeft)]
        if records:
            self.ledger.submit(tick, records)
        deadline = now_s() + timeout_s
        ok = True
        if self.checkpoints is not None:
            self.checkpoint()
            ok = self.checkpoints.close(max(0.1, (deadline - now_s()) / 2))
        ok = self.ledger.close(max(0.1, deadline - now_s())) and ok
        return ok


def _comings_and_goings(events: list) -> list:
    """The events that change who is in the world: new players (not a client taking back
    its waiting player) and players leaving (not a session going away, nor moving)."""
    return [ev for ev in events if isinstance(ev, PlayerLeft)
            or (isinstance(ev, PlayerJoined) and not ev.resumed)]
