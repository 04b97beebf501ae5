"""Crash recovery: the last checkpoint, then every ledger record written after it.

The checkpoint holds the world as it was before tick C; the ledger holds what happened
after (claims, joins, leaves, hunt ends), up to the last commit before the crash. Replaying
those records onto the checkpoint's arrays gives back everything the players were told is
confirmed: each claimed treasure stays claimed (with its claim tick, so its respawn timer
runs on), each player's score is kept by client id, and a hunt that ended after the
checkpoint has ended in the resumed world too.

Not restored: players' positions and digs after C (the sessions died with the process:
every player rejoins), and where a treasure re-buried after C lay (the RNG draws between C
and the crash are not replayed; a treasure buried again lies somewhere new).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sim import schema as S
from sim.treasures import bury_all
from sim.world import World
from store.checkpoint import Checkpoint, restore_arrays
from store.ledger import Ledger
from store.records import CLAIM, HUNT_END, JOIN, LEAVE, SCORE


class RecoveryError(Exception):
    """The checkpoint and the ledger do not belong together; the message is one line."""


@dataclass
class RecoveryReport:
    """What recover() did, and what the server needs to go on."""

    tick: int  # the tick the resumed world runs next
    hunt: int  # the hunt it is in
    next_seq: int  # the first seq for new ledger records (Recorder(next_seq=...))
    checkpoint_tick: int | None  # None: no checkpoint, the ledger replayed from tick 0
    replayed: int = 0  # ledger records read after the checkpoint
    claims_applied: int = 0
    claims_skipped: int = 0  # of another hunt, or of a generation the treasure is past
    hunts_ended: int = 0  # hunt ends replayed
    players_removed: int = 0  # in the checkpoint's world; they rejoin as new sessions
    ledger_behind: int = 0  # records the checkpoint includes that the ledger never got
    # client id -> score in the current hunt: give it back when that client joins again
    scores_by_client: dict[int, int] = field(default_factory=dict)
    # client id -> (slot, name) of the players connected when the server died
    connected_at_crash: dict[int, tuple[int, str]] = field(default_factory=dict)


def recover(world: World, checkpoint: Checkpoint | None, ledger: Ledger) -> RecoveryReport:
    """Bring `world` back to where the ledger says the crashed server was.

    world: a World built for the same rules (its arrays are overwritten in place).
    checkpoint: from store.checkpoint.load_checkpoint, or None when the server died before
    its first checkpoint: `world` must then be new_world() of the same rules and seed (the
    treasures the ledger's first claims name are where the seed buried them).
    ledger: the crashed world's ledger (ledger.world_uid == checkpoint.world_uid).
    """
    if checkpoint is not None:
        if checkpoint.world_uid != ledger.world_uid:
            raise RecoveryError(f"the checkpoint is of world {checkpoint.world_uid}, the "
                                f"ledger of world {ledger.world_uid}")
        restore_arrays(world, checkpoint)
        base_seq, base_tick = checkpoint.seq, checkpoint.tick
        client_ids, names = checkpoint.client_ids, checkpoint.names
    else:
        base_seq, base_tick = 0, world.tick
        client_ids, names = np.zeros(world.rules.max_players, np.uint64), [""] * world.rules.max_players
    pi, ti, clock, kr = world.pi, world.ti, world.clock, world.kr
    hunt = int(clock[S.HUNT_ID])
    last_seq = ledger.last_seq()
    report = RecoveryReport(tick=base_tick, hunt=hunt, next_seq=0,
                            checkpoint_tick=None if checkpoint is None else base_tick,
                            ledger_behind=max(0, base_seq - last_seq))

    # who was in the world, with which score: the ledger's view of the hunt for players
    # who had left, the checkpoint's for those in it, then the records after it
    scores = dict(ledger.scores(hunt))
    connected: dict[int, tuple[int, str]] = {}
    for slot in np.flatnonzero(pi[S.P_ALIVE]).tolist():
        cid = int(client_ids[slot])
        if cid:
            scores[cid] = int(pi[S.P_SCORE, slot])
            connected[cid] = (slot, names[slot])
        world.leave(slot)
        report.players_removed += 1
    pi[S.P_SCORE] = 0
    # boards and recent claims name slots of sessions that are gone
    world.board[:] = (-1, 0, 0)
    world.final_board[:] = (-1, 0, 0)
    world.claim_ring[:] = -1

    newest_gen = np.full(ti.shape[1], -1, np.int64)  # newest claimed generation seen
    last_tick = base_tick - 1
    seq = base_seq
    for r in ledger.records_since(base_seq):
        report.replayed += 1
        seq = max(seq, r.seq)
        last_tick = max(last_tick, r.tick)
        kind = r.kind
        if kind == CLAIM:
            t, gen = r.treasure, r.treasure_gen
            if r.hunt != hunt or t is None or not 0 <= t < ti.shape[1] or gen < ti[S.T_GEN, t]:
                report.claims_skipped += 1
                continue
            ti[S.T_STATE, t] = S.CLAIMED
            ti[S.T_CLAIM_TICK, t] = r.tick
            ti[S.T_GEN, t] = gen
            ti[S.T_VALUE, t] = r.value
            ti[S.T_CLAIMER, t] = -1
            newest_gen[t] = max(newest_gen[t], gen)
            scores[r.client_id] = r.score
            report.claims_applied += 1
        elif kind == HUNT_END and r.hunt == hunt:
            # as sim.hunt.end_hunt: fresh treasures from the RNG, a new hunt from this tick
            bury_all(world.tf, ti, world.rng, world.value_cdf, kr.world_width, kr.world_height)
            clock[S.LAST_HUNT_END] = r.tick
            clock[S.HUNT_START] = r.tick
            hunt = r.hunt + 1
            clock[S.HUNT_ID] = hunt
            scores = dict.fromkeys(connected, 0)  # everyone in the world starts again
            report.hunts_ended += 1
        elif kind == JOIN:
            connected[r.client_id] = (r.slot, r.name)
            if r.hunt == hunt:
                scores[r.client_id] = 0  # World.join starts a player at 0
        elif kind == LEAVE:
            connected.pop(r.client_id, None)
        elif kind == SCORE and r.hunt == hunt:
            scores[r.client_id] = r.score

    tick = max(base_tick, last_tick + 1)
    clock[S.TICK] = tick
    clock[S.EVENT_COUNT] = 0
    # a treasure's generation never goes back: one buried again after a claim the ledger
    # has (a hunt end replayed, or a respawn not replayed) is a newer generation
    buried = ti[S.T_STATE] == S.BURIED
    behind = buried & (ti[S.T_GEN] <= newest_gen)
    ti[S.T_GEN, behind] = (newest_gen[behind] + 1).astype(np.int32)
    shown_long_enough = (ti[S.T_STATE] == S.CLAIMED) & (
        tick - ti[S.T_CLAIM_TICK] >= kr.claim_show_ticks)
    ti[S.T_STATE, shown_long_enough] = S.WAITING

    report.tick = tick
    report.hunt = hunt
    report.next_seq = max(seq, last_seq, base_seq) + 1
    report.scores_by_client = scores
    report.connected_at_crash = connected
    return report
