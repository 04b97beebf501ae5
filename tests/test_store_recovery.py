"""store/recovery.py: crash at tick K, recover from the checkpoint of tick C plus the
ledger: every claim up to K still claimed (not buried again), scores by client id equal,
a hunt that ended after C ended in the resumed world, seqs continue."""

from __future__ import annotations

import time

import numpy as np
import pytest

from sim import schema as S
from sim.world import World, new_world
from store.checkpoint import capture, load_checkpoint, save_checkpoint
from store.ledger import MemoryLedger
from store.records import CLAIM, HUNT_END, LEAVE, Recorder
from store.recovery import RecoveryError, recover
from store.sqlite_ledger import SqliteLedger
from tests.test_store_records import RULES, TICK_RATE, Bots, run_tick

UID = 987654321
HUNT_TICKS = int(RULES.hunt_duration * TICK_RATE)  # 120


class Truth:
    """What the crashed server knew at the crash: per treasure and per client."""

    def __init__(self, world: World, bots: Bots, scores_of_gone: dict[int, int]) -> None:
        self.tick = world.tick
        self.hunt = int(world.clock[S.HUNT_ID])
        self.ti = world.ti.copy()
        self.connected = {cid: slot for slot, cid in bots.client_of.items()}
        self.scores = {cid: int(world.pi[S.P_SCORE, slot]) for slot, cid in bots.client_of.items()}
        for cid, score in scores_of_gone.items():
            self.scores.setdefault(cid, score)


def play(ledger, ticks_to_checkpoint: int, ticks_to_crash: int, tmp_path, seed: int = 9):
    """Run a server's worth of ticks with every record submitted; checkpoint after
    `ticks_to_checkpoint`; stop ("crash") after `ticks_to_crash`. Returns the checkpoint
    path, the truth at the crash, and every record built."""
    world = new_world(RULES, TICK_RATE)
    bots = Bots(world, seed=seed)
    recorder = Recorder(UID, RULES.max_players)
    first = [recorder.hunt_started(0, 0, 0)]
    ledger.submit(0, first)
    built = list(first)
    gone: dict[int, int] = {}  # client id -> score when it left, this hunt
    path = str(tmp_path / "cp.npz")
    for n in range(ticks_to_crash):
        if n == ticks_to_checkpoint:
            save_checkpoint(path, capture(world, recorder))
        slots_before = dict(bots.client_of)
        scores_before = world.pi[S.P_SCORE].copy()
        tick, records = run_tick(world, bots, recorder)
        for r in records:
            if r.kind == LEAVE:
                gone[r.client_id] = int(scores_before[r.slot])
            elif r.kind == HUNT_END:
                gone = {}
        assert all(bots.client_of.get(s) == c for s, c in slots_before.items() if s in bots.client_of)
        ledger.submit(tick, records)
        built += records
    return path, Truth(world, bots, {c: s for c, s in gone.items()
                                      if c not in bots.client_of.values()}), built


def check_recovered(world: World, report, truth: Truth, built: list, confirmed_tick: int) -> None:
    kr = world.kr
    assert report.hunt == truth.hunt == int(world.clock[S.HUNT_ID])
    assert int(world.clock[S.TICK]) == report.tick and report.tick <= truth.tick
    assert world.alive_count() == 0  # everyone rejoins
    # every claim the players were told is confirmed is still claimed, at its generation,
    # or (its respawn time having passed) buried again as a later generation
    latest = {}
    for r in built:
        if r.kind == CLAIM and r.tick <= confirmed_tick and r.hunt == truth.hunt:
            latest[r.treasure] = r
    assert latest, "the run made no claim in the last hunt"
    for t, r in latest.items():
        gen, state = int(world.ti[S.T_GEN, t]), int(world.ti[S.T_STATE, t])
        if gen == r.treasure_gen:
            assert state in (S.CLAIMED, S.WAITING), t
            assert world.ti[S.T_CLAIM_TICK, t] == r.tick
            assert world.ti[S.T_VALUE, t] == r.value
        else:
            assert gen > r.treasure_gen
    # treasure by treasure, against the crashed world
    for t in range(RULES.treasure_count):
        state, gen = int(truth.ti[S.T_STATE, t]), int(truth.ti[S.T_GEN, t])
        got_state, got_gen = int(world.ti[S.T_STATE, t]), int(world.ti[S.T_GEN, t])
        if state != S.BURIED:  # claimed before the crash: claimed now, same claim
            assert (got_state != S.BURIED, got_gen) == (True, gen), t
            assert world.ti[S.T_CLAIM_TICK, t] == truth.ti[S.T_CLAIM_TICK, t]
            # shown for claim_show_ticks, then waiting: as the crashed world had it
            if report.tick - truth.ti[S.T_CLAIM_TICK, t] >= kr.claim_show_ticks:
                assert got_state == S.WAITING
        elif got_state == S.BURIED:
            # untouched since the checkpoint, or buried afresh by a replayed hunt end (the
            # crashed world may have had respawns in between: a later generation)
            assert got_gen == gen if report.hunts_ended == 0 else got_gen <= gen, t
        else:  # buried again before the crash: here the respawn timer runs on
            assert truth.tick - world.ti[S.T_CLAIM_TICK, t] >= kr.respawn_ticks
            assert got_gen < gen
    assert {c: s for c, s in report.scores_by_client.items() if c in truth.scores} == truth.scores
    assert set(truth.scores) <= set(report.scores_by_client)
    assert {c: slot for c, (slot, _) in report.connected_at_crash.items()} == truth.connected


def resume_and_play(world: World, report, ledger, ticks: int = 60) -> None:
    """The resumed server: new sessions, new records from report.next_seq, nothing lost."""
    recorder = Recorder(UID, RULES.max_players, next_seq=report.next_seq)
    tick = world.tick
    ledger.submit(tick - 1, recorder.crash_leaves(tick - 1, report.hunt,
                                                  report.connected_at_crash, 0))
    bots = Bots(world, seed=77)
    claimed = {t: int(world.ti[S.T_GEN, t]) for t in range(RULES.treasure_count)
               if world.ti[S.T_STATE, t] != S.BURIED}
    for _ in range(ticks):
        tick, records = run_tick(world, bots, recorder)
        for r in records:
            if r.kind == CLAIM and r.treasure in claimed:
                # a treasure claimed before the crash is dug again only once buried anew
                assert r.treasure_gen > claimed[r.treasure]
        ledger.submit(tick, records)
    assert ledger.close(15.0)
    seqs = [r.seq for r in ledger.records_since(0)]
    assert seqs == sorted(set(seqs)) and seqs[-1] == recorder.last_seq


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
@pytest.mark.parametrize("checkpoint_at, crash_at", [
    (60, 110),  # the same hunt: claims after the checkpoint are replayed
    (100, 170),  # the hunt ended (tick 120) between the checkpoint and the crash
])
def test_recover_from_checkpoint_and_ledger(tmp_path, backend, checkpoint_at, crash_at):
    def open_ledger():
        if backend == "memory":
            return MemoryLedger(UID)
        return SqliteLedger(str(tmp_path / "ledger.sqlite3"), UID, clock=time.monotonic)

    ledger = open_ledger()
    path, truth, built = play(ledger, checkpoint_at, crash_at, tmp_path)
    if backend == "sqlite":
        assert ledger.close(15.0)  # what a crash leaves: the committed records
    confirmed = ledger.confirmed_tick()  # what the players were told
    assert confirmed == crash_at - 1
    if backend == "sqlite":
        ledger = open_ledger()
    world = new_world(RULES, TICK_RATE)
    cp = load_checkpoint(path, RULES, TICK_RATE)
    report = recover(world, cp, ledger)
    assert report.checkpoint_tick == checkpoint_at
    assert report.replayed == sum(r.seq > cp.seq for r in built)
    assert report.claims_applied == sum(r.kind == CLAIM and r.seq > cp.seq for r in built)
    assert report.claims_skipped == 0
    assert report.hunts_ended == (truth.hunt - int(cp.arrays["clock"][S.HUNT_ID]))
    assert report.next_seq == built[-1].seq + 1
    if checkpoint_at < HUNT_TICKS <= crash_at:
        assert report.hunts_ended == 1
        assert int(world.clock[S.HUNT_START]) == HUNT_TICKS
    check_recovered(world, report, truth, built, confirmed)
    resume_and_play(world, report, ledger)


def test_recover_without_a_checkpoint_replays_the_whole_ledger(tmp_path):
    ledger = MemoryLedger(UID)
    _, truth, built = play(ledger, 10**9, 100, tmp_path)
    world = new_world(RULES, TICK_RATE)  # the same rules and seed: the same first treasures
    report = recover(world, None, ledger)
    assert report.checkpoint_tick is None and report.replayed == len(built)
    assert report.claims_skipped == 0
    check_recovered(world, report, truth, built, ledger.confirmed_tick())


def test_claims_never_committed_were_never_confirmed(tmp_path):
    """The disk fails from tick 90 to the crash: those claims are lost, but nobody was
    told they were confirmed, and every confirmed one comes back."""
    ledger = MemoryLedger(UID)
    world = new_world(RULES, TICK_RATE)
    bots = Bots(world, seed=9)
    recorder = Recorder(UID, RULES.max_players)
    built = []
    path = str(tmp_path / "cp.npz")
    for n in range(110):
        if n == 40:
            save_checkpoint(path, capture(world, recorder))
        if n == 90:
            ledger.fail_with = "disk full"
        tick, records = run_tick(world, bots, recorder)
        ledger.submit(tick, records)
        built += records
    assert ledger.confirmed_tick() == 89
    assert any(r.kind == CLAIM and r.tick >= 90 for r in built), "no claim while failing"
    fresh = new_world(RULES, TICK_RATE)
    report = recover(fresh, load_checkpoint(path, RULES), ledger)
    assert report.tick <= 90
    latest = {r.treasure: r for r in built if r.kind == CLAIM and r.tick <= 89}
    assert len(latest) >= 5
    for t, r in latest.items():
        assert (fresh.ti[S.T_GEN, t], fresh.ti[S.T_STATE, t] != S.BURIED) == (r.treasure_gen, True)
    # seqs of the records that never landed are free again: no collision with the ledger
    assert report.next_seq == ledger.last_seq() + 1 < recorder.next_seq


def test_a_checkpoint_ahead_of_the_ledger_wins_and_seqs_do_not_collide(tmp_path):
    """The checkpoint got to disk, the last ledger commit did not: the checkpoint's
    state stands and new records start after the checkpoint's seq."""
    ledger = MemoryLedger(UID)
    world = new_world(RULES, TICK_RATE)
    bots = Bots(world, seed=4)
    recorder = Recorder(UID, RULES.max_players)
    for n in range(80):
        tick, records = run_tick(world, bots, recorder)
        if n < 60:
            ledger.submit(tick, records)
    cp = capture(world, recorder)
    assert cp.seq > ledger.last_seq()
    fresh = new_world(RULES, TICK_RATE)
    report = recover(fresh, cp, ledger)
    assert report.ledger_behind == cp.seq - ledger.last_seq()
    assert report.next_seq == cp.seq + 1 and report.tick == cp.tick
    assert np.array_equal(fresh.ti[S.T_STATE] != S.BURIED, world.ti[S.T_STATE] != S.BURIED)
    assert bots.client_of
    for slot, cid in bots.client_of.items():
        assert report.scores_by_client[cid] == world.pi[S.P_SCORE, slot]


def test_a_checkpoint_of_another_world_is_refused(tmp_path):
    world = new_world(RULES, TICK_RATE)
    cp = capture(world, Recorder(UID, RULES.max_players))
    with pytest.raises(RecoveryError, match="world"):
        recover(new_world(RULES, TICK_RATE), cp, MemoryLedger(UID + 1))
