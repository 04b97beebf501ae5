"""sim/control.py: operator commands on a world between ticks, against plain-Python
expectations (tests/sim_reference.py), and their effect on the next ticks, the heat hint
and snapshots."""

from __future__ import annotations

import random

import numpy as np
import pytest

from sim import schema as S
from sim.control import (MAX_HUNT_SECONDS, WORLD_COMMANDS, clear_treasures, end_hunt_now,
                         hunt_clock, set_hunt_duration, spawn_treasures, start_next_hunt,
                         treasure_census)
from sim.rules import GameRules
from sim.world import new_world
from tests.sim_reference import (BURIED, CLAIMED, EVENT_HUNT_END, EVENT_RANK, REMOVED, WAITING,
                                 RefClock, RefLog, SplitMix64, diff_players, diff_treasures,
                                 players_from_arrays, ref_age, ref_bury, ref_end_hunt,
                                 treasures_from_arrays)

TICK_RATE = 20.0
RULES = GameRules(world_width=640.0, world_height=480.0, max_players=12, treasure_count=40,
                  cell_size=64.0, leaderboard_size=4, dig_time=0.1, dig_radius=40.0, seed=3)
WEIGHTS = list(RULES.value_weights)


def busy_world(seed: int, ticks: int = 30, rules: GameRules = RULES):
    """A world some ticks into a hunt: players joined, moving and digging at random (so
    scores, claims and every treasure state occur)."""
    world = new_world(rules, TICK_RATE)
    rnd = random.Random(seed)
    for slot in rnd.sample(range(rules.max_players), rnd.randint(3, rules.max_players)):
        world.join(slot)
    for _ in range(ticks):
        alive = np.flatnonzero(world.pi[S.P_ALIVE])
        world.pi[S.P_MOVE_X, alive] = [rnd.randint(-127, 127) for _ in alive]
        world.pi[S.P_MOVE_Y, alive] = [rnd.randint(-127, 127) for _ in alive]
        world.pi[S.P_DIG, alive] = [rnd.random() < 0.7 for _ in alive]
        world.step()
    return world


def reference_of(world):
    """The world's players, treasures, RNG and clock as reference objects."""
    rng = SplitMix64(0)
    rng.state = int(world.rng[0])
    clock = RefClock(hunt_id=int(world.clock[S.HUNT_ID]),
                     hunt_start=int(world.clock[S.HUNT_START]),
                     last_hunt_end=int(world.clock[S.LAST_HUNT_END]))
    return (players_from_arrays(world.pf, world.pi), treasures_from_arrays(world.tf, world.ti),
            rng, clock)


def test_busy_world_has_every_treasure_state():
    states = set(busy_world(1, 200).ti[S.T_STATE].tolist())
    assert {BURIED, CLAIMED} <= states


# ---- hunts -------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(6))
def test_end_hunt_now_matches_the_reference(seed):
    world = busy_world(seed, ticks=20 + 10 * seed)
    world.pi[S.P_SCORE, np.flatnonzero(world.pi[S.P_ALIVE])] += seed  # ties and non-zero
    players, treasures, rng, clock = reference_of(world)
    log = RefLog(world.events.shape[0])
    tick = world.tick
    assert world.event_count >= 0  # last tick's events, already handled by then

    ended = end_hunt_now(world)

    board = ref_end_hunt(players, treasures, tick, clock, rng, WEIGHTS, RULES.leaderboard_size,
                         log, RULES.world_width, RULES.world_height)
    assert ended == clock.hunt_id - 1
    assert world.final_board.tolist() == board
    assert diff_players(players, world.pf, world.pi) == []
    assert diff_treasures(treasures, world.tf, world.ti) == []
    assert int(world.rng[0]) == rng.state
    events = [tuple(r) for r in world.events[:world.event_count].tolist()]
    assert events == log.events  # only the end's events: the last tick's were cleared
    assert events[0][:3] == (EVENT_HUNT_END, tick, ended)
    assert all(e[0] == EVENT_RANK for e in events[1:])
    assert (int(world.clock[S.HUNT_ID]), int(world.clock[S.HUNT_START]),
            int(world.clock[S.LAST_HUNT_END])) == (clock.hunt_id, tick, tick)
    assert world.tick == tick  # no tick ran


def test_end_hunt_now_is_exactly_a_normal_end_at_that_tick():
    """Ending between ticks t-1 and t, then stepping tick t, is the world in which the hunt
    ran out at the start of tick t."""
    ours, normal = busy_world(7), busy_world(7)
    assert ours.state_hash() == normal.state_hash()
    tick = ours.tick
    end_hunt_now(ours)
    events = ours.events[:ours.event_count].tolist()  # handed over before the tick
    ours.step()
    events += ours.events[:ours.event_count].tolist()
    normal.kr = normal.kr._replace(hunt_ticks=tick - int(normal.clock[S.HUNT_START]))
    normal.step()
    assert events == normal.events[:normal.event_count].tolist()
    assert events[0][:2] == [EVENT_HUNT_END, tick]
    # the same world, but for how many of those events the arrays hold right now
    ours.clock[S.EVENT_COUNT] = normal.clock[S.EVENT_COUNT] = 0
    assert ours.state_hash() == normal.state_hash()


def test_start_next_hunt_returns_the_new_id_and_reburies_everything():
    world = busy_world(2)
    clear_treasures(world)
    first = int(world.clock[S.HUNT_ID])
    assert start_next_hunt(world) == first + 1
    assert (world.ti[S.T_STATE] == BURIED).all()
    assert hunt_clock(world) == (first + 1, 0, world.kr.hunt_ticks)


def test_hunt_clock_counts_ticks_since_the_start():
    world = busy_world(4, ticks=13)
    assert hunt_clock(world) == (0, 13, round(RULES.hunt_duration * TICK_RATE))
    end_hunt_now(world)
    world.step()
    world.step()
    assert hunt_clock(world) == (1, 2, round(RULES.hunt_duration * TICK_RATE))


def test_set_hunt_duration_changes_the_running_hunt_and_the_next():
    world = busy_world(5, ticks=10)
    assert set_hunt_duration(world, 2.5) == 50
    assert world.kr.hunt_ticks == 50 and world.rules.hunt_duration == 2.5
    assert isinstance(world.kr.hunt_ticks, int)
    ends = []
    for _ in range(100):
        world.step()
        ends += [int(r[S.EV_TICK]) for r in world.events[:world.event_count]
                 if r[S.EV_KIND] == EVENT_HUNT_END]
    assert ends == [50, 100]  # the running hunt (started at 0) and the next one


def test_a_duration_already_past_ends_the_hunt_on_the_next_tick():
    world = busy_world(6, ticks=40)
    set_hunt_duration(world, 0.5)  # 10 ticks; the hunt is 40 ticks old
    tick = world.tick
    world.step()
    kinds = world.events[:world.event_count, S.EV_KIND].tolist()
    assert kinds[0] == EVENT_HUNT_END and world.events[0, S.EV_TICK] == tick
    assert int(world.clock[S.HUNT_ID]) == 1


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), MAX_HUNT_SECONDS * 2,
                                 True, "60", None])
def test_bad_durations_are_refused_and_change_nothing(bad):
    world = busy_world(8, ticks=1)
    kr, rules = world.kr, world.rules
    with pytest.raises(ValueError, match="^seconds must be"):
        set_hunt_duration(world, bad)
    assert world.kr == kr and world.rules == rules


# ---- treasures ---------------------------------------------------------------------------

def ref_spawn(treasures, rng, count) -> int:
    """Plain Python: REMOVED slots first, then the other unburied ones, in index order."""
    order = ([t for t, tr in enumerate(treasures) if tr.state == REMOVED]
             + [t for t, tr in enumerate(treasures) if tr.state not in (BURIED, REMOVED)])
    for t in order[:count]:
        ref_bury(treasures[t], rng, WEIGHTS, RULES.world_width, RULES.world_height)
    return min(count, len(order))


@pytest.mark.parametrize("seed", range(8))
def test_spawn_matches_the_reference(seed):
    world = busy_world(seed, ticks=60)
    rnd = random.Random(seed)
    world.ti[S.T_STATE] = [rnd.choice((BURIED, CLAIMED, WAITING, REMOVED))
                           for _ in range(RULES.treasure_count)]
    players, treasures, rng, _ = reference_of(world)
    count = rnd.choice((1, 3, 10, 40, 65535))
    got = spawn_treasures(world, count)
    assert got == ref_spawn(treasures, rng, count)
    assert diff_treasures(treasures, world.tf, world.ti) == []
    assert int(world.rng[0]) == rng.state


def test_spawn_into_a_full_world_spawns_nothing():
    world = busy_world(1, ticks=0)
    assert (world.ti[S.T_STATE] == BURIED).all()
    before = world.state_hash()
    assert spawn_treasures(world, 5) == 0
    assert world.state_hash() == before


@pytest.mark.parametrize("bad", [0, -3, 65536, 2.0, True, "4"])
def test_bad_spawn_counts_are_refused(bad):
    world = busy_world(1, ticks=0)
    with pytest.raises(ValueError, match="^count must be"):
        spawn_treasures(world, bad)


def test_clear_removes_every_treasure_and_none_comes_back_by_itself():
    world = busy_world(3, ticks=120)
    states = world.ti[S.T_STATE].copy()
    assert clear_treasures(world) == int(np.count_nonzero(states == BURIED))
    assert (world.ti[S.T_STATE] == REMOVED).all()
    _, treasures, rng, _ = reference_of(world)
    kr = world.kr
    for _ in range(kr.respawn_ticks * 3):  # well past every respawn timer
        world.step()
        ref_age(treasures, world.tick - 1, rng, WEIGHTS, kr.claim_show_ticks,
                kr.respawn_ticks, RULES.world_width, RULES.world_height)
        assert (world.ti[S.T_STATE] == REMOVED).all()
        assert world.t_starts[-1] == 0  # the treasure grid is empty
        assert (world.pi[S.P_HEAT] == 0).all()  # nothing to be warm about
        assert (world.pi[S.P_DIG_TICKS] == 0).all()  # nothing to dig
    assert diff_treasures(treasures, world.tf, world.ti) == []  # age left them alone
    assert clear_treasures(world) == 0
    end_hunt_now(world)  # a hunt start buries them all again
    assert (world.ti[S.T_STATE] == BURIED).all()


def test_spawn_after_clear_brings_treasure_back_into_play():
    world = busy_world(9, ticks=5)
    clear_treasures(world)
    assert spawn_treasures(world, 7) == 7
    census = treasure_census(world)
    assert census["buried"] == 7 and census["removed"] == RULES.treasure_count - 7
    world.step()
    assert world.t_starts[-1] == 7  # in the treasure grid: visible, diggable, warm


def test_census_counts_by_state_and_value():
    world = busy_world(10, ticks=150)
    state, value = world.ti[S.T_STATE].tolist(), world.ti[S.T_VALUE].tolist()
    by_value: dict[int, int] = {}
    for s, v in zip(state, value):
        if s == BURIED:
            by_value[v] = by_value.get(v, 0) + 1
    census = treasure_census(world)
    assert census == {"capacity": RULES.treasure_count, "buried": state.count(BURIED),
                      "claimed": state.count(CLAIMED) + state.count(WAITING),
                      "removed": state.count(REMOVED), "by_value": by_value}


def test_cleared_treasure_leaves_snapshots(netkit):
    """Snapshots show buried treasures only: after a clear the client's list empties."""
    from net.limits import NetLimits
    rules = netkit.rules(reveal_radius=2048.0, view_radius=2048.0, heat_radius=2048.0)
    world = new_world(rules, TICK_RATE)
    proto = netkit.server_for(world, NetLimits(), TICK_RATE)
    client = netkit.client("watcher")
    netkit.connect(proto, client, ("10.0.0.1", 4000))

    def snapshot(ms):
        world.step()
        proto.encode()
        got = [s for data, _ in proto.snapshots() for s in client.receive(bytes(data), ms / 1e3)]
        proto.receive_datagram(client.input(0, 0, False, ms / 1e3), ("10.0.0.1", 4000),
                               netkit.ns(ms))  # ack: the next one is a delta
        return got[-1]

    first = snapshot(50)
    assert len(first.treasures) == rules.treasure_count and first.heat > 0
    snapshot(100)
    clear_treasures(world)
    after = snapshot(150)
    assert after.treasures == [] and after.heat == 0
    spawn_treasures(world, 2)
    again = snapshot(200)
    assert len(again.treasures) == 2 and again.heat > 0


# ---- a command log replays ---------------------------------------------------------------

def test_world_commands_replayed_at_the_same_ticks_give_the_same_world():
    rnd = random.Random(12)
    plan = {}
    for tick in sorted(rnd.sample(range(1, 150), 12)):
        name = rnd.choice(sorted(WORLD_COMMANDS))
        args = ({"seconds": rnd.choice((0.5, 3.0, 30.0))} if name == "hunt_duration" else
                {"count": rnd.randint(1, 50)} if name == "treasures_spawn" else {})
        plan[tick] = (name, args)
    worlds = [busy_world(12, ticks=0), busy_world(12, ticks=0)]
    logged = []
    for world in worlds:
        rnd = random.Random(99)  # the same inputs for both
        for _ in range(150):
            if world.tick in plan:
                name, args = plan[world.tick]
                WORLD_COMMANDS[name](world, **args)
                logged.append((world.tick, name))
            alive = np.flatnonzero(world.pi[S.P_ALIVE])
            world.pi[S.P_MOVE_X, alive] = [rnd.randint(-127, 127) for _ in alive]
            world.pi[S.P_DIG, alive] = [rnd.random() < 0.8 for _ in alive]
            world.step()
    assert worlds[0].state_hash() == worlds[1].state_hash()
    assert len(logged) == 24
    # and the commands mattered: without them the world differs
    plain = busy_world(12, ticks=0)
    rnd = random.Random(99)
    for _ in range(150):
        alive = np.flatnonzero(plain.pi[S.P_ALIVE])
        plain.pi[S.P_MOVE_X, alive] = [rnd.randint(-127, 127) for _ in alive]
        plain.pi[S.P_DIG, alive] = [rnd.random() < 0.8 for _ in alive]
        plain.step()
    assert plain.state_hash() != worlds[0].state_hash()
