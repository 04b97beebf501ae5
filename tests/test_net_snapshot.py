"""net/snapshot.py (protocol v2) against the plain-Python reference, byte for byte.

Worlds are set up and moved by hand (positions, velocities, states, scores, clock, claim
ring, boards), and every session's snapshot ack is set as an INPUT would set it. Tick after
tick, every snapshot the kernel writes must (a) be byte-identical to msgpack.packb of the
document tests/snapshot_reference.py computes (so also msgpack's smallest forms, signed
values included), (b) be decoded by the reference client (net.client.decode_snapshot) to
exactly the lists the reference says the client holds, and (c) leave the kernel's ring
holding what the reference's ring holds. Sizes stay within net.limits.worst_snapshot_size.
"""

from __future__ import annotations

import math

import msgpack
import numpy as np
import pytest

from net.client import Held, ServerInfo, Snapshot, decode_snapshot
from net.errors import LimitsError
from net.limits import NetLimits, worst_snapshot_size
from net.sessions import CONNECTED, S_ID, S_IP, S_PORT, S_STATE, S_TX_SEQ
from net.tag import verify
from tests.conftest import NetKit
from net.wire import (HEADER_SIZE, MAX_DATAGRAM, PROTOCOL_ID, SNAPSHOT, TAG_SIZE, VERSION,
                      unpack_header)
from sim import schema as S
from tests.snapshot_reference import (MASK, Caps, Rig, q, rebuild_grids, ring_entries, vq)

TICK_RATE = 20.0


# ---- checking one tick ------------------------------------------------------------------


def set_claim(world, r: int, tick: int, slot: int, treasure: int, value: int) -> None:
    """Claim ring row r: a claim of `treasure` where it lies now (whole units, floor)."""
    t = min(int(treasure), world.tf.shape[1] - 1)
    world.claim_ring[r] = (tick, slot, treasure, value, int(world.tf[S.TX, t]),
                           int(world.tf[S.TY, t]))

def info_of(rig: Rig, sid: int = 1) -> ServerInfo:
    kr = rig.world.kr
    return ServerInfo(0, sid, int(kr.tick_rate), 20, kr.world_width, kr.world_height, 1.0, 1.0,
                      1, 0, 5.0)


def check_encode(rig: Rig) -> dict[int, tuple[bytes, dict]]:
    """encode() equals the reference, byte for byte, and the rings agree. Returns
    {slot: (datagram, document)}."""
    proto, world = rig.proto, rig.world
    expected = rig.ref.encode(world, proto.sessions, int(proto.durable[0]))
    n = proto.encode()
    got: dict[int, bytes] = {}
    for j, (data, addr) in enumerate(proto.snapshots()):
        slot = int(proto.out_slot[j])
        assert addr == proto.addresses[slot]
        assert (int(proto.out_ip[j]), int(proto.out_port[j])) == (
            int(proto.sessions[S_IP, slot]), int(proto.sessions[S_PORT, slot]))
        got[slot] = bytes(data)
    assert n == len(got)
    assert list(got) == sorted(expected), "one snapshot per session due one, in slot order"
    limit = worst_snapshot_size(proto.caps.max_players, proto.caps.max_treasures)
    info = info_of(rig)
    for slot, data in got.items():
        e = expected[slot]
        header = unpack_header(data)
        assert (header.protocol_id, header.version, header.type, header.flags) == (
            PROTOCOL_ID, VERSION, SNAPSHOT, 0)
        assert data[5:8] == b"\0\0\0"
        assert (header.session_id, header.sequence) == (e.sid, e.seq), f"slot {slot}"
        assert verify(data, rig.clients[slot].token.s2c_key), f"slot {slot}: bad tag"
        payload = data[HEADER_SIZE:-TAG_SIZE]
        assert msgpack.unpackb(payload, strict_map_key=True) == e.doc, f"slot {slot}"
        assert payload == msgpack.packb(e.doc), f"slot {slot}: not msgpack's smallest form"
        assert len(data) <= limit <= MAX_DATAGRAM
        held = {}
        if e.baseline is not None:
            b = e.baseline
            held[b.tick & MASK] = Held(b.tick & MASK, b.players, b.treasures)
        snap, lists, why = decode_snapshot(data[:-TAG_SIZE], e.seq, info, held)
        assert isinstance(snap, Snapshot) and why == "", f"slot {slot}: {why}"
        assert (lists.players, lists.treasures) == (e.entry.players, e.entry.treasures)
        assert snap.baseline == (None if e.baseline is None else e.baseline.tick & MASK)
    check_rings(rig)
    return {slot: (data, expected[slot].doc) for slot, data in got.items()}


def check_rings(rig: Rig) -> None:
    """The kernel's ring holds, per connected session, what the reference's does; a slot
    without a session holds nothing."""
    proto = rig.proto
    for s in range(proto.capacity):
        ring = rig.ref.rings.get(s)
        if proto.sessions[S_STATE, s] != CONNECTED:
            assert int(proto.ring.count[s]) == 0, f"slot {s}: ring not reset"
            continue
        if ring is None or ring.sid != int(proto.sessions[S_ID, s]):
            assert int(proto.ring.count[s]) == 0, f"slot {s}: ring of an earlier session"
            continue
        assert int(proto.ring.count[s]) == ring.count
        assert ring_entries(proto.ring, s) == list(ring.entries), f"slot {s}"


# ---- building and moving worlds by hand ---------------------------------------------------

def coordinate(rng, extent, size):
    """Mostly uniform, sometimes exactly on an edge, the middle or a repeated value."""
    v = rng.uniform(0.0, extent, size)
    pick = rng.random(size)
    v[pick < 0.08] = 0.0
    v[(pick >= 0.08) & (pick < 0.16)] = extent
    v[(pick >= 0.16) & (pick < 0.22)] = extent / 2
    return v.astype(np.float32)


def velocity(rng, speed, size):
    """Units per second: still, full speed either way, anything between, or far beyond
    what a u16 velocity can carry (clamped to +-32767 quanta per tick)."""
    v = rng.uniform(-speed, speed, size)
    pick = rng.random(size)
    v[pick < 0.2] = 0.0
    v[(pick >= 0.2) & (pick < 0.3)] = speed
    v[(pick >= 0.3) & (pick < 0.4)] = -speed
    huge = (pick >= 0.4) & (pick < 0.44)
    v[huge] = rng.choice([-1e9, 1e9], int(huge.sum()))
    return v.astype(np.float32)


def speed_of(world) -> float:
    return max(world.kr.world_width, world.kr.world_height) / 8.0


def randomize(world, rng, tick=None):
    """Fill every array snapshots read with random but well-formed content."""
    kr = world.kr
    P, T = world.pi.shape[1], world.ti.shape[1]
    world.pf[S.PX] = coordinate(rng, kr.world_width, P)
    world.pf[S.PY] = coordinate(rng, kr.world_height, P)
    world.pf[S.PVX] = velocity(rng, speed_of(world), P)
    world.pf[S.PVY] = velocity(rng, speed_of(world), P)
    if rng.random() < 0.3:  # a crowd on one point
        crowd = rng.random(P) < 0.5
        world.pf[S.PX, crowd] = world.pf[S.PX, 0]
        world.pf[S.PY, crowd] = world.pf[S.PY, 0]
    big = rng.random() < 0.3
    world.pi[S.P_SCORE] = rng.integers(0, 2**31 if big else 300, P)
    world.pi[S.P_DIG_TICKS] = rng.integers(0, kr.dig_ticks + 1, P)
    world.pi[S.P_HEAT] = rng.integers(0, 256, P)
    world.pi[S.P_INPUT_SEQ] = rng.integers(0, 2**31 if big else 200, P)
    world.tf[S.TX] = coordinate(rng, kr.world_width, T)
    world.tf[S.TY] = coordinate(rng, kr.world_height, T)
    world.ti[S.T_STATE] = rng.choice([S.BURIED, S.BURIED, S.CLAIMED, S.WAITING], T)
    world.ti[S.T_VALUE] = rng.integers(1, 101 if big else 6, T)
    if tick is None:
        tick = int(rng.choice([rng.integers(0, 60), rng.integers(0, 2**31 - 1),
                               2**32 - int(rng.integers(1, 6)), rng.integers(2**32, 2**40)]))
    clock = world.clock
    clock[S.TICK] = tick + 1
    clock[S.HUNT_START] = rng.integers(max(0, tick - kr.hunt_ticks - 5), tick + 1)
    clock[S.LAST_HUNT_END] = -1 if rng.random() < 0.4 else rng.integers(max(0, tick - 150),
                                                                        tick + 1)
    first_hunt = 0 if clock[S.LAST_HUNT_END] < 0 else 1  # a hunt has ended: ids from 1
    clock[S.HUNT_ID] = rng.integers(first_hunt, 2**31 if big else 5)
    head = int(rng.choice([0, rng.integers(1, 16), rng.integers(16, 100)]))
    clock[S.CLAIM_HEAD] = head
    world.claim_ring[:] = -1
    claim_tick = tick
    for back in range(min(head, S.CLAIM_RING)):  # newest first, ticks descending
        r = (head - 1 - back) % S.CLAIM_RING
        set_claim(world, r, claim_tick, rng.integers(0, P), rng.integers(0, T),
                  rng.integers(1, 6))
        claim_tick = max(0, claim_tick - int(rng.integers(0, 12)))
    randomize_boards(world, rng, big)
    rebuild_grids(world)


def randomize_boards(world, rng, big=False):
    P = world.pi.shape[1]
    for board in (world.board, world.final_board):
        rows = int(rng.integers(0, board.shape[0] + 1))
        board[:] = -1
        board[rows:, S.LB_GEN] = 0
        board[rows:, S.LB_SCORE] = 0
        for r in range(rows):
            board[r] = (rng.integers(0, P), 1, rng.integers(0, 2**31 if big else 500))


def evolve(world, rng, step=1):
    """Move the world on by `step` ticks the way a game does, with surprises: players
    walk with their velocities (and stop at the walls), some turn, drift off their
    line or teleport; treasures get claimed, come back elsewhere or move; claims happen;
    hunts end."""
    kr = world.kr
    P, T = world.pi.shape[1], world.ti.shape[1]
    pf, pi, tf, ti, clock = world.pf, world.pi, world.tf, world.ti, world.clock
    clock[S.TICK] += step
    tick = int(clock[S.TICK]) - 1
    turn = rng.random(P) < 0.15
    pf[S.PVX, turn] = velocity(rng, speed_of(world), int(turn.sum()))
    turn = rng.random(P) < 0.15
    pf[S.PVY, turn] = velocity(rng, speed_of(world), int(turn.sum()))
    for axis, vaxis, extent in ((S.PX, S.PVX, kr.world_width), (S.PY, S.PVY, kr.world_height)):
        v = pf[axis].astype(np.float64) + pf[vaxis].astype(np.float64) / kr.tick_rate * step
        drift = rng.random(P) < 0.1
        v[drift] += rng.uniform(-1.0, 1.0, int(drift.sum())) * extent / 200.0
        jump = rng.random(P) < 0.03
        v[jump] = coordinate(rng, extent, int(jump.sum()))
        pf[axis] = np.clip(v, 0.0, extent).astype(np.float32)
    flip = rng.random(T) < 0.05
    for t in np.flatnonzero(flip):
        if ti[S.T_STATE, t] == S.BURIED:
            ti[S.T_STATE, t] = rng.choice([S.CLAIMED, S.WAITING])
        else:
            ti[S.T_STATE, t] = S.BURIED
            tf[S.TX, t] = coordinate(rng, kr.world_width, 1)[0]
            tf[S.TY, t] = coordinate(rng, kr.world_height, 1)[0]
            ti[S.T_VALUE, t] = rng.integers(1, 101)
    moved = rng.random(T) < 0.03
    tf[S.TX, moved] = coordinate(rng, kr.world_width, int(moved.sum()))
    revalued = rng.random(T) < 0.02
    ti[S.T_VALUE, revalued] = rng.integers(1, 101, int(revalued.sum()))
    if rng.random() < 0.3:
        for _ in range(int(rng.integers(1, 4))):
            head = int(clock[S.CLAIM_HEAD])
            set_claim(world, head % S.CLAIM_RING, tick, rng.integers(0, P),
                      rng.integers(0, T), rng.integers(1, 101))
            clock[S.CLAIM_HEAD] = head + 1
    if rng.random() < 0.05:
        clock[S.LAST_HUNT_END] = tick
        clock[S.HUNT_START] = tick
        clock[S.HUNT_ID] += 1
        randomize_boards(world, rng)
    pi[S.P_INPUT_SEQ] += rng.integers(0, 2, P).astype(np.int32)
    pi[S.P_HEAT] = rng.integers(0, 256, P)
    pi[S.P_DIG_TICKS] = rng.integers(0, kr.dig_ticks + 1, P)
    rebuild_grids(world)


def random_acks(rig: Rig, rng) -> None:
    """Each session's ack as an INPUT could carry it: mostly the newest snapshot sent,
    sometimes an older one, 0 (none yet), one that left the ring or was never sent, the
    current or a future tick, or any u32."""
    tick = int(rig.world.clock[S.TICK]) - 1
    for s in range(rig.proto.capacity):
        if rig.proto.sessions[S_STATE, s] != CONNECTED:
            continue
        ring = rig.ref.rings.get(s)
        entries = list(ring.entries) if ring else []
        r = rng.random()
        if not entries or r < 0.08:
            ack = 0 if r < 0.5 else int(rng.integers(0, 2**32))
        elif r < 0.6:
            ack = entries[-1].tick
        elif r < 0.8:
            ack = entries[int(rng.integers(len(entries)))].tick
        elif r < 0.88:
            ack = entries[0].tick - int(rng.integers(1, 5))
        elif r < 0.95:
            ack = tick + int(rng.integers(0, 3))
        else:
            ack = int(rng.integers(0, 2**32))
        rig.ack(s, max(0, ack))


# ---- the kernel's settings come from the limits and rates as documented ----------------------

@pytest.mark.parametrize("limits, every, width", [
    (NetLimits(), 1, 512.0), (NetLimits(leaderboard_every=0.3), 3, 300.0),
    (NetLimits(aoi_hysteresis=0.0, delta_tolerance=0.0), 2, 65536.0),
    (NetLimits(delta_tolerance=7.0, claim_event_window=0.01), 4, 100.0)])
def test_caps_follow_the_limits_and_rates(limits, every, width):
    rig = Rig(1, limits, snapshot_every=every, world_width=width)
    assert tuple(rig.proto.caps) == tuple(Caps.of(limits, rig.world.rules, TICK_RATE, every))
    assert rig.proto.snapshot_rate == TICK_RATE / every


def test_caps_whose_bound_exceeds_the_datagram_are_refused():
    NetLimits(max_visible_players=33, max_visible_treasures=16).validate()
    for players, treasures in ((34, 16), (24, 32), (44, 1), (120, 1)):
        assert worst_snapshot_size(players, treasures) > MAX_DATAGRAM
        with pytest.raises(LimitsError):
            NetLimits(max_visible_players=players, max_visible_treasures=treasures).validate()


# ---- random worlds over many ticks, random acks -----------------------------------------------

WORLDS = [
    # (max_players, sessions, treasures, width, height, cell, view, reveal, caps)
    (6, 4, 10, 512.0, 512.0, 64.0, 200.0, 100.0, (33, 16)),
    (40, 30, 60, 300.0, 200.0, 50.0, 120.0, 60.0, (8, 4)),
    (64, 64, 64, 256.0, 256.0, 32.0, 400.0, 400.0, (23, 31)),
    (20, 7, 200, 1000.0, 700.0, 128.0, 333.0, 97.5, (5, 3)),
    (300, 120, 300, 4096.0, 4096.0, 256.0, 1024.0, 512.0, (32, 16)),
    (12, 12, 5, 65536.0, 100.0, 4096.0, 30000.0, 20000.0, (1, 1)),
    (9, 9, 9, 1.5, 1.5, 0.25, 0.5, 0.3, (3, 3)),
    (50, 20, 40, 400.0, 400.0, 50.0, 150.0, 80.0, (43, 1)),
]


@pytest.mark.parametrize("seed", range(48))
def test_random_worlds_match_the_reference(seed):
    rng = np.random.default_rng(seed)
    P, n, T, W, H, cell, view, reveal, (cp, ct) = WORLDS[seed % len(WORLDS)]
    limits = NetLimits(max_visible_players=cp, max_visible_treasures=ct,
                       leaderboard_every=float(rng.choice([0.05, 0.1, 0.35, 1.0])),
                       claim_event_window=float(rng.choice([0.05, 0.5, 2.0])),
                       hunt_result_window=float(rng.choice([0.05, 1.0, 5.0])),
                       snapshot_ring=int(rng.choice([2, 3, 8, 64])),
                       aoi_hysteresis=float(rng.choice([0.0, 0.1, 0.5])),
                       delta_tolerance=float(rng.choice([0.0, 0.25, W / 100])),
                       # the parts split the slots by connected sessions and are merged:
                       # the bytes must not depend on how many there are
                       encode_threads=[1, 2, 3, 5][seed % 4])
    every = int(rng.choice([1, 1, 2, 3]))
    rig = Rig(n, limits, snapshot_every=every, max_players=P, treasure_count=T,
              world_width=W, world_height=H, cell_size=cell, view_radius=view,
              reveal_radius=reveal, leaderboard_size=int(rng.integers(1, 17)),
              hunt_duration=float(rng.choice([1.0, 30.0, 300.0])))
    randomize(rig.world, rng)
    if rng.random() < 0.3:  # some players without a session, some sessions without
        rig.world.pi[S.P_ALIVE, rng.integers(0, P, 3)] = 0  # a living player
        rebuild_grids(rig.world)
    deltas = 0
    for _ in range(6 if P >= 300 else 16):
        docs = check_encode(rig)
        deltas += sum("b" in doc for _, doc in docs.values())
        evolve(rig.world, rng, step=1 if rng.random() < 0.9 else int(rng.integers(2, 5)))
        if P > n:  # players without a session leave, and come back elsewhere (same slot)
            flip = n + np.flatnonzero(rng.random(P - n) < 0.05)
            rig.world.pi[S.P_ALIVE, flip] ^= 1
            rebuild_grids(rig.world)
        random_acks(rig, rng)
    assert deltas > 0


def test_snapshots_after_real_ticks_match_the_reference():
    """The same on a world the simulation really runs (claims, respawns, hunt ends), the
    clients acking the newest snapshot they got, a fifth of them lost."""
    rig = Rig(6, NetLimits(max_visible_players=4, max_visible_treasures=3, delta_tolerance=0.01),
              max_players=8,
              treasure_count=20, world_width=200.0, world_height=200.0, cell_size=50.0,
              view_radius=80.0, reveal_radius=60.0, dig_time=0.1, hunt_duration=2.0,
              respawn_delay=0.2)
    rng = np.random.default_rng(5)
    pi = rig.world.pi
    seen = set()
    for _ in range(160):
        turn = rng.random(6) < 0.2
        pi[S.P_MOVE_X, :6][turn] = rng.choice([-127, 0, 64, 127], int(turn.sum()))
        pi[S.P_MOVE_Y, :6][turn] = rng.choice([-127, 0, 64, 127], int(turn.sum()))
        pi[S.P_DIG, :6] = 1
        pi[S.P_INPUT_SEQ, :6] += 1
        rig.world.step()
        for slot, (_, doc) in check_encode(rig).items():
            seen |= set(doc)
            if rng.random() < 0.8:  # delivered: the next INPUT acks it
                rig.ack(slot, doc["t"])
    assert {"b", "ev", "lb", "hr", "pm", "pv", "pr", "pn", "tx", "tn"} <= seen


# ---- deltas, acks and baselines -------------------------------------------------------------

def test_first_snapshot_is_full_and_an_ack_makes_the_next_a_delta():
    rig = Rig(2, max_players=4)
    w = rig.world
    w.pf[S.PX, :] = (100.0, 120.0, 140.0, 160.0)
    w.pf[S.PY, :] = 100.0
    w.pf[S.PVX, :] = (0.0, 20.0, -20.0, 0.0)
    rebuild_grids(w)
    w.clock[S.TICK] = 11
    (_, first), _ = check_encode(rig).values()
    assert "b" not in first and first["t"] == 10
    assert first["p"][:5] == [1, q(120, 512), q(100, 512), vq(20.0, 512, 20), 0]
    rig.ack(0, 10)
    evolve_still(w, 1)
    docs = check_encode(rig)
    assert docs[0][1]["b"] == 10 and "b" not in docs[1][1]  # slot 1 acked nothing


def evolve_still(world, step):
    """Advance the clock; every player walks exactly its velocity (no surprise)."""
    kr = world.kr
    world.clock[S.TICK] += step
    world.pf[S.PX] = np.clip(world.pf[S.PX] + world.pf[S.PVX] / kr.tick_rate * step, 0,
                             kr.world_width).astype(np.float32)
    world.pf[S.PY] = np.clip(world.pf[S.PY] + world.pf[S.PVY] / kr.tick_rate * step, 0,
                             kr.world_height).astype(np.float32)
    rebuild_grids(world)


def test_straight_walkers_cost_nothing_in_a_delta():
    """Players walking their announced velocity (walls included) are extrapolated by the
    client: the delta has no entity key at all."""
    rig = Rig(1, max_players=12, world_width=512.0, world_height=512.0, view_radius=2000.0)
    w = rig.world
    rng = np.random.default_rng(8)
    # exact speeds: 6.4 quanta per tick per unit/s; one unit/s = 1/20 unit per tick
    w.pf[S.PX] = rng.uniform(0, 512, 12).astype(np.float32)
    w.pf[S.PY] = rng.uniform(0, 512, 12).astype(np.float32)
    w.pf[S.PVX] = (0, 20, -20, 40, 0, 400, -400, 25, 0, 1e6, -1e6, 5)
    w.pf[S.PVY] = (0, 0, 20, -40, 60, 400, 400, -25, -1e6, 0, 1e6, 5)
    w.pf[S.PX, 5:7] = 511.0  # 5 runs into the east wall
    w.pf[S.PY, 8] = 0.0  # faster than a velocity can say, but against a wall
    w.pf[S.PX, 9] = 512.0
    w.pf[S.PX, 10], w.pf[S.PY, 10] = 0.0, 512.0
    w.clock[S.TICK] = 2
    w.ti[S.T_STATE] = S.CLAIMED
    w.pi[S.P_ALIVE] = 1  # players without sessions
    rebuild_grids(w)
    (_, doc), = check_encode(rig).values()
    for step in (1, 2, 3, 1, 1):
        rig.ack(0, doc["t"])
        evolve_still(w, step)
        (_, doc), = check_encode(rig).values()
        assert set(doc) == {"t", "a", "b", "h", "me"}, doc


@pytest.mark.parametrize("how", ["zero", "never_sent", "future", "current", "evicted"])
def test_an_ack_that_names_no_baseline_gets_a_full_snapshot(how):
    rig = Rig(1, NetLimits(snapshot_ring=3), max_players=3)
    w = rig.world
    rng = np.random.default_rng(3)
    randomize(w, rng, tick=100)
    sent = []
    for _ in range(5):
        (_, doc), = check_encode(rig).values()
        sent.append(doc["t"])
        evolve(w, rng)
    tick = int(w.clock[S.TICK]) - 1
    ack = {"zero": 0, "never_sent": sent[-1] - 1000, "future": tick + 1, "current": tick,
           "evicted": sent[0]}[how]
    rig.ack(0, ack)
    (_, doc), = check_encode(rig).values()
    assert "b" not in doc and "p" in doc and "tr" in doc
    rig.ack(0, sent[-1])  # the newest is still in the 3-entry ring
    evolve(w, rng)
    (_, doc), = check_encode(rig).values()
    assert doc["b"] == sent[-1]


def test_tick_0_is_never_a_baseline():
    """Ack 0 means "no snapshot yet", so the snapshot of tick 0 cannot serve as one."""
    rig = Rig(1)
    rig.world.step()
    (_, doc), = check_encode(rig).values()
    assert doc["t"] == 0
    rig.ack(0, 0)
    rig.world.step()
    (_, doc), = check_encode(rig).values()
    assert "b" not in doc


def test_a_reused_slot_starts_from_a_full_snapshot():
    """A new session in a freed slot must not get a delta against what the slot's
    previous session was sent, even when it acks one of those ticks."""
    rig = Rig(2, max_players=2)
    w = rig.world
    rng = np.random.default_rng(4)
    randomize(w, rng, tick=50)
    for _ in range(4):
        docs = check_encode(rig)
        rig.ack(0, docs[0][1]["t"])
        evolve(w, rng)
    old_tick = docs[0][1]["t"]
    old_sid = int(rig.proto.sessions[S_ID, 0])
    rig.proto.kick(0)
    rig.proto.datagrams_to_send()
    assert int(rig.proto.ring.count[0]) == 0
    check_encode(rig)  # slot 0 free: no snapshot, ring stays empty
    slot = rig.connect(NetKit.client("next", salt=4242), ("10.9.9.9", 9))
    assert slot == 0 and int(rig.proto.sessions[S_ID, 0]) != old_sid
    w.pf[S.PX, 0], w.pf[S.PY, 0] = 256.0, 256.0
    rebuild_grids(w)
    rig.ack(0, old_tick)
    evolve(w, rng)
    docs = check_encode(rig)
    assert "b" not in docs[0][1]
    assert unpack_header(docs[0][0]).sequence == 1


def test_deltas_across_tick_2_to_the_32():
    """Ticks go on the wire mod 2**32: "t" and "b" wrap, and a baseline sent before the
    wrap still serves after it (dt is computed mod 2**32 by the client)."""
    rig = Rig(3, NetLimits(snapshot_ring=16), max_players=6)
    w = rig.world
    rng = np.random.default_rng(6)
    randomize(w, rng, tick=2**32 - 4)
    first = None
    clients = rig.clients  # the reference clients that opened the sessions
    ticks = []
    for k in range(10):
        docs = check_encode(rig)
        for s, (data, doc) in docs.items():
            (snap,) = clients[s].receive(data, 0.0)
            held = clients[s].held[snap.tick]
            entry = rig.ref.rings[s].entries[-1]
            assert (held.players, held.treasures) == (entry.players, entry.treasures)
        ticks.append(docs[0][1]["t"])
        if first is None:
            first = docs[0][1]["t"]
        rig.ack(0, first)  # slot 0 keeps acking its first (pre-wrap) snapshot
        rig.ack(1, docs[1][1]["t"])  # slot 1 the newest
        rig.ack(2, clients[2].last_snapshot_tick if k % 2 else 0)
        evolve(w, rng)
    assert ticks == [(2**32 - 4 + k) & MASK for k in range(10)]
    assert docs[0][1]["b"] == first == 2**32 - 4  # sent before the wrap
    assert docs[1][1]["b"] == ticks[-2]


# ---- presence rules ---------------------------------------------------------------------

def test_snapshots_are_spread_over_ticks_by_slot():
    rig = Rig(8, NetLimits(leaderboard_every=0.4), snapshot_every=4, max_players=8)
    w = rig.world
    rng = np.random.default_rng(9)
    randomize(w, rng, tick=1000)
    w.clock[S.LAST_HUNT_END] = -1
    lb = {s: [] for s in range(8)}
    for tick in range(1000, 1016):
        docs = check_encode(rig)
        assert sorted(docs) == [s for s in range(8) if (tick + s) % 4 == 0]
        for s, (_, doc) in docs.items():
            lb[s].append("lb" in doc)
        evolve_still(w, 1)
    # 5 snapshots per second: "lb" in every second snapshot of each client, from its first
    assert all(flags == [True, False, True, False] for flags in lb.values())


def test_leaderboard_counts_snapshots_and_gives_way_to_the_hunt_result():
    rig = Rig(2, NetLimits(leaderboard_every=0.15, hunt_result_window=0.5))  # 3 and 10
    w = rig.world
    rng = np.random.default_rng(10)
    randomize(w, rng, tick=500)
    w.clock[S.LAST_HUNT_END] = -1
    flags = []
    for k in range(20):
        if k == 7:
            w.clock[S.LAST_HUNT_END] = int(w.clock[S.TICK]) - 1  # a hunt ends this tick
            w.clock[S.HUNT_ID] += 1
        if k == 12:  # slot 0 acks the snapshot of k = 9: it has the result, slot 1 not
            rig.ack(0, int(w.clock[S.TICK]) - 1 - 3)
        docs = check_encode(rig)
        flags.append(tuple(("lb" in d, "hr" in d) for _, d in docs.values()))
        evolve_still(w, 1)
    for k, row in enumerate(flags):
        for slot, (has_lb, has_hr) in enumerate(row):
            assert not (has_lb and has_hr)
            # resent until acked: slot 0 until its ack (k = 12), slot 1 to the end
            assert has_hr == (7 <= k < 12 if slot == 0 else 7 <= k), (k, slot)
            assert has_lb == (k % 3 == 0 and not has_hr)


def test_claims_appear_only_inside_their_window_and_the_result_until_acked():
    limits = NetLimits(claim_event_window=0.5, hunt_result_window=1.0)  # 10 and 20 ticks
    rig = Rig(1, limits)
    w = rig.world
    rng = np.random.default_rng(2)
    randomize(w, rng, tick=100)
    w.clock[S.CLAIM_HEAD] = 1
    set_claim(w, 0, 95, 0, 3, 2)
    w.clock[S.LAST_HUNT_END] = 90
    w.clock[S.HUNT_ID] = 4
    # no ack: the result is repeated past its window, until the client has it
    for tick, has_ev, has_hr in ((100, True, True), (104, True, True), (105, False, True),
                                 (109, False, True), (110, False, True), (140, False, True)):
        w.clock[S.TICK] = tick + 1
        (_, doc), = check_encode(rig).values()
        assert ("ev" in doc, "hr" in doc) == (has_ev, has_hr), tick
        assert "b" not in doc  # no ack: every one is full
        if has_ev:
            assert doc["ev"] == [95, 0, 3, 2]
        if has_hr:
            assert doc["hr"][0] == 3
    rig.ack(0, 140)
    w.clock[S.TICK] = 142
    (_, doc), = check_encode(rig).values()
    assert doc["b"] == 140 and "hr" not in doc
    # a client that connects after the window never gets that result
    slot = rig.connect(NetKit.client("late", salt=99), ("10.9.9.9", 4000))
    w.pi[S.P_ALIVE, slot] = 1
    rebuild_grids(w)
    docs = check_encode(rig)
    assert "hr" not in docs[slot][1]


def test_a_delta_repeats_only_the_claims_after_its_baseline():
    rig = Rig(1, NetLimits(claim_event_window=2.0))
    w = rig.world
    rng = np.random.default_rng(12)
    randomize(w, rng, tick=200)
    w.clock[S.CLAIM_HEAD] = 4
    for r, t in enumerate((190, 195, 198, 200)):  # oldest first in the ring
        set_claim(w, r, t, r, r, 1 + r)
    for t in (194, 196, 199, 201):  # full snapshots (no ack yet)
        w.clock[S.TICK] = t + 1
        (_, doc), = check_encode(rig).values()
        assert "b" not in doc and doc["ev"][0::4] == [t for t in (200, 198, 195, 190)
                                                      if t <= 200]
    for ack, claims in ((196, [200, 198]), (199, [200]), (194, [200, 198, 195]), (201, []),
                        (195, [200, 198, 195, 190])):  # 195 was never sent: full
        w.clock[S.TICK] += 1
        rig.ack(0, ack)
        (_, doc), = check_encode(rig).values()
        assert doc.get("b") == (None if ack == 195 else ack)
        assert doc.get("ev", [])[0::4] == claims


def test_hidden_entities_are_left_out():
    rig = Rig(3, NetLimits(aoi_hysteresis=0.0), view_radius=100.0, reveal_radius=50.0)
    w = rig.world
    rng = np.random.default_rng(3)
    randomize(w, rng, tick=7)
    w.pf[S.PX, :3] = (100.0, 199.0, 200.5)  # 99 and 100.5 away from slot 0
    w.pf[S.PY, :3] = 100.0
    w.pi[S.P_ALIVE, 3] = 0
    w.tf[S.TX] = 300.0
    w.tf[S.TY] = 300.0
    w.tf[S.TX, :3] = (100.0, 150.0, 100.0)  # at 0 and exactly 50 away; #2 is claimed
    w.tf[S.TY, :3] = 100.0
    w.ti[S.T_STATE, :3] = (S.BURIED, S.BURIED, S.CLAIMED)
    rebuild_grids(w)
    docs = {s: doc for s, (_, doc) in check_encode(rig).items()}
    assert docs[0]["p"][0::5] == [1]  # slot 2 is 100.5 away: out of view
    assert docs[0]["tr"][0::4] == [0, 1]  # the boundary is inside; claimed ones never show
    assert docs[2]["p"][0::5] == [1]


def test_hysteresis_keeps_an_entity_at_the_edge_until_it_is_clearly_out():
    """Enter within r = 100, leave beyond 110: what matters is the last snapshot *sent*
    (here never acked), and an entity outside r that was not in it does not enter."""
    rig = Rig(2, NetLimits(aoi_hysteresis=0.1), max_players=2, view_radius=100.0,
              reveal_radius=50.0, treasure_count=1)
    w = rig.world
    w.pf[:, :] = 0.0
    w.pf[S.PX, 0], w.pf[S.PY, 0] = 200.0, 200.0
    w.ti[S.T_STATE] = S.BURIED
    w.tf[S.TY, 0] = 200.0
    seen = []
    for d in (105.0, 99.0, 105.0, 109.9, 110.5, 105.0, 100.0):
        w.pf[S.PX, 1], w.pf[S.PY, 1] = 200.0 + d, 200.0
        w.tf[S.TX, 0] = 200.0 - d / 2  # the treasure does the same at half the distance
        w.clock[S.TICK] += 1
        rebuild_grids(w)
        (_, doc) = check_encode(rig)[0]
        seen.append((doc["p"][0::5], doc["tr"][0::4]))
    assert seen == [([], []), ([1], [0]), ([1], [0]), ([1], [0]), ([], []), ([], []),
                    ([1], [0])]


def test_treasures_that_changed_are_removed_and_sent_again():
    rig = Rig(1, reveal_radius=100.0, treasure_count=3)
    w = rig.world
    w.pf[S.PX, 0], w.pf[S.PY, 0] = 256.0, 256.0
    w.tf[S.TX] = (250.0, 260.0, 270.0)
    w.tf[S.TY] = 256.0
    w.ti[S.T_STATE] = S.BURIED
    w.ti[S.T_VALUE] = (1, 2, 3)
    w.clock[S.TICK] = 5
    rebuild_grids(w)
    (_, doc), = check_encode(rig).values()
    order = doc["tr"][0::4]
    rig.ack(0, doc["t"])
    w.clock[S.TICK] += 1
    w.tf[S.TX, 0] = 240.0  # re-buried elsewhere under the same id
    w.ti[S.T_VALUE, 1] = 5  # a new value
    rebuild_grids(w)
    (_, doc), = check_encode(rig).values()
    assert doc["tx"] == sorted(order.index(t) for t in (0, 1))
    assert sorted(doc["tn"][0::4]) == [0, 1]


def test_velocities_are_quantized_half_up_and_clamped():
    # W = 512 at 20 Hz: one unit per second is 6.4 quanta per tick
    rig = Rig(1, max_players=8, view_radius=1000.0)
    w = rig.world
    w.pi[S.P_ALIVE] = 1  # players without sessions
    w.pf[S.PX], w.pf[S.PY] = 256.0, 256.0
    w.pf[S.PVX] = (0.0, 0.078125, -0.078125, 0.234375, -0.234375, 200.0, 1e9, -1e9)
    w.pf[S.PVY] = 0.0
    w.clock[S.TICK] = 3
    rebuild_grids(w)
    (_, doc), = check_encode(rig).values()
    assert doc["p"][3::5] == [1, 0, 2, -1, 1280, 32767, -32767]  # .5 rounds up: 1.5 -> 2
    assert [vq(v, 512, 20) for v in w.pf[S.PVX, 1:]] == doc["p"][3::5]


def test_players_without_a_session_and_sessions_without_a_player():
    rig = Rig(3, max_players=6)
    w = rig.world
    randomize(w, np.random.default_rng(11), tick=40)
    w.pi[S.P_ALIVE] = (1, 0, 1, 1, 1, 0)  # slot 1 has a session but no living player
    w.pf[S.PX] = 10.0
    w.pf[S.PY] = 10.0
    rebuild_grids(w)
    got = check_encode(rig)
    assert sorted(got) == [0, 2]
    assert sorted(got[0][1]["p"][0::5]) == [2, 3, 4]  # slots 3 and 4: alive, no session


def test_sequence_counts_up_per_session_and_restarts_for_a_new_one():
    rig = Rig(2)
    w = rig.world
    for n in range(1, 4):
        w.step()
        assert [unpack_header(d).sequence for d, _ in check_encode(rig).values()] == [n, n]
    rig.proto.kick(0)
    rig.connect(NetKit.client(salt=777), ("10.7.7.7", 7))
    w.step()
    assert [unpack_header(d).sequence for d, _ in check_encode(rig).values()] == [1, 4]
    assert int(rig.proto.sessions[S_TX_SEQ, 1]) == 4


# Regression (v1): the claim ring was int32, so from tick 2**31 on every claim looked out of
# its window and 'ev' never appeared again.
def test_claims_still_show_after_tick_2_to_the_31():
    rig = Rig(1, dig_time=0.1, treasure_count=1)
    w = rig.world
    w.clock[S.TICK] = 2**31 + 10
    w.clock[S.HUNT_START] = 2**31 + 10
    w.pf[S.PX, 0], w.pf[S.PY, 0] = w.tf[S.TX, 0], w.tf[S.TY, 0]
    w.pi[S.P_DIG, 0] = 1
    claims = 0
    for _ in range(10):
        claims += w.step()
        if claims:
            break
    assert claims == 1
    (_, doc), = check_encode(rig).values()
    assert doc["ev"][0] == w.tick - 1


# ---- adversarial: crowds, edges, caps, widest values ------------------------------------

def test_everyone_on_one_point():
    rig = Rig(200, NetLimits(max_visible_players=33, max_visible_treasures=16),
              max_players=200, treasure_count=100)
    w = rig.world
    randomize(w, np.random.default_rng(4), tick=3)
    w.pf[S.PX] = 77.25
    w.pf[S.PY] = 300.5
    w.pf[S.PVX] = 0.0
    w.pf[S.PVY] = 0.0
    w.tf[S.TX] = 77.25
    w.tf[S.TY] = 300.5
    w.ti[S.T_STATE] = S.BURIED
    rebuild_grids(w)
    for _ in range(3):
        for s, (_, doc) in check_encode(rig).items():
            if "b" not in doc:
                assert doc["p"][0::5] == [j for j in range(200) if j != s][:33]  # ties: ids
                assert doc["tr"][0::4] == list(range(16))
            else:  # nobody moves: nothing to say
                assert set(doc) <= {"t", "a", "b", "h", "me", "ev", "lb", "hr"}
            rig.ack(s, doc["t"])
        w.clock[S.TICK] += 1


@pytest.mark.parametrize("seed", range(3))
def test_crowds_larger_than_the_candidate_scratch(seed):
    """More than 512 players in view of a client (net.snapshot.CANDIDATES): the kernel
    takes its other path (a heap of the k nearest, then a second walk)."""
    rng = np.random.default_rng(seed)
    rig = Rig(4, NetLimits(max_visible_players=33, max_visible_treasures=16,
                           aoi_hysteresis=0.5), max_players=900, treasure_count=700,
              world_width=1000.0, world_height=1000.0, cell_size=50.0, view_radius=300.0,
              reveal_radius=300.0)
    w = rig.world
    randomize(w, rng, tick=77)
    w.pi[S.P_ALIVE] = 1
    w.pf[S.PX] = rng.normal(500.0, 60.0, 900).clip(0, 1000).astype(np.float32)
    w.pf[S.PY] = rng.normal(500.0, 60.0, 900).clip(0, 1000).astype(np.float32)
    w.pf[S.PX, 100:300] = 500.0  # a pile on one point: ties broken by id
    w.pf[S.PY, 100:300] = 510.0
    w.tf[S.TX] = rng.normal(500.0, 60.0, 700).clip(0, 1000).astype(np.float32)
    w.tf[S.TY] = rng.normal(500.0, 60.0, 700).clip(0, 1000).astype(np.float32)
    w.ti[S.T_STATE] = S.BURIED
    rebuild_grids(w)
    for _ in range(5):
        for s, (_, doc) in check_encode(rig).items():
            if "p" in doc:
                assert len(doc["p"]) == 5 * 33 and len(doc["tr"]) == 4 * 16
            rig.ack(s, doc["t"])
        evolve(w, rng)


@pytest.mark.parametrize("others", [511, 512, 513])
def test_crowds_at_the_edge_of_the_candidate_scratch(others):
    """Exactly 511, 512 and 513 others in view (CANDIDATES = 512): the scan's scratch
    holds all of them up to 512 (its extra slot only takes writes past the cap); at 513
    the kernel takes the heap path. Every one must give the reference's snapshot."""
    rng = np.random.default_rng(others)
    n = others + 1
    rig = Rig(1, NetLimits(max_visible_players=33, max_visible_treasures=16),
              max_players=n, treasure_count=20, world_width=1000.0, world_height=1000.0,
              cell_size=50.0, view_radius=300.0)
    w = rig.world
    randomize(w, rng, tick=9)
    w.pi[S.P_ALIVE] = 1
    angle = rng.uniform(0.0, 2 * np.pi, n)
    radius = rng.uniform(0.0, 250.0, n)
    w.pf[S.PX] = (500.0 + radius * np.cos(angle)).astype(np.float32)
    w.pf[S.PY] = (500.0 + radius * np.sin(angle)).astype(np.float32)
    w.pf[S.PX, 0] = 500.0  # the client, in the middle: everyone else is in view
    w.pf[S.PY, 0] = 500.0
    w.pf[S.PX, 1:40] = 600.0  # ties at the cut-off are broken by id
    w.pf[S.PY, 1:40] = 500.0
    rebuild_grids(w)
    for _ in range(3):
        for s, (_, doc) in check_encode(rig).items():
            if "p" in doc:
                assert len(doc["p"]) == 5 * 33
            rig.ack(s, doc["t"])
        evolve(w, rng)


def test_connect_accept_carries_the_snapshot_rate():
    rig = Rig(1, snapshot_every=4)
    client = NetKit.client(salt=99)
    rig.connect(client, ("10.5.5.5", 5))
    assert (client.info.tick_rate, client.info.snapshot_rate) == (20, 5)


def test_edges_corners_and_full_caps_stay_under_the_bound():
    W = H = 1000.0
    for players, treasures in ((33, 16), (23, 31), (43, 1), (1, 32)):
        limits = NetLimits(max_visible_players=players, max_visible_treasures=treasures,
                           leaderboard_every=0.05)
        rig = Rig(60, limits, max_players=60, treasure_count=100, world_width=W,
                  world_height=H, cell_size=100.0, view_radius=2000.0, reveal_radius=2000.0,
                  leaderboard_size=16, hunt_duration=1e5)
        w = rig.world
        rng = np.random.default_rng(players)
        randomize(w, rng, tick=2**31 - 2)
        spots = [(0.0, 0.0), (W, 0.0), (0.0, H), (W, H), (W / 2, 0.0), (0.0, H / 2),
                 (W, H / 2), (W / 2, H), (np.nextafter(np.float32(W), np.float32(0)), H)]
        for j in range(60):
            w.pf[S.PX, j], w.pf[S.PY, j] = spots[j % len(spots)]
        for t in range(100):
            w.tf[S.TX, t], w.tf[S.TY, t] = spots[(t * 7) % len(spots)]
        w.pf[S.PVX] = rng.choice([-1e9, 1e9, 0.0, 313.0], 60)
        w.pf[S.PVY] = rng.choice([-1e9, 1e9, 0.0, -313.0], 60)
        w.ti[S.T_STATE] = S.BURIED
        rebuild_grids(w)
        for _ in range(4):
            got = check_encode(rig)
            assert all(len(doc.get("p", [0] * 5 * players)) == 5 * players
                       for _, doc in got.values())
            for s, (_, doc) in got.items():
                rig.ack(s, doc["t"])
            evolve(w, rng)


def widest_delta_world(players: int, treasures: int, tick: int = 2**31 - 2):
    """A delta at its widest for slots 256 and up: every baseline player moved more than
    32768 quanta behind its prediction (negative residuals take 5 bytes, positive ones at
    most 3) with a new 16-bit velocity, every baseline treasure replaced; ids >= 256, 32-bit ticks, scores, acks and
    hunt clock, 12 claims after the baseline, 4 own claims, a full final board. Returns
    (rig, slots)."""
    limits = NetLimits(max_visible_players=players, max_visible_treasures=treasures,
                       leaderboard_every=0.05, hunt_result_window=1e4)
    n = 256 + players + 1
    rig = Rig(n, limits, max_players=n, treasure_count=256 + 2 * treasures,
              world_width=1000.0, world_height=1000.0, cell_size=100.0, view_radius=2000.0,
              reveal_radius=2000.0, leaderboard_size=16, hunt_duration=1e6)
    w = rig.world
    rng = np.random.default_rng(players)
    randomize(w, rng, tick=tick)
    w.pi[S.P_ALIVE, :256] = 0  # slots below 256 have sessions but no snapshot
    w.ti[S.T_STATE] = S.CLAIMED
    w.ti[S.T_STATE, 256:256 + treasures] = S.BURIED
    w.ti[S.T_VALUE] = 100
    w.pi[S.P_SCORE] = 2**31 - 1
    w.pi[S.P_INPUT_SEQ] = 2**31 - 1
    w.pi[S.P_HEAT] = 255
    w.pi[S.P_DIG_TICKS] = w.kr.dig_ticks
    w.clock[S.HUNT_ID] = 2**31
    w.clock[S.HUNT_START] = tick
    w.clock[S.LAST_HUNT_END] = tick - 1
    w.clock[S.CLAIM_HEAD] = 1000
    for board in (w.board, w.final_board):
        board[:, S.LB_SLOT] = np.arange(40000, 40016)  # u16 slot numbers
        board[:, S.LB_SCORE] = 2**31 - 1
    place_wide(w, rng, 700.0, +1)
    rebuild_grids(w)
    return rig, list(range(256, n))


def place_wide(world, rng, at: float, sign: int) -> None:
    """Slots >= 256 and buried treasures near (at, at), walking `sign` fast."""
    P = world.pi.shape[1]
    world.pf[S.PX, 256:] = rng.uniform(at, at + 10.0, P - 256).astype(np.float32)
    world.pf[S.PY, 256:] = rng.uniform(at, at + 10.0, P - 256).astype(np.float32)
    world.pf[S.PVX, 256:] = sign * 100.0  # 327.68 quanta per tick: int16
    world.pf[S.PVY, 256:] = -sign * 100.0
    buried = world.ti[S.T_STATE] == S.BURIED
    world.tf[S.TX, buried] = rng.uniform(at, at + 10.0, int(buried.sum())).astype(np.float32)
    world.tf[S.TY, buried] = world.tf[S.TX, buried]


def widest_delta(players: int, treasures: int, tick: int = 2**31 - 2):
    """(rig, {slot: (datagram, doc)}) for the widest deltas widest_delta_world can make."""
    rig, slots = widest_delta_world(players, treasures, tick)
    w = rig.world
    rng = np.random.default_rng(1)
    first = check_encode(rig)
    for s in slots:
        rig.ack(s, first[s][1]["t"])
    # the next tick: everyone far behind the prediction, walking the other way; the
    # treasures in view swapped for others; 16 claims of this tick
    w.clock[S.TICK] += 1
    t = int(w.clock[S.TICK]) - 1
    w.clock[S.LAST_HUNT_END] = t - 1  # another hunt ended: its result is not acked yet
    w.clock[S.HUNT_ID] += 1
    w.ti[S.T_STATE, 256:256 + treasures] = S.CLAIMED
    w.ti[S.T_STATE, 256 + treasures:256 + 2 * treasures] = S.BURIED
    place_wide(w, rng, 20.0, -1)  # residuals below -32768: int32
    for r in range(S.CLAIM_RING):  # treasures in view (far claims are left out), u16 ids
        set_claim(w, r, t, 40000 + r, 256 + treasures + r % treasures, 100)
    w.clock[S.EVENT_COUNT] = 0
    for s in slots:  # four own claims each ("my"), u32 ticks, u16 treasures, confirmed
        for k in range(4):
            claim_event(w, s, 300 + k, 100)
    rebuild_grids(w)
    return rig, check_encode(rig)


@pytest.mark.parametrize("players,treasures", [(33, 16), (23, 31), (43, 1), (1, 32), (12, 12)])
def test_widest_delta_comes_close_to_the_bound(players, treasures):
    rig, got = widest_delta(players, treasures)
    docs = [doc for s, (_, doc) in got.items() if s >= 256]
    assert all("b" in d and len(d["pv"]) == 5 * players and len(d["ev"]) == 48
               and len(d["my"]) == 16 and d["my"][3::4] == [1] * 4 for d in docs)
    assert all(len(d["tx"]) == treasures and len(d["tn"]) == 4 * treasures for d in docs)
    assert all(max(d["pv"][1::5] + d["pv"][2::5]) < -32768 for d in docs)
    widest = max(len(data) for s, (data, _) in got.items() if s >= 256)
    bound = worst_snapshot_size(players, treasures)
    # The bound counts every key at 3 bytes ("t", "a", "b", "h" take 2) and every array
    # header at 3 (a short "tx" takes 1), and four player keys where an all-"pv" delta
    # has one: 4 + 2 + 18 bytes of slack, nothing else.
    slack = 4 + 18 + (2 if treasures < 16 else 0) + (2 if 5 * players < 16 else 0)
    slack += 2 if 4 * treasures < 16 else 0
    assert widest == bound - slack
    assert widest <= bound <= MAX_DATAGRAM


@pytest.mark.parametrize("players,treasures", [(33, 16), (23, 31), (43, 1)])
def test_widest_full_snapshot_stays_under_the_bound(players, treasures):
    rig, slots = widest_delta_world(players, treasures)
    got = check_encode(rig)
    widest = max(len(data) for s, (data, _) in got.items() if s >= 256)
    # a full snapshot has no "b" and 15 + 10 bytes per player and treasure, not 17 + 11
    assert widest <= worst_snapshot_size(players, treasures) - 2 * players - treasures


def test_snapshot_bound_holds_past_tick_2_to_the_32():
    rig, got = widest_delta(33, 16, tick=2**32 + 5)
    assert len(got) == 33 + 1
    assert max(len(d) for d, _ in got.values()) <= worst_snapshot_size(33, 16)
    assert all(doc["t"] == 6 and doc["b"] == 5 for s, (_, doc) in got.items())


def test_documented_quantization_examples():
    assert q(512.0, 1024.0) == 32768 and q(1024.0, 1024.0) == 65535 and q(-1.0, 10.0) == 0
    assert vq(200.0, 1024.0, 20.0) == 640 and vq(-200.0, 1024.0, 20.0) == -640
    assert math.isclose(65536 / 1024 / 20, 3.2)


@pytest.mark.parametrize("parts", [1, 2, 3, 7])
def test_parts_split_the_connected_sessions_evenly(parts):
    """Slots fill lowest first: the split follows connected sessions, not slot numbers."""
    from net.snapshot import split_sessions
    rng = np.random.default_rng(parts)
    for connected in ([], list(range(10)), list(rng.choice(100, 37, replace=False)),
                      list(range(100))):
        sessions = np.zeros((16, 100), np.int64)
        sessions[S_STATE, connected] = CONNECTED
        split = np.zeros(parts + 1, np.int64)
        split_sessions(sessions, split)
        assert split[0] == 0 and split[-1] == 100 and np.all(np.diff(split) >= 0)
        per_part = [int(np.count_nonzero(sessions[S_STATE, split[c]:split[c + 1]] == CONNECTED))
                    for c in range(parts)]
        assert sum(per_part) == len(connected)
        assert max(per_part) - min(per_part) <= 1, per_part


def claim_event(world, slot: int, treasure: int, value: int) -> None:
    """A claim by `slot` in the tick that just ran, as sim.dig writes it."""
    n = int(world.clock[S.EVENT_COUNT])
    world.events[n] = (S.EVENT_CLAIM, int(world.clock[S.TICK]) - 1, slot,
                       int(world.pi[S.P_GEN, slot]), treasure, value)
    world.clock[S.EVENT_COUNT] = n + 1


def test_own_claims_wait_for_the_ledger_and_repeat_until_a_confirmed_one_is_acked():
    rig = Rig(2)
    w, proto = rig.world, rig.proto
    rng = np.random.default_rng(4)
    randomize(w, rng, tick=300)
    w.clock[S.LAST_HUNT_END] = -1
    proto.durable[0] = 0  # the ledger has nothing durable yet
    w.clock[S.EVENT_COUNT] = 0
    claim_event(w, 0, 5, 3)
    docs = check_encode(rig)
    assert docs[0][1]["my"] == [300, 5, 3, 0]  # told, not yet confirmed
    assert "my" not in docs[1][1]  # only the claimer hears of it here
    rig.ack(0, 300)  # acking an unconfirmed one does not end it
    w.clock[S.EVENT_COUNT] = 0
    w.clock[S.TICK] += 1
    claim_event(w, 0, 6, 1)  # a second one, a tick later
    docs = check_encode(rig)
    assert docs[0][1]["my"] == [300, 5, 3, 0, 301, 6, 1, 0]
    proto.durable[0] = 300  # the first one's tick is durable now
    w.clock[S.EVENT_COUNT] = 0
    w.clock[S.TICK] += 1
    docs = check_encode(rig)  # snapshot 302: the first is confirmed
    assert docs[0][1]["my"] == [300, 5, 3, 1, 301, 6, 1, 0]
    proto.durable[0] = 2**40
    for t in (303, 304):  # lost snapshots: the client still acks 300
        w.clock[S.TICK] = t + 1
        assert check_encode(rig)[0][1]["my"] == [300, 5, 3, 1, 301, 6, 1, 1]
    rig.ack(0, 302)  # it got 302 (first confirmed) but not 303: 300 is done, 301 not
    w.clock[S.TICK] = 306
    assert check_encode(rig)[0][1]["my"] == [301, 6, 1, 1]
    rig.ack(0, 305)
    w.clock[S.TICK] = 307
    assert "my" not in check_encode(rig)[0][1]


@pytest.mark.parametrize("seed", range(6))
def test_random_own_claims_match_the_reference(seed):
    """Claims every few ticks, durable ticks lagging behind, random acks, a full table."""
    rng = np.random.default_rng(seed)
    rig = Rig(5, NetLimits(snapshot_ring=int(rng.choice([2, 8]))),
              snapshot_every=int(rng.choice([1, 2])))
    w, proto = rig.world, rig.proto
    randomize(w, rng, tick=int(rng.choice([50, 2**32 - 3])))
    for _ in range(40):
        w.clock[S.EVENT_COUNT] = 0
        for slot in range(5):
            if rng.random() < 0.3:
                claim_event(w, slot, int(rng.integers(0, 8)), int(rng.integers(1, 6)))
        tick = int(w.clock[S.TICK]) - 1
        proto.durable[0] = tick - int(rng.integers(0, 6))
        check_encode(rig)
        evolve(w, rng)
        random_acks(rig, rng)
