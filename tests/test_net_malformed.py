"""Malformed datagrams, both ways: each is dropped, counted under its reason, and forgotten.

A dropped datagram never raises, gets no reply, and changes no session or player state.
The server has one live session (at address A) and one client half way through the
handshake (challenged at P), so session packets and challenge responses reach every check.
Protocol v3: packets after the request carry an 8-byte SipHash tag (net.tag).
"""

from __future__ import annotations

import random
import struct

import msgpack
import pytest

from net import drops as D
from net.address import ip_to_int
from net.batch import DatagramBatch
from net.client import CONNECTED, CONNECTING, Snapshot, parse_snapshot
from net.tag import sign
from net.wire import (CHALLENGE, CHALLENGE_RESPONSE, CHALLENGE_SIZE, CONNECT_ACCEPT,
                      CONNECT_ACCEPT_BODY, CONNECT_DENY, CONNECT_DENY_BODY, CONNECT_REQUEST,
                      CONNECT_REQUEST_SIZE, COOKIE_AT, COOKIE_SIZE, DISCONNECT,
                      DISCONNECT_BODY, HEADER, HEADER_SIZE, INPUT, INPUT_PREFIX,
                      INPUT_RECORD, KEEPALIVE, MAX_DATAGRAM, PROTOCOL_ID, SNAPSHOT, TAG_SIZE,
                      VERSION, pack_header)

A = ("10.0.0.1", 4000)  # the live session
P = ("10.0.0.2", 4100)  # the pending (challenged) client
STRANGER = ("192.0.2.7", 5555)
OTHER_KEY = bytes(range(100, 116))


def stranger(k: int) -> tuple[str, int]:
    """A fresh source address per handshake case: the per-address rate limit (8 at once)
    must not be what drops it."""
    return (f"198.51.{100 + k // 250}.{1 + k % 250}", 6000 + k)


@pytest.fixture
def live(netkit):
    """(server, client, pending client, the input the server accepted): one connected
    session at A, one tick played; a second client challenged from P, not yet answered."""
    proto = netkit.server()
    client = netkit.client("victim", salt=0x5A17)
    assert netkit.connect(proto, client, A, 0)
    first_input = client.input(5, 5, False, 0.01)
    proto.receive_datagram(first_input, A, netkit.ns(10))
    proto.world.step()
    proto.encode()
    for data, _ in proto.snapshots():
        assert isinstance(client.receive(bytes(data), 0.02)[0], Snapshot)
    pending = netkit.client("pending", salt=0xBEEF)
    proto.receive_datagram(pending.connect(0.02), P, netkit.ns(20))
    (challenge, to), = proto.datagrams_to_send()
    assert to == P and len(challenge) == CHALLENGE_SIZE
    assert pending.receive(challenge, 0.02) == [] and pending._response is not None
    proto.drops[:] = 0
    proto.accepted[:] = 0
    return proto, client, pending, first_input


def raw_header(ptype, sid=0, seq=1, *, protocol=PROTOCOL_ID, version=VERSION, flags=0,
               reserved=b"\0\0\0"):
    head = bytearray(HEADER.pack(protocol, version, ptype, flags, sid, seq))
    head[5:8] = reserved
    return bytes(head)


def resign(packet: bytes, key: bytes) -> bytes:
    """packet with its last 8 bytes replaced by the tag of the rest under key."""
    return sign(packet[:-TAG_SIZE], key)


def valid_packets(client, pending, netkit, seq=1000):
    """One valid client->server packet of each type (session packets of client's session
    at `seq`, not yet received; a request of a fresh client; pending's response)."""
    sid, key = client.info.session_id, client.token.c2s_key
    inputs = (pack_header(INPUT, sid, seq) + INPUT_PREFIX.pack(7, 4)
              + b"".join(INPUT_RECORD.pack(50 - k, 1, 1, 0) for k in range(4)))
    return {
        CONNECT_REQUEST: netkit.client("n", salt=99).connect(0.0),
        CHALLENGE_RESPONSE: pending._response,
        INPUT: sign(inputs, key),
        KEEPALIVE: sign(pack_header(KEEPALIVE, sid, seq), key),
        DISCONNECT: sign(pack_header(DISCONNECT, sid, seq) + DISCONNECT_BODY.pack(1), key),
    }


def server_cases(proto, client, pending, first_input, netkit):
    """(label, datagram, address, reason) for everything the server must drop."""
    sid, key = client.info.session_id, client.token.c2s_key
    good = valid_packets(client, pending, netkit)
    handshake = (CONNECT_REQUEST, CHALLENGE_RESPONSE)
    cases = [("empty", b"", A, "too_short")]
    for n in range(1, HEADER_SIZE):
        cases.append((f"first {n} bytes of a keepalive", good[KEEPALIVE][:n], A, "too_short"))
        cases.append((f"{n} random bytes", random.Random(n).randbytes(n), A, "too_short"))
    for size in (MAX_DATAGRAM + 1, 1400, 1535, 1536, 1537, 4096, 65507, 65536):
        body = good[INPUT] + bytes(size - len(good[INPUT]))
        cases.append((f"oversize input {size}", body, A, "oversize"))
    cases.append(("64 KiB of 0xFF", b"\xff" * 65536, A, "oversize"))
    for ptype, packet in good.items():
        src = P if ptype == CHALLENGE_RESPONSE else A
        for proto_id in (0, 0x584D, PROTOCOL_ID ^ 1, 0xFFFF):
            bad = struct.pack("<H", proto_id) + packet[2:]
            cases.append((f"type {ptype} protocol {proto_id:#x}", bad, src, "bad_protocol"))
        for version in (0, 1, 2, VERSION + 1, 255):
            bad = packet[:2] + bytes([version]) + packet[3:]
            # a 256-byte request of another version is answered (test_net_security.py)
            if not (ptype == CONNECT_REQUEST and len(bad) == CONNECT_REQUEST_SIZE):
                cases.append((f"type {ptype} version {version}", bad, src, "bad_version"))
        for at in (4, 5, 6, 7):
            for value in (1, 0x80, 0xFF):
                bad = bytearray(packet)
                bad[at] = value
                cases.append((f"type {ptype} byte {at} = {value}", bytes(bad), src,
                              "bad_flags"))
    for ptype in (0, CONNECT_ACCEPT, CONNECT_DENY, SNAPSHOT, CHALLENGE, 10, 0x7F, 0x80, 0xFF):
        for tail in (b"", bytes(1), bytes(9), bytes(44), bytes(172), bytes(240)):
            packet = raw_header(ptype, sid, 2000) + tail
            cases.append((f"type {ptype} + {len(tail)}", packet, A, "bad_type"))
            if len(packet) >= 24:
                cases.append((f"tagged type {ptype} + {len(tail)}", resign(packet, key), A,
                              "bad_type"))
    # every wrong length of each type
    for ptype in handshake:
        for n in (HEADER_SIZE, 17, 100, 188, 255, 257, 300, 1200):
            bad = good[ptype][:n].ljust(n, b"\0")
            cases.append((f"type {ptype} of {n} bytes", bad, STRANGER, "bad_length"))
    full_input = good[INPUT]  # 4 records: 16 + 5 + 32 + 8 = 61 bytes
    assert len(full_input) == 61
    for n in range(HEADER_SIZE, len(full_input)):
        cases.append((f"input cut to {n}", full_input[:n], A, "bad_length"))
    for count in (1, 2, 3):  # count byte 4, the length of `count` records (tag re-signed)
        packet = sign(full_input[:21 + 8 * count], key)
        cases.append((f"input says 4 records, has {count}", packet, A, "bad_length"))
    for extra in (1, 7, 8, 9, 100):
        cases.append((f"input + {extra}", full_input + bytes(extra), A, "bad_length"))
        cases.append((f"input + {extra}, tagged", sign(full_input[:-8] + bytes(extra), key),
                      A, "bad_length"))
    for count in (0, 5, 6, 127, 255):
        body = pack_header(INPUT, sid, 3000) + INPUT_PREFIX.pack(0, count)
        for records in sorted({0, 1, 4, min(count, 100)}):
            packet = sign(body + INPUT_RECORD.pack(60, 0, 0, 0) * records, key)
            if len(packet) <= MAX_DATAGRAM:
                cases.append((f"input count {count} with {records} records", packet, A,
                              "bad_length"))
    for n in (17, 18, 20, 23, 25, 32, 100):
        cases.append((f"keepalive of {n}", good[KEEPALIVE].ljust(n, b"\0")[:n], A,
                      "bad_length"))
    for n in (HEADER_SIZE, 17, 18, 24, 26, 64):
        bye = (good[DISCONNECT] + bytes(64))[:n]
        cases.append((f"disconnect of {n}", bye, A, "bad_length"))
    # session packets that pass framing but not the session checks
    for ptype in (INPUT, KEEPALIVE, DISCONNECT):
        packet = good[ptype]
        other = bytearray(packet)
        other[8:12] = (sid ^ 0x10000).to_bytes(4, "little")  # a guessed nonce
        cases.append((f"type {ptype}, another nonce", resign(bytes(other), key), A,
                      "unknown_session"))
        other[8:12] = (sid + 1).to_bytes(4, "little")  # a free slot
        cases.append((f"type {ptype}, free slot", resign(bytes(other), key), A,
                      "unknown_session"))
        cases.append((f"type {ptype} from a stranger", packet, STRANGER, "wrong_address"))
        cases.append((f"type {ptype} from A's ip, other port", packet, (A[0], A[1] + 1),
                      "wrong_address"))
        zero = bytearray(packet)
        zero[12:16] = bytes(4)
        cases.append((f"type {ptype}, sequence 0", resign(bytes(zero), key), A,
                      "stale_sequence"))
        bad_tag = bytearray(packet)
        bad_tag[-1] ^= 0x01
        cases.append((f"type {ptype}, last tag bit", bytes(bad_tag), A, "bad_tag"))
        cases.append((f"type {ptype}, signed with another key", resign(packet, OTHER_KEY), A,
                      "bad_tag"))
        cases.append((f"type {ptype}, untagged (tag zero)", packet[:-8] + bytes(8), A,
                      "bad_tag"))
    cases.append(("the accepted input again", first_input, A, "replayed"))
    # connect requests that pass framing but not the token checks
    request = good[CONNECT_REQUEST]

    def with_bytes(packet, at, value):
        return packet[:at] + value + packet[at + len(value):]

    unix_s = netkit.UNIX_S
    expire = int.from_bytes(request[24:32], "little")
    victim_request = request_of(client)  # resent from its own address: duplicate
    same_id = netkit.client("impostor", salt=0x5A17, client_id=client.token.client_id)
    token_cases = [
        ("salt 0", with_bytes(request, 16, bytes(8)), "bad_payload"),
        ("expire 0", with_bytes(request, 24, bytes(8)), "token_expired"),
        ("expire = now", with_bytes(request, 24, unix_s.to_bytes(8, "little")),
         "token_expired"),
        ("expired token", netkit.client("old", now=unix_s - 7200).connect(0.0),
         "token_expired"),
        ("expire changed (AD)", with_bytes(request, 24, (expire + 1).to_bytes(8, "little")),
         "bad_token"),
        ("expire u64 max", with_bytes(request, 24, b"\xff" * 8), "bad_token"),
        ("nonce changed", with_bytes(request, 32, bytes(12)), "bad_token"),
        ("sealed byte flipped", with_bytes(request, 100, bytes([request[100] ^ 4])),
         "bad_token"),
        ("token id flipped", with_bytes(request, 187, bytes([request[187] ^ 0x80])),
         "bad_token"),
        ("sealed token zeroed", with_bytes(request, 44, bytes(144)), "bad_token"),
        ("token under another key", netkit.client("k").connect(0.0)[:24]
         + _sealed_under(bytes(32), netkit) + bytes(68), "bad_token"),
        ("token for another server",
         netkit.client("w", servers=[("192.0.2.1", 7778)]).connect(0.0), "wrong_server"),
        ("token for other servers",
         netkit.client("w", servers=[("192.0.2.2", 7777), ("198.51.100.1", 7777)]).connect(
             0.0), "wrong_server"),
        ("client id of a live session", same_id.connect(0.0), "duplicate_client"),
        ("the victim's token elsewhere", victim_request, "token_reused"),
    ]
    for k, (label, packet, reason) in enumerate(token_cases):
        cases.append((label, packet, stranger(k), reason))
    cases.append(("the victim's request resent", victim_request, A, "duplicate_connect"))
    # challenge responses that pass framing but not the cookie checks
    response = good[CHALLENGE_RESPONSE]
    c2s = pending.token.c2s_key
    cookie = response[COOKIE_AT:COOKIE_AT + COOKIE_SIZE]
    response_cases = [
        ("response from another address", response, STRANGER, "wrong_address"),
        ("response from P's ip, other port", response, (P[0], P[1] + 1), "wrong_address"),
        ("response, cookie byte flipped", resign(with_bytes(response, COOKIE_AT + 40,
                                                            bytes([cookie[40] ^ 1])), c2s),
         P, "bad_challenge"),
        ("response, cookie nonce changed", resign(with_bytes(response, COOKIE_AT, bytes(12)),
                                                  c2s), stranger(90), "bad_challenge"),
        ("response, random cookie", resign(with_bytes(response, COOKIE_AT,
                                                      random.Random(3).randbytes(156)), c2s),
         stranger(91), "bad_challenge"),
        ("response, salt changed", resign(with_bytes(response, 16, (1).to_bytes(8, "little")),
                                          c2s), P, "bad_challenge"),
        ("response, tag bit", response[:-1] + bytes([response[-1] ^ 1]), P, "bad_tag"),
        ("response, signed with s2c", resign(response, pending.token.s2c_key), P, "bad_tag"),
        ("response, padding changed", with_bytes(response, 200, b"\x01"), P, "bad_tag"),
        ("a request's bytes as a response", request[:3] + bytes([CHALLENGE_RESPONSE])
         + request[4:], stranger(92), "bad_challenge"),
    ]
    cases += response_cases
    return cases


def request_of(client) -> bytes:
    """The CONNECT_REQUEST `client` sent (its salt and token), built without touching it."""
    packet = (pack_header(CONNECT_REQUEST, 0, 0) + client.salt.to_bytes(8, "little")
              + client.token.request_fields())
    return packet.ljust(CONNECT_REQUEST_SIZE, b"\0")


def _sealed_under(key: bytes, netkit) -> bytes:
    """Request bytes 24..188 (expire, nonce, sealed) of a token sealed with another key."""
    from net.token import issue_token
    token = issue_token(key, 5, [netkit.ADDRESS], "k", netkit.UNIX_S, 3600)
    return token.request_fields()


def _cases(live, netkit):
    proto, client, pending, first_input = live
    return server_cases(proto, client, pending, first_input, netkit)


def test_server_drops_each_malformed_datagram_under_its_reason(live, netkit):
    proto = live[0]
    cases = _cases(live, netkit)
    assert len(cases) > 300
    covered = {reason for *_rest, reason in cases}
    # every reason a server can reach with a single datagram of a fresh sender; the rest
    # (rate_limited, server_full, address_limit, challenge_expired, shutting_down, banned)
    # are in test_net_security.py and test_net_bans.py, no_baseline is the client's
    assert covered == set(D.REASONS) - {"rate_limited", "server_full", "address_limit",
                                        "challenge_expired", "no_baseline", "shutting_down",
                                        "banned"}
    gate = proto.gate
    for label, data, addr, reason in cases:
        before = netkit.state(proto)
        accepted = proto.accepted.copy()
        drops = proto.drops.copy()
        replay = proto.replay.copy()
        used, challenges = dict(gate.used), gate.challenges
        events = proto.receive_datagram(data, addr, netkit.ns(100))
        assert events == [], label
        assert proto.datagrams_to_send() == [], label
        delta = D.drops_by_reason(proto.drops - drops)
        assert delta == {reason: 1}, label
        assert netkit.state(proto) == before, label
        assert (proto.accepted == accepted).all(), label
        assert (proto.replay == replay).all(), label
        assert (dict(gate.used), gate.challenges) == (used, challenges), label
    netkit.check_invariants(proto)
    assert proto.connected_count() == 1


def test_the_same_datagrams_in_one_batch(live, netkit):
    """The batch path (what the tick uses) counts the same: one drop per datagram."""
    proto = live[0]
    cases = _cases(live, netkit)
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
    assert not proto.accepted.any()


def test_valid_packets_of_the_cases_are_valid(live, netkit):
    """The packets the cases are made from pass: each case is dropped for its defect."""
    proto, client, pending, _ = live
    good = valid_packets(client, pending, netkit)
    assert proto.receive_datagram(good[INPUT], A, netkit.ns(100)) == []
    assert proto.receive_datagram(good[KEEPALIVE], A, netkit.ns(100)) == []  # 1000 is taken
    assert proto.receive_datagram(good[CHALLENGE_RESPONSE], P, netkit.ns(100))[0].name == \
        "pending"
    (accept, to), = proto.datagrams_to_send()
    assert to == P and pending.receive(accept, 0.1)[0].info.slot == 1
    before = proto.gate.challenges
    proto.receive_datagram(good[CONNECT_REQUEST], stranger(999), netkit.ns(100))
    assert proto.gate.challenges == before + 1
    assert len(proto.datagrams_to_send()) == 1
    assert proto.accepted[INPUT] == 1
    assert D.drops_by_reason(proto.drops) == {"replayed": 1}
    bye = valid_packets(client, pending, netkit, seq=1001)[DISCONNECT]
    assert proto.receive_datagram(bye, A, netkit.ns(100))[0].reason == "quit"


def test_random_datagrams_are_each_dropped_once(live, netkit):
    proto = live[0]
    rng = random.Random(2024)
    before = netkit.state(proto)
    for n in range(400):
        size = rng.choice([rng.randrange(0, 40), rng.randrange(0, 1300), 256, 37, 24, 25, 188])
        data = rng.randbytes(size)
        if n % 2:  # half of them with a plausible header, so later checks are reached
            data = (struct.pack("<HB", PROTOCOL_ID, VERSION) + data[3:]) if size >= 3 else data
        drops = int(proto.drops.sum())
        assert proto.receive_datagram(data, (f"10.9.{n % 256}.1", 1000 + n), netkit.ns(100)) == []
        assert proto.datagrams_to_send() == []
        assert int(proto.drops.sum()) == drops + 1
    assert netkit.state(proto) == before


def test_snapshot_sent_to_the_server_by_its_own_client_is_bad_type(live, netkit):
    proto = live[0]
    proto.world.step()
    proto.encode()
    (snap, _), = list(proto.snapshots())
    before = netkit.state(proto)
    proto.receive_datagram(bytes(snap), A, netkit.ns(120))  # reflected back at the server
    assert D.drops_by_reason(proto.drops) == {"bad_type": 1}
    assert netkit.state(proto) == before


def test_challenge_reflected_at_the_server_is_bad_type(live, netkit):
    proto, _client, pending, _ = live
    proto.receive_datagram(netkit.client("r", salt=3).connect(0.0), stranger(5), netkit.ns(100))
    (challenge, _), = proto.datagrams_to_send()
    before = netkit.state(proto)
    proto.receive_datagram(challenge, stranger(5), netkit.ns(100))
    assert D.drops_by_reason(proto.drops) == {"bad_type": 1}
    assert netkit.state(proto) == before


# ---- the client side ----------------------------------------------------------------

def client_state(client):
    return (client.state, client.info, client._rx_seq, client._tx_seq, client._input_seq,
            client.last_snapshot_tick, client._last_heard, client._started, client._response,
            client._last_sent, tuple(client.held))


BASE_DOC = {"t": 9, "a": 3, "h": [0, 100], "me": [0, 10, 20, 3, 0, 7], "p": [], "tr": []}


def snapshot_packet(client, seq, payload, sid=None, key=None):
    """A SNAPSHOT to `client` (tagged with its s2c key unless `key` is given)."""
    body = payload if isinstance(payload, bytes) else msgpack.packb(payload)
    sid = client.info.session_id if sid is None else sid
    return sign(pack_header(SNAPSHOT, sid, seq) + body, key or client.token.s2c_key)


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
    "array longer than 1024": msgpack.packb(with_(p=[0] * 1025)),
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
    "b is a string": with_(b="7"),
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
    "p not in fives": with_(p=[1, 2, 3]),
    "p holds a bool": with_(p=[1, 2, 3, 4, False]),
    "p holds x past 65535": with_(p=[1, 65536, 3, 0, 0]),
    "p holds a negative id": with_(p=[-1, 2, 3, 0, 0]),
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
    client = live[1]
    packet = snapshot_packet(client, 10**6, BASE_DOC)
    snap = parse_snapshot(packet[:-TAG_SIZE], 10**6, client.info)
    assert isinstance(snap, Snapshot) and snap.tick == 9 and snap.leaderboard is None


@pytest.mark.parametrize("label", list(BAD_SNAPSHOT_PAYLOADS))
def test_client_drops_malformed_snapshot_payloads(live, label):
    client = live[1]
    packet = snapshot_packet(client, 10**6, BAD_SNAPSHOT_PAYLOADS[label])
    if len(packet) > MAX_DATAGRAM:
        pytest.skip("larger than a datagram: dropped as oversize before decoding")
    assert parse_snapshot(packet[:-TAG_SIZE], 10**6, client.info) is None
    before = client_state(client)
    assert client.receive(packet, 0.5) == []
    assert D.drops_by_reason(client.drops) == {"bad_payload": 1}
    assert client_state(client) == before


def client_cases(client):
    sid, key = client.info.session_id, client.token.s2c_key
    snap = snapshot_packet(client, 10**6, BASE_DOC)
    accept = sign(pack_header(CONNECT_ACCEPT, sid, 0)
                  + CONNECT_ACCEPT_BODY.pack(client.salt, 0, 20, 20, 0, 512.0, 512.0, 24.0,
                                             96.0, 30, 0, 5000), key)
    deny = sign(pack_header(CONNECT_DENY, 0, 0) + CONNECT_DENY_BODY.pack(client.salt, 1), key)
    bye = sign(pack_header(DISCONNECT, sid, 10**6) + DISCONNECT_BODY.pack(2), key)
    challenge = sign(pack_header(CHALLENGE, 0, 0) + client.salt.to_bytes(8, "little")
                     + bytes(COOKIE_SIZE), key)
    cases = [("empty", b"", "too_short")]
    cases += [(f"{n} bytes", snap[:n], "too_short") for n in range(1, HEADER_SIZE)]
    cases += [(f"oversize {n}", snap.ljust(n, b"\0"), "oversize")
              for n in (MAX_DATAGRAM + 1, 1536, 65536)]
    for name, packet in (("snapshot", snap), ("accept", accept), ("deny", deny), ("bye", bye),
                         ("challenge", challenge)):
        cases.append((f"{name} protocol", b"MX" + packet[2:], "bad_protocol"))
        cases.append((f"{name} version", packet[:2] + bytes([VERSION + 1]) + packet[3:],
                      "bad_version"))
        cases.append((f"{name} version 2", packet[:2] + bytes([2]) + packet[3:],
                      "bad_version"))
        for at in (4, 5, 6, 7):
            bad = bytearray(packet)
            bad[at] = 1
            cases.append((f"{name} byte {at}", bytes(bad), "bad_flags"))
    for ptype in (0, CONNECT_REQUEST, INPUT, KEEPALIVE, CHALLENGE_RESPONSE, 10, 0xFF):
        cases.append((f"type {ptype}", raw_header(ptype, sid, 10**6) + bytes(8), "bad_type"))
    cases.append(("the 25-byte version deny", pack_header(CONNECT_DENY, 0, 0)
                  + CONNECT_DENY_BODY.pack(client.salt, 2), "bad_length"))
    cases += [
        ("accept too short", accept[:-1], "bad_length"),
        ("accept too long", accept + b"\0", "bad_length"),
        ("accept untagged (60 bytes)", accept[:-TAG_SIZE], "bad_length"),
        ("deny too short", deny[:-1], "bad_length"),
        ("deny too long", deny + b"\0", "bad_length"),
        ("bye too short", bye[:-1], "bad_length"),
        ("bye too long", bye + b"\0", "bad_length"),
        ("bye untagged (17 bytes)", bye[:-TAG_SIZE], "bad_length"),
        ("snapshot of 23 bytes", snap[:23], "bad_length"),
        ("challenge too short", challenge[:-1], "bad_length"),
        ("challenge too long", challenge + b"\0", "bad_length"),
        ("accept while connected, other salt", resign(
            accept[:HEADER_SIZE] + CONNECT_ACCEPT_BODY.pack(
                client.salt ^ 2, *CONNECT_ACCEPT_BODY.unpack_from(accept, HEADER_SIZE)[1:])
            + bytes(8), key), "unknown_session"),
        ("accept while connected (duplicate)", accept, "duplicate_connect"),
        ("accept while connected, bad tag", resign(accept, OTHER_KEY), "bad_tag"),
        ("deny while connected", deny, "unknown_session"),
        ("challenge while connected", challenge, "unknown_session"),
        ("snapshot of another session", snapshot_packet(client, 10**6, BASE_DOC,
                                                        sid=sid ^ 0x10000), "unknown_session"),
        ("bye of another session", resign(pack_header(DISCONNECT, sid ^ 0x10000, 10**6)
                                          + DISCONNECT_BODY.pack(2) + bytes(8), key),
         "unknown_session"),
        ("snapshot, stale sequence", snapshot_packet(client, 1, BASE_DOC), "stale_sequence"),
        ("snapshot, sequence 0", snapshot_packet(client, 0, BASE_DOC), "stale_sequence"),
        ("bye, stale sequence", resign(pack_header(DISCONNECT, sid, 1)
                                       + DISCONNECT_BODY.pack(2) + bytes(8), key),
         "stale_sequence"),
        ("snapshot, bad tag", snap[:-1] + bytes([snap[-1] ^ 0x40]), "bad_tag"),
        ("snapshot, signed with c2s", resign(snap, client.token.c2s_key), "bad_tag"),
        ("snapshot, untagged", snap[:-TAG_SIZE], "bad_tag"),
        ("bye, bad tag", resign(bye, OTHER_KEY), "bad_tag"),
        ("snapshot with a bad payload", snapshot_packet(client, 10**6, b"\xc1"), "bad_payload"),
        ("snapshot with an empty payload", snapshot_packet(client, 10**6, b""), "bad_payload"),
        ("delta against a tick not held", snapshot_packet(client, 10**6, with_(b=12345)),
         "no_baseline"),
    ]
    return cases


def test_client_drops_each_malformed_datagram_under_its_reason(live):
    client = live[1]
    assert client.state == CONNECTED
    cases = client_cases(client)
    assert {reason for *_r, reason in cases} == set(D.REASONS) - {
        "wrong_address", "replayed", "rate_limited", "server_full", "bad_token",
        "token_expired", "wrong_server", "token_reused", "duplicate_client",
        "bad_challenge", "challenge_expired", "address_limit",
        "shutting_down", "banned"}  # server-only reasons
    for label, data, reason in cases:
        before = client_state(client)
        drops = client.drops.copy()
        assert client.receive(data, 0.5) == [], label
        assert D.drops_by_reason(client.drops - drops) == {reason: 1}, label
        assert client_state(client) == before, label


def test_connecting_client_drops_foreign_and_forged_replies(live, netkit):
    sid = live[1].info.session_id
    client = netkit.client("fresh", salt=41)
    client.connect(0.0)
    assert client.state == CONNECTING
    key = client.token.s2c_key
    before = client_state(client)
    body = CONNECT_ACCEPT_BODY.pack(42, 0, 20, 20, 0, 512.0, 512.0, 24.0, 96.0, 30, 0, 5000)
    foreign = [sign(pack_header(CONNECT_ACCEPT, sid, 0) + body, key),
               sign(pack_header(CONNECT_DENY, 0, 0) + CONNECT_DENY_BODY.pack(42, 1), key),
               sign(pack_header(CHALLENGE, 0, 0) + (42).to_bytes(8, "little")
                    + bytes(COOKIE_SIZE), key),
               snapshot_packet(live[1], 5, BASE_DOC, sid=sid, key=key),  # not connected yet
               sign(pack_header(DISCONNECT, sid, 5) + DISCONNECT_BODY.pack(2), key)]
    body = CONNECT_ACCEPT_BODY.pack(41, 0, 20, 20, 0, 512.0, 512.0, 24.0, 96.0, 30, 0, 5000)
    forged = [sign(pack_header(CONNECT_ACCEPT, sid, 0) + body, OTHER_KEY),
              sign(pack_header(CONNECT_DENY, 0, 0) + CONNECT_DENY_BODY.pack(41, 1), OTHER_KEY),
              sign(pack_header(CHALLENGE, 0, 0) + (41).to_bytes(8, "little")
                   + bytes(COOKIE_SIZE), client.token.c2s_key)]
    for data in foreign + forged:
        assert client.receive(data, 0.1) == []
    assert D.drops_by_reason(client.drops) == {"unknown_session": 5, "bad_tag": 3}
    assert client_state(client) == before
