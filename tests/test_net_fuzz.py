"""Fuzzing both ends of the protocol: whatever arrives, the receiver returns normally.

The invariant (in the spirit of h11's): for any datagram, ServerProtocol.receive_datagram,
ClientProtocol.receive and net.client.parse_snapshot return a result or count exactly one
drop; nothing raises, and no state grows beyond its fixed capacity.
"""

from __future__ import annotations

import random
import tracemalloc

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim import schema as S

from net.address import ip_to_int
from net.batch import DatagramBatch
from net.client import (CLOSED, CONNECTED, ClientProtocol, Disconnected, Held, Snapshot,
                        parse_snapshot)
from net.sessions import S_SNAPSHOT_ACK
from net.wire import (CONNECT_ACCEPT, CONNECT_ACCEPT_BODY, CONNECT_DENY, CONNECT_DENY_BODY,
                      DISCONNECT, DISCONNECT_BODY, HEADER_SIZE, INPUT, INPUT_PREFIX,
                      INPUT_RECORD, KEEPALIVE, SNAPSHOT, pack_header)

try:  # tests/ is a package here; fall back to the rootdir-on-sys.path layout
    from tests.conftest import NetKit
except ImportError:  # pragma: no cover
    from conftest import NetKit

FUZZ = settings(max_examples=150, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

A = ("10.0.0.1", 4000)
ADDRESSES = [A, ("10.0.0.1", 4001), ("10.0.0.2", 4000), ("172.16.5.4", 65535),
             ("0.0.0.0", 0), ("255.255.255.255", 1)]


def live_server(max_players=3):
    """A server with one connected session at A (slot 0), one tick played."""
    proto = NetKit.server(max_players=max_players)
    client = ClientProtocol(name="fuzzed", salt=0xF00D)
    NetKit.connect(proto, client, A, 0)
    proto.world.step()
    proto.encode()
    for data, _ in proto.snapshots():
        client.receive(bytes(data), 0.01)
    return proto, client


def valid_server_packets(client):
    sid = client.info.session_id
    records = b"".join(INPUT_RECORD.pack(40 - k, 3, -3, k & 1) for k in range(4))
    packets = [ClientProtocol(name="other", salt=0xBEEF).connect(0.0),
               pack_header(KEEPALIVE, sid, 77),
               pack_header(DISCONNECT, sid, 78) + DISCONNECT_BODY.pack(1)]
    for count in range(1, 5):
        packets.append(pack_header(INPUT, sid, 80 + count) + INPUT_PREFIX.pack(3, count)
                       + records[:8 * count])
    return packets


# A mutation: (kind, position, value). Positions wrap around the packet's length.
mutation = st.tuples(st.sampled_from(["flip", "set", "cut", "extend", "insert", "delete"]),
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


def feed_server(proto, data, addr, now_ms):
    drops = int(proto.drops.sum())
    accepted = int(proto.accepted.sum())
    events = proto.receive_datagram(data, addr, NetKit.ns(now_ms))
    assert isinstance(events, list)
    replies = proto.datagrams_to_send()
    assert len(replies) <= 1
    for reply, _to in replies:
        assert len(reply) <= len(data)  # never amplifies
    counted = (int(proto.drops.sum()) - drops) + (int(proto.accepted.sum()) - accepted)
    assert counted == 1  # every datagram is either accepted or dropped, once
    NetKit.check_invariants(proto)
    return events


@FUZZ
@given(data=st.binary(max_size=1400), addr=st.sampled_from(ADDRESSES))
def test_server_survives_arbitrary_bytes(data, addr):
    proto, _ = live_server()
    feed_server(proto, data, addr, 100)


@FUZZ
@given(data=st.binary(min_size=HEADER_SIZE, max_size=300), ptype=st.integers(0, 255),
       addr=st.sampled_from(ADDRESSES))
def test_server_survives_arbitrary_bodies_behind_a_valid_header(data, ptype, addr):
    proto, client = live_server()
    head = pack_header(ptype, client.info.session_id, 1000)
    feed_server(proto, head + data[HEADER_SIZE:], addr, 100)


@FUZZ
@given(which=st.integers(0, 6), mutations=st.lists(mutation, min_size=1, max_size=4),
       addr=st.sampled_from(ADDRESSES[:3]))
def test_server_survives_mutated_valid_packets(which, mutations, addr):
    proto, client = live_server()
    packet = valid_server_packets(client)[which]
    feed_server(proto, mutate(packet, mutations), addr, 100)


datagram = st.one_of(
    st.binary(max_size=300),
    st.tuples(st.integers(0, 6), st.lists(mutation, max_size=3)),  # a (mutated) valid one
    st.tuples(st.just(-1), st.integers(0, 2**64 - 1)),  # a connect request with this salt
)


def realize(item, client):
    if isinstance(item, bytes):
        return item
    which, arg = item
    if which == -1:
        return ClientProtocol(name="x", salt=arg or 1).connect(0.0)
    return mutate(valid_server_packets(client)[which], arg)


@FUZZ
@given(script=st.lists(st.tuples(datagram, st.sampled_from(ADDRESSES), st.integers(0, 3000)),
                       max_size=25))
def test_server_state_stays_bounded_over_a_stream(script):
    proto, client = live_server(max_players=3)
    now = 0
    for item, addr, dt in script:
        now += dt
        feed_server(proto, realize(item, client), addr, now)
        proto.expire(NetKit.ns(now))
        proto.datagrams_to_send()
        NetKit.check_invariants(proto)
        assert proto.connected_count() <= 3
        proto.world.step()
        assert proto.encode() == proto.connected_count()


@FUZZ
@given(batches=st.lists(st.lists(st.tuples(datagram, st.sampled_from(ADDRESSES)), max_size=12),
                        max_size=6))
def test_server_state_stays_bounded_over_batches(batches):
    proto, client = live_server(max_players=3)
    for n, items in enumerate(batches):
        batch = DatagramBatch.allocate(max(1, len(items)))
        for item, addr in items:
            batch.put(realize(item, client), ip_to_int(addr[0]), addr[1])
        drops, accepted = int(proto.drops.sum()), int(proto.accepted.sum())
        proto.receive_batch(batch, NetKit.ns(100 * n))
        assert (int(proto.drops.sum()) - drops) + (int(proto.accepted.sum()) - accepted) == len(items)
        assert len(proto.datagrams_to_send()) <= len(items)
        NetKit.check_invariants(proto)


def test_memory_does_not_grow_under_a_flood():
    proto, client = live_server(max_players=8)
    packets = valid_server_packets(client)
    rng = random.Random(7)

    def flood(n):
        for i in range(n):
            kind = i % 3
            if kind == 0:
                data = rng.randbytes(rng.randrange(0, 1300))
            elif kind == 1:
                data = mutate(rng.choice(packets), [(rng.choice(["flip", "set", "cut"]),
                                                     rng.randrange(2000), rng.randrange(256))])
            else:  # connect requests from ever new addresses and salts
                data = ClientProtocol(salt=rng.getrandbits(64) | 1).connect(0.0)
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
    assert proto.connected_count() <= 8
    NetKit.check_invariants(proto)


# ---- the client ---------------------------------------------------------------------

def feed_client(client, data):
    drops = int(client.drops.sum())
    state = client.state
    events = client.receive(data, 0.5)
    assert isinstance(events, list) and len(events) <= 1
    counted = int(client.drops.sum()) - drops
    assert counted + len(events) == 1
    for ev in events:
        if isinstance(ev, Snapshot):
            assert client.state == CONNECTED
        elif isinstance(ev, Disconnected):
            assert client.state == CLOSED
    if not events:
        assert client.state == state
    return events


@FUZZ
@given(data=st.binary(max_size=1400))
def test_connected_client_survives_arbitrary_bytes(data):
    _, client = live_server()
    feed_client(client, data)


@FUZZ
@given(data=st.binary(max_size=600), ptype=st.sampled_from([CONNECT_ACCEPT, CONNECT_DENY,
                                                           SNAPSHOT, DISCONNECT, 0, 9]),
       sequence=st.integers(0, 2**32 - 1))
def test_connected_client_survives_arbitrary_bodies_behind_a_valid_header(data, ptype, sequence):
    _, client = live_server()
    feed_client(client, pack_header(ptype, client.info.session_id, sequence) + data)


@FUZZ
@given(data=st.binary(max_size=100), salt_ok=st.booleans(), accept=st.booleans())
def test_connecting_client_survives_arbitrary_replies(data, salt_ok, accept):
    client = ClientProtocol(name="c", salt=12345)
    client.connect(0.0)
    salt = (12345 if salt_ok else 54321).to_bytes(8, "little")
    ptype = CONNECT_ACCEPT if accept else CONNECT_DENY
    size = (CONNECT_ACCEPT_BODY if accept else CONNECT_DENY_BODY).size
    body = (salt + data).ljust(size, b"\0")[:size] if data[:1] != b"\xff" else salt + data
    feed_client(client, pack_header(ptype, int.from_bytes(data[:4].ljust(4, b"\0"), "little"), 0)
                + body)


@FUZZ
@given(mutations=st.lists(mutation, min_size=1, max_size=4), seed=st.integers(0, 3))
def test_client_survives_mutated_snapshots(mutations, seed):
    proto, client = live_server()
    proto.world.pi[0, 1:] = 0
    for _ in range(seed):
        proto.world.step()
    proto.world.step()
    proto.encode()
    (snap, _), = list(proto.snapshots())
    feed_client(client, mutate(bytes(snap), mutations))


@FUZZ
@given(mutations=st.lists(mutation, min_size=1, max_size=4), others=st.integers(0, 2))
def test_client_survives_mutated_delta_snapshots(mutations, others):
    """A delta against a snapshot the client holds, mutated: a result or one drop."""
    proto, client = live_server()
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
    feed_client(client, mutate(bytes(snap), mutations))


# ---- parse_snapshot directly ----------------------------------------------------------

def _info():
    return live_server()[1].info


INFO = None


def info():
    global INFO
    if INFO is None:
        INFO = _info()
    return INFO


@FUZZ
@given(payload=st.binary(max_size=1184))
def test_parse_snapshot_of_arbitrary_bytes(payload):
    result = parse_snapshot(pack_header(SNAPSHOT, 1, 1) + payload, 1, info())
    assert result is None or isinstance(result, Snapshot)


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
        w, h = result_extent()
        assert all(0 <= x <= w and 0 <= y <= h for _, x, y, _, _ in result.players)
        assert all(0 <= x <= w and 0 <= y <= h for _, x, y, _ in result.treasures)
        assert len({p[0] for p in result.players}) <= len(result.players)


def result_extent():
    return info().world_width, info().world_height


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
    from net.client import decode_snapshot
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
