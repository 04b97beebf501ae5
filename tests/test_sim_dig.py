"""sim/dig.py: dig progress and claims against the reference, tick by tick."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim import schema as S
from sim.dig import dig, push_event
from tests.sim_reference import (BURIED, CLAIMED, EVENT_CLAIM, WAITING, RefLog, RefPlayer,
                                 RefTreasure, diff_players, diff_treasures, f32, players_to_arrays,
                                 ref_dig, ref_grid, treasures_to_arrays)


class DigRig:
    """Kernel arrays and the reference model of the same players and treasures."""

    def __init__(self, players, treasures, *, w=512.0, h=512.0, cs=64.0, dig_radius=24.0,
                 dig_ticks=3, capacity=None, claim_head=0):
        self.players, self.treasures = players, treasures
        self.w, self.h, self.cs = w, h, cs
        self.cols, self.rows = math.ceil(w / cs), math.ceil(h / cs)
        self.dig_radius, self.dig_ticks = dig_radius, dig_ticks
        self.pf, self.pi = players_to_arrays(players)
        self.tf, self.ti = treasures_to_arrays(treasures)
        cap = len(treasures) + 1 if capacity is None else capacity
        self.clock = np.zeros(len(S.CLOCK), np.int64)
        self.clock[S.CLAIM_HEAD] = claim_head
        self.events = np.zeros((cap, S.EVENT_FIELDS), np.int32)
        self.ring = np.full((S.CLAIM_RING, S.CLAIM_FIELDS), -1, np.int64)
        self.log = RefLog(cap)
        self.log.head = claim_head

    def set_player(self, i, **fields):
        p = self.players[i]
        for name, value in fields.items():
            if name in S.PLAYER_F32:
                value = f32(value)
                self.pf[S.PLAYER_F32.index(name), i] = value
            else:
                self.pi[S.PLAYER_I32.index(name), i] = value
            setattr(p, name, value)

    def set_treasure(self, t, **fields):
        tr = self.treasures[t]
        for name, value in fields.items():
            if name in S.TREASURE_F32:
                value = f32(value)
                self.tf[S.TREASURE_F32.index(name), t] = value
            else:
                self.ti[S.TREASURE_I32.index(name), t] = value
            setattr(tr, name, value)

    def step(self, tick):
        ts = self.treasures
        starts, items, _ = ref_grid([t.x for t in ts], [t.y for t in ts], [t.state for t in ts],
                                    BURIED, self.cs, self.cols, self.rows, [0] * len(ts))
        self.clock[S.EVENT_COUNT] = 0
        self.log.events = []
        got = dig(self.pf, self.pi, self.tf, self.ti, np.asarray(starts, np.int32),
                  np.asarray(items, np.int32), tick, self.dig_radius, self.dig_ticks, self.cs,
                  self.cols, self.rows, self.clock, self.events, self.ring)
        want = ref_dig(self.players, ts, tick, self.dig_radius, self.dig_ticks, self.log)
        assert got == want
        assert diff_players(self.players, self.pf, self.pi) == []
        assert diff_treasures(ts, self.tf, self.ti) == []
        assert self.log.diff(self.clock, self.events, self.ring) == []
        return got

    def events_now(self):
        return [tuple(r) for r in self.events[:self.clock[S.EVENT_COUNT]].tolist()]


def _p(x, y, dig=1, alive=1, gen=1, **kw):
    return RefPlayer(x=f32(x), y=f32(y), dig=dig, alive=alive, gen=gen, **kw)


def _t(x, y, value=3, state=BURIED, gen=0):
    return RefTreasure(x=f32(x), y=f32(y), value=value, state=state, gen=gen)


def test_progress_and_claim_at_exactly_dig_ticks():
    rig = DigRig([_p(100, 100, gen=7)], [_t(101, 100, value=4)], dig_ticks=4)
    for k, tick in enumerate(range(10, 13)):
        assert rig.step(tick) == 0
        assert (rig.pi[S.P_DIG_TREASURE, 0], rig.pi[S.P_DIG_START, 0],
                rig.pi[S.P_DIG_TICKS, 0]) == (0, 10, k + 1)
        assert rig.ti[S.T_STATE, 0] == BURIED
    assert rig.step(13) == 1
    assert rig.ti[S.T_STATE, 0] == CLAIMED and rig.ti[S.T_CLAIM_TICK, 0] == 13
    assert rig.ti[S.T_CLAIMER, 0] == 0
    assert rig.pi[S.P_SCORE, 0] == 4
    assert (rig.pi[S.P_DIG_TREASURE, 0], rig.pi[S.P_DIG_TICKS, 0]) == (-1, 0)
    assert rig.events_now() == [(EVENT_CLAIM, 13, 0, 7, 0, 4)]
    assert rig.ring[0].tolist() == [13, 0, 0, 4, 101, 100] and rig.clock[S.CLAIM_HEAD] == 1
    # the treasure is gone: digging on does nothing more
    assert rig.step(14) == 0
    assert rig.pi[S.P_DIG_TREASURE, 0] == -1 and rig.pi[S.P_SCORE, 0] == 4


def test_dig_ticks_one_claims_on_first_tick():
    rig = DigRig([_p(100, 100)], [_t(100, 100, value=2)], dig_ticks=1)
    assert rig.step(0) == 1 and rig.pi[S.P_SCORE, 0] == 2


def test_release_resets():
    rig = DigRig([_p(100, 100)], [_t(100, 100)], dig_ticks=3)
    rig.step(0)
    rig.step(1)
    assert rig.pi[S.P_DIG_TICKS, 0] == 2
    rig.set_player(0, dig=0)
    rig.step(2)
    assert (rig.pi[S.P_DIG_TREASURE, 0], rig.pi[S.P_DIG_TICKS, 0]) == (-1, 0)
    rig.set_player(0, dig=1)
    rig.step(3)
    assert (rig.pi[S.P_DIG_START, 0], rig.pi[S.P_DIG_TICKS, 0]) == (3, 1)
    rig.step(4)
    assert rig.step(5) == 1  # three fresh ticks


def test_out_of_range_resets_and_radius_is_inclusive():
    rig = DigRig([_p(115, 120)], [_t(100, 100)], dig_radius=25.0, dig_ticks=3)  # d = 25 exactly
    rig.step(0)
    assert rig.pi[S.P_DIG_TICKS, 0] == 1
    rig.step(1)
    rig.set_player(0, x=115.5)  # d > 25
    rig.step(2)
    assert (rig.pi[S.P_DIG_TREASURE, 0], rig.pi[S.P_DIG_TICKS, 0]) == (-1, 0)
    rig.set_player(0, x=100)
    rig.step(3)
    assert (rig.pi[S.P_DIG_START, 0], rig.pi[S.P_DIG_TICKS, 0]) == (3, 1)


def test_nearest_change_restarts():
    rig = DigRig([_p(105, 100)], [_t(100, 100), _t(130, 100)], dig_ticks=3)
    rig.step(0)
    rig.step(1)
    assert (rig.pi[S.P_DIG_TREASURE, 0], rig.pi[S.P_DIG_TICKS, 0]) == (0, 2)
    rig.set_player(0, x=125)  # both in range, but 1 is nearer now
    rig.step(2)
    assert (rig.pi[S.P_DIG_TREASURE, 0], rig.pi[S.P_DIG_START, 0],
            rig.pi[S.P_DIG_TICKS, 0]) == (1, 2, 1)
    rig.set_player(0, x=115)  # exactly between: tie goes to the lower index
    rig.step(3)
    assert (rig.pi[S.P_DIG_TREASURE, 0], rig.pi[S.P_DIG_TICKS, 0]) == (0, 1)


def test_same_start_lowest_slot_wins_losers_reset():
    players = [_p(0, 0, dig=0) for _ in range(8)]
    rig = DigRig(players, [_t(200, 200, value=5), _t(400, 400, value=1)], dig_ticks=2)
    for slot in (5, 2, 7):
        rig.set_player(slot, x=200 + slot, y=200, dig=1, gen=slot + 10)
    rig.set_player(3, x=400, y=400, dig=1)  # digging something else
    rig.step(0)
    assert rig.step(1) == 2
    assert rig.ti[S.T_CLAIMER, 0] == 2
    assert [rig.pi[S.P_SCORE, s] for s in (2, 5, 7, 3)] == [5, 0, 0, 1]
    for slot in (2, 5, 7, 3):
        assert (rig.pi[S.P_DIG_TREASURE, slot], rig.pi[S.P_DIG_TICKS, slot]) == (-1, 0)
    assert rig.events_now() == [(EVENT_CLAIM, 1, 2, 12, 0, 5), (EVENT_CLAIM, 1, 3, 1, 1, 1)]


def test_earliest_start_beats_lower_slot():
    # Progress past dig_ticks cannot arise in play (a finisher always claims), but restored or
    # hand-made state can hold it; the rule must still hold: earliest start, then lowest slot.
    players = [_p(50, 50, dig=0) for _ in range(6)]
    rig = DigRig(players, [_t(300, 300, value=2)], dig_ticks=3)
    rig.set_player(1, x=300, y=300, dig=1, dig_treasure=0, dig_start=50, dig_ticks=2)
    rig.set_player(4, x=301, y=300, dig=1, dig_treasure=0, dig_start=40, dig_ticks=9)
    rig.set_player(5, x=302, y=300, dig=1, dig_treasure=0, dig_start=40, dig_ticks=2)
    rig.set_player(2, x=303, y=300, dig=1, dig_treasure=0, dig_start=1, dig_ticks=0)  # short
    assert rig.step(60) == 1
    assert rig.ti[S.T_CLAIMER, 0] == 4
    assert rig.pi[S.P_SCORE].tolist() == [0, 0, 0, 0, 2, 0]
    assert rig.pi[S.P_DIG_TREASURE].tolist() == [-1] * 6


def test_non_finisher_on_claimed_treasure_resets_others_keep_progress():
    players = [_p(100, 100), _p(100, 101), _p(300, 300)]
    rig = DigRig(players, [_t(100, 100), _t(300, 300)], dig_ticks=3)
    rig.step(0)  # players 0 and 2 start
    rig.set_player(1, dig=1)
    rig.step(1)
    rig.step(2)  # player 0 claims 0; player 1 (2 ticks in) resets; player 2 claims 1
    assert rig.pi[S.P_SCORE].tolist() == [3, 0, 3]
    rig2 = DigRig([_p(100, 100), _p(100, 101, dig=0), _p(300, 300, dig=0)],
                  [_t(100, 100), _t(300, 300)], dig_ticks=3)
    rig2.step(0)
    rig2.set_player(1, dig=1)
    rig2.set_player(2, dig=1)
    rig2.step(1)
    rig2.step(2)  # 0 claims; 1 resets; 2 keeps digging treasure 1 with 2 ticks
    assert rig2.pi[S.P_DIG_TREASURE].tolist() == [-1, -1, 1]
    assert rig2.pi[S.P_DIG_TICKS].tolist() == [0, 0, 2]


def test_dead_players_do_not_dig():
    rig = DigRig([_p(100, 100, alive=0, dig_treasure=0, dig_ticks=1, dig_start=0)],
                 [_t(100, 100)], dig_ticks=2)
    for tick in range(5):
        assert rig.step(tick) == 0
    assert rig.pi[S.P_DIG_TICKS, 0] == 1 and rig.ti[S.T_STATE, 0] == BURIED


def test_non_buried_treasures_cannot_be_dug():
    rig = DigRig([_p(100, 100), _p(200, 200)],
                 [_t(100, 100, state=CLAIMED), _t(200, 200, state=WAITING), _t(110, 100)],
                 dig_ticks=2)
    rig.step(0)
    assert rig.pi[S.P_DIG_TREASURE].tolist() == [2, -1]


def test_claim_ring_wraps():
    n = 5
    players = [_p(40 + 80 * i, 40) for i in range(n)]
    treasures = [_t(40 + 80 * i, 40, value=i + 1) for i in range(n)]
    rig = DigRig(players, treasures, dig_ticks=1, claim_head=14, w=512.0)
    assert rig.step(9) == n
    assert rig.clock[S.CLAIM_HEAD] == 14 + n
    rows = [14, 15, 0, 1, 2]
    for t, r in enumerate(rows):
        assert rig.ring[r].tolist() == [9, t, t, t + 1, 40 + 80 * t, 40]  # where it lay
    assert rig.ring[3].tolist() == [-1] * S.CLAIM_FIELDS


def test_event_overflow_is_counted_not_written_past_the_buffer():
    players = [_p(40 + 80 * i, 40) for i in range(4)]
    treasures = [_t(40 + 80 * i, 40) for i in range(4)]
    rig = DigRig(players, treasures, dig_ticks=1, capacity=2)
    assert rig.step(0) == 4
    assert rig.clock[S.EVENT_COUNT] == 2 and rig.clock[S.EVENTS_LOST] == 2


def test_push_event():
    events = np.zeros((2, S.EVENT_FIELDS), np.int32)
    clock = np.zeros(len(S.CLOCK), np.int64)
    push_event(events, clock, 1, 5, 6, 7, 8, 9)
    push_event(events, clock, 2, 5, -1, 0, 0, 0)
    push_event(events, clock, 3, 5, 1, 1, 1, 1)
    assert events.tolist() == [[1, 5, 6, 7, 8, 9], [2, 5, -1, 0, 0, 0]]
    assert clock[S.EVENT_COUNT] == 2 and clock[S.EVENTS_LOST] == 1


def _random_rig(rnd, n_players, n_treasures, dig_ticks):
    w, h = 256.0, 192.0
    treasures = [_t(rnd.uniform(0, w), rnd.uniform(0, h), value=rnd.randint(1, 5),
                    state=rnd.choice((BURIED, BURIED, BURIED, CLAIMED, WAITING)))
                 for _ in range(n_treasures)]
    players = []
    for _ in range(n_players):
        if treasures and rnd.random() < 0.6:  # crowd around treasures, often on the same spot
            t = rnd.choice(treasures)
            x = t.x + rnd.choice((0.0, 0.0, rnd.uniform(-20, 20)))
            y = t.y + rnd.choice((0.0, rnd.uniform(-20, 20)))
        else:
            x, y = rnd.uniform(0, w), rnd.uniform(0, h)
        players.append(_p(min(max(x, 0.0), w), min(max(y, 0.0), h),
                          dig=int(rnd.random() < 0.8), alive=int(rnd.random() < 0.9),
                          gen=rnd.randint(0, 3), score=rnd.randint(0, 10),
                          dig_treasure=rnd.choice((-1, rnd.randrange(n_treasures))) if n_treasures else -1,
                          dig_start=rnd.randint(0, 5), dig_ticks=rnd.randint(0, dig_ticks + 2)))
    return DigRig(players, treasures, w=w, h=h, cs=32.0, dig_radius=rnd.choice((8.0, 24.0, 40.0)),
                  dig_ticks=dig_ticks, claim_head=rnd.randint(0, 40))


@pytest.mark.parametrize("seed", range(12))
def test_random_ticks_match_reference(seed):
    rnd = random.Random(seed)
    rig = _random_rig(rnd, rnd.randint(1, 60), rnd.randint(0, 25), rnd.randint(1, 5))
    claims = 0
    for tick in range(6, 40):
        claims += rig.step(tick)
        for i in range(len(rig.players)):  # jitter inputs and positions between ticks
            r = rnd.random()
            if r < 0.1:
                rig.set_player(i, dig=1 - rig.players[i].dig)
            elif r < 0.2:
                rig.set_player(i, x=min(256.0, max(0.0, rig.players[i].x + rnd.uniform(-10, 10))))
        for t in range(len(rig.treasures)):  # respawns change who is nearest
            if rig.treasures[t].state != BURIED and rnd.random() < 0.2:
                rig.set_treasure(t, state=BURIED, x=rnd.uniform(0, 256), y=rnd.uniform(0, 192))
    if seed < 4:
        assert claims > 0


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_contention_property(data):
    """Crowds on a lattice around three treasures, with arbitrary prior dig state."""
    spots = [(64.0, 64.0), (72.0, 64.0), (64.0, 80.0)]
    treasures = [_t(x, y, value=v) for (x, y), v in zip(spots, (1, 2, 4))]
    n = data.draw(st.integers(1, 10))
    players = []
    for _ in range(n):
        players.append(_p(data.draw(st.sampled_from([56.0, 60.0, 64.0, 68.0, 72.0, 96.0])),
                          data.draw(st.sampled_from([64.0, 72.0, 80.0])),
                          dig=data.draw(st.sampled_from([0, 1, 1])),
                          alive=data.draw(st.sampled_from([0, 1, 1, 1])),
                          dig_treasure=data.draw(st.integers(-1, 2)),
                          dig_start=data.draw(st.integers(0, 3)),
                          dig_ticks=data.draw(st.integers(0, 4))))
    rig = DigRig(players, treasures, w=128.0, h=128.0, cs=16.0, dig_radius=16.0,
                 dig_ticks=data.draw(st.integers(1, 3)))
    for tick in range(4, 7):
        rig.step(tick)
