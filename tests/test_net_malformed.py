"""Malformed datagrams, both ways: each is dropped, counted under its reason, and forgotten.

A dropped datagram never raises, gets no reply, and changes no session or player state.
The server has one live session (at address A), so session-bound packets reach every check.
"""

from __future__ import annotations

import random
import struct

import msgpack
import pytest

from net import drops as D
from net.client import CONNECTED, ClientProtocol, Snapshot, parse_snapshot
from net.wire import (CONNECT_ACCEPT, CONNECT_ACCEPT_BODY, CONNECT_DENY, CONNECT_DENY_BODY,
                      CONNECT_REQUEST, CONNECT_REQUEST_BODY, CONNECT_REQUEST_SIZE, DISCONNECT,
                      DISCONNECT_BODY, HEADER, HEADER_SIZE, INPUT, INPUT_PREFIX, INPUT_RECORD,
                      KEEPALIVE, MAX_DATAGRAM, PROTOCOL_ID, SNAPSHOT, VERSION, pack_header)

A = ("10.0.0.1", 4000)
STRANGER = ("192.0.2.7", 5555)


@pytest.fixture
def live(netkit):
    """(server, client, session id): one connected session at A, one tick played."""
    proto = netkit.server()
    client = ClientProtocol(name="victim", salt=0x5A17)
    netkit.connect(proto, client, A, 0)
    proto.receive_datagram(client.input(5, 5, False, 0.01), A, netkit.ns(10))
    proto.world.step()
    proto.encode()
    for data, _ in proto.snapshots():
        assert isinstance(client.receive(bytes(data), 0.02)[0], Snapshot)
    proto.drops[:] = 0
    proto.accepted[:] = 0
    return proto, client, client.info.session_id


def raw_header(ptype, sid=0, seq=1, *, protocol=PROTOCOL_ID, version=VERSION, flags=0,
               reserved=b"\0\0\0"):
    head = bytearray(HEADER.pack(protocol, version, ptype, flags, sid, seq))
    head[5:8] = reserved
    return bytes(head)


def valid_packets(sid, seq=1000):
    """One valid client->server packet of each type, for this session."""
    request = ClientProtocol(name="n", salt=99).connect(0.0)
    inputs = (pack_header(INPUT, sid, seq) + INPUT_PREFIX.pack(7, 4)
              + b"".join(INPUT_RECORD.pack(50 - k, 1, 1, 0) for k in range(4)))
    return {
        CONNECT_REQUEST: request,
        INPUT: inputs,
        KEEPALIVE: pack_header(KEEPALIVE, sid, seq),
        DISCONNECT: pack_header(DISCONNECT, sid, seq) + DISCONNECT_BODY.pack(1),
    }


def server_cases(sid):
    """(label, datagram, address, reason) for everything the server must drop."""
    good = valid_packets(sid)
    cases = [("empty", b"", A, "too_short")]
    for n in range(1, HEADER_SIZE):
        cases.append((f"first {n} bytes of a keepalive", good[KEEPALIVE][:n], A, "too_short"))
        cases.append((f"{n} random bytes", random.Random(n).randbytes(n), A, "too_short"))
    for size in (MAX_DATAGRAM + 1, 1400, 1535, 1536, 1537, 4096, 65507, 65536):
        body = good[INPUT] + bytes(size - len(good[INPUT]))
        cases.append((f"oversize input {size}", body, A, "oversize"))
    cases.append(("64 KiB of 0xFF", b"\xff" * 65536, A, "oversize"))
    for ptype, packet in good.items():
        for proto_id in (0, 0x584D, PROTOCOL_ID ^ 1, 0xFFFF):
            bad = struct.pack("<H", proto_id) + packet[2:]
            cases.append((f"type {ptype} protocol {proto_id:#x}", bad, A, "bad_protocol"))
        for version in (0, VERSION + 1, 255):
            bad = packet[:2] + bytes([version]) + packet[3:]
            if not (ptype == CONNECT_REQUEST and len(bad) == CONNECT_REQUEST_SIZE):
                cases.append((f"type {ptype} version {version}", bad, A, "bad_version"))
        for at in (4, 5, 6, 7):
            for value in (1, 0x80, 0xFF):
                bad = bytearray(packet)
                bad[at] = value
                cases.append((f"type {ptype} byte {at} = {value}", bytes(bad), A, "bad_flags"))
    for ptype in (0, CONNECT_ACCEPT, CONNECT_DENY, SNAPSHOT, 8, 9, 0x7F, 0x80, 0xFF):
        for tail in (b"", bytes(1), bytes(9), bytes(44), bytes(240)):
            cases.append((f"type {ptype} + {len(tail)}", raw_header(ptype, sid, 2000) + tail,
                          A, "bad_type"))
    # every wrong length of each type
    for n in (HEADER_SIZE, 17, 100, 255, 257, 300, 1200):
        cases.append((f"connect_request of {n}", good[CONNECT_REQUEST][:n].ljust(n, b"\0"),
                      STRANGER, "bad_length"))
    full_input = good[INPUT]
    for n in range(HEADER_SIZE, len(full_input)):
        if n in (21 + 8 * k for k in (1, 2, 3)):
            continue  # those are valid lengths, but the count byte says 4: see below
        cases.append((f"input cut to {n}", full_input[:n], A, "bad_length"))
    for count in (1, 2, 3):  # count byte 4, length of `count` records
        cases.append((f"input says 4 records, has {count}",
                      full_input[:21 + 8 * count], A, "bad_length"))
    for extra in (1, 7, 8, 9, 100):
        cases.append((f"input + {extra}", full_input + bytes(extra), A, "bad_length"))
    for count in (0, 5, 6, 127, 255):
        body = pack_header(INPUT, sid, 3000) + INPUT_PREFIX.pack(0, count)
        for records in sorted({0, 1, 4, min(count, 100)}):
            packet = body + INPUT_RECORD.pack(60, 0, 0, 0) * records
            if len(packet) <= MAX_DATAGRAM:
                cases.append((f"input count {count} with {records} records", packet, A,
                              "bad_length"))
    for n in (17, 18, 20, 32, 100):
        cases.append((f"keepalive of {n}", good[KEEPALIVE].ljust(n, b"\0"), A, "bad_length"))
    for n in (HEADER_SIZE, 18, 20, 64):
        bye = (good[DISCONNECT] + bytes(64))[:n]
        cases.append((f"disconnect of {n}", bye, A, "bad_length"))
    # connect requests whose body is wrong
    def request(salt, name_len, name):
        packet = pack_header(CONNECT_REQUEST, 0, 0) + CONNECT_REQUEST_BODY.pack(salt, name_len, name)
        return packet.ljust(CONNECT_REQUEST_SIZE, b"\0")
    cases += [
        ("salt 0", request(0, 1, b"x"), STRANGER, "bad_payload"),
        ("name length 33", request(5, 33, b"x" * 32), STRANGER, "bad_payload"),
        ("name length 255", request(5, 255, b"x" * 32), STRANGER, "bad_payload"),
        ("name not UTF-8", request(5, 2, b"\xff\xfe"), STRANGER, "bad_payload"),
        ("name cut inside a UTF-8 character", request(5, 1, "é".encode()), STRANGER,
         "bad_payload"),
    ]
    return cases


def test_server_drops_each_malformed_datagram_under_its_reason(live, netkit):
    proto, _client, sid = live
    cases = server_cases(sid)
    assert len(cases) > 200
    for label, data, addr, reason in cases:
        before = netkit.state(proto)
        accepted = proto.accepted.copy()
        drops = proto.drops.copy()
        events = proto.receive_datagram(data, addr, netkit.ns(100))
        assert events == [], label
        assert proto.datagrams_to_send() == [], label
        delta = D.drops_by_reason(proto.drops - drops)
        assert delta == {reason: 1}, label
        assert netkit.state(proto) == before, label
        assert (proto.accepted == accepted).all(), label
    netkit.check_invariants(proto)
    assert proto.connected_count() == 1


def test_the_same_datagrams_in_one_batch(live, netkit):
    """The batch path (what the tick uses) counts the same: one drop per datagram."""
    from net.address import ip_to_int
    from net.batch import DatagramBatch
    proto, _client, sid = live
    cases = server_cases(sid)
    batch = DatagramBatch.allocate(len(cases))
    for _label, data, addr, _reason in cases:
        batch.put(data, ip_to_int(addr[0]), addr[1])
    before = netkit.state(proto)
    assert proto.receive_batch(batch, netkit.ns(100)) == []
    assert proto.datagrams_to_send() == []
    expected = {}
    for _label, _data, _addr, reason in cases:
        expected[reason] = expected.get(reason, 0) + 1
    assert D.drops_by_reason(proto.drops) == expected
    assert netkit.state(proto) == before


def test_random_datagrams_are_each_dropped_once(live, netkit):
    proto, _client, _sid = live
    rng = random.Random(2024)
    before = netkit.state(proto)
    for n in range(400):
        size = rng.choice([rng.randrange(0, 40), rng.randrange(0, 1300), 256, 21, 29, 17])
        data = rng.randbytes(size)
        if n % 2:  # half of them with a plausible header, so later checks are reached
            data = (struct.pack("<HB", PROTOCOL_ID, VERSION) + data[3:]) if size >= 3 else data
        drops = int(proto.drops.sum())
        assert proto.receive_datagram(data, (f"10.9.{n % 256}.1", 1000 + n), netkit.ns(100)) == []
        assert proto.datagrams_to_send() == []
        assert int(proto.drops.sum()) == drops + 1
    assert netkit.state(proto) == before


def test_snapshot_sent_to_the_server_by_its_own_client_is_bad_type(live, netkit):
    proto, client, _ = live
    proto.world.step()
    proto.encode()
    (snap, _), = list(proto.snapshots())
    before = netkit.state(proto)
    proto.receive_datagram(bytes(snap), A, netkit.ns(120))  # reflected back at the server
    assert D.drops_by_reason(proto.drops) == {"bad_type": 1}
    assert netkit.state(proto) == before


# ---- the client side ----------------------------------------------------------------

def client_state(client):
    return (client.state, client.info, client._rx_seq, client._tx_seq, client._input_seq,
            client.last_snapshot_tick, client._last_heard, client._started)


BASE_DOC = {"t": 9, "a": 3, "h": [0, 100], "me": [0, 10, 20, 3, 0, 7], "p": [], "tr": []}


def snapshot_packet(sid, seq, payload):
    body = payload if isinstance(payload, bytes) else msgpack.packb(payload)
    return pack_header(SNAPSHOT, sid, seq) + body


def with_(**changes):
    doc = dict(BASE_DOC)
    for key, value in changes.items():
        if value is ...:
            del doc[key]
        else:
            doc[key] = value
    return doc


BAD_SNAPSHOT_PAYLOADS = {
    "empty payload": b"",
    "truncated map": msgpack.packb(BASE_DOC)[:-3],
    "one byte": b"\x86",
    "nil": msgpack.packb(None),
    "an int": msgpack.packb(5),
    "a list": msgpack.packb([1, 2, 3]),
    "a string": msgpack.packb("snapshot"),
    "extra data after the map": msgpack.packb(BASE_DOC) + b"\x00",
    "two maps": msgpack.packb(BASE_DOC) * 2,
    "reserved byte 0xc1": b"\xc1",
    "int keys": msgpack.packb({1: 2}),
    "nil key": b"\x81\xc0\x00",
    "float key": b"\x81\xca\x00\x00\x00\x00\x00",
    "bin value": msgpack.packb(with_(t=b"\x00\x01")),
    "ext value": msgpack.packb(with_(t=msgpack.ExtType(1, b"abcd"))),
    "timestamp ext": b"\x81\xa1t\xd6\xff\x00\x00\x00\x01",
    "long string": msgpack.packb(with_(t="x" * 9)),
    "array longer than 512": msgpack.packb(with_(p=[0] * 513)),
    "array header claims 2**32-1 items": b"\x86\xa1p\xdd\xff\xff\xff\xff",
    "map header claims 2**32-1 pairs": b"\xdf\xff\xff\xff\xff",
    "map of 17 keys": msgpack.packb({**BASE_DOC, **{f"k{i}": 0 for i in range(11)}}),
    "deep nesting": b"\x91" * 1100 + b"\x00",
    "no t": with_(t=...),
    "no a": with_(a=...),
    "no h": with_(h=...),
    "no me": with_(me=...),
    "no p": with_(p=...),
    "no tr": with_(tr=...),
    "t is a float": with_(t=9.0),
    "t is a bool": with_(t=True),
    "t is nil": with_(t=None),
    "t is a string": with_(t="9"),
    "a is a list": with_(a=[3]),
    "h has 1 item": with_(h=[0]),
    "h has 4 items": with_(h=[0, 1, 2, 3]),
    "h is negative": with_(h=[-1, 5]),
    "h holds a float": with_(h=[0, 1.5]),
    "h is a map": with_(h={"a": 1}),
    "me has 5 items": with_(me=[0, 1, 2, 3, 4]),
    "me has 12 items": with_(me=[0, 1, 2, 3, 4, 5] * 2),
    "me holds a string": with_(me=[0, 1, 2, 3, 4, "5"]),
    "me holds nil": with_(me=[0, 1, 2, None, 4, 5]),
    "me holds a negative": with_(me=[0, -1, 2, 3, 4, 5]),
    "me holds a list": with_(me=[0, [1], 2, 3, 4, 5]),
    "p not in threes": with_(p=[1, 2]),
    "p holds a bool": with_(p=[1, 2, False]),
    "p is an int": with_(p=7),
    "tr not in fours": with_(tr=[1, 2, 3]),
    "tr holds a negative": with_(tr=[1, 2, 3, -4]),
    "ev not in fours": with_(ev=[1, 2, 3, 4, 5]),
    "ev is nil": with_(ev=None),
    "lb odd": with_(lb=[1, 2, 3]),
    "lb is a string": with_(lb="top"),
    "lb is nil": with_(lb=None),
    "hr empty": with_(hr=[]),
    "hr is an int": with_(hr=3),
    "hr head is a string": with_(hr=["1", 0, 5]),
    "hr rows odd": with_(hr=[1, 0]),
    "hr rows hold a float": with_(hr=[1, 0, 5.0]),
}


def test_base_snapshot_document_is_valid(live):
    _proto, client, sid = live
    packet = snapshot_packet(sid, 10**6, BASE_DOC)
    snap = parse_snapshot(packet, 10**6, client.info)
    assert isinstance(snap, Snapshot) and snap.tick == 9 and snap.leaderboard is None


@pytest.mark.parametrize("label", list(BAD_SNAPSHOT_PAYLOADS))
def test_client_drops_malformed_snapshot_payloads(live, label):
    _proto, client, sid = live
    packet = snapshot_packet(sid, 10**6, BAD_SNAPSHOT_PAYLOADS[label])
    if len(packet) > MAX_DATAGRAM:
        pytest.skip("larger than a datagram: dropped as oversize before decoding")
    assert parse_snapshot(packet, 10**6, client.info) is None
    before = client_state(client)
    assert client.receive(packet, 0.5) == []
    assert D.drops_by_reason(client.drops) == {"bad_payload": 1}
    assert client_state(client) == before


def client_cases(client, sid):
    snap = snapshot_packet(sid, 10**6, BASE_DOC)
    accept = (pack_header(CONNECT_ACCEPT, sid, 0)
              + CONNECT_ACCEPT_BODY.pack(client.salt, 0, 20, 20, 0, 512.0, 512.0, 24.0, 96.0,
                                         30, 0, 5000))
    deny = pack_header(CONNECT_DENY, 0, 0) + CONNECT_DENY_BODY.pack(client.salt, 1)
    bye = pack_header(DISCONNECT, sid, 10**6) + DISCONNECT_BODY.pack(2)
    cases = [("empty", b"", "too_short")]
    cases += [(f"{n} bytes", snap[:n], "too_short") for n in range(1, HEADER_SIZE)]
    cases += [(f"oversize {n}", snap.ljust(n, b"\0"), "oversize")
              for n in (MAX_DATAGRAM + 1, 1536, 65536)]
    for name, packet in (("snapshot", snap), ("accept", accept), ("deny", deny), ("bye", bye)):
        cases.append((f"{name} protocol", b"MX" + packet[2:], "bad_protocol"))
        cases.append((f"{name} version", packet[:2] + bytes([VERSION + 1]) + packet[3:],
                      "bad_version"))
        for at in (4, 5, 6, 7):
            bad = bytearray(packet)
            bad[at] = 1
            cases.append((f"{name} byte {at}", bytes(bad), "bad_flags"))
    for ptype in (0, CONNECT_REQUEST, INPUT, KEEPALIVE, 8, 0xFF):
        cases.append((f"type {ptype}", raw_header(ptype, sid, 10**6) + bytes(8), "bad_type"))
    cases += [
        ("accept too short", accept[:-1], "bad_length"),
        ("accept too long", accept + b"\0", "bad_length"),
        ("deny too short", deny[:-1], "bad_length"),
        ("deny too long", deny + b"\0", "bad_length"),
        ("bye too short", bye[:-1], "bad_length"),
        ("bye too long", bye + b"\0", "bad_length"),
        ("accept while connected, other salt", accept[:HEADER_SIZE]
         + CONNECT_ACCEPT_BODY.pack(client.salt ^ 2, *CONNECT_ACCEPT_BODY.unpack_from(
             accept, HEADER_SIZE)[1:]), "unknown_session"),
        ("accept while connected (duplicate)", accept, "duplicate_connect"),
        ("deny while connected", deny, "unknown_session"),
        ("snapshot of another session", snapshot_packet(sid ^ 0x10000, 10**6, BASE_DOC),
         "unknown_session"),
        ("bye of another session", pack_header(DISCONNECT, sid ^ 0x10000, 10**6)
         + DISCONNECT_BODY.pack(2), "unknown_session"),
        ("snapshot, stale sequence", snapshot_packet(sid, 1, BASE_DOC), "stale_sequence"),
        ("snapshot, sequence 0", snapshot_packet(sid, 0, BASE_DOC), "stale_sequence"),
        ("bye, stale sequence", pack_header(DISCONNECT, sid, 1) + DISCONNECT_BODY.pack(2),
         "stale_sequence"),
        ("snapshot with a bad payload", snapshot_packet(sid, 10**6, b"\xc1"), "bad_payload"),
    ]
    return cases


def test_client_drops_each_malformed_datagram_under_its_reason(live):
    _proto, client, sid = live
    assert client.state == CONNECTED
    for label, data, reason in client_cases(client, sid):
        before = client_state(client)
        drops = client.drops.copy()
        assert client.receive(data, 0.5) == [], label
        assert D.drops_by_reason(client.drops - drops) == {reason: 1}, label
        assert client_state(client) == before, label


def test_connecting_client_drops_foreign_accepts_and_denies(live):
    _proto, _c, sid = live
    client = ClientProtocol(name="fresh", salt=41)
    client.connect(0.0)
    before = client_state(client)
    body = CONNECT_ACCEPT_BODY.pack(42, 0, 20, 20, 0, 512.0, 512.0, 24.0, 96.0, 30, 0, 5000)
    assert client.receive(pack_header(CONNECT_ACCEPT, sid, 0) + body, 0.1) == []
    assert client.receive(pack_header(CONNECT_DENY, 0, 0) + CONNECT_DENY_BODY.pack(42, 1),
                          0.1) == []
    assert client.receive(snapshot_packet(sid, 5, BASE_DOC), 0.1) == []  # not connected yet
    assert D.drops_by_reason(client.drops) == {"unknown_session": 3}
    assert client_state(client) == before
