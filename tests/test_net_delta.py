"""Delta snapshots end to end: what the reference client rebuilds is what the server's ring
says it holds, whatever the link loses, delays or reorders.

The property test runs a server (net.server.ServerProtocol over a world moved by hand,
checked byte for byte against tests/snapshot_reference.py on every tick) and one
net.client.ClientProtocol per session, over a link that loses and delays datagrams both
ways (a datagram overtaken by a newer one is dropped by the sequence check, as the protocol
says). Acks are those of the clients' INPUTs, or set by hand to any snapshot the client
really holds (stale ones included). For every snapshot a client accepts:

- the lists it rebuilds (ClientProtocol.held) equal the server's ring entry of that tick;
- each player's position is within the delta tolerance (quanta, per axis) of its true
  quantized position, and its velocity is the true quantized velocity;
- its set of players and of treasures is the set a full snapshot of that tick would carry
  (with the same hysteresis history): decoding a delta reproduces the full snapshot.

The rest checks decode_snapshot's reconstruction by hand (docs/PROTOCOL.md 7.6) and its
rejection of malformed deltas.
"""

from __future__ import annotations

import heapq

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from net import drops as D
from net.client import HELD_SNAPSHOTS, Held, ServerInfo, Snapshot, decode_snapshot
from net.limits import NetLimits
from net.wire import SNAPSHOT, pack_header
from sim import schema as S
from tests.snapshot_reference import Rig, predict, q, rebuild_grids, vq
from tests.test_net_snapshot import check_encode, evolve, randomize

PROPERTY = settings(max_examples=60, deadline=None, database=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


class Link:
    """A one-way link: each datagram is lost, or arrives after 0..3 ticks (in arrival
    order, so a delayed one may arrive after a newer one)."""

    def __init__(self, rnd, loss: float, delay: float) -> None:
        self.rnd, self.loss, self.delay = rnd, loss, delay
        self.queue: list = []
        self.sent = 0

    def send(self, now: int, item) -> None:
        self.sent += 1
        if self.rnd.random() < self.loss:
            return
        late = self.rnd.randint(1, 3) if self.rnd.random() < self.delay else 0
        heapq.heappush(self.queue, (now + late, self.sent, item))

    def arrived(self, now: int) -> list:
        out = []
        while self.queue and self.queue[0][0] <= now:
            out.append(heapq.heappop(self.queue)[2])
        return out


def truth(world) -> dict[int, tuple[int, int, int, int]]:
    """Every living player's quantized position and velocity now."""
    kr, pf = world.kr, world.pf
    return {j: (q(pf[S.PX, j], kr.world_width), q(pf[S.PY, j], kr.world_height),
                vq(pf[S.PVX, j], kr.world_width, kr.tick_rate),
                vq(pf[S.PVY, j], kr.world_height, kr.tick_rate))
            for j in np.flatnonzero(world.pi[S.P_ALIVE] == 1).tolist()}


@PROPERTY
@given(rnd=st.randoms(use_true_random=False),
       every=st.sampled_from([1, 1, 2, 3]), depth=st.integers(2, 8),
       hysteresis=st.sampled_from([0.0, 0.1, 0.5]), tolerance=st.sampled_from([0.0, 0.25, 3.0]),
       caps=st.sampled_from([(2, 1), (4, 3), (33, 16)]),
       loss=st.sampled_from([0.0, 0.2, 0.5]), delay=st.sampled_from([0.0, 0.2, 0.5]),
       acks=st.sampled_from(["input", "held"]), ticks=st.integers(8, 40),
       start=st.sampled_from([0, 1000, 2**32 - 17]))
def test_the_client_rebuilds_what_the_server_remembers(rnd, every, depth, hysteresis, tolerance,
                                                       caps, loss, delay, acks, ticks, start):
    limits = NetLimits(max_visible_players=caps[0], max_visible_treasures=caps[1],
                       snapshot_ring=depth, aoi_hysteresis=hysteresis,
                       delta_tolerance=tolerance)
    rig = Rig(6, limits, snapshot_every=every, max_players=8, treasure_count=12,
              world_width=400.0, world_height=300.0, cell_size=50.0, view_radius=120.0,
              reveal_radius=70.0)
    w, proto = rig.world, rig.proto
    nrng = np.random.default_rng(rnd.getrandbits(32))
    randomize(w, nrng, tick=start)
    w.pi[S.P_ALIVE, 6:] = 1  # two players without a session
    rebuild_grids(w)
    tol_x, tol_y = proto.caps.tolerance_x, proto.caps.tolerance_y
    down = {s: Link(rnd, loss, delay) for s in rig.clients}
    up = {s: Link(rnd, loss, delay) for s in rig.clients}
    sent = {}  # (slot, wire tick) -> (ring entry, full view, truth)
    accepted = deltas = 0
    for now in range(ticks):
        views = {s: rig.ref.full_view(w, s, rig.ref.rings[s].last if s in rig.ref.rings else None)
                 for s in rig.clients}
        true = truth(w)
        for s, (data, doc) in check_encode(rig).items():
            sent[(s, doc["t"])] = (rig.ref.rings[s].entries[-1], views[s], true)
            down[s].send(now, data)
        for s, client in rig.clients.items():
            for data in down[s].arrived(now):
                before = client.drops.copy()
                events = client.receive(data, now / 20.0)
                if not events:
                    assert D.drops_by_reason(client.drops - before) == {"stale_sequence": 1}
                    continue
                (snap,) = events
                assert isinstance(snap, Snapshot)
                accepted += 1
                deltas += snap.baseline is not None
                held = client.held[snap.tick]
                entry, (players, treasures), true_now = sent[(s, snap.tick)]
                assert (held.players, held.treasures) == (entry.players, entry.treasures)
                assert {p[0] for p in held.players} == {p[0] for p in players}
                assert set(held.treasures) == set(treasures)
                for j, qx, qy, vx, vy in held.players:
                    tx, ty, tvx, tvy = true_now[j]
                    assert abs(qx - tx) <= tol_x and abs(qy - ty) <= tol_y, (j, qx, qy, tx, ty)
                    assert (vx, vy) == (tvx, tvy)
                assert client.last_snapshot_tick == snap.tick
            # the acks of the next tick
            if acks == "input":
                if rnd.random() < 0.8:
                    up[s].send(now, client.input(0, 0, False, now / 20.0))
            elif client.held:
                rig.ack(s, rnd.choice(list(client.held)))
        for s in rig.clients:
            for data in up[s].arrived(now):
                proto.receive_datagram(data, rig.proto.addresses[s], now)
        evolve(w, nrng)
    for client in rig.clients.values():
        assert client.drops[D.NO_BASELINE] == 0 and client.drops[D.BAD_PAYLOAD] == 0
    if loss == 0.0 and delay == 0.0 and ticks >= 4 * every:
        assert deltas > 0
    assert accepted > 0 or loss > 0


# ---- reconstruction by hand (docs/PROTOCOL.md 7.6) ------------------------------------------

INFO = ServerInfo(slot=0, session_id=1, tick_rate=20, snapshot_rate=20, world_width=1024.0,
                  world_height=1024.0, dig_radius=24.0, reveal_radius=96.0, dig_ticks=5,
                  server_tick=0, session_timeout=5.0)
BASE = Held(100, players=((7, 1000, 2000, 10, -10), (3, 65530, 5, 4, -4), (9, 500, 500, 0, 0)),
            treasures=((1, 100, 200, 5), (4, 300, 400, 2)))


def delta(t=103, b=100, **keys) -> bytes:
    doc = {"t": t, "a": 0, "b": b, "h": [0, 10], "me": [0, 1, 2, 3, 4, 5]}
    doc.update(keys)
    return pack_header(SNAPSHOT, 1, 1) + msgpack.packb(doc)


def rebuild(data: bytes, held=None):
    return decode_snapshot(data, 1, INFO, {BASE.tick: BASE} if held is None else held)


def test_a_delta_with_every_key_rebuilds_as_documented():
    data = delta(pm=[0, 5, -5], pv=[1, -300, 20, 7, -7], pr=[2], pn=[11, 10, 20, 1, -1],
                 tx=[0], tn=[6, 7, 8, 3])
    snap, held, why = rebuild(data)
    assert why == "" and snap.baseline == 100
    # dt = 3: player 7 predicted (1030, 1970), corrected by (5, -5); player 3 predicted
    # (65535 clamped, 0 clamped), corrected by (-300, 20), new velocity; 9 removed; 11 new
    assert held.players == ((7, 1035, 1965, 10, -10), (3, 65235, 20, 7, -7),
                            (11, 10, 20, 1, -1))
    assert held.treasures == ((4, 300, 400, 2), (6, 7, 8, 3))
    assert held.tick == 103
    scale = 1024.0 / 65536
    assert snap.players[0] == (7, 1035 * scale, 1965 * scale, 10 * scale * 20, -10 * scale * 20)


def test_baseline_players_without_an_entry_are_extrapolated():
    snap, held, _ = rebuild(delta(t=110))
    assert held.players == ((7, 1100, 1900, 10, -10), (3, 65535, 0, 4, -4), (9, 500, 500, 0, 0))
    assert held.treasures == BASE.treasures
    for (j, qx, qy, vx, vy), (_, bx, by, bvx, bvy) in zip(held.players, BASE.players):
        assert (qx, qy) == (predict(bx, bvx, 10), predict(by, bvy, 10))


def test_dt_counts_ticks_mod_2_to_the_32():
    base = Held(2**32 - 2, BASE.players, BASE.treasures)
    _, held, why = rebuild(delta(t=1, b=2**32 - 2), {base.tick: base})
    assert why == "" and held.players[0][1:3] == (1030, 1970)  # dt = 3 across the wrap


def test_a_delta_against_a_snapshot_not_held_is_dropped_as_no_baseline():
    assert rebuild(delta(b=99)) == (None, None, "no_baseline")
    assert rebuild(delta(), held={}) == (None, None, "no_baseline")


@pytest.mark.parametrize("keys", [
    {"pr": [1, 0]}, {"pr": [1, 1]}, {"pr": [3]}, {"pr": [-1]}, {"tx": [2]}, {"tx": [1, 0]},
    {"pm": [3, 0, 0]}, {"pm": [0, 1]}, {"pm": [0, 0, 0], "pv": [0, 0, 0, 1, 1]},
    {"pm": [0, 0, 0, 0, 0, 0]}, {"pm": [0, -1031, 0]}, {"pm": [1, 1, 0]},
    {"pv": [2, 0, 65536, 0, 0]}, {"pn": [5, 65536, 0, 0, 0]}, {"pn": [-5, 0, 0, 0, 0]},
    {"pn": [5, 0, 0, 0]}, {"tn": [1, 2, 3]}, {"tn": [1, -2, 3, 4]}, {"pm": [0.5, 0, 0]},
    {"pm": "x"}, {"b": "100"}, {"tn": [1, 65536, 3, 4]}])
def test_malformed_deltas_are_bad_payloads(keys):
    doc = dict(keys)
    data = delta(**doc) if "b" not in doc else (
        pack_header(SNAPSHOT, 1, 1) + msgpack.packb({"t": 103, "a": 0, "h": [0, 1],
                                                   "me": [0, 1, 2, 3, 4, 5], **doc}))
    assert rebuild(data)[2] == "bad_payload"


def test_the_client_counts_no_baseline_and_keeps_acking_its_newest_snapshot():
    rig = Rig(1)
    w = rig.world
    client = rig.clients[0]
    w.step()
    proto = rig.proto
    proto.encode()
    (data, _), = proto.snapshots()
    (snap,) = client.receive(bytes(data), 0.0)
    assert client.last_snapshot_tick == snap.tick == 0
    w.step()
    proto.encode()  # never delivered
    w.step()
    proto.encode()
    (data, _), = proto.snapshots()
    assert client.receive(bytes(data), 0.1)  # full: ack 0 named no baseline
    t = client.last_snapshot_tick
    rig.ack(0, t)
    w.step()
    proto.encode()
    (data, _), = proto.snapshots()
    data = bytes(data)
    assert msgpack.unpackb(data[16:-8])["b"] == t
    client.held.clear()  # as if it had forgotten the baseline
    rx_seq = client._rx_seq
    assert client.receive(data, 0.2) == []
    assert D.drops_by_reason(client.drops) == {"no_baseline": 1}
    assert client.last_snapshot_tick == t and client._rx_seq == rx_seq  # not accepted
    assert client.input(0, 0, False, 0.2)[16:20] == t.to_bytes(4, "little")


def test_the_client_holds_the_last_64_snapshots():
    rig = Rig(1)
    client = rig.clients[0]
    for _ in range(HELD_SNAPSHOTS + 6):
        rig.world.step()
        rig.proto.encode()
        (data, _), = rig.proto.snapshots()
        client.receive(bytes(data), 0.0)
        rig.ack(0, client.last_snapshot_tick)
    assert list(client.held) == list(range(6, HELD_SNAPSHOTS + 6))
    assert client.last_snapshot_tick == HELD_SNAPSHOTS + 5
    assert all(h.tick == t for t, h in client.held.items())
