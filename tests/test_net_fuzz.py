"""Fuzzing every parser of the protocol: whatever arrives, the receiver returns normally.

The invariant (in the spirit of h11's): for any input, each parser returns a result or
counts exactly one drop; nothing raises, and no state grows beyond its fixed capacity.
Parsers: the server's receive path (ServerProtocol.receive_datagram / receive_batch: the
decode kernel, then the handshake in Python), the client's receive, decode_snapshot, the
connect token (ConnectToken.from_bytes / from_text, TokenOpener.open), the challenge
cookie (CookieJar.open), and the bot horde's snapshot reader (net/horde.py parse_snapshot
over net/msgpack_in.py). Inputs: arbitrary bytes, and mutations of valid packets, each
also re-tagged with the right key so the mutation reaches the checks behind the tag.

Longer, coverage-guided runs: profiling/fuzz_atheris.py (profiling/FUZZING.md).
"""

from __future__ import annotations

import copy
import functools
import random
import tracemalloc

import msgpack
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from net import horde as H
from net import msgpack_in as M
from net.address import ip_to_int
from net.batch import DatagramBatch
from net.client import (CLOSED, CONNECTED, ClientProtocol, Connected, Denied, Disconnected,
                        Held, Snapshot, decode_snapshot, parse_snapshot)
from net.cookie import Cookie, CookieJar
from net.events import PlayerJoined, PlayerLeft, PlayerMoved
from net.sessions import S_SNAPSHOT_ACK
from net.tag import sign, verify
from net.token import ConnectToken, PrivateToken, TokenError, TokenOpener
from net.wire import (CHALLENGE, CONNECT_ACCEPT, CONNECT_DENY, DISCONNECT, DISCONNECT_BODY,
                      HEADER_SIZE, INPUT, INPUT_PREFIX, INPUT_RECORD, KEEPALIVE, MAX_DATAGRAM,
                      SNAPSHOT, TAG_SIZE, pack_header)
from sim import schema as S

try:  # tests/ is a package here; fall back to the rootdir-on-sys.path layout
    from tests.conftest import NetKit
except ImportError:  # pragma: no cover
    from conftest import NetKit

FUZZ = settings(max_examples=250, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

A = ("10.0.0.1", 4000)  # the live session
P = ("10.0.0.2", 4100)  # a client challenged, its response not yet sent
ADDRESSES = [A, P, ("10.0.0.1", 4001), ("10.0.0.3", 4000), ("172.16.5.4", 65535),
             ("0.0.0.0", 0), ("255.255.255.255", 1)]


def fixed_client(name: str, n: int, salt: int, **kw) -> ClientProtocol:
    """A client whose token (nonce, keys, id) is fixed by n: examples replay exactly."""
    return NetKit.client(name, salt=salt, client_id=1000 + n, nonce=bytes([n]) * 12,
                         c2s_key=bytes([n, 1]) * 8, s2c_key=bytes([n, 2]) * 8, **kw)


def live_server(max_players=3):
    """(server, client, pending): one connected session at A (slot 0), one tick played;
    `pending` challenged from P with its CHALLENGE_RESPONSE ready (pending._response)."""
    proto = NetKit.server(max_players=max_players)
    client = fixed_client("fuzzed", 1, 0xF00D)
    NetKit.connect(proto, client, A, 0)
    proto.world.step()
    proto.encode()
    for data, _ in proto.snapshots():
        client.receive(bytes(data), 0.01)
    pending = fixed_client("pending", 2, 0xBEEF)
    proto.receive_datagram(pending.connect(0.01), P, NetKit.ns(10))
    for data, _ in proto.datagrams_to_send():
        pending.receive(data, 0.01)
    assert client.state == CONNECTED and pending._response is not None
    return proto, client, pending


def valid_server_packets(client, pending):
    """(packet, the key that tags it or None) for each kind a server receives."""
    sid, key = client.info.session_id, client.token.c2s_key
    records = b"".join(INPUT_RECORD.pack(40 - k, 3, -3, k & 1) for k in range(4))
    packets = [(fixed_client("other", 3, 0xABCD).connect(0.0), None),
               (pending._response, pending.token.c2s_key),
               (sign(pack_header(KEEPALIVE, sid, 77), key), key),
               (sign(pack_header(DISCONNECT, sid, 78) + DISCONNECT_BODY.pack(1), key), key)]
    for count in range(1, 5):
        packets.append((sign(pack_header(INPUT, sid, 80 + count) + INPUT_PREFIX.pack(3, count)
                             + records[:8 * count], key), key))
    return packets


N_SERVER_PACKETS = 8


# A mutation: (kind, position, value). Positions wrap around the packet's length. Flips
# and sets keep the length, so the mutation gets past the length checks more often.
mutation = st.tuples(st.sampled_from(["flip", "flip", "set", "set", "cut", "extend", "insert",
                                      "delete"]),
                     st.integers(0, 2000), st.integers(0, 255))


def mutate(data: bytes, mutations) -> bytes:
    out = bytearray(data)
    for kind, at, value in mutations:
        n = len(out)
        if kind == "flip" and n:
            out[at % n] ^= 1 << (value % 8)
        elif kind == "set" and n:
            out[at % n] = value
        elif kind == "cut":
            del out[at % (n + 1):]
        elif kind == "extend":
            out += bytes([value]) * (at % 70)
        elif kind == "insert":
            out.insert(at % (n + 1), value)
        elif kind == "delete" and n:
            del out[at % n]
    return bytes(out)


def retag(data: bytes, key: bytes | None) -> bytes:
    """data with its last 8 bytes replaced by the right tag (the mutation gets past the
    tag and reaches the parsing behind it)."""
    if key is None or len(data) < TAG_SIZE:
        return data
    return sign(data[:-TAG_SIZE], key)


def server_counts(proto) -> tuple[int, int, int]:
    return int(proto.drops.sum()), int(proto.accepted.sum()), proto.gate.challenges


def feed_server(proto, data, addr, now_ms):
    """receive_datagram with the invariant: exactly one of {one drop, one accepted session
    packet, one CHALLENGE sent, one session opened}; at most one reply, never larger."""
    drops, accepted, challenges = server_counts(proto)
    events = proto.receive_datagram(data, addr, NetKit.ns(now_ms))
    # an accepted packet from a new address also moves its session (one PlayerMoved more)
    moves = [e for e in events if isinstance(e, PlayerMoved)]
    assert isinstance(events, list) and len(events) - len(moves) <= 1 and len(moves) <= 1
    if moves:
        assert moves[0].new == addr  # (and the session is there, unless it also quit)
        assert proto.addresses[moves[0].slot] in (addr, None)
    replies = proto.datagrams_to_send()
    assert len(replies) <= 1
    for reply, _to in replies:
        assert len(reply) <= len(data)  # never amplifies
    d, a, c = server_counts(proto)
    joined = sum(isinstance(e, PlayerJoined) for e in events)
    assert (d - drops) + (a - accepted) + (c - challenges) + joined == 1
    if c > challenges or joined:
        assert len(replies) == 1
    NetKit.check_invariants(proto)
    return events


@FUZZ
@given(data=st.binary(max_size=1400), addr=st.sampled_from(ADDRESSES))
def test_server_survives_arbitrary_bytes(data, addr):
    proto, _, _ = live_server()
    feed_server(proto, data, addr, 100)


@FUZZ
@given(body=st.binary(max_size=300), ptype=st.integers(1, 9) | st.integers(0, 255),
       sid=st.sampled_from(["live", 0]) | st.integers(0, 2**32 - 1),
       seq=st.integers(0, 2**32 - 1), tagged=st.booleans(), addr=st.sampled_from(ADDRESSES))
def test_server_survives_arbitrary_bodies_behind_a_valid_header(body, ptype, sid, seq, tagged,
                                                                addr):
    proto, client, _ = live_server()
    sid = client.info.session_id if sid == "live" else sid
    packet = pack_header(ptype, sid, seq) + body
    feed_server(proto, sign(packet, client.token.c2s_key) if tagged else packet, addr, 100)


@FUZZ
@given(which=st.integers(0, N_SERVER_PACKETS - 1),
       mutations=st.lists(mutation, min_size=1, max_size=4), tagged=st.booleans(),
       addr=st.sampled_from(ADDRESSES[:4]))
def test_server_survives_mutated_valid_packets(which, mutations, tagged, addr):
    proto, client, pending = live_server()
    packet, key = valid_server_packets(client, pending)[which]
    data = mutate(packet, mutations)
    feed_server(proto, retag(data, key) if tagged else data, addr, 100)


datagram = st.one_of(
    st.binary(max_size=300),
    # a (mutated, maybe re-tagged) valid one
    st.tuples(st.integers(0, N_SERVER_PACKETS - 1), st.lists(mutation, max_size=3),
              st.booleans()),
    st.tuples(st.just(-1), st.integers(1, 2**64 - 1)),  # a connect request with this salt
)


def realize(item, client, pending):
    if isinstance(item, bytes):
        return item
    if item[0] == -1:
        return fixed_client("x", 4, item[1]).connect(0.0)
    which, mutations, tagged = item
    packet, key = valid_server_packets(client, pending)[which]
    data = mutate(packet, mutations)
    return retag(data, key) if tagged else data


@FUZZ
@given(script=st.lists(st.tuples(datagram, st.sampled_from(ADDRESSES), st.integers(0, 3000)),
                       max_size=25))
def test_server_state_stays_bounded_over_a_stream(script):
    proto, client, pending = live_server(max_players=3)
    now = 0
    for item, addr, dt in script:
        now += dt
        feed_server(proto, realize(item, client, pending), addr, now)
        proto.expire(NetKit.ns(now))
        proto.datagrams_to_send()
        NetKit.check_invariants(proto)
        assert proto.connected_count() <= 3
        assert len(proto.gate.used) <= proto.connected_count() + 8
        proto.world.step()
        assert proto.encode() == proto.connected_count()


@FUZZ
@given(batches=st.lists(st.lists(st.tuples(datagram, st.sampled_from(ADDRESSES)), max_size=12),
                        max_size=6))
def test_server_state_stays_bounded_over_batches(batches):
    proto, client, pending = live_server(max_players=3)
    for n, items in enumerate(batches):
        batch = DatagramBatch.allocate(max(1, len(items)))
        for item, addr in items:
            batch.put(realize(item, client, pending), ip_to_int(addr[0]), addr[1])
        drops, accepted, challenges = server_counts(proto)
        disconnects = int(proto.accepted[DISCONNECT])
        events = proto.receive_batch(batch, NetKit.ns(100 * n))
        d, a, c = server_counts(proto)
        joined = sum(isinstance(e, PlayerJoined) for e in events)
        quits = sum(isinstance(e, PlayerLeft) and e.reason == "quit" for e in events)
        # a DISCONNECT whose session an earlier DISCONNECT of the same batch closed is
        # counted once, as unknown_session (test_second_disconnect_in_a_batch_is_counted_once)
        twice = (int(proto.accepted[DISCONNECT]) - disconnects) - quits
        assert (d - drops) + (a - accepted) + (c - challenges) + joined - twice == len(items)
        assert len(proto.datagrams_to_send()) <= len(items)
        NetKit.check_invariants(proto)


def test_second_disconnect_in_a_batch_is_counted_once():
    proto, client, _ = live_server()
    sid, key = client.info.session_id, client.token.c2s_key
    batch = DatagramBatch.allocate(2)
    for seq in (500, 501):
        batch.put(sign(pack_header(DISCONNECT, sid, seq) + DISCONNECT_BODY.pack(1), key),
                  ip_to_int(A[0]), A[1])
    proto.drops[:] = 0
    proto.accepted[:] = 0
    events = proto.receive_batch(batch, NetKit.ns(100))
    assert [e.reason for e in events] == ["quit"]
    assert int(proto.drops.sum()) + int(proto.accepted.sum()) == 2


def test_memory_does_not_grow_under_a_flood():
    proto, client, pending = live_server(max_players=8)
    packets = [p for p, _ in valid_server_packets(client, pending)]
    requests = [fixed_client("f", 10 + k, 1 + k).connect(0.0) for k in range(50)]
    rng = random.Random(7)

    def flood(n):
        for i in range(n):
            kind = i % 4
            if kind == 0:
                data = rng.randbytes(rng.randrange(0, 1300))
            elif kind == 1:
                data = mutate(rng.choice(packets), [(rng.choice(["flip", "set", "cut"]),
                                                     rng.randrange(2000), rng.randrange(256))])
            elif kind == 2:  # valid tokens from ever new addresses: challenged, not kept
                data = rng.choice(requests)
            else:  # requests whose sealed token is garbage: decrypted, refused
                data = rng.choice(requests)[:44] + rng.randbytes(144) + bytes(68)
            addr = (f"10.{rng.randrange(256)}.{rng.randrange(256)}.1", rng.randrange(1, 65536))
            proto.receive_datagram(data, addr, NetKit.ns(i))
            proto.datagrams_to_send()
            if i % 100 == 0:
                proto.expire(NetKit.ns(i))

    flood(2000)  # warm-up: caches, interned strings, numba dispatch
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        flood(6000)
        grown = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert grown < 64 * 1024, f"{grown} bytes kept after 6000 hostile datagrams"
    assert proto.gate.challenges > 500  # the valid tokens were challenged...
    # ...and nothing was kept but the live session (timed out by now: 8 s of flood)
    assert set(proto._by_client) <= {client.token.client_id}
    assert set(proto.gate.used) == {client.token.token_id}
    NetKit.check_invariants(proto)


# ---- the client ---------------------------------------------------------------------

def feed_client(client, data, now=0.5):
    """client.receive with the invariant: one drop, or one event, or (a CHALLENGE) the
    response to send; no event leaves the state as it was."""
    drops = int(client.drops.sum())
    state = client.state
    response = client._response
    events = client.receive(data, now)
    assert isinstance(events, list) and len(events) <= 1
    counted = int(client.drops.sum()) - drops
    if counted + len(events) == 0:  # a CHALLENGE it answers: only one it can verify
        assert data[3] == CHALLENGE and verify(data, client.token.s2c_key)
        assert client._response is not None and client.state == state
    else:
        assert counted + len(events) == 1
    for ev in events:
        if isinstance(ev, Snapshot):
            assert client.state == CONNECTED
        elif isinstance(ev, Disconnected):
            assert client.state == CLOSED
        elif isinstance(ev, Connected):
            assert client.state == CONNECTED and client.info is ev.info
        elif isinstance(ev, Denied):
            assert client.state == "denied"
        else:
            raise AssertionError(f"unexpected event {ev!r}")
    if not events:
        assert client.state == state
        if counted:
            assert client._response is response
    return events


@functools.lru_cache(maxsize=None)
def handshake_packets():
    """(connecting client, its CHALLENGE, challenged client, its ACCEPT, denied client, its
    DENY): templates, copied per example."""
    proto = NetKit.server(max_players=2)
    connecting = fixed_client("c", 5, 0xC0FFEE)
    proto.receive_datagram(connecting.connect(0.0), A, 0)
    (challenge, _), = proto.datagrams_to_send()
    challenged = copy.deepcopy(connecting)
    challenged.receive(challenge, 0.0)
    response, = challenged.poll(0.0)[0]
    proto.receive_datagram(response, A, 0)
    (accept, _), = proto.datagrams_to_send()
    NetKit.connect(proto, fixed_client("d", 6, 7), P, 0)  # full now
    denied = fixed_client("e", 7, 0xDE)
    proto.receive_datagram(denied.connect(0.0), ("10.0.0.5", 1), 0)
    (deny, _), = proto.datagrams_to_send()
    assert len(deny) == 33
    return connecting, challenge, challenged, accept, denied, deny


@FUZZ
@given(data=st.binary(max_size=1400))
def test_connected_client_survives_arbitrary_bytes(data):
    _, client, _ = live_server()
    feed_client(client, data)


@FUZZ
@given(data=st.binary(max_size=600), ptype=st.sampled_from([CONNECT_ACCEPT, CONNECT_DENY,
                                                           SNAPSHOT, DISCONNECT, CHALLENGE,
                                                           0, 9]),
       sequence=st.integers(0, 2**32 - 1), tagged=st.booleans(), who=st.integers(0, 2))
def test_client_survives_arbitrary_bodies_behind_a_valid_header(data, ptype, sequence, tagged,
                                                                who):
    if who == 0:
        _, client, _ = live_server()
        sid = client.info.session_id
    else:
        templates = handshake_packets()
        client = copy.deepcopy(templates[0 if who == 1 else 2])
        sid = 0
    packet = pack_header(ptype, sid, sequence) + data
    feed_client(client, sign(packet, client.token.s2c_key) if tagged else packet)


@FUZZ
@given(which=st.sampled_from(["challenge", "accept", "deny"]),
       mutations=st.lists(mutation, min_size=1, max_size=4), tagged=st.booleans())
def test_handshaking_client_survives_mutated_replies(which, mutations, tagged):
    connecting, challenge, challenged, accept, denied, deny = handshake_packets()
    client, packet = {"challenge": (connecting, challenge), "accept": (challenged, accept),
                      "deny": (denied, deny)}[which]
    client = copy.deepcopy(client)
    data = mutate(packet, mutations)
    feed_client(client, retag(data, client.token.s2c_key) if tagged else data, 0.1)


def test_handshake_templates_are_valid():
    connecting, challenge, challenged, accept, denied, deny = handshake_packets()
    assert copy.deepcopy(connecting).receive(challenge, 0.1) == []
    assert isinstance(copy.deepcopy(challenged).receive(accept, 0.1)[0], Connected)
    assert copy.deepcopy(denied).receive(deny, 0.1) == [Denied(1)]


@FUZZ
@given(mutations=st.lists(mutation, min_size=1, max_size=4), seed=st.integers(0, 3),
       tagged=st.booleans())
def test_client_survives_mutated_snapshots(mutations, seed, tagged):
    proto, client, _ = live_server()
    proto.world.pi[0, 1:] = 0
    for _ in range(seed):
        proto.world.step()
    proto.world.step()
    proto.encode()
    (snap, _), = list(proto.snapshots())
    data = mutate(bytes(snap), mutations)
    feed_client(client, retag(data, client.token.s2c_key) if tagged else data)


@FUZZ
@given(mutations=st.lists(mutation, min_size=1, max_size=4), others=st.integers(0, 2),
       tagged=st.booleans())
def test_client_survives_mutated_delta_snapshots(mutations, others, tagged):
    """A delta against a snapshot the client holds, mutated: a result or one drop."""
    proto, client, _ = live_server()
    proto.world.pi[0, 1 + others:] = 0  # 0..2 other players in view, moving
    proto.world.pi[S.P_MOVE_X, :3] = (0, 127, -64)
    proto.world.step()
    proto.encode()
    for data, _ in proto.snapshots():
        client.receive(bytes(data), 0.02)  # tick 1: a baseline (tick 0 cannot be one)
    proto.world.step()
    proto.sessions[S_SNAPSHOT_ACK, 0] = client.last_snapshot_tick
    proto.encode()
    (snap, _), = list(proto.snapshots())
    assert b"\xa1b" in bytes(snap)  # a delta ("b")
    data = mutate(bytes(snap), mutations)
    feed_client(client, retag(data, client.token.s2c_key) if tagged else data)


@FUZZ
@given(mutations=st.lists(mutation, min_size=1, max_size=4), tagged=st.booleans())
def test_client_survives_mutated_disconnects(mutations, tagged):
    proto, client, _ = live_server()
    proto.kick(0)
    (bye, to), = proto.datagrams_to_send()
    assert to == A and len(bye) == 25
    data = mutate(bye, mutations)
    feed_client(client, retag(data, client.token.s2c_key) if tagged else data)


# ---- decode_snapshot directly ------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def info():
    return live_server()[1].info


@FUZZ
@given(payload=st.binary(max_size=1184))
def test_parse_snapshot_of_arbitrary_bytes(payload):
    result = parse_snapshot(pack_header(SNAPSHOT, 1, 1) + payload, 1, info())
    assert result is None or isinstance(result, Snapshot)
    snap, lists, why = decode_snapshot(pack_header(SNAPSHOT, 1, 1) + payload, 1, info(), HELD)
    assert (snap is None) == (lists is None) == (why != "")
    assert why in ("", "bad_payload", "no_baseline")


msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats()
    | st.text(max_size=10) | st.binary(max_size=4),
    lambda inner: st.lists(inner, max_size=8) | st.dictionaries(st.text(max_size=3), inner,
                                                                 max_size=5),
    max_leaves=30)
uints = st.integers(0, 2**32 + 5)
ints = st.integers(-40000, 70000) | st.integers(-2**63, 2**64 - 1)
plausible = {
    "t": uints, "a": uints, "b": uints, "h": st.lists(uints, min_size=2, max_size=2),
    "me": st.lists(uints, min_size=5, max_size=7), "p": st.lists(ints, max_size=12),
    "tr": st.lists(ints, max_size=12), "ev": st.lists(uints, max_size=9),
    "lb": st.lists(uints, max_size=5), "hr": st.lists(uints, max_size=5),
    "pm": st.lists(ints, max_size=9), "pv": st.lists(ints, max_size=10),
    "pr": st.lists(st.integers(-1, 4), max_size=4), "pn": st.lists(ints, max_size=10),
    "tx": st.lists(st.integers(-1, 4), max_size=4), "tn": st.lists(ints, max_size=8),
}
snapshot_docs = st.dictionaries(
    st.sampled_from(sorted(plausible)) | st.text(max_size=3),
    st.one_of(msgpack_values, *plausible.values()), max_size=12)

# what a client holds of tick 7: the baseline of the documents' "b" when it is 7
HELD = {7: Held(7, ((1, 100, 200, 3, -3), (2, 65535, 0, 100, -100), (5, 0, 65535, 0, 0)),
                ((0, 10, 20, 1), (3, 30, 40, 5)))}


def check_result(result):
    if result is not None:
        assert isinstance(result, Snapshot)
        assert all(len(p) == 5 for p in result.players)
        assert all(len(t) == 4 for t in result.treasures)
        assert all(len(c) == 4 for c in result.claims)
        w, h = info().world_width, info().world_height
        assert all(0 <= x <= w and 0 <= y <= h for _, x, y, _, _ in result.players)
        assert all(0 <= x <= w and 0 <= y <= h for _, x, y, _ in result.treasures)


@FUZZ
@given(doc=snapshot_docs)
def test_parse_snapshot_of_arbitrary_documents(doc):
    payload = msgpack.packb(doc)
    check_result(parse_snapshot(pack_header(SNAPSHOT, 1, 1) + payload, 1, info()))
    check_result(parse_snapshot(pack_header(SNAPSHOT, 1, 1) + payload, 1, info(), HELD))


def u16(v) -> bool:
    return 0 <= v <= 0xFFFF


@FUZZ
@given(doc=st.fixed_dictionaries({k: v for k, v in plausible.items() if k in
                                  ("t", "a", "h", "p", "tr")},
                                 optional={k: plausible[k] for k in ("ev", "lb", "hr")}),
       me=st.lists(uints, min_size=6, max_size=6))
def test_parse_snapshot_of_well_shaped_documents(doc, me):
    doc["me"] = me
    result = parse_snapshot(pack_header(SNAPSHOT, 1, 1) + msgpack.packb(doc), 1, info())
    p, tr = doc["p"], doc["tr"]
    shaped = (len(p) % 5 == 0 and len(tr) % 4 == 0
              and all(p[i] >= 0 and u16(p[i + 1]) and u16(p[i + 2]) for i in range(0, len(p), 5))
              and all(v >= 0 for v in tr)
              and all(u16(tr[i + 1]) and u16(tr[i + 2]) for i in range(0, len(tr), 4))
              and len(doc.get("ev", [])) % 4 == 0 and len(doc.get("lb", [])) % 2 == 0
              and ("hr" not in doc or (len(doc["hr"]) % 2 == 1)))
    assert (result is not None) == shaped
    if result is not None:
        assert (result.tick, result.ack) == (doc["t"], doc["a"])
        assert result.slot == me[0] and result.score == me[3]
        assert (result.leaderboard is None) == ("lb" not in doc)
        assert (result.hunt_result is None) == ("hr" not in doc)
        assert [row[0] for row in result.players] == p[0::5]
        assert result.baseline is None


@FUZZ
@given(doc=st.fixed_dictionaries({"t": uints, "a": uints, "h": plausible["h"]},
                                 optional={k: plausible[k] for k in
                                           ("pm", "pv", "pr", "pn", "tx", "tn", "ev")}),
       me=st.lists(uints, min_size=6, max_size=6), b=st.sampled_from([7, 7, 7, 8]))
def test_parse_snapshot_of_well_shaped_deltas(doc, me, b):
    """A delta against a held snapshot is rebuilt or rejected whole, never half applied,
    and never against a snapshot the client does not hold."""
    doc["me"], doc["b"] = me, b
    data = pack_header(SNAPSHOT, 1, 1) + msgpack.packb(doc)
    snap, lists, why = decode_snapshot(data, 1, info(), HELD)
    if b != 7:
        common = len(doc.get("ev", [])) % 4 == 0  # checked before the baseline is looked up
        assert (snap, lists, why) == (None, None, "no_baseline" if common else "bad_payload")
        return
    assert (snap is None) == (lists is None) == (why == "bad_payload")
    if snap is not None:
        base = HELD[7]
        removed = set(doc.get("pr", []))
        assert len(lists.players) == len(base.players) - len(removed) + len(doc.get("pn", [])) // 5
        assert len(lists.treasures) == (len(base.treasures) - len(set(doc.get("tx", [])))
                                        + len(doc.get("tn", [])) // 4)
        assert all(u16(x) and u16(y) for _, x, y, _, _ in lists.players)
        assert snap.baseline == 7 and lists.tick == doc["t"]


# ---- connect tokens and cookies ----------------------------------------------------------

@functools.lru_cache(maxsize=None)
def a_token() -> ConnectToken:
    return fixed_client("tok", 8, 1, servers=[NetKit.ADDRESS, ("198.51.100.9", 1)]).token


def parse_token_bytes(data) -> ConnectToken | None:
    """from_bytes: a token (which writes back to the same bytes) or TokenError."""
    try:
        token = ConnectToken.from_bytes(data)
    except TokenError as exc:
        assert str(exc) and "\n" not in str(exc)
        return None
    assert token.to_bytes() == bytes(data)  # one wire form per token
    return token


@FUZZ
@given(data=st.binary(max_size=400) | st.binary(min_size=272, max_size=272)
       | st.binary(max_size=264).map(lambda b: b"XMTOKEN3" + b))
def test_token_from_arbitrary_bytes(data):
    parse_token_bytes(data)
    parse_token_bytes(bytearray(data))
    parse_token_bytes(memoryview(data))


@FUZZ
@given(mutations=st.lists(mutation, min_size=1, max_size=4))
def test_token_from_mutated_bytes(mutations):
    parse_token_bytes(mutate(a_token().to_bytes(), mutations))


base64url = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@FUZZ
@given(text=st.text(max_size=400) | st.text(alphabet=base64url + "=+/ \n", max_size=400),
       edits=st.lists(st.tuples(st.integers(0, 400), st.characters()), max_size=4),
       mutate_valid=st.booleans())
def test_token_from_arbitrary_text(text, edits, mutate_valid):
    if mutate_valid:
        chars = list(a_token().to_text())
        for at, ch in edits:
            chars[at % len(chars)] = ch
        text = "".join(chars) + text[:3]
    try:
        token = ConnectToken.from_text(text)
    except TokenError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert isinstance(token, ConnectToken)
    assert ConnectToken.from_text(token.to_text()) == token


OPENER = TokenOpener(NetKit.KEY)


@FUZZ
@given(expire=st.integers(-2**70, 2**70), nonce=st.binary(max_size=20),
       sealed=st.binary(max_size=200) | st.binary(min_size=144, max_size=144),
       fields=st.binary(max_size=200))
def test_token_opener_on_arbitrary_input(expire, nonce, sealed, fields):
    assert OPENER.open(expire, nonce, sealed) is None  # no chance to forge the Poly1305 tag
    assert OPENER.open(expire, bytearray(nonce), memoryview(sealed)) is None
    assert OPENER.open_fields(fields) is None


@FUZZ
@given(which=st.sampled_from(["expire", "nonce", "sealed"]),
       mutations=st.lists(mutation, min_size=1, max_size=3), expire_delta=st.integers(-5, 5))
def test_token_opener_on_mutated_tokens(which, mutations, expire_delta):
    token = a_token()
    args = {"expire": token.expire, "nonce": token.nonce, "sealed": token.sealed}
    if which == "expire":
        args["expire"] += expire_delta
    else:
        args[which] = mutate(args[which], mutations)
    opened = OPENER.open(**args)
    if (args["expire"], args["nonce"], args["sealed"]) == (token.expire, token.nonce,
                                                          token.sealed):
        assert isinstance(opened, PrivateToken) and opened.client_id == token.client_id
    else:
        assert opened is None


JAR = CookieJar(bytes(range(32)))
COOKIE = Cookie(client_id=7, salt=9, ip=0x0A000001, port=4000, issued_ms=1_800_000_000_000,
                expire=1_800_003_600, c2s_key=bytes(16), s2c_key=bytes(range(16)),
                token_id=bytes(range(16, 32)), name="fuzz")
SEALED_COOKIE = JAR.seal(COOKIE)


@FUZZ
@given(data=st.binary(max_size=300) | st.binary(min_size=156, max_size=156),
       mutations=st.lists(mutation, max_size=3))
def test_cookie_jar_open(data, mutations):
    assert JAR.open(data) is None
    assert JAR.open(bytearray(data)) is None
    mutated = mutate(SEALED_COOKIE, mutations)
    opened = JAR.open(mutated)
    assert opened == (COOKIE if mutated == SEALED_COOKIE else None)


# ---- the bot horde's snapshot reader (numba; net/horde.py over net/msgpack_in.py) ---------

_STACK = np.zeros(M.SKIP_DEPTH + 1, np.int64)


def horde_parse(packet: bytes, tail: bytes) -> tuple[bool, list]:
    """parse_snapshot on packet (header + payload) with `tail` after its end: the bytes
    past n must not change the result (nothing is read at or past n)."""
    row = np.frombuffer(packet + tail, np.uint8).copy()
    out = np.zeros(H.OUT_ROWS, np.int64)
    ok = H.parse_snapshot(row, len(packet), _STACK, out)
    return bool(ok), out.tolist()


@functools.lru_cache(maxsize=None)
def encoded_snapshots() -> tuple[bytes, ...]:
    """A few real snapshots (full and delta), without their tags."""
    proto, client, _ = live_server()
    proto.world.pi[S.P_MOVE_X, :3] = (0, 127, -64)
    out = []
    for _ in range(4):
        proto.world.step()
        proto.encode()
        for data, _ in proto.snapshots():
            client.receive(bytes(data), 0.02)
            out.append(bytes(data)[:-TAG_SIZE])
        proto.sessions[S_SNAPSHOT_ACK, 0] = client.last_snapshot_tick
    return tuple(out)


def check_horde(packet: bytes) -> bool:
    ok, out = horde_parse(packet, bytes(64))
    assert (ok, out) == horde_parse(packet, b"\xff" * 64)
    assert (ok, out) == horde_parse(packet, b"\x91" * 64)  # fixarray headers: bait
    assert (ok, out) == horde_parse(packet, b"")
    return ok


@FUZZ
@given(payload=st.binary(max_size=1184))
def test_horde_parse_snapshot_of_arbitrary_bytes(payload):
    check_horde(pack_header(SNAPSHOT, 1, 1) + payload)


@FUZZ
@given(which=st.integers(0, 3), mutations=st.lists(mutation, min_size=1, max_size=4))
def test_horde_parse_snapshot_of_mutated_snapshots(which, mutations):
    packets = encoded_snapshots()
    packet = packets[which % len(packets)]
    assert check_horde(packet)
    head, body = packet[:HEADER_SIZE], packet[HEADER_SIZE:]
    check_horde(head + mutate(body, mutations))


@FUZZ
@given(doc=snapshot_docs)
def test_horde_parse_snapshot_of_arbitrary_documents(doc):
    packet = pack_header(SNAPSHOT, 1, 1) + msgpack.packb(doc)
    if len(packet) <= MAX_DATAGRAM:
        check_horde(packet)


@FUZZ
@given(data=st.binary(max_size=200), pos=st.integers(0, 210), kind=st.integers(0, 4),
       group=st.integers(1, 6))
def test_msgpack_in_readers_stay_in_bounds(data, pos, kind, group):
    row = np.frombuffer(data + b"\xff" * 8, np.uint8).copy()
    end = len(data)
    after = M.skip_value(row, pos, end, _STACK)
    assert after == -1 or pos < after <= end
    after, first, count = M.check_rows(row, pos, end, kind, group)
    assert after == -1 or (pos < after <= end and count % group == 0 and count >= 0)


# ---- the atheris harness stays runnable ------------------------------------------------

def test_atheris_harness_self_test():
    """profiling/fuzz_atheris.py's targets, on plain random inputs (no atheris needed)."""
    from profiling import fuzz_atheris
    assert fuzz_atheris.self_test(iterations=300, seed=5) == 300
