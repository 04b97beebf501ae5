"""net/snapshot.py against a plain-Python reference built from the world arrays.

Each world is set up by hand (positions, states, scores, clock, claim ring, boards), its
grids are built, and every snapshot the kernel writes must (a) decode with the standard
msgpack library, (b) equal the reference document, and (c) be byte-identical to
msgpack.packb(reference): the kernel must use msgpack's smallest encodings.
"""

from __future__ import annotations

import math
from fractions import Fraction

import msgpack
import numpy as np
import pytest

from net.client import ClientProtocol, Snapshot, parse_snapshot
from net.limits import NetLimits, worst_snapshot_size
from net.sessions import CONNECTED, S_ID, S_STATE, S_TX_SEQ
from net.wire import HEADER_SIZE, MAX_DATAGRAM, SNAPSHOT, VERSION, PROTOCOL_ID, unpack_header
from sim import schema as S
from sim.grid import build_grid

TICK_RATE = 20.0


# ---- the reference --------------------------------------------------------------------

def q(v, extent):
    """floor(v * 65536 / extent), exactly, capped into 0..65535."""
    value = math.floor(Fraction(float(v)) * 65536 / Fraction(float(extent)))
    return min(65535, max(0, value))


def nearest(x, y, radius, xs, ys, selected, cap):
    """Indices within `radius` of (x, y) (float64 squared distances, as the wire spec
    says), nearest first, ties to the lower index, at most `cap`."""
    found = []
    for j in selected:
        dx = float(xs[j]) - x
        dy = float(ys[j]) - y
        d2 = dx * dx + dy * dy
        if d2 <= radius * radius:
            found.append((d2, j))
    found.sort()
    return [j for _, j in found[:cap]]


def reference_snapshots(proto):
    """{slot: (session id, sequence, document)} for every snapshot encode() must write."""
    w, caps = proto.world, proto.caps
    kr, pf, pi, tf, ti, clock = w.kr, w.pf, w.pi, w.tf, w.ti, w.clock
    W, H = kr.world_width, kr.world_height
    tick = int(clock[S.TICK]) - 1
    alive = [j for j in range(pi.shape[1]) if pi[S.P_ALIVE, j] == 1]
    buried = [t for t in range(ti.shape[1]) if ti[S.T_STATE, t] == S.BURIED]
    head = int(clock[S.CLAIM_HEAD])
    claims = []
    for back in range(min(head, S.CLAIM_RING)):
        row = w.claim_ring[(head - 1 - back) % S.CLAIM_RING]
        if tick - int(row[S.CR_TICK]) < caps.claim_window_ticks:
            claims += [int(v) for v in row[[S.CR_TICK, S.CR_SLOT, S.CR_TREASURE, S.CR_VALUE]]]
    board = [int(v) for r in w.board if r[S.LB_SLOT] >= 0 for v in (r[S.LB_SLOT], r[S.LB_SCORE])]
    final = [int(v) for r in w.final_board if r[S.LB_SLOT] >= 0
             for v in (r[S.LB_SLOT], r[S.LB_SCORE])]
    last_end = int(clock[S.LAST_HUNT_END])
    show_result = last_end >= 0 and tick - last_end < caps.result_window_ticks
    ticks_left = max(0, kr.hunt_ticks - (tick + 1 - int(clock[S.HUNT_START])))
    out = {}
    for s in range(proto.capacity):
        if proto.sessions[S_STATE, s] != CONNECTED or pi[S.P_ALIVE, s] != 1:
            continue
        x, y = float(pf[S.PX, s]), float(pf[S.PY, s])
        doc = {
            "t": tick,
            "a": int(pi[S.P_INPUT_SEQ, s]),
            "h": [int(clock[S.HUNT_ID]), ticks_left],
            "me": [s, q(x, W), q(y, H), int(pi[S.P_SCORE, s]),
                   min(255, int(pi[S.P_DIG_TICKS, s]) * 255 // kr.dig_ticks),
                   int(pi[S.P_HEAT, s])],
            "p": [v for j in nearest(x, y, kr.view_radius, pf[S.PX], pf[S.PY],
                                     [j for j in alive if j != s], caps.max_players)
                  for v in (j, q(pf[S.PX, j], W), q(pf[S.PY, j], H))],
            "tr": [v for t in nearest(x, y, kr.reveal_radius, tf[S.TX], tf[S.TY], buried,
                                      caps.max_treasures)
                   for v in (t, q(tf[S.TX, t], W), q(tf[S.TY, t], H), int(ti[S.T_VALUE, t]))],
        }
        if claims:
            doc["ev"] = claims
        if (tick + s) % caps.leaderboard_every_ticks == 0:
            doc["lb"] = board
        if show_result:
            doc["hr"] = [int(clock[S.HUNT_ID]) - 1] + final
        out[s] = (int(proto.sessions[S_ID, s]), int(proto.sessions[S_TX_SEQ, s]) + 1, doc)
    return out


# ---- building worlds by hand ----------------------------------------------------------

def build_server(netkit, sessions, limits=None, **rules):
    """A server whose first `sessions` slots are connected (one client each)."""
    proto = netkit.server(limits=limits, **rules)
    for i in range(sessions):
        addr = (f"10.{i // 250}.{i % 250}.1", 3000 + i)
        proto.receive_datagram(ClientProtocol(name=f"c{i}", salt=i + 1).connect(0.0), addr, 0)
    proto.datagrams_to_send()
    assert proto.connected_count() == sessions
    return proto


def rebuild_grids(world):
    kr = world.kr
    build_grid(world.pf[S.PX], world.pf[S.PY], world.pi[S.P_ALIVE], 1, kr.cell_size,
               kr.grid_cols, kr.grid_rows, world.p_starts, world.p_items)
    build_grid(world.tf[S.TX], world.tf[S.TY], world.ti[S.T_STATE], S.BURIED, kr.cell_size,
               kr.grid_cols, kr.grid_rows, world.t_starts, world.t_items)


def coordinate(rng, extent, size):
    """Mostly uniform, sometimes exactly on an edge, the middle or a repeated value."""
    v = rng.uniform(0.0, extent, size)
    pick = rng.random(size)
    v[pick < 0.08] = 0.0
    v[(pick >= 0.08) & (pick < 0.16)] = extent
    v[(pick >= 0.16) & (pick < 0.22)] = extent / 2
    return v.astype(np.float32)


def randomize(world, rng, tick=None):
    """Fill every array snapshots read with random but well-formed content."""
    kr = world.kr
    P, T = world.pi.shape[1], world.ti.shape[1]
    world.pf[S.PX] = coordinate(rng, kr.world_width, P)
    world.pf[S.PY] = coordinate(rng, kr.world_height, P)
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
        tick = int(rng.choice([rng.integers(0, 60), rng.integers(0, 2**31 - 1)]))
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
    claim_tick = min(tick, int(np.iinfo(world.claim_ring.dtype).max))
    for back in range(min(head, S.CLAIM_RING)):  # newest first, ticks descending
        r = (head - 1 - back) % S.CLAIM_RING
        world.claim_ring[r] = (claim_tick, rng.integers(0, P), rng.integers(0, T),
                               rng.integers(1, 6))
        claim_tick = max(0, claim_tick - int(rng.integers(0, 12)))
    for board in (world.board, world.final_board):
        rows = int(rng.integers(0, board.shape[0] + 1))
        board[:] = -1
        board[rows:, S.LB_GEN] = 0
        board[rows:, S.LB_SCORE] = 0
        for r in range(rows):
            board[r] = (rng.integers(0, P), 1, rng.integers(0, 2**31 if big else 500))
    rebuild_grids(world)


def check_encode(proto):
    """encode() equals the reference, byte for byte; return the snapshots as bytes."""
    expected = reference_snapshots(proto)
    n = proto.encode()
    got = {}
    for data, addr in proto.snapshots():
        data = bytes(data)
        slot = int(proto.out_slot[len(got)])
        assert addr == proto.addresses[slot]
        got[slot] = data
    assert n == len(got) == len(expected)
    assert list(got) == sorted(got)  # one per connected session, in slot order
    limit = worst_snapshot_size(proto.caps.max_players, proto.caps.max_treasures)
    info = None
    for slot, data in got.items():
        sid, seq, doc = expected[slot]
        header = unpack_header(data)
        assert (header.protocol_id, header.version, header.type, header.flags) == (
            PROTOCOL_ID, VERSION, SNAPSHOT, 0)
        assert data[5:8] == b"\0\0\0"
        assert (header.session_id, header.sequence) == (sid, seq)
        payload = data[HEADER_SIZE:]
        assert msgpack.unpackb(payload) == doc, f"slot {slot}"
        assert payload == msgpack.packb(doc), f"slot {slot}: not msgpack's smallest form"
        assert len(data) <= limit <= MAX_DATAGRAM
        if info is None:
            from net.client import ServerInfo
            kr = proto.world.kr
            info = ServerInfo(0, sid, 20, 20, kr.world_width, kr.world_height, 1.0, 1.0, 1,
                              0, 5.0)
        assert isinstance(parse_snapshot(data, seq, info), Snapshot)
    return got


# ---- random worlds ----------------------------------------------------------------------

WORLDS = [
    # (max_players, sessions, treasures, width, height, cell, view, reveal, caps)
    (6, 4, 10, 512.0, 512.0, 64.0, 200.0, 100.0, (48, 16)),
    (40, 30, 60, 300.0, 200.0, 50.0, 120.0, 60.0, (8, 4)),
    (64, 64, 64, 256.0, 256.0, 32.0, 400.0, 400.0, (52, 16)),
    (20, 7, 200, 1000.0, 700.0, 128.0, 333.0, 97.5, (5, 3)),
    (300, 300, 300, 4096.0, 4096.0, 256.0, 1024.0, 512.0, (32, 32)),
    (12, 12, 5, 65536.0, 100.0, 4096.0, 30000.0, 20000.0, (1, 1)),
    (9, 9, 9, 1.5, 1.5, 0.25, 0.5, 0.3, (3, 3)),
]


@pytest.mark.parametrize("seed", range(40))
def test_random_worlds_match_the_reference(netkit, seed):
    rng = np.random.default_rng(seed)
    P, n, T, W, H, cell, view, reveal, (cp, ct) = WORLDS[seed % len(WORLDS)]
    limits = NetLimits(max_visible_players=cp, max_visible_treasures=ct,
                       leaderboard_every=float(rng.choice([0.05, 0.1, 0.35, 1.0])),
                       claim_event_window=float(rng.choice([0.05, 0.5, 2.0])),
                       hunt_result_window=float(rng.choice([0.05, 1.0, 5.0])))
    proto = build_server(netkit, n, limits, max_players=P, treasure_count=T,
                         world_width=W, world_height=H, cell_size=cell, view_radius=view,
                         reveal_radius=reveal, leaderboard_size=int(rng.integers(1, 17)),
                         hunt_duration=float(rng.choice([1.0, 30.0, 300.0])))
    for _ in range(3):  # several ticks of one world: sequences count up per session
        randomize(proto.world, rng)
        if rng.random() < 0.3:  # some players without a session, some sessions without
            proto.world.pi[S.P_ALIVE, rng.integers(0, P, 3)] = 0  # a living player
            rebuild_grids(proto.world)
        check_encode(proto)


def test_snapshots_after_real_ticks_match_the_reference(netkit):
    """The same, on a world the simulation really ran (claims, respawns, hunt ends)."""
    proto = build_server(netkit, 6, None, max_players=8, treasure_count=20,
                         world_width=200.0, world_height=200.0, cell_size=50.0,
                         dig_time=0.1, hunt_duration=2.0, respawn_delay=0.2)
    rng = np.random.default_rng(5)
    pi = proto.world.pi
    seen = set()
    for _ in range(120):
        pi[S.P_MOVE_X, :6] = rng.integers(-127, 128, 6)
        pi[S.P_MOVE_Y, :6] = rng.integers(-127, 128, 6)
        pi[S.P_DIG, :6] = 1
        pi[S.P_INPUT_SEQ, :6] += 1
        proto.world.step()
        for doc in (msgpack.unpackb(d[HEADER_SIZE:]) for d in check_encode(proto).values()):
            seen |= set(doc)
    assert {"ev", "lb", "hr"} <= seen  # claims, boards and a hunt's end all came up


# ---- presence rules ---------------------------------------------------------------------

def test_leaderboard_is_staggered_by_slot(netkit):
    limits = NetLimits(leaderboard_every=0.25)  # 5 ticks at 20 Hz
    proto = build_server(netkit, 4, limits)
    rng = np.random.default_rng(1)
    for tick in range(10, 20):
        randomize(proto.world, rng, tick=tick)
        docs = {s: msgpack.unpackb(d[HEADER_SIZE:]) for s, d in check_encode(proto).items()}
        for s, doc in docs.items():
            assert ("lb" in doc) == ((tick + s) % 5 == 0)


def test_claims_and_hunt_result_appear_only_inside_their_windows(netkit):
    limits = NetLimits(claim_event_window=0.5, hunt_result_window=1.0)  # 10 and 20 ticks
    proto = build_server(netkit, 1, limits)
    w = proto.world
    rng = np.random.default_rng(2)
    randomize(w, rng, tick=100)
    w.clock[S.CLAIM_HEAD] = 1
    w.claim_ring[0] = (95, 0, 3, 2)
    w.clock[S.LAST_HUNT_END] = 90
    w.clock[S.HUNT_ID] = 4
    for tick, has_ev, has_hr in ((100, True, True), (104, True, True), (105, False, True),
                                 (109, False, True), (110, False, False)):
        w.clock[S.TICK] = tick + 1
        (data,) = check_encode(proto).values()
        doc = msgpack.unpackb(data[HEADER_SIZE:])
        assert ("ev" in doc, "hr" in doc) == (has_ev, has_hr), tick
        if has_ev:
            assert doc["ev"] == [95, 0, 3, 2]
        if has_hr:
            assert doc["hr"][0] == 3


def test_hidden_entities_are_left_out(netkit):
    proto = build_server(netkit, 3, None, view_radius=100.0, reveal_radius=50.0)
    w = proto.world
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
    docs = {s: msgpack.unpackb(d[HEADER_SIZE:]) for s, d in check_encode(proto).items()}
    assert docs[0]["p"][0::3] == [1]  # slot 2 is 100.5 away: out of view
    assert docs[0]["tr"][0::4] == [0, 1]  # the boundary is inside; claimed ones never show
    assert docs[2]["p"][0::3] == [1]


# ---- adversarial: crowds, edges, caps, widest values ------------------------------------

def test_everyone_on_one_point(netkit):
    limits = NetLimits(max_visible_players=48, max_visible_treasures=16)
    proto = build_server(netkit, 200, limits, max_players=200, treasure_count=100)
    w = proto.world
    randomize(w, np.random.default_rng(4), tick=3)
    w.pf[S.PX] = 77.25
    w.pf[S.PY] = 300.5
    w.tf[S.TX] = 77.25
    w.tf[S.TY] = 300.5
    w.ti[S.T_STATE] = S.BURIED
    rebuild_grids(w)
    got = check_encode(proto)
    for s, data in got.items():
        doc = msgpack.unpackb(data[HEADER_SIZE:])
        expect = [j for j in range(200) if j != s][:48]  # all tie: the lowest slots
        assert doc["p"][0::3] == expect
        assert doc["tr"][0::4] == list(range(16))


@pytest.mark.parametrize("players,treasures", [(52, 16), (32, 32), (70, 1), (1, 32)])
def test_edges_corners_and_full_caps_stay_under_the_bound(netkit, players, treasures):
    limits = NetLimits(max_visible_players=players, max_visible_treasures=treasures,
                       leaderboard_every=0.05)
    W = H = 1000.0
    proto = build_server(netkit, 300, limits, max_players=300, treasure_count=300,
                         world_width=W, world_height=H, cell_size=100.0, view_radius=2000.0,
                         reveal_radius=2000.0, leaderboard_size=16, hunt_duration=1e5)
    w = proto.world
    rng = np.random.default_rng(players)
    randomize(w, rng, tick=2**31 - 2)
    spots = [(0.0, 0.0), (W, 0.0), (0.0, H), (W, H), (W / 2, 0.0), (0.0, H / 2), (W, H / 2),
             (W / 2, H), (np.nextafter(np.float32(W), np.float32(0)), H)]
    for j in range(300):
        w.pf[S.PX, j], w.pf[S.PY, j] = spots[j % len(spots)]
        w.tf[S.TX, j], w.tf[S.TY, j] = spots[(j * 7) % len(spots)]
    w.ti[S.T_STATE] = S.BURIED
    w.ti[S.T_VALUE] = 100
    w.pi[S.P_SCORE] = 2**31 - 1
    w.pi[S.P_INPUT_SEQ] = 2**31 - 1
    w.pi[S.P_HEAT] = 255
    w.pi[S.P_DIG_TICKS] = w.kr.dig_ticks
    w.clock[S.HUNT_ID] = 2**31
    w.clock[S.HUNT_START] = 2**31 - 2
    w.clock[S.LAST_HUNT_END] = 2**31 - 3
    w.clock[S.CLAIM_HEAD] = 1000
    for r in range(S.CLAIM_RING):
        w.claim_ring[r] = (2**31 - 2, 299 - r, 299 - r, 100)
    for board in (w.board, w.final_board):
        board[:, S.LB_SLOT] = np.arange(284, 300)
        board[:, S.LB_SCORE] = 2**31 - 1
    rebuild_grids(w)
    got = check_encode(proto)
    assert len(got) == 300
    biggest = max(len(d) for d in got.values())
    docs = [msgpack.unpackb(d[HEADER_SIZE:]) for d in got.values()]
    assert all(len(doc["p"]) == 3 * players and len(doc["tr"]) == 4 * treasures
               for doc in docs)
    assert all({"ev", "lb", "hr"} <= set(doc) for doc in docs)
    assert biggest <= worst_snapshot_size(players, treasures)


def widest_world(netkit, players, treasures, tick=2**31 - 2, hunt_duration=300.0):
    """Every value at its widest: slots and treasure ids >= 256, uint16 positions, 32-bit
    ticks, scores and acks, 16 claims, full boards. Sessions 256..399 see full caps."""
    limits = NetLimits(max_visible_players=players, max_visible_treasures=treasures,
                       leaderboard_every=0.05)
    proto = build_server(netkit, 400, limits, max_players=400, treasure_count=400,
                         world_width=1000.0, world_height=1000.0, cell_size=100.0,
                         view_radius=50.0, reveal_radius=50.0, leaderboard_size=16,
                         hunt_duration=hunt_duration)
    w = proto.world
    rng = np.random.default_rng(players)
    randomize(w, rng, tick=tick)
    w.pf[S.PX] = 990.0  # slots below 256 far away
    w.pf[S.PY] = 990.0
    w.pf[S.PX, 256:] = rng.uniform(480.0, 520.0, 144).astype(np.float32)
    w.pf[S.PY, 256:] = rng.uniform(480.0, 520.0, 144).astype(np.float32)
    w.tf[S.TX] = w.pf[S.PX]
    w.tf[S.TY] = w.pf[S.PY]
    w.ti[S.T_STATE] = S.BURIED
    w.ti[S.T_STATE, :256] = S.CLAIMED
    w.ti[S.T_VALUE] = 100
    w.pi[S.P_SCORE] = 2**31 - 1
    w.pi[S.P_INPUT_SEQ] = 2**31 - 1
    w.pi[S.P_HEAT] = 255
    w.pi[S.P_DIG_TICKS] = w.kr.dig_ticks
    w.clock[S.HUNT_ID] = min(tick, 2**31)
    w.clock[S.HUNT_START] = tick
    w.clock[S.LAST_HUNT_END] = tick - 1
    w.clock[S.CLAIM_HEAD] = 1000
    for r in range(S.CLAIM_RING):
        w.claim_ring[r] = (min(tick, int(np.iinfo(w.claim_ring.dtype).max)), 399 - r,
                           399 - r, 100)
    for board in (w.board, w.final_board):
        board[:, S.LB_SLOT] = np.arange(384, 400)
        board[:, S.LB_SCORE] = 2**31 - 1
    rebuild_grids(w)
    return proto


@pytest.mark.parametrize("players,treasures", [(52, 16), (32, 32), (70, 1)])
def test_widest_snapshot_comes_close_to_the_bound(netkit, players, treasures):
    proto = widest_world(netkit, players, treasures)
    got = check_encode(proto)
    widest = max(len(d) for s, d in got.items() if s >= 256)
    bound = worst_snapshot_size(players, treasures)
    # the bound counts one spare byte per treasure (its value is a fixint here)
    assert bound - treasures - 8 <= widest <= bound <= MAX_DATAGRAM


# Regression: the claim ring was int32, so from tick 2**31 on every claim looked out of its
# window and 'ev' never appeared again.
def test_claims_still_show_after_tick_2_to_the_31(netkit):
    proto = build_server(netkit, 1, None, dig_time=0.1, treasure_count=1)
    w = proto.world
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
    proto.encode()
    (data, _), = list(proto.snapshots())
    doc = msgpack.unpackb(bytes(data)[HEADER_SIZE:])
    assert doc["ev"][0] == w.tick - 1


def test_players_without_a_session_and_sessions_without_a_player(netkit):
    proto = build_server(netkit, 3, None, max_players=6)
    w = proto.world
    randomize(w, np.random.default_rng(11), tick=40)
    w.pi[S.P_ALIVE] = (1, 0, 1, 1, 1, 0)  # slot 1 has a session but no living player
    w.pf[S.PX] = 10.0
    w.pf[S.PY] = 10.0
    rebuild_grids(w)
    got = check_encode(proto)
    assert sorted(got) == [0, 2]
    doc = msgpack.unpackb(got[0][HEADER_SIZE:])
    assert doc["p"][0::3] == [2, 3, 4]  # slots 3 and 4 are alive without sessions


def test_sequence_counts_up_per_session_and_restarts_for_a_new_one(netkit):
    proto = build_server(netkit, 2, None)
    w = proto.world
    for n in range(1, 4):
        w.step()
        proto.encode()
        assert [unpack_header(bytes(d)).sequence for d, _ in proto.snapshots()] == [n, n]
    proto.kick(0)
    proto.receive_datagram(ClientProtocol(salt=777).connect(0.0), ("10.7.7.7", 7), 0)
    w.step()
    proto.encode()
    assert [unpack_header(bytes(d)).sequence for d, _ in proto.snapshots()] == [1, 4]
    assert int(proto.sessions[S_TX_SEQ, 1]) == 4


def test_snapshot_bound_holds_past_tick_2_to_the_32(netkit):
    # ticks go on the wire mod 2**32, so the u32 size bound holds forever
    proto = widest_world(netkit, 52, 16, tick=2**32 + 5)
    assert proto.encode() == 400  # every connected session gets its snapshot
    assert max(len(d) for d, _ in proto.snapshots()) <= worst_snapshot_size(52, 16)
