"""Protocol v3's security properties (issue 4), each checked through ServerProtocol and
ClientProtocol in memory with time stepped by hand.

- amplification: nothing the server sends before a session exists is larger than the
  datagram it answers, and a dropped datagram is never answered;
- a flood of 100,000 spoofed connect requests creates no state, keeps memory flat and
  lets legitimate clients in and playing;
- authenticity: any bit flip of a tagged packet, either way, is dropped and applies
  nothing; replays and packets of one session sent as another are dropped;
- the replay window: reordering within 256 is accepted once each, older is stale;
- connect tokens and challenge cookies: every refusal of docs/PROTOCOL.md 9.2, its reason
  and whether it is answered;
- rate limits: per address and global for handshakes, per session for the rest.
"""

from __future__ import annotations

import random
import time
import tracemalloc

import numpy as np
import pytest

from net import drops as D
from net.address import ip_to_int
from net.batch import DatagramBatch
from net.client import (CONNECTED, CONNECTING, ClientProtocol, Connected, Denied, Disconnected,
                        Snapshot)
from net.events import PlayerJoined, PlayerLeft
from net.security import BURST_SECONDS, MIN_BURST, SecuritySettings
from net.sessions import S_LAST_HEARD, S_LAST_RX_SEQ, S_SNAPSHOT_ACK
from net.tag import sign, verify
from net.wire import (CHALLENGE, CHALLENGE_RESPONSE, CHALLENGE_RESPONSE_SIZE, CHALLENGE_SIZE,
                      CONNECT_ACCEPT, CONNECT_ACCEPT_SIZE, CONNECT_DENY, CONNECT_DENY_BODY,
                      CONNECT_DENY_SIZE, CONNECT_REQUEST, CONNECT_REQUEST_SIZE, COOKIE_AT,
                      COOKIE_SIZE, DENY_ADDRESS_LIMIT, DENY_SERVER_FULL, DENY_SHUTTING_DOWN,
                      DENY_VERSION, DISCONNECT, DISCONNECT_BODY, HEADER_SIZE, INPUT,
                      INPUT_PREFIX, INPUT_RECORD, KEEPALIVE, MAX_DATAGRAM, SNAPSHOT, TAG_SIZE,
                      VERSION, VERSION_DENY_SIZE, pack_header, unpack_header)
from sim import schema as S

try:  # tests/ is a package here; fall back to the rootdir-on-sys.path layout
    from tests.conftest import NetKit
except ImportError:  # pragma: no cover
    from conftest import NetKit

A = ("10.0.0.1", 4000)
B = ("10.0.0.2", 4001)
C = ("10.0.0.3", 4002)
X = ("203.0.113.5", 5000)  # an attacker, or a stranger
NO_LIMITS = SecuritySettings(connect_rate=0, connect_rate_per_address=0, packet_rate=0)


def ns(ms: int) -> int:
    return ms * 1_000_000


def sec(ms: int) -> float:
    return ms / 1000.0


def send(proto, data: bytes, addr, ms: int) -> tuple[list, list]:
    """(events, replies) of one datagram received at `ms`."""
    events = proto.receive_datagram(data, addr, ns(ms))
    return events, proto.datagrams_to_send()


def drops(proto_or_client) -> dict[str, int]:
    return D.drops_by_reason(proto_or_client.drops)


def full_state(proto) -> tuple:
    """NetKit.state and the rest a dropped packet must not touch: accepted counters, replay
    windows, used tokens, sessions per address, challenges sent."""
    return (NetKit.state(proto), proto.accepted.tobytes(), proto.replay.tobytes(),
            tuple(proto.gate.used.items()), tuple(sorted(proto._per_ip.items())),
            proto.gate.challenges)


def expect_drop(proto, data: bytes, addr, ms: int, reason: str) -> None:
    """data is dropped under `reason` alone, unanswered, changing nothing."""
    before, counters = full_state(proto), proto.drops.copy()
    events, replies = send(proto, data, addr, ms)
    assert D.drops_by_reason(proto.drops - counters) == {reason: 1}
    assert events == [] and replies == []
    assert full_state(proto) == before


def request_of(client, salt: int | None = None, version: int = VERSION) -> bytes:
    """The CONNECT_REQUEST of client's token (its salt unless given), built without
    touching the client."""
    salt = client.salt if salt is None else salt
    packet = (pack_header(CONNECT_REQUEST, 0, 0, version) + salt.to_bytes(8, "little")
              + client.token.request_fields())
    return packet.ljust(CONNECT_REQUEST_SIZE, b"\0")


def challenged(proto, client, addr, ms: int = 0) -> bytes:
    """Send client's request from addr; hand it the CHALLENGE; return its response."""
    events, replies = send(proto, client.connect(sec(ms)), addr, ms)
    assert events == [] and len(replies) == 1 and replies[0][1] == addr
    challenge = replies[0][0]
    assert len(challenge) == CHALLENGE_SIZE and challenge[3] == CHALLENGE
    assert client.receive(challenge, sec(ms)) == []
    response = client._response
    assert response is not None and len(response) == CHALLENGE_RESPONSE_SIZE
    return response


def connected(proto, client, addr, ms: int = 0) -> int:
    """Run client's handshake from addr; return its slot."""
    events = NetKit.connect(proto, client, addr, ms)
    assert len(events) == 1 and isinstance(events[0], Connected), events
    return events[0].info.slot


def session_packet(ptype: int, sid: int, seq: int, key: bytes, body: bytes = b"") -> bytes:
    return sign(pack_header(ptype, sid, seq) + body, key)


def input_packet(client, seq: int, input_seq: int, move_x: int = 0, ack: int = 0,
                 key: bytes | None = None, sid: int | None = None) -> bytes:
    """An INPUT of client's session at packet sequence `seq`, one record."""
    body = INPUT_PREFIX.pack(ack, 1) + INPUT_RECORD.pack(input_seq, move_x, 0, 0)
    return session_packet(INPUT, client.info.session_id if sid is None else sid, seq,
                          key or client.token.c2s_key, body)


def burst(rate: float) -> int:
    """Packets a full GCRA bucket of `rate` lets through at one instant (net.security)."""
    b = max(MIN_BURST, rate * BURST_SECONDS)
    return int(b - 1) + 1


# ---- amplification ----------------------------------------------------------------------

def check_reply(reply: bytes, ptype: int, size: int, key: bytes | None, request: bytes):
    assert len(reply) == size <= len(request)
    head = unpack_header(reply)
    assert head.type == ptype
    if key is not None:
        assert verify(reply, key)


def test_every_reply_before_a_session_is_no_larger_than_its_request(netkit):
    ratios = {}

    def one(name, proto, data, addr, ms, ptype, size, key, reason=None):
        before = proto.drops.copy()
        _, replies = send(proto, data, addr, ms)
        assert len(replies) == 1, name
        reply, to = replies[0]
        assert to == addr, name
        check_reply(reply, ptype, size, key, data)
        assert D.drops_by_reason(proto.drops - before) == ({reason: 1} if reason else {}), name
        ratios[name] = len(reply) / len(data)
        return reply

    # CHALLENGE for a request, CONNECT_ACCEPT for its response, again for a resent response
    proto = netkit.server(max_players=2)
    client = netkit.client("a")
    request = client.connect(0.0)
    challenge = one("challenge", proto, request, A, 0, CHALLENGE, CHALLENGE_SIZE,
                    client.token.s2c_key)
    client.receive(challenge, 0.0)
    response = client._response
    accept = one("accept", proto, response, A, 0, CONNECT_ACCEPT, CONNECT_ACCEPT_SIZE,
                 client.token.s2c_key)
    one("accept again (lost)", proto, response, A, 10, CONNECT_ACCEPT, CONNECT_ACCEPT_SIZE,
        client.token.s2c_key, "duplicate_connect")
    assert isinstance(client.receive(accept, 0.0)[0], Connected)
    # server full: at the request, and at the response of a client challenged before
    late = netkit.client("late")
    late_response = challenged(proto, late, B, 20)
    connected(proto, netkit.client("b"), C, 20)
    deny = one("deny full (request)", proto, request_of(netkit.client("c")), X, 30,
               CONNECT_DENY, CONNECT_DENY_SIZE, None, "server_full")
    assert CONNECT_DENY_BODY.unpack_from(deny, HEADER_SIZE)[1] == DENY_SERVER_FULL
    deny = one("deny full (response)", proto, late_response, B, 30, CONNECT_DENY,
               CONNECT_DENY_SIZE, late.token.s2c_key, "server_full")
    assert late.receive(deny, 0.03) == [Denied(DENY_SERVER_FULL)]
    # shutting down
    proto = netkit.server()
    late = netkit.client("late")
    late_response = challenged(proto, late, B, 0)
    proto.shutdown()
    someone = netkit.client("d")
    deny = one("deny shutting down (request)", proto, request_of(someone), X, 10,
               CONNECT_DENY, CONNECT_DENY_SIZE, someone.token.s2c_key, "shutting_down")
    assert CONNECT_DENY_BODY.unpack_from(deny, HEADER_SIZE) == (someone.salt,
                                                                 DENY_SHUTTING_DOWN)
    deny = one("deny shutting down (response)", proto, late_response, B, 10, CONNECT_DENY,
               CONNECT_DENY_SIZE, late.token.s2c_key, "shutting_down")
    assert late.receive(deny, 0.01) == [Denied(DENY_SHUTTING_DOWN)]
    # too many sessions from one address
    proto = netkit.server(security=SecuritySettings(max_sessions_per_address=1))
    connected(proto, netkit.client("e"), ("10.0.0.9", 1), 0)
    someone = netkit.client("f")
    deny = one("deny address limit", proto, request_of(someone), ("10.0.0.9", 2), 10,
               CONNECT_DENY, CONNECT_DENY_SIZE, someone.token.s2c_key, "address_limit")
    assert CONNECT_DENY_BODY.unpack_from(deny, HEADER_SIZE) == (someone.salt,
                                                                 DENY_ADDRESS_LIMIT)
    # another version: the one untagged reply
    deny = one("deny version", proto, request_of(someone, version=VERSION - 1), X, 10,
               CONNECT_DENY, VERSION_DENY_SIZE, None, "bad_version")
    assert CONNECT_DENY_BODY.unpack_from(deny, HEADER_SIZE) == (someone.salt, DENY_VERSION)
    assert max(ratios.values()) <= 1.0
    assert ratios == pytest.approx({
        "challenge": 188 / 256, "accept": 68 / 256, "accept again (lost)": 68 / 256,
        "deny full (request)": 33 / 256, "deny full (response)": 33 / 256,
        "deny shutting down (request)": 33 / 256, "deny shutting down (response)": 33 / 256,
        "deny address limit": 33 / 256, "deny version": 25 / 256})


def test_no_dropped_datagram_is_answered(netkit):
    """Every drop reason a server can reach: no reply (but for the refusals that are
    answered with a deny, listed apart), nothing changed."""
    seen: set[str] = set()

    def silent(proto, data, addr, ms, reason):
        expect_drop(proto, data, addr, ms, reason)
        seen.add(reason)

    proto = netkit.server(max_players=3, security=SecuritySettings(challenge_timeout=2.0))
    owner = netkit.client("owner")
    slot = connected(proto, owner, A, 0)
    sid, key = owner.info.session_id, owner.token.c2s_key
    first = owner.input(1, 0, False, 0.0)
    proto.receive_datagram(first, A, ns(0))
    pending = netkit.client("pending")
    response = challenged(proto, pending, B, 0)
    keepalive = session_packet(KEEPALIVE, sid, 500, key)
    silent(proto, b"", X, 10, "too_short")
    silent(proto, keepalive[:15], X, 10, "too_short")
    silent(proto, keepalive + bytes(MAX_DATAGRAM), X, 10, "oversize")
    silent(proto, b"MX" + keepalive[2:], A, 10, "bad_protocol")
    silent(proto, keepalive[:2] + bytes([2]) + keepalive[3:], A, 10, "bad_version")
    silent(proto, request_of(owner, version=VERSION + 1)[:255], X, 10, "bad_version")
    silent(proto, response[:2] + bytes([2]) + response[3:], B, 10, "bad_version")
    silent(proto, keepalive[:4] + b"\x01" + keepalive[5:], A, 10, "bad_flags")
    silent(proto, pack_header(CHALLENGE, 0, 0).ljust(CHALLENGE_SIZE, b"\0"), X, 10, "bad_type")
    silent(proto, request_of(owner)[:200], X, 10, "bad_length")
    silent(proto, session_packet(KEEPALIVE, sid ^ 0x10000, 500, key), A, 10, "unknown_session")
    silent(proto, keepalive, X, 10, "wrong_address")
    silent(proto, session_packet(KEEPALIVE, sid, 0, key), A, 10, "stale_sequence")
    silent(proto, request_of(netkit.client("z"), salt=0), X, 10, "bad_payload")
    silent(proto, request_of(owner), A, 10, "duplicate_connect")
    silent(proto, first, A, 10, "replayed")
    silent(proto, keepalive[:-1] + bytes([keepalive[-1] ^ 1]), A, 10, "bad_tag")
    silent(proto, response[:-1] + bytes([response[-1] ^ 1]), B, 10, "bad_tag")
    garbage = request_of(netkit.client("g"))[:44] + bytes(144) + bytes(68)
    silent(proto, garbage, ("198.51.100.1", 1), 10, "bad_token")
    silent(proto, request_of(netkit.client("old", now=netkit.UNIX_S - 7200)), X, 10,
           "token_expired")
    silent(proto, request_of(netkit.client("w", servers=[("192.0.2.1", 1)])), X, 10,
           "wrong_server")
    silent(proto, request_of(owner), X, 10, "token_reused")
    silent(proto, request_of(netkit.client("twin", client_id=owner.token.client_id)), X, 10,
           "duplicate_client")
    forged = sign(response[:COOKIE_AT] + bytes(COOKIE_SIZE) + response[COOKIE_AT + COOKIE_SIZE:-8],
                  pending.token.c2s_key)
    silent(proto, forged, B, 10, "bad_challenge")
    silent(proto, response, X, 10, "wrong_address")
    silent(proto, response, B, 2001, "challenge_expired")
    for k in range(burst(20.0)):  # the address's bucket: then rate_limited
        send(proto, garbage, ("198.51.100.77", k + 1), 3000)
    silent(proto, garbage, ("198.51.100.77", 99), 3000, "rate_limited")
    flood = SecuritySettings(packet_rate=40)
    proto2 = netkit.server(security=flood)
    c2 = netkit.client("c2")
    connected(proto2, c2, A, 0)
    for k in range(burst(40.0)):
        assert send(proto2, input_packet(c2, 100 + k, 100 + k), A, 10) == ([], [])
    silent(proto2, input_packet(c2, 200, 200), A, 10, "rate_limited")
    proto.bans.ban("address", ip_to_int("198.51.100.9"), ns(10**6))  # an operator's ban
    silent(proto, request_of(netkit.client("b")), ("198.51.100.9", 1), 3000, "banned")
    # the refusals that are answered: once the token is proven valid, with a tagged deny
    # no larger than the request (test_every_reply_before_a_session_is_no_larger_...)
    answered = {"server_full", "address_limit", "shutting_down"}
    assert seen | answered | {"no_baseline"} == set(D.REASONS)  # no_baseline: clients only
    assert proto.connected_count() == 1 and proto.world.pi[S.P_INPUT_SEQ, slot] == 1


# ---- a flood of spoofed connect requests -------------------------------------------------

FLOOD_REQUESTS = 100_000
FLOOD_PER_TICK = (1000, 2001)  # spoofed requests a tick: 20,000 to 40,000 a second
TICK_MS = 50


def _requests_of(tokens) -> np.ndarray:
    """uint8[len(tokens), 164]: each token's request fields (expire, nonce, sealed)."""
    return np.array([np.frombuffer(t.request_fields(), np.uint8) for t in tokens])


def test_a_flood_of_spoofed_requests_creates_no_state_and_lets_players_in(netkit):
    """At least 100,000 CONNECT_REQUESTs from random spoofed addresses through
    receive_batch (1000-2000 a tick, 50 ms ticks: 1 to 2 times the default global
    connect_rate; default SecuritySettings), while 4 real clients connect and play.
    Kinds of spoofed request:

    garbage: a future expiry and random sealed bytes (each costs a decryption); expired:
    an expiry in the past; other server: valid tokens naming another server; replayed: a
    captured valid request sent verbatim from random addresses; stolen: a real player's
    captured token from random addresses, before and after the player connects.
    """
    rng = np.random.default_rng(4)
    proto = netkit.server(max_players=8, security=SecuritySettings())
    unix_s = netkit.UNIX_S
    legit = [netkit.client(f"player{k}", salt=1000 + k) for k in range(4)]
    legit_addr = [(f"10.0.0.{k + 1}", 5000 + k) for k in range(4)]
    by_addr = dict(zip(legit_addr, legit))
    victim = netkit.client("victim", salt=0x7777)  # never connects; its request is captured
    other = [netkit.token("x", servers=[("192.0.2.99", 7777)]) for _ in range(8)]
    kinds = ("garbage", "expired", "other server", "replayed", "stolen")
    weights = np.array([0.4, 0.2, 0.15, 0.15, 0.1])
    template = np.frombuffer(request_of(victim), np.uint8)
    stolen_fields = np.frombuffer(legit[0].token.request_fields(), np.uint8)
    other_fields = _requests_of(other)
    future = np.frombuffer((unix_s + 1800).to_bytes(8, "little"), np.uint8)
    past = np.frombuffer((unix_s - 10).to_bytes(8, "little"), np.uint8)
    batch = DatagramBatch.allocate(FLOOD_PER_TICK[1] + 8)

    sent = dict.fromkeys(kinds, 0)
    spoofed_challenges = 0
    legit_sent = legit_replies = 0
    joined_at: dict[int, int] = {}
    snapshots = [0] * 4
    inputs_sent = 0
    attempts = [1] * 4  # handshake packets each player sent
    tick = 0
    total_spoofed = 0
    # players 0 and 1 start connecting a quarter second into the flood, 2 and 3 after 1 s:
    # by then the global bucket's burst (5000) is spent and it admits 1000 a tick of the
    # ~1500 handshakes, so their packets are among those refused about one time in three
    start = [5, 5, 20, 20]
    warm_ticks = 8
    mem_base = None
    t0 = time.perf_counter()
    # the flood goes on until 100,000 were sent and every player played 10 ticks (a
    # player that cannot connect gives up after its connect_timeout, 5 s, and fails this)
    while total_spoofed < FLOOD_REQUESTS or not all(
            tick - joined_at.get(k, tick) >= 10 for k in range(4)) or len(joined_at) < 4:
        now_ms = tick * TICK_MS
        if tick == warm_ticks:
            tracemalloc.start()
            mem_base = tracemalloc.take_snapshot()
        # ---- the spoofed requests of this tick
        n = int(rng.integers(*FLOOD_PER_TICK))
        total_spoofed += n
        kind = rng.choice(len(kinds), size=n, p=weights)
        rows = np.tile(template, (n, 1))
        rows[:, 16:24] = rng.integers(0, 256, (n, 8), dtype=np.uint8)
        rows[:, 16] |= 1  # a salt is never 0
        for k, name in enumerate(kinds):
            sel = kind == k
            m = int(sel.sum())
            sent[name] += m
            if name == "garbage":
                rows[sel, 24:32] = future
                rows[sel, 32:188] = rng.integers(0, 256, (m, 156), dtype=np.uint8)
            elif name == "expired":
                rows[sel, 24:32] = past
                rows[sel, 32:188] = rng.integers(0, 256, (m, 156), dtype=np.uint8)
            elif name == "other server":
                rows[sel, 24:188] = other_fields[rng.integers(0, len(other), m)]
            elif name == "replayed":
                rows[sel, 16:188] = template[16:188]  # verbatim, salt included
            else:
                rows[sel, 24:188] = stolen_fields
        ips = rng.integers(1 << 24, 0xE0000000, n, dtype=np.int64)
        ips[(ips >> 8) == 0x0A0000] ^= 1 << 24  # never the players' 10.0.0.0/24
        # nor loopback: no remote host gets 127.0.0.0/8 past the kernel (martians), and
        # the server exempts it from the per-address limit
        ips[(ips >> 24) == 127] ^= 1 << 26
        ports = rng.integers(1, 65536, n, dtype=np.int64)
        # ---- what the players send this tick
        mine = []
        for k, client in enumerate(legit):
            if tick >= start[k]:
                if client.state == CONNECTED:
                    mine.append((client.input(3, -3, tick % 7 == 0, sec(now_ms)), k))
                    inputs_sent += 1
                elif tick == start[k]:
                    mine.append((client.connect(sec(now_ms)), k))
                elif client.state == CONNECTING:
                    out, events = client.poll(sec(now_ms))
                    assert events == [], f"player {k} gave up: {events}"
                    mine += [(data, k) for data in out]
                    attempts[k] += len(out)
        legit_sent += len(mine)
        total = n + len(mine)
        at = rng.choice(total, len(mine), replace=False)  # each player anywhere, unsorted
        spoof_rows = np.setdiff1d(np.arange(total), at)
        batch.data[spoof_rows, :CONNECT_REQUEST_SIZE] = rows
        batch.length[spoof_rows] = CONNECT_REQUEST_SIZE
        batch.ip[spoof_rows] = ips
        batch.port[spoof_rows] = ports
        for row, (data, k) in zip(at, mine):
            batch.data[row, :len(data)] = np.frombuffer(data, np.uint8)
            batch.length[row] = len(data)
            batch.ip[row] = ip_to_int(legit_addr[k][0])
            batch.port[row] = legit_addr[k][1]
        batch.count = total
        # ---- the tick
        counts = int(proto.drops.sum()), int(proto.accepted.sum()), proto.gate.challenges
        events = proto.receive_batch(batch, ns(now_ms))
        joined = [e for e in events if isinstance(e, PlayerJoined)]
        assert all(e.address in by_addr for e in joined)
        assert not any(isinstance(e, PlayerLeft) for e in events)
        after = int(proto.drops.sum()), int(proto.accepted.sum()), proto.gate.challenges
        # each datagram counted once: a drop, an accepted input, a challenge or a join
        assert sum(after) - sum(counts) + len(joined) == total
        for data, to in proto.datagrams_to_send():
            if to in by_addr:
                legit_replies += 1
                for ev in by_addr[to].receive(data, sec(now_ms)):
                    if isinstance(ev, Connected):
                        joined_at[legit.index(by_addr[to])] = tick
            else:
                assert len(data) == CHALLENGE_SIZE and data[3] == CHALLENGE
                spoofed_challenges += 1
        proto.world.step()
        proto.encode()
        for data, to in proto.snapshots():
            k = legit_addr.index(to)
            (ev,) = legit[k].receive(bytes(data), sec(now_ms))
            assert isinstance(ev, Snapshot)
            snapshots[k] += 1
        assert proto.expire(ns(now_ms)) == []
        del rows, kind, ips, ports, at, spoof_rows, mine  # nothing of a tick outlives it
        tick += 1
    elapsed = time.perf_counter() - t0
    mem_end = tracemalloc.take_snapshot()
    tracemalloc.stop()

    def growth(filters) -> int:
        return sum(d.size_diff for d in mem_end.filter_traces(filters).compare_to(
            mem_base.filter_traces(filters), "filename"))

    # all but what the clients keep (64 held snapshots each: theirs, not the server's);
    # this test's own per-tick arrays count, so it is bounded loosely
    grown = growth([tracemalloc.Filter(False, "*/net/client.py"),
                    tracemalloc.Filter(False, tracemalloc.__file__)])
    # what the server's code (net/ but the client, sim/) holds on to: a few new sessions
    server_grown = growth([tracemalloc.Filter(True, "*/net/*"), tracemalloc.Filter(True, "*/sim/*"),
                           tracemalloc.Filter(False, "*/net/client.py")])
    by_reason = drops(proto)
    # the players' handshake packets refused: sent, less those answered (a CHALLENGE, an
    # ACCEPT) and the inputs taken; a resent response is dropped as duplicate_connect yet
    # answered again
    legit_dropped = (legit_sent - legit_replies - int(proto.accepted.sum())
                     + by_reason.get("duplicate_connect", 0))
    summary = (f"{tick} ticks, {total_spoofed} spoofed ({sent}), {elapsed:.1f} s; "
               f"drops {by_reason}; challenges to spoofed addresses {spoofed_challenges}; "
               f"players started at ticks {start}, joined at {joined_at} after "
               f"{attempts} handshake packets ({legit_dropped} refused); snapshots "
               f"{snapshots}; memory growth {grown} bytes, in net/ and sim/ {server_grown}")
    print(summary)
    # no state for spoofed sources
    ids = {c.token.client_id for c in legit}
    assert proto.connected_count() == 4, summary
    assert set(proto._by_client) == ids
    assert set(proto._per_ip) == {ip_to_int(a[0]) for a in legit_addr}
    assert set(proto.gate.used) == {c.token.token_id for c in legit}
    assert {a for a in proto.addresses if a is not None} == set(legit_addr)
    NetKit.check_invariants(proto)
    # memory flat: nothing kept per spoofed packet (the address rate-limit table is a
    # fixed array; cookies are stateless)
    assert grown < 1 << 20, summary
    assert server_grown < 32 * 1024, summary
    # every spoofed request: one drop (by a reason its kind can cause) or one challenge
    assert set(by_reason) <= {"bad_token", "token_expired", "wrong_server", "token_reused",
                              "rate_limited", "duplicate_connect"}, summary
    assert by_reason.get("bad_token", 0) <= sent["garbage"]
    assert by_reason.get("token_expired", 0) <= sent["expired"]
    assert by_reason.get("wrong_server", 0) <= sent["other server"]
    assert by_reason.get("token_reused", 0) <= sent["stolen"]
    assert spoofed_challenges <= sent["replayed"] + sent["stolen"]
    assert 0 <= legit_dropped <= by_reason.get("rate_limited", 0)
    spoofed_dropped = sum(by_reason.values()) - legit_dropped
    assert spoofed_dropped + spoofed_challenges == total_spoofed, summary
    assert by_reason.get("token_reused", 0) > 0  # the stolen token, once its player joined
    # the players got in during the flood and play: every input arrived, and a snapshot
    # every tick since they connected
    assert sorted(joined_at) == [0, 1, 2, 3], summary
    assert int(proto.accepted[INPUT]) == inputs_sent
    for k, client in enumerate(legit):
        assert client.state == CONNECTED
        assert snapshots[k] == tick - joined_at[k], summary
        assert proto.world.pi[S.P_INPUT_SEQ, client.info.slot] == client.input_seq


# ---- authenticity: bit flips, replays, another session's packets -------------------------

def flips(data: bytes):
    for i in range(len(data) * 8):
        out = bytearray(data)
        out[i // 8] ^= 1 << (i % 8)
        yield i, bytes(out)


@pytest.mark.parametrize("ptype", [INPUT, KEEPALIVE, DISCONNECT, CHALLENGE_RESPONSE])
def test_every_bit_flip_of_a_packet_to_the_server_is_dropped(netkit, ptype):
    proto = netkit.server(security=NO_LIMITS)
    client = netkit.client("a")
    connected(proto, client, A, 0)
    sid, key = client.info.session_id, client.token.c2s_key
    proto.receive_datagram(input_packet(client, 1, 1, 5), A, ns(0))
    if ptype == CHALLENGE_RESPONSE:
        pending = netkit.client("p")
        packet, addr = challenged(proto, pending, B, 0), B
    elif ptype == INPUT:
        packet, addr = input_packet(client, 9, 9, -100, ack=3), A
    elif ptype == KEEPALIVE:
        packet, addr = session_packet(KEEPALIVE, sid, 9, key), A
    else:
        packet, addr = session_packet(DISCONNECT, sid, 9, key, DISCONNECT_BODY.pack(1)), A
    body_reasons: set[str] = set()
    for i, flipped in flips(packet):
        before, counters = full_state(proto), proto.drops.copy()
        events, replies = send(proto, flipped, addr, 10)
        delta = D.drops_by_reason(proto.drops - counters)
        assert sum(delta.values()) == 1, (i, delta)
        assert events == [] and replies == [], i
        assert full_state(proto) == before, i
        if i >= 8 * HEADER_SIZE:
            body_reasons |= set(delta)
    # past the header only the tag (or the cookie's seal, or the INPUT count's length
    # check) can notice: and they do
    assert body_reasons <= {"bad_tag", "bad_challenge", "bad_length"}
    assert "bad_tag" in body_reasons
    events, replies = send(proto, packet, addr, 10)  # the packet itself is good
    if ptype == CHALLENGE_RESPONSE:
        assert isinstance(events[0], PlayerJoined)
    elif ptype == DISCONNECT:
        assert events[0].reason == "quit"
    else:
        assert proto.accepted[ptype] == 1 + (ptype == INPUT)
    if ptype == INPUT:
        assert proto.world.pi[S.P_MOVE_X, 0] == -100
        assert proto.sessions[S_SNAPSHOT_ACK, 0] == 3


def client_view(client) -> tuple:
    return (client.state, client.info, client._rx_seq, client._tx_seq, client._input_seq,
            client.last_snapshot_tick, client._last_heard, client._response, client._last_sent,
            tuple(client.held))


@pytest.mark.parametrize("ptype", [CONNECT_ACCEPT, CONNECT_DENY, CHALLENGE, SNAPSHOT,
                                   DISCONNECT])
def test_every_bit_flip_of_a_packet_to_the_client_is_dropped(netkit, ptype):
    proto = netkit.server(max_players=1, security=NO_LIMITS)
    client = netkit.client("a")
    if ptype == CHALLENGE:
        _, replies = send(proto, client.connect(0.0), A, 0)
        packet = replies[0][0]
    elif ptype == CONNECT_ACCEPT:
        _, replies = send(proto, challenged(proto, client, A, 0), A, 0)
        packet = replies[0][0]
    elif ptype == CONNECT_DENY:
        connected(proto, netkit.client("first"), B, 0)  # the one slot
        _, replies = send(proto, client.connect(0.0), A, 0)
        packet = replies[0][0]
    else:
        connected(proto, client, A, 0)
        proto.world.step()
        proto.encode()
        if ptype == SNAPSHOT:
            packet = bytes(next(proto.snapshots())[0])
        else:
            proto.kick(0)
            packet = proto.datagrams_to_send()[0][0]
    assert packet[3] == ptype
    for i, flipped in flips(packet):
        before, counters = client_view(client), client.drops.copy()
        assert client.receive(flipped, 0.01) == [], i
        assert int((client.drops - counters).sum()) == 1, i
        assert client_view(client) == before, i
    events = client.receive(packet, 0.01)  # the packet itself is good
    if ptype == CHALLENGE:
        assert events == [] and client._response is not None
    else:
        assert len(events) == 1 and isinstance(events[0], {
            CONNECT_ACCEPT: Connected, CONNECT_DENY: Denied, SNAPSHOT: Snapshot,
            DISCONNECT: Disconnected}[ptype])


def test_a_replayed_input_is_dropped_and_not_applied_twice(netkit):
    proto = netkit.server()
    client = netkit.client("a")
    slot = connected(proto, client, A, 0)
    first = client.input(10, 0, False, 0.01)
    assert send(proto, first, A, 10) == ([], [])
    assert proto.world.pi[S.P_INPUT_SEQ, slot] == 1 and proto.world.pi[S.P_MOVE_X, slot] == 10
    heard = int(proto.sessions[S_LAST_HEARD, slot])
    expect_drop(proto, first, A, 20, "replayed")
    assert proto.sessions[S_LAST_HEARD, slot] == heard  # a replay keeps no session alive
    second = client.input(-20, 0, True, 0.03)
    assert send(proto, second, A, 30) == ([], [])
    expect_drop(proto, first, A, 40, "replayed")
    expect_drop(proto, second, A, 40, "replayed")
    pi = proto.world.pi
    assert (pi[S.P_INPUT_SEQ, slot], pi[S.P_MOVE_X, slot], pi[S.P_DIG, slot]) == (2, -20, 1)
    assert proto.accepted[INPUT] == 2 and drops(proto) == {"replayed": 3}
    # twice in one batch: the first copy is taken, the second is a replay
    third = client.input(7, 7, False, 0.05)
    batch = DatagramBatch.allocate(2)
    for _ in range(2):
        batch.put(third, ip_to_int(A[0]), A[1])
    proto.receive_batch(batch, ns(50))
    assert proto.accepted[INPUT] == 3 and drops(proto) == {"replayed": 4}
    # a DISCONNECT replayed after the session closed and a new one took the slot
    bye = client.disconnect()
    assert send(proto, bye, A, 60)[0][0].reason == "quit"
    again = netkit.client("b")
    assert connected(proto, again, A, 70) == slot
    expect_drop(proto, bye, A, 80, "unknown_session")  # another session id: not closed
    assert proto.connected_count() == 1


def test_replays_older_than_the_window_are_stale(netkit):
    proto = netkit.server()
    client = netkit.client("a")
    slot = connected(proto, client, A, 0)
    sid, key = client.info.session_id, client.token.c2s_key
    early = input_packet(client, 1, 1)
    send(proto, early, A, 0)
    keepalive = {seq: session_packet(KEEPALIVE, sid, seq, key) for seq in (44, 45, 300)}
    send(proto, keepalive[300], A, 10)
    assert proto.sessions[S_LAST_RX_SEQ, slot] == 300
    expect_drop(proto, early, A, 20, "stale_sequence")  # the captured first input
    expect_drop(proto, keepalive[44], A, 20, "stale_sequence")  # 300 - 256: just outside
    assert send(proto, keepalive[45], A, 20) == ([], [])  # 300 - 255: inside, new
    expect_drop(proto, keepalive[45], A, 30, "replayed")
    expect_drop(proto, session_packet(KEEPALIVE, sid, 0, key), A, 30, "stale_sequence")
    # a jump far ahead forgets the whole window
    send(proto, session_packet(KEEPALIVE, sid, 2**32 - 1, key), A, 40)
    expect_drop(proto, keepalive[300], A, 50, "stale_sequence")
    assert proto.accepted[KEEPALIVE] == 3 and proto.accepted[INPUT] == 1


def test_reordering_within_the_window_is_accepted_once_each(netkit):
    proto = netkit.server()
    client = netkit.client("a")
    slot = connected(proto, client, A, 0)
    for seq, reason in ((5, None), (3, None), (4, None), (4, "replayed")):
        packet = input_packet(client, seq, seq, move_x=seq, ack=100 + seq)
        if reason:
            expect_drop(proto, packet, A, 10, reason)
        else:
            assert send(proto, packet, A, 10) == ([], [])
    assert proto.accepted[INPUT] == 3 and drops(proto) == {"replayed": 1}
    assert proto.sessions[S_LAST_RX_SEQ, slot] == 5
    pi = proto.world.pi
    # late packets fill gaps without winding the newest input or ack back
    assert (pi[S.P_INPUT_SEQ, slot], pi[S.P_MOVE_X, slot]) == (5, 5)
    assert proto.sessions[S_SNAPSHOT_ACK, slot] == 105
    # the whole window, backwards from 300: each once (5 ms apart: under the packet rate)
    for k, seq in enumerate(range(300, 44, -1)):
        send(proto, input_packet(client, seq, seq), A, 20 + 5 * k)
    assert proto.accepted[INPUT] == 3 + 256 and drops(proto) == {"replayed": 1}


def test_packets_of_one_session_sent_as_another_are_dropped(netkit):
    proto = netkit.server()
    a, b = netkit.client("a"), netkit.client("b")
    connected(proto, a, A, 0)
    connected(proto, b, B, 0)
    sa, sb = a.info.session_id, b.info.session_id
    expect_drop(proto, input_packet(a, 5, 5), B, 10, "wrong_address")  # A's packet from B
    expect_drop(proto, input_packet(b, 5, 5), A, 10, "wrong_address")  # B's packet from A
    # session A's id tagged with B's key, from A's address and from B's
    forged = input_packet(a, 5, 5, key=b.token.c2s_key)
    expect_drop(proto, forged, A, 10, "bad_tag")
    expect_drop(proto, forged, B, 10, "wrong_address")
    # B's session id with A's key, from A
    expect_drop(proto, input_packet(a, 5, 5, sid=sb), A, 10, "wrong_address")
    expect_drop(proto, session_packet(DISCONNECT, sa, 6, b.token.c2s_key,
                                      DISCONNECT_BODY.pack(1)), A, 10, "bad_tag")
    # a's s2c key (what a server sends with) does not make a client packet either
    expect_drop(proto, input_packet(a, 5, 5, key=a.token.s2c_key), A, 10, "bad_tag")
    assert proto.connected_count() == 2 and not proto.accepted.any()


# ---- connect tokens and challenge cookies ------------------------------------------------

def test_expired_token_is_dropped_unanswered(netkit):
    proto = netkit.server()
    old = netkit.client("old", now=netkit.UNIX_S - 3600, lifetime=3600)  # expires at now
    expect_drop(proto, old.connect(0.0), A, 0, "token_expired")
    # valid at the request, expired by the response (within the challenge timeout)
    short = netkit.client("short", now=netkit.UNIX_S, lifetime=5)
    response = challenged(proto, short, A, 0)
    expect_drop(proto, response, A, 5000, "token_expired")
    assert send(proto, response, A, 4999)[0][0].name == "short"


def test_token_for_another_server_is_dropped(netkit):
    proto = netkit.server()
    for servers in ([("192.0.2.1", 7778)], [("192.0.2.2", 7777)],
                    [("192.0.2.2", 1), ("192.0.2.3", 7777)]):
        expect_drop(proto, request_of(netkit.client("w", servers=servers)), A, 0,
                    "wrong_server")
    listed = netkit.client("many", servers=[("192.0.2.2", 1), netkit.ADDRESS])
    assert connected(proto, listed, A, 0) == 0


def test_a_token_is_used_by_one_address_only(netkit):
    proto = netkit.server()
    owner = netkit.client("owner", salt=11)
    thief = ClientProtocol(owner.token, salt=12)  # the same token (captured)
    early = ClientProtocol(owner.token, salt=13)
    early_response = challenged(proto, early, X, 0)  # challenged before the owner joined
    connected(proto, owner, A, 0)
    # at the request: from another address, or another port of the same host
    expect_drop(proto, request_of(thief), X, 10, "token_reused")
    expect_drop(proto, request_of(thief), (A[0], A[1] + 1), 10, "token_reused")
    # at the response: the cookie is genuine, but the token opened a session elsewhere
    expect_drop(proto, early_response, X, 10, "token_reused")
    # the owner's own resend is a duplicate, not a reuse
    expect_drop(proto, request_of(owner), A, 10, "duplicate_connect")
    assert proto.connected_count() == 1


def test_wrong_version_requests(netkit):
    proto = netkit.server(security=SecuritySettings())
    client = netkit.client("a", salt=0xABCDEF)
    for version in (0, 1, 2, 3, 5, 255):
        before = full_state(proto)
        events, replies = send(proto, request_of(client, version=version), A, 0)
        assert events == [] and full_state(proto) == before
        (deny, to), = replies
        assert to == A and len(deny) == VERSION_DENY_SIZE == 25
        head = unpack_header(deny)
        assert (head.type, head.version, head.session_id, head.sequence) == (
            CONNECT_DENY, VERSION, 0, 0)
        assert CONNECT_DENY_BODY.unpack(deny[HEADER_SIZE:]) == (0xABCDEF, DENY_VERSION)
    assert drops(proto) == {"bad_version": 6}
    # the client of the right version ignores it (untagged, 25 bytes)
    client.connect(0.0)
    assert client.receive(deny, 0.0) == [] and drops(client) == {"bad_length": 1}
    # other packets of another version: silence
    old = request_of(client, version=2)
    silent = [old[:255], old + b"\0", old[:3] + bytes([CHALLENGE_RESPONSE]) + old[4:],
              old[:3] + bytes([KEEPALIVE]) + old[4:24], old[:3] + bytes([INPUT]) + old[4:37]]
    for data in silent:
        expect_drop(proto, data, B, 10, "bad_version")
    # and the deny is rate limited like any handshake reply
    answered = sum(len(send(proto, old, C, 20)[1]) for _ in range(30))
    assert answered == burst(20.0)


def test_a_client_id_already_playing_is_ignored(netkit):
    proto = netkit.server()
    owner = netkit.client("owner", client_id=77)
    later = netkit.client("twin", client_id=77)  # another token for the same id
    early = netkit.client("early", client_id=77)
    early_response = challenged(proto, early, C, 0)
    connected(proto, owner, A, 0)
    expect_drop(proto, later.connect(0.01), B, 10, "duplicate_client")
    expect_drop(proto, early_response, C, 10, "duplicate_client")
    assert proto.connected_count() == 1 and proto.names[0] == "owner"
    # once the first session left, the id can connect again
    proto.kick(0)
    proto.datagrams_to_send()
    assert connected(proto, later, B, 20) == 0


def test_challenge_response_after_the_timeout_is_expired(netkit):
    proto = netkit.server(security=SecuritySettings(
        challenge_timeout=2.0, connect_rate=0, connect_rate_per_address=0))
    client = netkit.client("a")
    response = challenged(proto, client, A, 1000)
    expect_drop(proto, response, A, 3001, "challenge_expired")
    expect_drop(proto, response, A, 999, "challenge_expired")  # before it was issued
    assert isinstance(send(proto, response, A, 3000)[0][0], PlayerJoined)


def test_challenge_response_from_another_address_is_dropped(netkit):
    proto = netkit.server()
    client = netkit.client("a")
    response = challenged(proto, client, A, 0)
    expect_drop(proto, response, B, 10, "wrong_address")
    expect_drop(proto, response, (A[0], A[1] + 1), 10, "wrong_address")
    assert isinstance(send(proto, response, A, 10)[0][0], PlayerJoined)


def test_forged_cookies_are_dropped(netkit):
    proto = netkit.server()
    client = netkit.client("a")
    response = challenged(proto, client, A, 0)
    key = client.token.c2s_key
    cookie = response[COOKIE_AT:COOKIE_AT + COOKIE_SIZE]

    def with_cookie(blob, salt=client.salt):
        body = (pack_header(CHALLENGE_RESPONSE, 0, 0) + salt.to_bytes(8, "little") + blob)
        return sign(body.ljust(CHALLENGE_RESPONSE_SIZE - TAG_SIZE, b"\0"), key)

    expect_drop(proto, with_cookie(random.Random(1).randbytes(COOKIE_SIZE)), A, 10,
                "bad_challenge")
    expect_drop(proto, with_cookie(bytes(COOKIE_SIZE)), A, 10, "bad_challenge")
    # a genuine cookie of another server (another cookie key)
    other = netkit.server()
    other.gate.jar = type(other.gate.jar)(bytes(range(32)))
    _, replies = send(other, request_of(client), A, 0)
    foreign = replies[0][0][COOKIE_AT:COOKIE_AT + COOKIE_SIZE]
    expect_drop(proto, with_cookie(foreign), A, 10, "bad_challenge")
    # the genuine cookie with another salt, or with a byte changed
    expect_drop(proto, with_cookie(cookie, salt=client.salt ^ 1), A, 10, "bad_challenge")
    expect_drop(proto, with_cookie(cookie[:100] + bytes([cookie[100] ^ 1]) + cookie[101:]),
                A, 10, "bad_challenge")
    assert with_cookie(cookie) == response
    assert isinstance(send(proto, response, A, 10)[0][0], PlayerJoined)


def test_a_full_server_denies_only_valid_tokens(netkit):
    proto = netkit.server(max_players=1)
    connected(proto, netkit.client("first"), A, 0)
    client = netkit.client("second")
    for data, reason in (
            (request_of(client)[:44] + bytes(144) + bytes(68), "bad_token"),
            (request_of(netkit.client("old", now=netkit.UNIX_S - 7200)), "token_expired"),
            (request_of(netkit.client("w", servers=[("192.0.2.9", 1)])), "wrong_server")):
        expect_drop(proto, data, B, 10, reason)  # silent: nothing proves the sender
    before = proto.drops.copy()
    events, replies = send(proto, client.connect(0.01), B, 10)
    (deny, to), = replies
    assert to == B and len(deny) == CONNECT_DENY_SIZE and verify(deny, client.token.s2c_key)
    assert CONNECT_DENY_BODY.unpack_from(deny, HEADER_SIZE) == (client.salt, DENY_SERVER_FULL)
    assert D.drops_by_reason(proto.drops - before) == {"server_full": 1}
    assert client.receive(deny, 0.01) == [Denied(DENY_SERVER_FULL)]
    assert proto.connected_count() == 1 and events == []


def test_sessions_per_address_are_limited(netkit):
    proto = netkit.server(max_players=8, security=SecuritySettings(max_sessions_per_address=2))
    first = netkit.client("1")
    connected(proto, first, ("10.0.0.1", 1), 0)
    connected(proto, netkit.client("2"), ("10.0.0.1", 2), 0)
    third = netkit.client("3")
    events, replies = send(proto, third.connect(0.0), ("10.0.0.1", 3), 0)
    (deny, _), = replies
    assert verify(deny, third.token.s2c_key)
    assert CONNECT_DENY_BODY.unpack_from(deny, HEADER_SIZE) == (third.salt, DENY_ADDRESS_LIMIT)
    assert drops(proto) == {"address_limit": 1}
    assert third.receive(deny, 0.0) == [Denied(DENY_ADDRESS_LIMIT)]
    connected(proto, netkit.client("4"), ("10.0.0.2", 3), 0)  # another address: fine
    # a session leaves: its address may open one again
    send(proto, first.disconnect(), ("10.0.0.1", 1), 10)
    connected(proto, netkit.client("5"), ("10.0.0.1", 3), 20)
    assert proto._per_ip == {ip_to_int("10.0.0.1"): 2, ip_to_int("10.0.0.2"): 1}


# ---- rate limits -------------------------------------------------------------------------

def test_handshakes_are_limited_per_address(netkit):
    proto = netkit.server(security=SecuritySettings())  # 20/s from one address, 8 at once
    allowed = burst(SecuritySettings().connect_rate_per_address)
    assert allowed == 8
    clients = [netkit.client(f"c{k}") for k in range(20)]
    outcomes = [len(send(proto, request_of(c), ("10.1.1.1", 1000 + k), 0)[1])
                for k, c in enumerate(clients)]
    assert outcomes == [1] * allowed + [0] * (20 - allowed)
    assert drops(proto) == {"rate_limited": 20 - allowed}
    assert proto.gate.challenges == allowed
    # another address is not held back
    assert len(send(proto, request_of(clients[10]), ("10.1.1.2", 1), 0)[1]) == 1
    # one interval later, one more from the first address; a second later, a full burst
    assert len(send(proto, request_of(clients[11]), ("10.1.1.1", 1), 49)[1]) == 0
    assert len(send(proto, request_of(clients[11]), ("10.1.1.1", 1), 50)[1]) == 1
    assert sum(len(send(proto, request_of(c), ("10.1.1.1", 2), 2000)[1])
               for c in clients) == allowed
    # challenge responses come out of the same bucket
    c = netkit.client("late")
    response = challenged(proto, c, ("10.1.1.3", 1), 3000)
    for k in range(allowed - 1):
        send(proto, request_of(clients[k]), ("10.1.1.3", 2), 3000)
    expect_drop(proto, response, ("10.1.1.3", 1), 3000, "rate_limited")
    assert isinstance(send(proto, response, ("10.1.1.3", 1), 3050)[0][0], PlayerJoined)
    # loopback sources (the host's own bots; no remote host can send as 127.0.0.0/8) have
    # no address bucket, only the global one
    assert sum(len(send(proto, request_of(c), ("127.0.0.1", 9), 4000)[1])
               for c in clients) == 20


def test_handshakes_are_limited_globally(netkit):
    security = SecuritySettings(connect_rate=100.0)
    proto = netkit.server(security=security)
    allowed = burst(100.0)
    assert allowed == 25
    client = netkit.client("c")
    request = request_of(client)
    answered = [len(send(proto, request, (f"10.2.0.{k + 1}", 1), 0)[1]) for k in range(40)]
    assert answered == [1] * allowed + [0] * (40 - allowed)
    assert drops(proto) == {"rate_limited": 40 - allowed}
    assert len(send(proto, request, ("10.3.0.1", 1), 10)[1]) == 1  # 10 ms: one more
    assert len(send(proto, request, ("10.3.0.2", 1), 10)[1]) == 0
    # a noisy address spends its own bucket, not the global one
    proto = netkit.server(security=security)
    for _ in range(200):
        send(proto, request, ("10.4.0.1", 1), 0)
    own = burst(SecuritySettings().connect_rate_per_address)
    answered = [len(send(proto, request, (f"10.5.0.{k + 1}", 1), 0)[1]) for k in range(30)]
    assert answered == [1] * (allowed - own) + [0] * (30 - allowed + own)


def test_a_flooding_session_is_limited_and_survives(netkit):
    proto = netkit.server(security=SecuritySettings(packet_rate=40.0))
    allowed = burst(40.0)
    assert allowed == 10
    client = netkit.client("a")
    slot = connected(proto, client, A, 0)
    packets = [client.input(1, 0, False, 0.0) for _ in range(30)]
    for packet in packets:
        assert send(proto, packet, A, 0) == ([], [])
    assert proto.accepted[INPUT] == allowed
    assert drops(proto) == {"rate_limited": 30 - allowed}
    assert proto.world.pi[S.P_INPUT_SEQ, slot] == allowed
    assert proto.connected_count() == 1 and client.state == CONNECTED
    # a limited packet burnt no sequence number: sent again later, it is taken
    assert send(proto, packets[-1], A, 1000) == ([], [])
    assert proto.world.pi[S.P_INPUT_SEQ, slot] == 30
    # the session still plays: snapshots go out, it does not time out
    proto.world.step()
    proto.encode()
    (snap, to), = list(proto.snapshots())
    assert to == A and isinstance(client.receive(bytes(snap), 1.0)[0], Snapshot)
    assert proto.expire(ns(1000)) == []


def test_default_session_rate_allows_a_burst(netkit):
    proto = netkit.server()
    client = netkit.client("a")
    connected(proto, client, A, 0)
    allowed = burst(SecuritySettings().packet_rate)
    sid, key = client.info.session_id, client.token.c2s_key
    for seq in range(1, 201):
        send(proto, session_packet(KEEPALIVE, sid, seq, key), A, 0)
    assert proto.accepted[KEEPALIVE] == allowed == 62
    assert drops(proto) == {"rate_limited": 200 - allowed}
