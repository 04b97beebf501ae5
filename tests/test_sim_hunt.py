"""sim/hunt.py: the leaderboard (rank_players) and the end of a hunt (end_hunt), directly
and through World.step()."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim import schema as S
from sim.hunt import end_hunt, rank_players
from sim.rng import new_rng
from sim.rules import GameRules
from sim.world import new_world
from tests.sim_reference import (BURIED, CLAIMED, EVENT_HUNT_END, EVENT_RANK, WAITING, RefClock,
                                 RefLog, RefPlayer, RefTreasure, RefWorld, SplitMix64, diff_players,
                                 diff_treasures, players_to_arrays, ref_end_hunt, ref_rank,
                                 treasures_to_arrays)

WEIGHTS = [40, 25, 18, 11, 6]


def _rank(players, k, garbage=99):
    _, pi = players_to_arrays(players)
    board = np.full((k, 3), garbage, np.int32)  # stale rows must be overwritten
    n = rank_players(pi, board)
    rows, want_n = ref_rank(players, k)
    assert n == want_n
    assert board.tolist() == rows
    return board.tolist(), n


def test_rank_order_score_then_slot():
    scores = [5, 9, 5, 0, 9, 7, 5]
    players = [RefPlayer(alive=1, score=s, gen=i + 100) for i, s in enumerate(scores)]
    board, n = _rank(players, 5)
    assert n == 5
    assert board == [[1, 101, 9], [4, 104, 9], [5, 105, 7], [0, 100, 5], [2, 102, 5]]


def test_rank_fewer_alive_than_k_and_none():
    players = [RefPlayer(alive=i % 3 == 0, score=i) for i in range(7)]  # slots 0, 3, 6 alive
    board, n = _rank(players, 8)
    assert n == 3
    assert board[:3] == [[6, 0, 6], [3, 0, 3], [0, 0, 0]]
    assert board[3:] == [[-1, 0, 0]] * 5
    board, n = _rank([RefPlayer(alive=0, score=50)] * 4, 3)
    assert n == 0 and board == [[-1, 0, 0]] * 3
    board, n = _rank([], 2)
    assert n == 0


def test_rank_truncates_to_k_keeping_lowest_slots_on_ties():
    players = [RefPlayer(alive=1, score=3) for _ in range(40)]
    board, n = _rank(players, 16)
    assert n == 16 and [r[0] for r in board] == list(range(16))
    # a late high score displaces the last of a full board
    players[39].score = 4
    board, _ = _rank(players, 16)
    assert [r[0] for r in board] == [39] + list(range(15))


@pytest.mark.parametrize("seed", range(6))
def test_rank_random(seed):
    rnd = random.Random(seed)
    for _ in range(40):
        n = rnd.randint(0, 120)
        spread = rnd.choice([1, 3, 50, 10**6])
        players = [RefPlayer(alive=int(rnd.random() < 0.7), score=rnd.randint(0, spread),
                             gen=rnd.randint(0, 5)) for _ in range(n)]
        _rank(players, rnd.randint(1, 16))


@settings(max_examples=200, deadline=None)
@given(scores=st.lists(st.tuples(st.booleans(), st.integers(-5, 5)), max_size=30),
       k=st.integers(1, 16))
def test_rank_property(scores, k):
    players = [RefPlayer(alive=int(a), score=s) for a, s in scores]
    _rank(players, k)


def _end_hunt_rig(rnd, n_players, n_treasures, k):
    players = [RefPlayer(alive=int(rnd.random() < 0.8), score=rnd.randint(0, 6),
                         gen=rnd.randint(1, 4), dig_treasure=rnd.randint(-1, n_treasures - 1),
                         dig_ticks=rnd.randint(0, 3), dig_start=rnd.randint(0, 9))
               for _ in range(n_players)]
    treasures = [RefTreasure(x=rnd.uniform(0, 100), y=rnd.uniform(0, 100), value=1,
                             state=rnd.choice((BURIED, CLAIMED, WAITING)), gen=rnd.randint(0, 9),
                             claim_tick=rnd.randint(-1, 50))
                 for _ in range(n_treasures)]
    return players, treasures


@pytest.mark.parametrize("seed", range(5))
def test_end_hunt_matches_reference(seed):
    rnd = random.Random(seed)
    k = rnd.choice([1, 3, 8, 16])
    players, treasures = _end_hunt_rig(rnd, rnd.randint(0, 30), rnd.randint(1, 20), k)
    _, pi = players_to_arrays(players)
    tf, ti = treasures_to_arrays(treasures)
    clock = np.zeros(len(S.CLOCK), np.int64)
    tick, hunt_id, pre_events = 600 + seed, 4 + seed, rnd.randint(0, 2)
    clock[S.TICK], clock[S.HUNT_ID], clock[S.HUNT_START] = tick, hunt_id, 0
    capacity = len(treasures) + 1 + k + pre_events
    events = np.zeros((capacity, S.EVENT_FIELDS), np.int32)
    log = RefLog(capacity)
    for e in range(pre_events):  # events earlier in the tick stay in front
        events[e] = [9, tick, e, e, e, e]
        log.events.append((9, tick, e, e, e, e))
    clock[S.EVENT_COUNT] = pre_events
    final_board = np.full((k, 3), 7, np.int32)
    rng, ref_rng = new_rng(seed + 10), SplitMix64(seed + 10)
    gens_before = ti[S.T_GEN].copy()

    end_hunt(pi, tf, ti, tick, clock, rng, np.cumsum(np.asarray(WEIGHTS, np.int64)), final_board,
             events, 640.0, 480.0)
    ref_clock = RefClock(hunt_id=hunt_id, hunt_start=0, last_hunt_end=-1)
    want_board = ref_end_hunt(players, treasures, tick, ref_clock, ref_rng, WEIGHTS, k, log,
                              640.0, 480.0)

    assert final_board.tolist() == want_board
    assert diff_players(players, np.zeros((4, len(players)), np.float32), pi) == []
    assert diff_treasures(treasures, tf, ti) == []
    assert int(rng[0]) == ref_rng.state
    got_events = [tuple(r) for r in events[:clock[S.EVENT_COUNT]].tolist()]
    assert got_events == log.events
    # the rules, spelled out
    ranked = sum(1 for p in players if p.alive)
    ranked = min(ranked, k)
    assert got_events[pre_events] == (EVENT_HUNT_END, tick, hunt_id, ranked, 0, 0)
    for r, ev in enumerate(got_events[pre_events + 1:]):
        assert ev[0] == EVENT_RANK and ev[2] == r and list(ev[3:]) == want_board[r]
    assert (pi[S.P_SCORE] == 0).all() and (pi[S.P_DIG_TREASURE] == -1).all()
    assert (pi[S.P_DIG_TICKS] == 0).all()
    assert (ti[S.T_STATE] == BURIED).all()
    assert (ti[S.T_GEN] == gens_before + 1).all()
    assert clock[S.HUNT_ID] == hunt_id + 1
    assert clock[S.HUNT_START] == tick and clock[S.LAST_HUNT_END] == tick


def _small_rules(**kw):
    base = dict(world_width=256.0, world_height=256.0, max_players=12, treasure_count=10,
                cell_size=64.0, hunt_duration=1.0, dig_radius=300.0, dig_time=0.1,
                respawn_delay=0.2, claim_show_time=0.1, leaderboard_size=4, seed=3)
    base.update(kw)
    return GameRules(**base)


def test_hunt_ends_after_hunt_ticks_through_step():
    rules = _small_rules()
    tick_rate = 10.0
    world = new_world(rules, tick_rate)
    ref = RefWorld(rules, tick_rate)
    hunt_ticks = world.kr.hunt_ticks
    assert hunt_ticks == ref.hunt_ticks == 10
    for slot in (0, 3, 5):
        assert world.join(slot) == ref.join(slot) == 1
    for slot in (0, 5):  # dig everywhere: the dig radius covers the world
        world.pi[S.P_DIG, slot] = ref.players[slot].dig = 1
    hunt_ends = []
    for _ in range(3 * hunt_ticks + 1):
        tick = world.tick
        world.step()
        ref.step()
        assert ref.diff(world) == []
        events = [tuple(r) for r in world.events[:world.event_count].tolist()]
        ends = [e for e in events if e[0] == EVENT_HUNT_END]
        if ends:
            hunt_ends.append((tick, ends[0]))
            ranks = [e for e in events if e[0] == EVENT_RANK]
            assert len(ranks) == ends[0][3] == 3  # three players, board of four
            assert [e[2] for e in ranks] == [0, 1, 2]
            assert world.final_board.tolist()[:3] == [list(e[3:]) for e in ranks]
            assert world.final_board.tolist()[3] == [-1, 0, 0]
            assert int(world.clock[S.LAST_HUNT_END]) == tick
            assert int(world.clock[S.HUNT_START]) == tick
    assert [t for t, _ in hunt_ends] == [hunt_ticks, 2 * hunt_ticks, 3 * hunt_ticks]
    assert [e[2] for _, e in hunt_ends] == [0, 1, 2]  # hunt ids
    assert int(world.clock[S.HUNT_ID]) == 3


def test_scores_reset_at_hunt_end_and_winner_is_ranked_first():
    rules = _small_rules(hunt_duration=2.0, treasure_count=4, respawn_delay=0.1)
    world = new_world(rules, 10.0)
    world.join(2)
    world.join(7)
    world.pi[S.P_DIG, 7] = 1
    scores_before_end = None
    for _ in range(world.kr.hunt_ticks):
        world.step()
        scores_before_end = world.pi[S.P_SCORE].copy()
    assert scores_before_end[7] > 0 and scores_before_end[2] == 0
    world.pi[S.P_DIG, 7] = 0
    world.step()  # the hunt ends at the start of this tick
    assert world.final_board[0].tolist() == [7, 1, int(scores_before_end[7])]
    assert world.final_board[1].tolist() == [2, 1, 0]
    assert (world.pi[S.P_SCORE] == 0).all()
    assert (world.ti[S.T_STATE] == BURIED).all()
