"""store/records.py: ledger records built from a tick's world and session events, checked
against a plain-Python account of the hunt (scores by client id, slots, generations)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from net.events import PlayerJoined, PlayerLeft
from sim import schema as S
from sim.rules import GameRules
from sim.world import World, new_world
from store.records import (CLAIM, HUNT_END, HUNT_START, JOIN, KINDS, LEAVE, RANK, SCORE,
                           Recorder, new_world_uid)

RULES = GameRules(world_width=320.0, world_height=256.0, max_players=24, treasure_count=20,
                  player_speed=240.0, dig_radius=20.0, dig_time=0.15, heat_radius=200.0,
                  respawn_delay=0.6, claim_show_time=0.25, hunt_duration=6.0, cell_size=64.0,
                  leaderboard_size=5, seed=11)
TICK_RATE = 20.0
UNIX_MS0 = 1_800_000_000_000


class Bots:
    """Seeded players for a World: they join (a few client ids come back after leaving),
    leave, walk to the nearest buried treasure and dig. before_tick() applies joins and
    leaves to the world and returns them as net.events, as the protocol would."""

    def __init__(self, world: World, seed: int, target: int = 16) -> None:
        self.world = world
        self.rnd = random.Random(seed)
        self.target = target
        self.client_of: dict[int, int] = {}  # slot -> client id, while connected
        self.gone: list[int] = []  # client ids that left (some come back)
        self.next_id = 0

    def _new_client(self) -> int:
        if self.gone and self.rnd.random() < 0.4:
            return self.gone.pop(self.rnd.randrange(len(self.gone)))
        self.next_id += 1
        # ids above 2**63 too: SQLite stores signed integers
        return self.next_id * 0x9E3779B97F4A7C15 % 2**64 or 1

    def client_id_of(self, slot: int) -> int:
        return self.client_of[slot]

    def before_tick(self) -> list:
        w, rnd = self.world, self.rnd
        events: list = []
        if self.client_of and rnd.random() < 0.06:
            slot = rnd.choice(sorted(self.client_of))
            w.leave(slot)
            self.gone.append(self.client_of.pop(slot))
            events.append(PlayerLeft(slot, f"p{slot}", rnd.choice(("quit", "timed_out"))))
        free = [s for s in range(w.rules.max_players) if not w.pi[S.P_ALIVE, s]]
        if len(self.client_of) < self.target and free and rnd.random() < 0.5:
            slot = rnd.choice(free)
            w.join(slot)
            self.client_of[slot] = self._new_client()
            events.append(PlayerJoined(slot, 1000 + slot, f"p{slot}", ("127.0.0.1", 4000 + slot)))
        self._steer()
        return events

    def _steer(self) -> None:
        w = self.world
        alive = np.flatnonzero(w.pi[S.P_ALIVE])
        if not len(alive):
            return
        buried = np.flatnonzero(w.ti[S.T_STATE] == S.BURIED)
        step = w.kr.speed_per_tick
        for slot in alive.tolist():
            mx = my = 0
            if len(buried):
                dx = w.tf[S.TX, buried] - w.pf[S.PX, slot]
                dy = w.tf[S.TY, buried] - w.pf[S.PY, slot]
                k = int(np.argmin(dx * dx + dy * dy))
                mx = int(np.clip(round(float(dx[k]) / step * 127), -127, 127))
                my = int(np.clip(round(float(dy[k]) / step * 127), -127, 127))
            w.pi[S.P_MOVE_X, slot] = mx
            w.pi[S.P_MOVE_Y, slot] = my
            w.pi[S.P_DIG, slot] = int(self.rnd.random() < 0.9)


def run_tick(world: World, bots: Bots, recorder: Recorder) -> tuple[int, list]:
    """One server tick: joins/leaves, step, the tick's records. Returns (tick, records)."""
    events = bots.before_tick()
    tick = world.tick
    world.step()
    records = recorder.tick_records(tick, world, events, bots.client_id_of, UNIX_MS0 + tick * 50)
    return tick, list(records)


def test_records_tell_the_hunt_as_the_world_played_it():
    world = new_world(RULES, TICK_RATE)
    bots = Bots(world, seed=5)
    uid = new_world_uid()
    recorder = Recorder(uid, RULES.max_players)
    all_records = [recorder.hunt_started(0, 0, UNIX_MS0)]
    # the plain account: who is where, each client's score, the current hunt
    slot_client: dict[int, int] = {}
    score: dict[int, int] = {}
    hunt = 0
    counts = dict.fromkeys(KINDS, 0)
    for _ in range(int(TICK_RATE * RULES.hunt_duration * 2.5)):
        before = dict(bots.client_of)
        tick, records = run_tick(world, bots, recorder)
        events = world.events[:world.event_count].tolist()
        claims = [e for e in events if e[0] == S.EVENT_CLAIM]
        assert [r.tick for r in records] == [tick] * len(records)
        kinds = [r.kind for r in records]
        # session records first, then the world's, in event order
        n_session = sum(k in (JOIN, LEAVE) for k in kinds)
        assert all(k in (JOIN, LEAVE) for k in kinds[:n_session])
        world_kinds = [k for k in kinds[n_session:] if k != HUNT_START]
        assert world_kinds == [{S.EVENT_CLAIM: CLAIM, S.EVENT_HUNT_END: HUNT_END,
                                S.EVENT_RANK: RANK}[e[0]] for e in events]
        for r in records:
            counts[r.kind] += 1
            assert r.world == uid and r.unix_ms == UNIX_MS0 + tick * 50
            if r.kind == LEAVE:
                assert r.client_id == before[r.slot] and r.detail in ("quit", "timed_out")
                assert r.hunt == hunt
                del slot_client[r.slot]
            elif r.kind == JOIN:
                assert r.client_id == bots.client_of[r.slot] and r.name == f"p{r.slot}"
                assert r.score == 0 and r.hunt == hunt
                slot_client[r.slot] = r.client_id
                score[r.client_id] = 0
            elif r.kind == HUNT_END:
                assert r.hunt == hunt and r.value == sum(k == RANK for k in kinds)
                hunt_scores = sorted(((-score[c], s) for s, c in slot_client.items()))
            elif r.kind == RANK:
                assert r.hunt == hunt
                # rank r.value: the r.value-th best (score desc, slot asc) of those in it
                assert (-r.score, r.slot) == hunt_scores[r.value]
                assert r.client_id == slot_client[r.slot]
            elif r.kind == HUNT_START:
                assert r.hunt == hunt + 1
                hunt += 1
                score = dict.fromkeys(score, 0)
            elif r.kind == CLAIM:
                assert r.hunt == hunt
                cid = slot_client[r.slot]
                assert r.client_id == cid
                score[cid] += r.value
                assert r.score == score[cid]
                assert r.treasure_gen == world.ti[S.T_GEN, r.treasure]
                assert world.ti[S.T_STATE, r.treasure] == S.CLAIMED
                assert world.ti[S.T_CLAIM_TICK, r.treasure] == tick
        assert sorted((r.slot, r.treasure, r.value) for r in records if r.kind == CLAIM) == \
            sorted((e[2], e[4], e[5]) for e in claims)
        all_records += records
        # the account matches the world for everyone in it
        for slot, cid in slot_client.items():
            assert world.pi[S.P_SCORE, slot] == score[cid]
    assert [r.seq for r in all_records] == list(range(1, len(all_records) + 1))
    assert recorder.last_seq == len(all_records)
    assert counts[CLAIM] >= 20 and counts[HUNT_END] == 2 and counts[RANK] >= 4
    assert counts[JOIN] >= 10 and counts[LEAVE] >= 3


def test_a_tick_without_events_costs_no_record_and_no_seq():
    world = new_world(RULES, TICK_RATE)
    recorder = Recorder(7, RULES.max_players, next_seq=41)
    tick = world.tick
    world.step()
    assert world.event_count == 0
    assert recorder.tick_records(tick, world, [], lambda s: 0, 0) == ()
    assert recorder.next_seq == 41 and recorder.last_seq == 40


def _with_events(world: World, rows: list[tuple]) -> None:
    """Put hand-made event rows in the world, as if its last step had emitted them."""
    for i, row in enumerate(rows):
        world.events[i] = row
    world.clock[S.EVENT_COUNT] = len(rows)


def test_a_slot_freed_and_taken_in_one_tick_credits_the_new_player():
    world = new_world(RULES, TICK_RATE)
    recorder = Recorder(3, RULES.max_players)
    world.join(4)
    recorder.joined(0, 0, 4, client_id=111, name="old", unix_ms=0)
    world.leave(4)
    world.join(4)
    world.pi[S.P_SCORE, 4] = 5
    world.ti[S.T_GEN, 2] = 3
    _with_events(world, [(S.EVENT_CLAIM, 9, 4, 2, 2, 5)])
    events = [PlayerLeft(4, "old", "quit"), PlayerJoined(4, 77, "new", ("127.0.0.1", 1))]
    records = recorder.tick_records(9, world, events, {4: 222}.__getitem__, 123)
    assert [(r.kind, r.client_id, r.name) for r in records] == [
        (LEAVE, 111, "old"), (JOIN, 222, "new"), (CLAIM, 222, "new")]
    claim = records[-1]
    assert (claim.treasure, claim.treasure_gen, claim.value, claim.score) == (2, 3, 5, 5)
    assert [r.seq for r in records] == [2, 3, 4]


def test_joins_of_the_tick_a_hunt_ended_belong_to_the_old_hunt():
    rules = GameRules(world_width=256.0, world_height=256.0, max_players=4, treasure_count=4,
                      cell_size=64.0, hunt_duration=0.5, seed=2)
    world = new_world(rules, 10.0)
    recorder = Recorder(3, rules.max_players)
    for _ in range(world.kr.hunt_ticks):
        world.step()
    world.join(1)
    tick = world.tick
    world.step()  # ends hunt 0 at its start
    records = recorder.tick_records(tick, world, [PlayerJoined(1, 5, "a", ("127.0.0.1", 1))],
                                    lambda s: 99, 0)
    assert [(r.kind, r.hunt) for r in records] == [
        (JOIN, 0), (HUNT_END, 0), (RANK, 0), (HUNT_START, 1)]
    assert records[2].client_id == 99 and records[2].value == 0


def test_score_and_crash_records():
    recorder = Recorder(3, 8)
    recorder.joined(5, 0, 2, client_id=2**64 - 1, name="max", unix_ms=0)
    r = recorder.score_restored(6, 0, 2, 17, 1)
    assert (r.kind, r.client_id, r.slot, r.score, r.detail) == (SCORE, 2**64 - 1, 2, 17, "restored")
    leaves = recorder.crash_leaves(7, 0, {9: (1, "b"), 4: (0, "a")}, 2)
    assert [(x.kind, x.client_id, x.slot, x.name, x.detail) for x in leaves] == [
        (LEAVE, 4, 0, "a", "crash"), (LEAVE, 9, 1, "b", "crash")]


@pytest.mark.parametrize("uid", [0, -1, 2**63])
def test_world_uid_must_fit_a_signed_sqlite_integer(uid):
    with pytest.raises(ValueError, match="world_uid"):
        Recorder(uid, 4)


def test_new_world_uids_are_positive_and_differ():
    uids = {new_world_uid() for _ in range(100)}
    assert len(uids) == 100 and all(1 <= u < 2**63 for u in uids)


def test_a_claim_batch_keeps_the_names_and_scores_of_its_tick():
    """Claims stay arrays until the ledger's writer iterates them (later, on its thread):
    what the tick thread does next (a leave, a join in the slot, more claims) must not
    change them."""
    world = new_world(RULES, TICK_RATE)
    recorder = Recorder(3, RULES.max_players)
    world.join(1)
    recorder.joined(0, 0, 1, client_id=555, name="first", unix_ms=0)
    world.pi[S.P_SCORE, 1] = 9
    _with_events(world, [(S.EVENT_CLAIM, 4, 1, 1, 0, 3), (S.EVENT_CLAIM, 4, 1, 1, 2, 1)])
    batch = recorder.tick_records(4, world, [], lambda s: 0, 77)
    assert len(batch) == 2 and recorder.last_seq == 3
    # the tick thread goes on before the writer looks
    recorder.left(5, 0, 1, "quit", 0)
    world.leave(1)
    world.join(1)
    recorder.joined(5, 0, 1, client_id=666, name="second", unix_ms=0)
    world.pi[S.P_SCORE, 1] = 0
    rows = list(batch)
    assert [(r.seq, r.kind, r.client_id, r.name, r.treasure, r.value, r.score, r.unix_ms)
            for r in rows] == [(2, CLAIM, 555, "first", 0, 3, 9, 77),
                               (3, CLAIM, 555, "first", 2, 1, 9, 77)]
    assert recorder.names[1] == "second"
