"""docs/PROTOCOL.md's test vectors are the code's bytes, and they round-trip.

The vectors are built by tests/protocol_vectors.py through the real client and server. Here:
each one appears verbatim in the document (and the generated section is current), each
client-made packet is accepted by the server with no drop, each server-made packet is
accepted by the reference client, each SNAPSHOT payload decodes with the standard msgpack
library to the structure of PROTOCOL.md section 7, and the delta vector, applied to the
baseline vector by the algorithm of section 7.6 (written again here), gives the lists the
reference client holds.
"""

from __future__ import annotations

import math
import random
import re

import msgpack
import pytest

from net import drops as D
from net.client import ClientProtocol, Connected, Denied, Disconnected, Snapshot, parse_snapshot
from net.events import PlayerJoined, PlayerLeft
from net.limits import NetLimits, worst_snapshot_size
from net.server import ServerProtocol
from sim import schema as S
from sim.heat import heat_level
from sim.world import new_world
from tests import protocol_vectors as PV

CLIENT_MADE = ("connect_request", "input_1", "input_3", "keepalive", "disconnect_client")
SNAPSHOTS = ("snapshot_minimal", "snapshot_full", "snapshot_baseline", "snapshot_delta")
SERVER_MADE = ("connect_accept", "connect_deny_full", "connect_deny_version",
               "connect_deny_shutdown", "disconnect_server") + SNAPSHOTS
SIZES = {"connect_request": 256, "connect_accept": 60, "connect_deny_full": 25,
         "connect_deny_version": 25, "connect_deny_shutdown": 25, "input_1": 29,
         "input_3": 45, "keepalive": 16, "disconnect_client": 17, "disconnect_server": 17}
TYPES = {"connect_request": 1, "connect_accept": 2, "connect_deny_full": 3,
         "connect_deny_version": 3, "connect_deny_shutdown": 3, "input_1": 4, "input_3": 4,
         "snapshot_minimal": 5, "snapshot_full": 5, "snapshot_baseline": 5,
         "snapshot_delta": 5, "keepalive": 6, "disconnect_client": 7, "disconnect_server": 7}


@pytest.fixture(scope="module")
def gen() -> PV.Generated:
    return PV.generate()


@pytest.fixture(scope="module")
def doc() -> str:
    return PV.DOC.read_text(encoding="utf-8")


def q(v: float) -> int:
    """PROTOCOL.md 7.3 for the vectors' 1024-unit world."""
    return min(65535, max(0, math.floor(v * 65536 / 1024.0)))


def le(data: bytes, at: int, size: int) -> int:
    return int.from_bytes(data[at:at + size], "little")


# ---- the document carries the code's bytes ------------------------------------------------

def test_every_packet_type_and_case_has_a_vector(gen):
    assert set(gen.by_key) == set(CLIENT_MADE) | set(SERVER_MADE)
    assert {v.data[3] for v in gen.vectors} == set(range(1, 8))


def test_generation_is_deterministic(gen):
    again = PV.generate()
    assert [(v.key, v.hex) for v in again.vectors] == [(v.key, v.hex) for v in gen.vectors]


@pytest.mark.parametrize("key", CLIENT_MADE + SERVER_MADE)
def test_vector_appears_verbatim_in_the_document(gen, doc, key):
    hexstr = gen.by_key[key].hex
    assert hexstr == hexstr.lower()
    assert f"```hex\n{hexstr}\n```" in doc, (
        f"{key} is not in docs/PROTOCOL.md: run `python -m tests.protocol_vectors --write`")


def test_generated_section_is_current(gen, doc):
    assert doc.count(PV.BEGIN) == 1 and doc.count(PV.END) == 1
    assert PV.splice(doc, PV.render(gen)) == doc, (
        "docs/PROTOCOL.md section 14 is stale: run `python -m tests.protocol_vectors --write`")


def test_main_prints_the_section(gen, capsys):
    assert PV.main(["protocol_vectors"]) == 0
    assert capsys.readouterr().out == PV.render(gen) + "\n"


def test_drop_reasons_table_matches_the_code(doc):
    for index, name in enumerate(D.REASONS):
        assert re.search(rf"^\| {index} \| `{name}` \|", doc, re.M), name


def test_documented_snapshot_bound_matches_the_code(doc):
    limits = NetLimits()
    assert (limits.max_visible_players, limits.max_visible_treasures) == (32, 16)
    bound = worst_snapshot_size(limits.max_visible_players, limits.max_visible_treasures)
    assert f"bound(32, 16) = {bound} bytes" in doc
    assert "bound(P, T) = 450 + 17 * P + 11 * T" in doc
    for p, t in ((0, 0), (1, 0), (0, 1), (32, 16), (33, 16), (120, 32)):
        assert worst_snapshot_size(p, t) == 450 + 17 * p + 11 * t


def test_documented_defaults_match_the_code(doc):
    limits = NetLimits()
    assert "| max visible players / treasures | 32 / 16 |" in doc
    assert f"| snapshot ring | {limits.snapshot_ring} snapshots |" in doc
    assert f"| area-of-interest hysteresis | {limits.aoi_hysteresis:g} |" in doc
    assert f"| delta tolerance | {limits.delta_tolerance:g} units |" in doc
    from net.client import HELD_SNAPSHOTS
    assert f"hold the last {HELD_SNAPSHOTS} snapshots" in doc


# ---- layout: the documented offsets read back the scenario's inputs ------------------------

@pytest.mark.parametrize("key", CLIENT_MADE + SERVER_MADE)
def test_header(gen, key):
    data = gen.by_key[key].data
    assert data[0:2] == b"\x58\x4d" and data[2] == 2 and data[3] == TYPES[key]
    assert data[4:8] == bytes(4)
    assert len(data) == SIZES.get(key, len(data)) and len(data) <= 1200
    if key in ("connect_request", "connect_deny_full", "connect_deny_version",
               "connect_deny_shutdown"):
        assert le(data, 8, 4) == 0
    if key.startswith("connect"):
        assert le(data, 12, 4) == 0


def test_connect_request_layout(gen):
    data = gen.by_key["connect_request"].data
    assert le(data, 16, 8) == PV.ALICE.salt
    assert data[24] == len(PV.ALICE.name)
    assert data[25:25 + data[24]] == PV.ALICE.name.encode()
    assert data[25 + data[24]:] == bytes(256 - 25 - data[24])


def test_connect_accept_layout(gen):
    data = gen.by_key["connect_accept"].data
    sid = le(data, 8, 4)
    assert sid & 0xFFFF == 0 and 1 <= sid >> 16 <= 65535
    assert sid >> 16 == random.Random(PV.NONCE_SEED).randrange(1, 65536)
    assert le(data, 16, 8) == PV.ALICE.salt
    assert le(data, 24, 2) == 0 and le(data, 26, 2) == 20 and le(data, 28, 2) == 20
    assert le(data, 30, 2) == 0
    assert data[32:48] == bytes.fromhex("00008044" "00008044" "0000c041" "0000c042")  # f32
    assert le(data, 48, 4) == 5 and le(data, 52, 4) == 0 and le(data, 56, 4) == 5000


@pytest.mark.parametrize("key, peer, reason", [("connect_deny_full", PV.ERIN, 1),
                                               ("connect_deny_version", PV.FRANK, 2),
                                               ("connect_deny_shutdown", PV.ERIN, 3)])
def test_connect_deny_layout(gen, key, peer, reason):
    data = gen.by_key[key].data
    assert le(data, 16, 8) == peer.salt and data[24] == reason


def test_input_layout(gen):
    sid = le(gen.by_key["connect_accept"].data, 8, 4)
    one = gen.by_key["input_1"].data
    assert le(one, 8, 4) == sid and le(one, 12, 4) == 1
    assert le(one, 16, 4) == 0 and one[20] == 1
    assert (le(one, 21, 4), one[25], one[26], one[27], one[28]) == (1, 13, 0xF9, 1, 0)
    three = gen.by_key["input_3"].data
    assert le(three, 12, 4) == 4 and le(three, 16, 4) == 43 and three[20] == 3
    ticks = sorted(PV.ALICE_INPUTS)
    for k in range(3):  # newest first
        at = 21 + 8 * k
        mx, my, dig = PV.ALICE_INPUTS[ticks[2 - k]]
        assert le(three, at, 4) == 3 - k
        assert int.from_bytes(three[at + 4:at + 5], "little", signed=True) == mx
        assert int.from_bytes(three[at + 5:at + 6], "little", signed=True) == my
        assert three[at + 6] == (1 if dig else 0) and three[at + 7] == 0


def test_keepalive_and_disconnect_layout(gen):
    sid = le(gen.by_key["connect_accept"].data, 8, 4)
    keepalive = gen.by_key["keepalive"].data
    assert le(keepalive, 8, 4) == sid and le(keepalive, 12, 4) == 3
    quit_ = gen.by_key["disconnect_client"].data
    assert le(quit_, 8, 4) == sid and le(quit_, 12, 4) == 7 and quit_[16] == 1
    bye = gen.by_key["disconnect_server"].data
    assert le(bye, 12, 4) == 3 and bye[16] == 2


# ---- round trips ---------------------------------------------------------------------------

@pytest.mark.parametrize("key", CLIENT_MADE)
def test_client_packets_are_accepted_by_the_server(gen, key):
    v = gen.by_key[key]
    assert v.outcome is not None
    assert v.outcome.drops == {}
    assert v.outcome.accepted == {TYPES[key]: 1}


def test_connect_request_on_a_fresh_server_gives_the_accept_vector(gen):
    world = new_world(PV.RULES, PV.TICK_RATE)
    server = ServerProtocol(world, PV.LIMITS, PV.TICK_RATE, random.Random(PV.NONCE_SEED))
    events = server.receive_datagram(gen.by_key["connect_request"].data, PV.ALICE.address, 0)
    assert D.drops_by_reason(server.drops) == {}
    assert [type(e) for e in events] == [PlayerJoined]
    assert server.datagrams_to_send() == [(gen.by_key["connect_accept"].data, PV.ALICE.address)]


def test_wrong_version_request_is_the_only_answered_drop(gen):
    world = new_world(PV.RULES, PV.TICK_RATE)
    server = ServerProtocol(world, PV.LIMITS, PV.TICK_RATE, random.Random(PV.NONCE_SEED))
    request = bytearray(ClientProtocol(name=PV.FRANK.name, salt=PV.FRANK.salt).connect(0.0))
    request[2] = 1  # an old version 1 client
    server.receive_datagram(bytes(request), PV.FRANK.address, 0)
    assert D.drops_by_reason(server.drops) == {"bad_version": 1}
    assert server.datagrams_to_send() == [(gen.by_key["connect_deny_version"].data,
                                           PV.FRANK.address)]
    server.receive_datagram(bytes(request[:255]), PV.FRANK.address, 0)  # not 256 bytes
    assert server.datagrams_to_send() == []


def test_client_disconnect_ends_the_session(gen):
    events = gen.by_key["disconnect_client"].outcome.events
    assert events == [PlayerLeft(0, PV.ALICE.name, "quit")]


@pytest.mark.parametrize("key", SERVER_MADE)
def test_server_packets_are_accepted_by_the_reference_client(gen, key):
    v = gen.by_key[key]
    assert v.outcome is not None and v.outcome.drops == {}
    (event,) = v.outcome.events
    expected = {"connect_accept": Connected, "connect_deny_full": Denied,
                "connect_deny_version": Denied, "connect_deny_shutdown": Denied,
                "disconnect_server": Disconnected, "snapshot_minimal": Snapshot,
                "snapshot_full": Snapshot, "snapshot_baseline": Snapshot,
                "snapshot_delta": Snapshot}[key]
    assert isinstance(event, expected)


def test_accept_parses_in_a_fresh_client(gen):
    data = gen.by_key["connect_accept"].data
    client = ClientProtocol(name=PV.ALICE.name, salt=PV.ALICE.salt)
    client.connect(0.0)
    (event,) = client.receive(data, 0.0)
    info = event.info
    assert (info.slot, info.session_id, info.tick_rate, info.snapshot_rate) == (
        0, le(data, 8, 4), 20, 20)
    assert (info.world_width, info.world_height, info.dig_radius, info.reveal_radius) == (
        1024.0, 1024.0, 24.0, 96.0)
    assert (info.dig_ticks, info.server_tick, info.session_timeout) == (5, 0, 5.0)
    assert info == gen.infos[PV.ALICE.name]


@pytest.mark.parametrize("key, peer, reason", [("connect_deny_full", PV.ERIN, 1),
                                               ("connect_deny_version", PV.FRANK, 2),
                                               ("connect_deny_shutdown", PV.ERIN, 3)])
def test_deny_parses_in_a_fresh_client(gen, key, peer, reason):
    client = ClientProtocol(name=peer.name, salt=peer.salt)
    client.connect(0.0)
    assert client.receive(gen.by_key[key].data, 0.0) == [Denied(reason)]
    assert client.state == "denied"


def test_server_disconnect_closes_the_client(gen):
    assert gen.by_key["disconnect_server"].outcome.events == [Disconnected("server", 2)]


# ---- SNAPSHOT payloads ---------------------------------------------------------------------

def payload(gen, key) -> dict:
    return msgpack.unpackb(gen.by_key[key].data[16:], raw=False)


FULL_ORDER = ["t", "a", "h", "me", "p", "tr", "ev", "lb", "hr"]
DELTA_ORDER = ["t", "a", "b", "h", "me", "pm", "pv", "pr", "pn", "tx", "tn", "ev", "lb", "hr"]
GROUPS = {"h": 2, "me": 6, "p": 5, "tr": 4, "ev": 4, "lb": 2, "pm": 3, "pv": 5, "pr": 1,
          "pn": 5, "tx": 1, "tn": 4}
SIGNED = {"p": (3, 4), "pm": (1, 2), "pv": (1, 2, 3, 4), "pn": (3, 4)}  # positions in a row


@pytest.mark.parametrize("key", SNAPSHOTS)
def test_snapshot_payload_is_plain_msgpack(gen, key):
    data = gen.by_key[key].data
    m = payload(gen, key)
    assert msgpack.packb(m) == data[16:]  # smallest forms, documented key order
    order = DELTA_ORDER if "b" in m else FULL_ORDER
    assert list(m) == [k for k in order if k in m]
    always = order[:5] if "b" in m else order[:6]  # t, a, (b,) h, me, (p, tr)
    assert list(m)[:len(always)] == always
    assert not ("lb" in m and "hr" in m)
    for k, value in m.items():
        items = value if isinstance(value, list) else [value]
        assert all(type(x) is int for x in items)
        g = GROUPS.get(k, 1)
        if k != "hr":
            assert len(items) % g == 0
        for i, x in enumerate(items):
            assert x >= 0 or i % g in SIGNED.get(k, ()), (k, i, x)
    assert len(m["h"]) == 2 and len(m["me"]) == 6
    if "hr" in m:
        assert len(m["hr"]) % 2 == 1
    assert len(PV.msgpack_listing(data[16:])) > 0  # the listing reads every byte


def test_minimal_snapshot_structure(gen):
    data = gen.by_key["snapshot_minimal"].data
    assert le(data, 12, 4) == 2
    m = payload(gen, "snapshot_minimal")
    world = gen.worlds["solo"]
    hunt_ticks = world.kr.hunt_ticks
    assert m == {"t": 1, "a": 0, "h": [0, hunt_ticks - 2],
                 "me": [0, q(PV.DAVE_AT[0]), q(PV.DAVE_AT[1]), 0, 0, m["me"][5]],
                 "p": [], "tr": []}
    nearest = min(math.dist(PV.DAVE_AT, PV.far_spot(t)) for t in range(8))
    assert m["me"][5] == heat_level(nearest ** 2, world.kr.heat_radius) > 0
    snap = parse_snapshot(data, 2, gen.infos[PV.DAVE.name])
    assert snap is not None and snap.leaderboard is None and snap.hunt_result is None
    assert (snap.x, snap.y) == PV.DAVE_AT


def test_full_snapshot_structure(gen):
    data = gen.by_key["snapshot_full"].data
    assert le(data, 12, 4) == PV.LAST_TICK + 1
    m = payload(gen, "snapshot_full")
    world = gen.worlds["hunt"]
    value = world.ti[S.T_VALUE]
    v1, v2, v3 = int(value[1]), int(value[2]), int(value[3])
    first_hunt_score = m["hr"][2]
    assert 1 <= first_hunt_score <= 5
    dig = 3 * 255 // 5  # 3 of 5 ticks into treasure 2 (PROTOCOL.md 12.6)
    heat = 1 + math.floor(255 * (768 - 8) / 768)  # treasure 2 is 8 units away (12.7)
    assert m == {
        "t": 60, "a": 5, "h": [1, 40 - (61 - 40)],
        "me": [0, q(512), q(512), v1, dig, heat],
        # carol 212 units away, then bob 28 units away walking west at 200 units/s:
        # grid order (carol's cell row 2 comes before bob's row 4), not distance order
        "p": [2, q(512), q(300), 0, 0, 1, q(540), q(512), -640, 0],
        "tr": [2, q(520), q(512), v2, 3, q(512), q(560), v3],  # 8 and 48 units away
        "ev": [48, 0, 1, v1],  # only the claim of tick 48 is in the 40-tick window
        "hr": [0, 0, first_hunt_score, 1, 0, 2, 0],  # and no "lb" beside it
    }
    assert -640 == math.floor(-200.0 * 65536 / 1024 / 20 + 0.5)  # PROTOCOL.md 7.3
    assert heat == heat_level(64.0, world.kr.heat_radius)
    snap = parse_snapshot(data, PV.LAST_TICK + 1, gen.infos[PV.ALICE.name])
    assert snap is not None and snap.baseline is None
    assert (snap.tick, snap.ack, snap.hunt_id, snap.ticks_left) == (60, 5, 1, 19)
    assert (snap.x, snap.y, snap.score, snap.dig_progress, snap.heat) == (512.0, 512.0, v1,
                                                                        dig, heat)
    assert snap.players == [(2, 512.0, 300.0, 0.0, 0.0), (1, 540.0, 512.0, -200.0, 0.0)]
    assert snap.treasures == [(2, 520.0, 512.0, v2), (3, 512.0, 560.0, v3)]
    assert snap.claims == [(48, 0, 1, v1)]
    assert snap.leaderboard is None
    assert snap.hunt_result == (0, [(0, first_hunt_score), (1, 0), (2, 0)])
    # alice's input 5 acked tick 49, which had left the 8-snapshot ring: a full snapshot
    assert le(gen.by_key["input_3"].data, 16, 4) == 43


def test_baseline_snapshot_structure(gen):
    data = gen.by_key["snapshot_baseline"].data
    assert le(data, 12, 4) == PV.GINA_ACKS
    m = payload(gen, "snapshot_baseline")
    value = gen.worlds["delta"].ti[S.T_VALUE]
    assert m == {
        "t": 2, "a": 0, "h": [0, 37], "me": [0, q(512), q(512), 0, 0, m["me"][5]],
        # grid order: jack's and liam's cell (row 3), then henry's, ivy's and mia's cells
        # of row 4; mia clamped at the edge, her velocity kept
        "p": [3, q(512), q(448), 0, 0, 5, q(542), q(400), 640, 0, 1, q(448), q(542), 0, 640,
              2, q(606), q(512), 640, 0, 6, 65535, q(512), 640, 0],
        "tr": [0, q(512), q(560), int(value[0]), 1, q(540), q(512), int(value[1])],
        "lb": [0, 0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0],
    }


def rebuild_by_the_document(base_doc: dict, doc: dict) -> tuple[list, list]:
    """PROTOCOL.md 7.6, written again from the text: the lists after a delta."""
    p, tr = base_doc["p"], base_doc["tr"]
    players = [p[i:i + 5] for i in range(0, len(p), 5)]
    treasures = [tr[i:i + 4] for i in range(0, len(tr), 4)]
    dt = (doc["t"] - doc["b"]) % 2**32
    rows = [[j, min(65535, max(0, qx + vx * dt)), min(65535, max(0, qy + vy * dt)), vx, vy]
            for j, qx, qy, vx, vy in players]
    pm, pv = doc.get("pm", []), doc.get("pv", [])
    for i in range(0, len(pm), 3):
        rows[pm[i]][1] += pm[i + 1]
        rows[pm[i]][2] += pm[i + 2]
    for i in range(0, len(pv), 5):
        rows[pv[i]][1] += pv[i + 1]
        rows[pv[i]][2] += pv[i + 2]
        rows[pv[i]][3:5] = pv[i + 3:i + 5]
    gone = set(doc.get("pr", []))
    rows = [r for i, r in enumerate(rows) if i not in gone]
    pn = doc.get("pn", [])
    rows += [pn[i:i + 5] for i in range(0, len(pn), 5)]
    t_gone = set(doc.get("tx", []))
    kept = [t for i, t in enumerate(treasures) if i not in t_gone]
    tn = doc.get("tn", [])
    return rows, kept + [tn[i:i + 4] for i in range(0, len(tn), 4)]


def test_delta_snapshot_structure(gen):
    data = gen.by_key["snapshot_delta"].data
    assert le(data, 12, 4) == PV.DELTA_TICK + 1
    m = payload(gen, "snapshot_delta")
    value = gen.worlds["delta"].ti[S.T_VALUE]
    assert m == {
        "t": 6, "a": 1, "b": 2, "h": [0, 33], "me": [0, q(512), q(512), 0, 0, m["me"][5]],
        "pm": [2, 192, 0],  # henry: predicted (448, 582), he is at (451, 582)
        "pv": [3, -1920, -1920, 0, -640],  # ivy: predicted (646, 512), she is at (616, 482)
        "pr": [0],  # jack
        "pn": [4, q(512), q(600), 0, 0],  # kate
        "tx": [1],  # treasure 1
        "tn": [2, q(480), q(512), int(value[2])],
        "lb": [0, 0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0],
    }  # no entry for liam (index 1) and mia (4): extrapolated, mia clamped at 65535
    players, treasures = rebuild_by_the_document(payload(gen, "snapshot_baseline"), m)
    held = gen.held[PV.GINA.name][PV.DELTA_TICK]
    assert [list(p) for p in held.players] == players == [
        [5, q(582), q(400), 640, 0], [1, q(451), q(582), 0, 640], [2, q(616), q(482), 0, -640],
        [6, 65535, q(512), 640, 0], [4, q(512), q(600), 0, 0]]
    assert [list(t) for t in held.treasures] == treasures
    snap = gen.by_key["snapshot_delta"].outcome.events[0]
    assert snap.baseline == 2 and snap.players[1] == (1, 451.0, 582.0, 0.0, 200.0)
    # a client that does not hold tick 2 cannot use it
    from net.client import decode_snapshot
    assert decode_snapshot(data, 7, gen.infos[PV.GINA.name], {}) == (None, None, "no_baseline")
