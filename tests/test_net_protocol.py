"""The protocol in memory: ServerProtocol and ClientProtocol joined by hand, time stepped by hand.

Bytes go from one side to the other directly (no sockets). The server's `now` is integer
nanoseconds and the client's is seconds: tests count milliseconds (NetKit.ns / NetKit.sec).
"""

from __future__ import annotations

import pytest

from net import drops as D
from net.address import ip_to_int
from net.batch import DatagramBatch
from net.client import (CLOSED, CONNECTED, CONNECTING, DENIED, Connected,
                        Denied, Disconnected, Snapshot)
from net.events import PlayerAway, PlayerJoined, PlayerLeft, PlayerMoved
from net.limits import NetLimits
from net.sessions import S_LAST_HEARD, S_LAST_RX_SEQ, S_STATE, CONNECTED as S_CONNECTED
from net.tag import sign
from net.wire import (CHALLENGE, CHALLENGE_RESPONSE, CHALLENGE_RESPONSE_SIZE, CHALLENGE_SIZE,
                      CONNECT_ACCEPT, CONNECT_ACCEPT_BODY, CONNECT_ACCEPT_SIZE, CONNECT_DENY,
                      CONNECT_DENY_BODY, CONNECT_DENY_SIZE, CONNECT_REQUEST,
                      CONNECT_REQUEST_SIZE, DENY_SERVER_FULL, DISCONNECT_SIZE, KEEPALIVE_SIZE,
                      TAG_SIZE, VERSION_DENY_SIZE,
                      DENY_SHUTTING_DOWN, DENY_VERSION, DISCONNECT, DISCONNECT_BODY,
                      DISCONNECT_CLIENT_QUIT, DISCONNECT_KICKED, DISCONNECT_SERVER_SHUTDOWN,
                      DISCONNECT_TIMED_OUT, HEADER_SIZE, INPUT, INPUT_PREFIX, INPUT_RECORD,
                      KEEPALIVE, SNAPSHOT, VERSION, pack_header, unpack_header)
from sim import schema as S

A = ("10.0.0.1", 4000)
B = ("10.0.0.2", 4001)
C = ("10.0.0.3", 4002)


def ns(ms):
    return ms * 1_000_000


def sec(ms):
    return ms / 1000.0


def deliver(proto, client, ms):
    """Hand every queued control reply to `client`; return the client's events."""
    events = []
    for data, _addr in proto.datagrams_to_send():
        events += client.receive(data, sec(ms))
    return events


def tick(proto, clients_by_slot=None, ms=0):
    """world.step(), encode; deliver each snapshot to its client. Return {slot: events}."""
    proto.world.step()
    proto.encode()
    out = {}
    for data, addr in proto.snapshots():
        data = bytes(data)
        slot = int.from_bytes(data[8:12], "little") & 0xFFFF
        assert proto.addresses[slot] == addr
        if clients_by_slot and slot in clients_by_slot:
            out[slot] = clients_by_slot[slot].receive(data, sec(ms))
    return out


def drop_counts(proto_or_client):
    return D.drops_by_reason(proto_or_client.drops)


# ---- connect ------------------------------------------------------------------------

def challenge_of(proto, client, addr, ms=0):
    """Send the client's request; return (the CHALLENGE, the request). No state yet."""
    request = client.connect(sec(ms))
    assert proto.receive_datagram(request, addr, ns(ms)) == []
    (challenge, to), = proto.datagrams_to_send()
    assert to == addr and unpack_header(challenge).type == CHALLENGE
    return challenge, request


def respond(proto, client, addr, challenge, ms=0):
    """Hand the CHALLENGE to the client; send its response; return (server events, response)."""
    assert client.receive(challenge, sec(ms)) == []
    (response,), events = client.poll(sec(ms))
    assert events == [] and unpack_header(response).type == CHALLENGE_RESPONSE
    return proto.receive_datagram(response, addr, ns(ms)), response


def test_connect_accept_carries_the_servers_settings(netkit):
    limits = NetLimits(session_timeout=3.5)
    proto = netkit.server(limits=limits, tick_rate=30.0, world_width=600.0, world_height=400.0,
                          dig_radius=20.0, reveal_radius=80.0, dig_time=0.5)
    for _ in range(7):
        proto.world.step()
    client = netkit.client("alice", salt=0x1234_5678_9ABC_DEF1)
    before = netkit.state(proto)
    challenge, request = challenge_of(proto, client, A)
    assert len(request) == CONNECT_REQUEST_SIZE and client.state == CONNECTING
    assert len(challenge) == CHALLENGE_SIZE <= len(request)
    assert netkit.state(proto)[:-1] == before[:-1]  # nothing kept for an unproven address

    events, response = respond(proto, client, A, challenge)
    assert len(response) == CHALLENGE_RESPONSE_SIZE
    assert len(events) == 1 and isinstance(events[0], PlayerJoined)
    joined = events[0]
    assert (joined.slot, joined.name, joined.address) == (0, "alice", A)
    assert joined.session_id & 0xFFFF == 0 and joined.session_id >> 16 != 0

    replies = proto.datagrams_to_send()
    assert len(replies) == 1
    accept, to = replies[0]
    assert to == A
    assert len(accept) == CONNECT_ACCEPT_SIZE <= len(response)
    header = unpack_header(accept)
    assert header.type == CONNECT_ACCEPT and header.session_id == joined.session_id
    assert header.sequence == 0 and header.version == VERSION

    (event,) = client.receive(accept, sec(0))
    assert isinstance(event, Connected) and client.state == CONNECTED
    info = event.info
    assert info.slot == 0 and info.session_id == joined.session_id
    assert info.tick_rate == 30 and info.snapshot_rate == 30
    assert (info.world_width, info.world_height) == (600.0, 400.0)
    assert (info.dig_radius, info.reveal_radius) == (20.0, 80.0)
    assert info.dig_ticks == proto.world.kr.dig_ticks == 15
    assert info.server_tick == 7
    assert info.session_timeout == pytest.approx(3.5)

    assert proto.connected_count() == 1 and proto.world.alive_count() == 1
    assert proto.accepted[CONNECT_REQUEST] == 0  # counted as sessions opened, below
    assert proto.client_id(0) == client.token.client_id
    assert proto.names[0] == "alice" and proto.addresses[0] == A
    assert not proto.drops.any() and not client.drops.any()
    netkit.check_invariants(proto)


def test_empty_name_gets_a_default(netkit):
    proto = netkit.server()
    client = netkit.client("", salt=9)
    challenge, _ = challenge_of(proto, client, A)
    events, _ = respond(proto, client, A, challenge)
    assert events[0].name == "player-0"


def test_the_client_resends_its_request_until_challenged_then_its_response(netkit):
    proto = netkit.server()
    client = netkit.client("bob", salt=77, resend_interval=0.25)
    request = client.connect(sec(0))
    assert client.poll(sec(100)) == ([], [])  # too early to resend
    assert client.poll(sec(250)) == ([request], [])  # the very same request
    proto.receive_datagram(request, A, ns(250))
    (challenge, _), = proto.datagrams_to_send()
    assert client.receive(challenge, sec(260)) == []
    (response,), _ = client.poll(sec(260))  # at once
    assert client.poll(sec(400)) == ([], [])
    assert client.poll(sec(510)) == ([response], [])  # resent, unchanged


def test_lost_accept_then_resent_response_gets_the_same_accept_and_no_second_session(netkit):
    proto = netkit.server()
    client = netkit.client("bob", salt=77, resend_interval=0.25)
    challenge, _ = challenge_of(proto, client, A)
    events, response = respond(proto, client, A, challenge)
    assert len(events) == 1
    (lost, _), = proto.datagrams_to_send()  # the accept is lost on the way

    out, _ = client.poll(sec(250))
    assert out == [response]
    heard = int(proto.sessions[S_LAST_HEARD, 0])
    assert proto.receive_datagram(out[0], A, ns(250)) == []  # no second PlayerJoined
    assert int(proto.sessions[S_LAST_HEARD, 0]) == heard  # a resend does not refresh it
    (again, to), = proto.datagrams_to_send()
    assert to == A and again == lost  # byte for byte the same accept
    assert proto.connected_count() == 1
    assert drop_counts(proto) == {"duplicate_connect": 1}

    (event,) = client.receive(again, sec(260))
    assert isinstance(event, Connected) and event.info.slot == 0
    # the first accept arrives late after all: the client ignores it
    assert client.receive(lost, sec(270)) == []
    assert drop_counts(client) == {"duplicate_connect": 1}
    assert client.state == CONNECTED
    netkit.check_invariants(proto)


def test_resent_response_after_ticks_names_the_same_session(netkit):
    proto = netkit.server()
    client = netkit.client("bob", salt=77)
    challenge, _ = challenge_of(proto, client, A)
    _, response = respond(proto, client, A, challenge)
    (a1, _), = proto.datagrams_to_send()
    proto.world.step()
    proto.receive_datagram(response, A, ns(50))
    (a2, _), = proto.datagrams_to_send()
    f1 = CONNECT_ACCEPT_BODY.unpack_from(a1, HEADER_SIZE)
    f2 = CONNECT_ACCEPT_BODY.unpack_from(a2, HEADER_SIZE)
    assert a1[:HEADER_SIZE] == a2[:HEADER_SIZE]  # same session id
    assert f1[:10] == f2[:10]  # everything but the server tick (and timeout) is the same
    assert proto.connected_count() == 1


def test_a_late_request_of_a_connected_client_gets_no_answer(netkit):
    proto = netkit.server()
    client = netkit.client("bob", salt=77)
    challenge, request = challenge_of(proto, client, A)
    respond(proto, client, A, challenge)
    proto.datagrams_to_send()
    assert proto.receive_datagram(request, A, ns(10)) == []
    assert proto.datagrams_to_send() == []
    assert drop_counts(proto) == {"duplicate_connect": 1}


def test_same_salt_from_another_address_with_its_own_token_is_another_session(netkit):
    proto = netkit.server()
    assert isinstance(netkit.connect(proto, netkit.client("x", salt=5), A)[0], Connected)
    assert isinstance(netkit.connect(proto, netkit.client("y", salt=5), B)[0], Connected)
    assert proto.connected_count() == 2
    netkit.check_invariants(proto)


# ---- play ---------------------------------------------------------------------------

def connected_pair(netkit, name="p", salt=11, addr=A, proto=None, **rules):
    proto = proto or netkit.server(**rules)
    client = netkit.client(name, salt=salt)
    (event,) = netkit.connect(proto, client, addr, 0)
    assert isinstance(event, Connected)
    return proto, client


def place(proto, slot, x, y):
    proto.world.pf[S.PX, slot] = x
    proto.world.pf[S.PY, slot] = y


def test_inputs_move_the_player_and_snapshots_ack_them(netkit):
    proto, client = connected_pair(netkit, player_speed=100.0)
    place(proto, 0, 256.0, 256.0)
    per_tick = 100.0 / 20.0
    x = 256.0
    for n in range(1, 11):
        ms = 50 * n
        packet = client.input(127, 0, False, sec(ms))
        assert proto.receive_datagram(packet, A, ns(ms)) == []
        assert proto.world.pi[S.P_MOVE_X, 0] == 127 and proto.world.pi[S.P_INPUT_SEQ, 0] == n
        events = tick(proto, {0: client}, ms)[0]
        x += per_tick
        assert proto.world.pf[S.PX, 0] == pytest.approx(x, abs=1e-3)
        assert proto.world.pf[S.PY, 0] == pytest.approx(256.0, abs=1e-3)
        (snap,) = events
        assert isinstance(snap, Snapshot)
        assert snap.ack == client.input_seq == n
        assert snap.slot == 0 and snap.tick == proto.world.tick - 1
        assert snap.x == pytest.approx(x, abs=512 / 65536 + 1e-6)
        assert snap.sequence == n
        assert client.last_snapshot_tick == snap.tick
    # the client's next input acknowledges the newest snapshot tick it has
    proto.receive_datagram(client.input(0, 0, False, sec(600)), A, ns(600))
    assert proto.snapshot_ack(0) == proto.world.tick - 1
    assert proto.accepted[INPUT] == 11
    assert not proto.drops.any() and not client.drops.any()


def test_dig_button_and_negative_axes_reach_the_player(netkit):
    proto, client = connected_pair(netkit)
    proto.receive_datagram(client.input(-127, -50, True, 0.05), A, ns(50))
    pi = proto.world.pi
    assert (pi[S.P_MOVE_X, 0], pi[S.P_MOVE_Y, 0], pi[S.P_DIG, 0]) == (-127, -50, 1)
    proto.receive_datagram(client.input(3, 4, False, 0.1), A, ns(100))
    assert (pi[S.P_MOVE_X, 0], pi[S.P_MOVE_Y, 0], pi[S.P_DIG, 0]) == (3, 4, 0)


def test_input_minus_128_is_clamped_to_minus_127(netkit):
    proto, client = connected_pair(netkit)
    packet = bytearray(client.input(0, 0, False, 0.05))
    packet[HEADER_SIZE + INPUT_PREFIX.size + 4] = 0x80  # move x = -128 on the wire
    proto.receive_datagram(sign(bytes(packet[:-TAG_SIZE]), client.token.c2s_key), A, ns(50))
    assert proto.world.pi[S.P_MOVE_X, 0] == -127


def test_each_input_packet_repeats_the_three_previous_inputs_newest_first(netkit):
    _proto, client = connected_pair(netkit)
    seen = []
    for n in range(1, 7):
        packet = client.input(n, -n, n % 2 == 0, sec(50 * n))
        _ack, count = INPUT_PREFIX.unpack_from(packet, HEADER_SIZE)
        assert count == min(n, 4)
        assert len(packet) == HEADER_SIZE + INPUT_PREFIX.size + count * INPUT_RECORD.size + TAG_SIZE
        records = [INPUT_RECORD.unpack_from(packet, HEADER_SIZE + INPUT_PREFIX.size + 8 * k)
                   for k in range(count)]
        assert [r[0] for r in records] == list(range(n, n - count, -1))
        assert records[0][1:] == (n, -n, 1 if n % 2 == 0 else 0)
        seen.append(packet)
    assert [unpack_header(p).sequence for p in seen] == list(range(1, 7))


def test_lost_and_late_and_duplicate_inputs(netkit):
    proto, client = connected_pair(netkit)
    p1 = client.input(10, 0, False, 0.05)
    p2 = client.input(20, 0, False, 0.10)  # lost for now
    p3 = client.input(30, 0, True, 0.15)
    pi = proto.world.pi
    proto.receive_datagram(p1, A, ns(50))
    assert pi[S.P_INPUT_SEQ, 0] == 1 and pi[S.P_MOVE_X, 0] == 10
    proto.receive_datagram(p3, A, ns(150))  # carries inputs 3, 2, 1: nothing is lost
    assert pi[S.P_INPUT_SEQ, 0] == 3 and pi[S.P_MOVE_X, 0] == 30 and pi[S.P_DIG, 0] == 1
    assert proto.last_rx_sequence(0) == 3

    ack = proto.snapshot_ack(0)
    proto.receive_datagram(p2, A, ns(160))  # late but inside the replay window: accepted,
    assert pi[S.P_INPUT_SEQ, 0] == 3 and pi[S.P_MOVE_X, 0] == 30  # its input is older
    assert proto.snapshot_ack(0) == ack and proto.last_rx_sequence(0) == 3
    before = netkit.state(proto)
    proto.receive_datagram(p3, A, ns(170))  # duplicated by the network
    proto.receive_datagram(p1, A, ns(180))
    proto.receive_datagram(p2, A, ns(190))
    assert drop_counts(proto) == {"replayed": 3}
    assert netkit.state(proto) == before  # not even "last heard" moved
    assert proto.accepted[INPUT] == 3


def test_newer_packet_with_an_older_input_keeps_the_newer_input(netkit):
    # packet sequence and input seq are separate counters: a hand-made client may send
    # an old input seq in a newer packet; the held input is not rewound (PROTOCOL.md 8.4)
    proto, client = connected_pair(netkit)
    client.input(10, 0, False, 0.05)
    newest = client.input(20, 0, False, 0.10)
    proto.receive_datagram(newest, A, ns(100))
    sid = client.info.session_id
    replay = sign(pack_header(INPUT, sid, 99) + INPUT_PREFIX.pack(0, 1)
                  + INPUT_RECORD.pack(1, -100, 0, 0), client.token.c2s_key)
    proto.receive_datagram(replay, A, ns(110))
    assert proto.world.pi[S.P_INPUT_SEQ, 0] == 2 and proto.world.pi[S.P_MOVE_X, 0] == 20
    assert proto.last_rx_sequence(0) == 99


def test_ack_echoes_input_seqs_over_the_whole_u32_range(netkit):
    # Regression: input seqs were stored and compared as int32, so 2**31 wrapped negative,
    # the ack came out as 0 and any older input compared greater.
    proto, client = connected_pair(netkit)
    for start in (2**31 - 1, 2**32 - 3):
        client._input_seq = start
        proto.receive_datagram(client.input(1, 0, False, 0.05), A, ns(50))
        (snap,) = tick(proto, {0: client}, 50)[0]
        assert snap.ack == start + 1
    late = sign(pack_header(INPUT, client.info.session_id, 10**6) + INPUT_PREFIX.pack(0, 1)
                + INPUT_RECORD.pack(5, -9, 0, 0), client.token.c2s_key)  # an older input seq
    proto.receive_datagram(late, A, ns(60))
    assert proto.world.pi[S.P_MOVE_X, 0] == 1
    (snap,) = tick(proto, {0: client}, 60)[0]
    assert snap.ack == 2**32 - 2


def test_keepalive_keeps_a_quiet_session_alive(netkit):
    proto, client = connected_pair(netkit)  # session_timeout 5 s, keepalive every 1 s
    for ms in range(100, 12_000, 100):
        out, events = client.poll(sec(ms))
        assert events == []
        for data in out:
            assert unpack_header(data).type == KEEPALIVE and len(data) == KEEPALIVE_SIZE
            assert proto.receive_datagram(data, A, ns(ms)) == []
        assert proto.expire(ns(ms)) == []
        tick(proto, {0: client}, ms)  # snapshots keep the client's side alive
    assert proto.accepted[KEEPALIVE] == 11
    assert proto.connected_count() == 1 and client.state == CONNECTED


# ---- leaving ------------------------------------------------------------------------

def test_silent_session_times_out_and_its_slot_is_reused(netkit):
    proto = netkit.server(limits=NetLimits(reconnect_grace=0))  # no waiting for it
    proto, client = connected_pair(netkit, name="quiet", proto=proto)  # heard at 0 ms
    timeout = proto.timeout_ns
    assert proto.expire(timeout) == []  # exactly the timeout: not yet
    left = proto.expire(timeout + 1)
    assert left == [PlayerLeft(0, "quiet", "timed_out", A)]
    (notice, to), = proto.datagrams_to_send()
    assert to == A and unpack_header(notice).type == DISCONNECT
    assert notice[HEADER_SIZE] == DISCONNECT_TIMED_OUT
    assert proto.connected_count() == 0 and proto.world.alive_count() == 0
    netkit.check_invariants(proto)
    assert proto.expire(timeout * 3) == []  # once only

    # the client hears the notice
    (event,) = client.receive(notice, sec(5001))
    assert event == Disconnected("server", DISCONNECT_TIMED_OUT) and client.state == CLOSED

    # its packets are now unknown; the freed slot goes to the next player
    before = netkit.state(proto)
    proto.receive_datagram(sign(pack_header(KEEPALIVE, client.info.session_id, 1000),
                                client.token.c2s_key), A, ns(5002))
    assert drop_counts(proto) == {"unknown_session": 1}
    assert netkit.state(proto) == before
    other = netkit.client("next", salt=99)
    (ev,) = netkit.connect(proto, other, B, 5003)
    assert ev.info.slot == 0 and ev.info.session_id != client.info.session_id
    netkit.check_invariants(proto)


def test_client_times_out_when_the_server_goes_silent(netkit):
    _proto, client = connected_pair(netkit)  # Connected at 0 ms; session_timeout 5 s
    for ms in range(0, 5001, 250):
        _out, events = client.poll(sec(ms))
        assert events == []
    _out, events = client.poll(sec(5001))
    assert events == [Disconnected("timed_out")] and client.state == CLOSED
    assert client.poll(sec(9000)) == ([], [])
    assert client.input(1, 1, False, sec(9000)) is None


def test_connect_times_out_when_nobody_answers(netkit):
    client = netkit.client("lonely", salt=3, resend_interval=0.5, connect_timeout=2.0)
    sent = [client.connect(0.0)]
    events = []
    for ms in range(100, 2101, 100):
        out, ev = client.poll(sec(ms))
        sent += out
        events += ev
    assert len(sent) == 5  # at 0, 0.5, 1.0, 1.5, 2.0 s
    assert events == [Disconnected("connect_timed_out")] and client.state == CLOSED


def test_client_disconnect_frees_the_slot(netkit):
    proto, client = connected_pair(netkit, name="leaver")
    packet = client.disconnect()
    assert client.state == CLOSED and client.disconnect() is None
    assert len(packet) == DISCONNECT_SIZE
    assert packet[HEADER_SIZE] == DISCONNECT_CLIENT_QUIT
    events = proto.receive_datagram(packet, A, ns(100))
    assert events == [PlayerLeft(0, "leaver", "quit", A)]
    assert proto.datagrams_to_send() == []  # nothing is sent back
    assert proto.connected_count() == 0 and proto.world.alive_count() == 0
    netkit.check_invariants(proto)
    proto.world.step()
    assert proto.encode() == 0
    # a duplicate of the DISCONNECT is an unknown session now
    assert proto.receive_datagram(packet, A, ns(110)) == []
    assert drop_counts(proto) == {"unknown_session": 1}
    (ev,) = netkit.connect(proto, netkit.client("n", salt=8), B, 120)
    assert ev.info.slot == 0


# Regression: two DISCONNECTs of one session in one drained batch both passed decode (the
# slot is closed afterwards, in Python), freed the slot twice, and a later join raised
# ValueError out of receive_batch.
def batch_of(*packets):
    batch = DatagramBatch.allocate(len(packets))
    for data, addr in packets:
        batch.put(data, ip_to_int(addr[0]), addr[1])
    return batch


def test_two_disconnects_in_one_batch_close_the_session_once(netkit):
    proto, client = connected_pair(netkit, name="twice")
    first = client.disconnect()
    again = sign(pack_header(DISCONNECT, client.info.session_id, 50) + DISCONNECT_BODY.pack(1),
                 client.token.c2s_key)
    events = proto.receive_batch(batch_of((first, A), (again, A)), ns(100))
    assert events == [PlayerLeft(0, "twice", "quit", A)]
    assert drop_counts(proto) == {"unknown_session": 1}  # PROTOCOL.md 9.1
    netkit.check_invariants(proto)
    # the slot is handed out once, and a second newcomer gets another slot, no exception
    (e1,) = netkit.connect(proto, netkit.client("b", salt=2), B, 200)
    (e2,) = netkit.connect(proto, netkit.client("c", salt=3), C, 200)
    assert {e1.info.slot, e2.info.slot} == {0, 1}


def test_a_stale_disconnect_in_the_same_batch_does_not_close_the_next_session(netkit):
    proto, client = connected_pair(netkit, name="old")
    first = client.disconnect()
    again = sign(pack_header(DISCONNECT, client.info.session_id, 50) + DISCONNECT_BODY.pack(1),
                 client.token.c2s_key)
    newcomer = netkit.client("new", salt=2)
    challenge, _ = challenge_of(proto, newcomer, B, 90)
    newcomer.receive(challenge, 0.09)
    (response,), _ = newcomer.poll(0.09)
    events = proto.receive_batch(batch_of((first, A), (response, B), (again, A)), ns(100))
    assert [type(e) for e in events] == [PlayerLeft, PlayerJoined]
    assert proto.connected_count() == 1 and proto.names[0] == "new"


def test_kick_tells_the_client(netkit):
    proto, client = connected_pair(netkit, name="rude")
    assert proto.kick(0) == PlayerLeft(0, "rude", "kicked", A)
    assert proto.kick(0) is None
    (notice, to), = proto.datagrams_to_send()
    assert to == A
    assert client.receive(notice, 0.1) == [Disconnected("server", DISCONNECT_KICKED)]
    netkit.check_invariants(proto)


def test_shutdown_tells_every_client_and_refuses_newcomers(netkit):
    proto = netkit.server()
    clients = {}
    for i, addr in enumerate((A, B, C)):
        client = netkit.client(f"c{i}", salt=100 + i)
        (ev,) = netkit.connect(proto, client, addr, 0)
        clients[addr] = client
    tick(proto, {c.info.slot: c for c in clients.values()}, 50)  # one snapshot each
    left = proto.shutdown()
    assert sorted(e.name for e in left) == ["c0", "c1", "c2"]
    assert all(e.reason == "shutdown" for e in left)
    replies = proto.datagrams_to_send()
    assert sorted(addr for _, addr in replies) == sorted((A, B, C))
    for data, addr in replies:
        assert unpack_header(data).type == DISCONNECT
        events = clients[addr].receive(data, 0.1)
        assert events == [Disconnected("server", DISCONNECT_SERVER_SHUTDOWN)]
        assert clients[addr].state == CLOSED
    assert proto.connected_count() == 0
    netkit.check_invariants(proto)

    late = netkit.client("late", salt=555)
    request = late.connect(0.2)
    assert proto.receive_datagram(request, A, ns(200)) == []
    (deny, to), = proto.datagrams_to_send()
    assert to == A and len(deny) <= len(request)
    assert len(deny) == CONNECT_DENY_SIZE
    assert late.receive(deny, 0.2) == [Denied(DENY_SHUTTING_DOWN)] and late.state == DENIED
    assert proto.connected_count() == 0


# ---- refusing -----------------------------------------------------------------------

def test_full_server_denies_the_third_client(netkit):
    proto = netkit.server(max_players=2)
    c1, c2 = netkit.client("a", salt=1), netkit.client("b", salt=2)
    assert isinstance(netkit.connect(proto, c1, A, 0)[0], Connected)
    assert isinstance(netkit.connect(proto, c2, B, 0)[0], Connected)
    before = netkit.state(proto)

    c3 = netkit.client("c", salt=3)
    request = c3.connect(0.0)
    assert proto.receive_datagram(request, C, ns(10)) == []
    (deny, to), = proto.datagrams_to_send()
    assert to == C and len(deny) == CONNECT_DENY_SIZE <= len(request)
    assert unpack_header(deny).type == CONNECT_DENY
    assert CONNECT_DENY_BODY.unpack_from(deny, HEADER_SIZE) == (3, DENY_SERVER_FULL)
    assert c3.receive(deny, 0.01) == [Denied(DENY_SERVER_FULL)] and c3.state == DENIED
    assert drop_counts(proto) == {"server_full": 1}
    assert netkit.state(proto) == before
    # a deny for someone else's salt is ignored by a connecting client
    c4 = netkit.client("d", salt=4)
    c4.connect(0.0)
    assert c4.receive(deny, 0.01) == [] and c4.state == CONNECTING


def test_wrong_version_request_of_256_bytes_gets_a_small_deny(netkit):
    proto = netkit.server()
    client = netkit.client("old", salt=0xABCDEF)
    request = bytearray(client.connect(0.0))
    request[2] = VERSION + 1
    assert len(request) == 256
    before = netkit.state(proto)
    assert proto.receive_datagram(bytes(request), A, 0) == []
    (deny, to), = proto.datagrams_to_send()
    assert to == A and len(deny) == VERSION_DENY_SIZE <= len(request)
    assert unpack_header(deny).type == CONNECT_DENY
    assert CONNECT_DENY_BODY.unpack_from(deny, HEADER_SIZE) == (0xABCDEF, DENY_VERSION)
    # it carries no tag (no key is known for another version's request): a client of
    # this version, which only ever sends this version, drops it
    assert client.receive(deny, 0.0) == [] and drop_counts(client) == {"bad_length": 1}
    assert drop_counts(proto) == {"bad_version": 1}
    assert netkit.state(proto) == before  # nothing stored: the address is unproven


@pytest.mark.parametrize("size", [16, 24, 255, 257, 1200])
def test_wrong_version_request_of_another_size_gets_no_reply(netkit, size):
    proto = netkit.server()
    request = bytearray(netkit.client(salt=5).connect(0.0))
    request[2] = 0
    request = bytes(request[:size]) + bytes(max(0, size - len(request)))
    assert proto.receive_datagram(request, A, 0) == []
    assert proto.datagrams_to_send() == []
    assert drop_counts(proto) == {"bad_version": 1}


def test_packets_of_a_session_from_another_address_are_dropped(netkit):
    """From elsewhere, only an authenticated packet newer than any before moves a session:
    forged tags and late (older) packets are wrong_address and change nothing."""
    proto, client = connected_pair(netkit)
    key = client.token.c2s_key
    sid = client.info.session_id
    new = client.input(50, 50, True, 0.05)  # sequence 1
    assert proto.receive_datagram(new, A, ns(40)) == []
    late = sign(pack_header(KEEPALIVE, sid, 0), key)  # sequence 0: never valid
    forged = bytearray(sign(pack_header(KEEPALIVE, sid, 1000), key))
    forged[-1] ^= 1
    for addr in (("10.0.0.1", 4001), ("10.0.0.9", 4000), B):
        assert proto.receive_datagram(bytes(forged), addr, ns(50)) == []
    # an old packet (sequence 1 again, and one within the window but older) from elsewhere
    assert proto.receive_datagram(new, B, ns(55)) == []
    third = sign(pack_header(KEEPALIVE, sid, 3), key)
    second = sign(pack_header(KEEPALIVE, sid, 2), key)
    assert proto.receive_datagram(third, A, ns(56)) == []
    assert proto.receive_datagram(second, B, ns(57)) == []
    assert proto.receive_datagram(late, B, ns(58)) == []
    assert drop_counts(proto) == {"wrong_address": 4, "replayed": 1, "stale_sequence": 1}
    assert proto.addresses[0] == A and proto.moves == 0


def test_an_authenticated_newer_packet_moves_the_session(netkit):
    """NAT rebinding: the client's packets start coming from a new port; the session
    follows the first authenticated packet newer than any before, and snapshots go there."""
    proto, client = connected_pair(netkit, name="roamer")
    assert proto.receive_datagram(client.input(10, 0, False, 0.05), A, ns(50)) == []
    moved = ("10.0.0.1", 5555)
    # while its address still talks, nothing moves it (a raced copy of a real packet)
    raced = client.input(15, 0, False, 0.10)
    assert proto.receive_datagram(raced, moved, ns(100)) == []
    assert drop_counts(proto) == {"wrong_address": 1} and proto.addresses[0] == A
    proto.drops[:] = 0
    # silent for move_after_silence (0.25 s): the next authenticated, newer one moves it
    events = proto.receive_datagram(client.input(20, 0, False, 0.40), moved, ns(400))
    assert events == [PlayerMoved(0, "roamer", A, moved)]
    assert proto.addresses[0] == moved and proto.moves == 1
    assert proto.world.pi[S.P_MOVE_X, 0] == 20  # the packet that moved it was applied
    netkit.check_invariants(proto)
    # the old address is now the wrong one, even for a fresh packet... unless newer
    stale = client.input(30, 0, False, 0.45)
    newer = client.input(40, 0, False, 0.46)
    assert proto.receive_datagram(newer, moved, ns(460)) == []
    assert proto.receive_datagram(stale, A, ns(900)) == []  # late from the old place
    assert drop_counts(proto) == {"wrong_address": 1}
    assert proto.world.pi[S.P_MOVE_X, 0] == 40
    proto.world.step()
    proto.encode()
    ((_, to),) = list(proto.snapshots())
    assert to == moved
    # a move to another host counts against that host's sessions
    far = ("10.0.0.77", 6000)
    assert proto.receive_datagram(client.input(0, 0, False, 0.80), far, ns(800)) == [
        PlayerMoved(0, "roamer", moved, far)]
    assert proto._per_ip == {ip_to_int("10.0.0.77"): 1}
    netkit.check_invariants(proto)


def test_a_timed_out_player_waits_for_its_client_and_is_taken_back(netkit):
    proto = netkit.server(limits=NetLimits(reconnect_grace=30.0))
    proto, client = connected_pair(netkit, name="phone", proto=proto)
    for _ in range(3):  # the hunt has run a little
        proto.world.step()
    proto.world.pi[S.P_SCORE, 0] = 7
    proto.world.pf[S.PX, 0] = 123.0
    proto.world.pi[S.P_MOVE_X, 0] = 100  # walking when the connection died
    # a claim the client was told of, not yet durable, when the connection died
    w = proto.world
    w.events[0] = (S.EVENT_CLAIM, w.tick - 1, 0, int(w.pi[S.P_GEN, 0]), 3, 4)
    w.clock[S.EVENT_COUNT] = 1
    proto.durable[0] = -1
    proto.encode()
    w.clock[S.EVENT_COUNT] = 0
    timeout = proto.timeout_ns
    assert proto.expire(timeout + 1) == [PlayerAway(0, "phone", A)]
    assert unpack_header(proto.datagrams_to_send()[0][0]).type == DISCONNECT
    assert proto.connected_count() == 0 and proto.world.alive_count() == 1
    assert proto.world.pi[S.P_MOVE_X, 0] == 0  # it stands still while it waits
    netkit.check_invariants(proto)
    # its old session is gone: packets of it are unknown
    proto.receive_datagram(client.input(1, 1, False, 5.1), A, ns(5100))
    assert drop_counts(proto) == {"unknown_session": 1}
    # the same client id comes back (a new token, from a new address) within the grace
    back = netkit.client("phone", salt=77, token=netkit.token("phone", client_id=client.token.client_id))
    (ev,) = netkit.connect(proto, back, B, 20_000)
    assert ev.info.slot == 0 and ev.info.session_id != client.info.session_id
    assert proto.world.pi[S.P_SCORE, 0] == 7 and proto.world.pf[S.PX, 0] == 123.0
    assert proto.connected_count() == 1 and proto.addresses[0] == B
    netkit.check_invariants(proto)
    # its inputs count from 1 again in the new session
    assert proto.receive_datagram(back.input(5, 5, False, 20.05), B, ns(20_050)) == []
    assert proto.world.pi[S.P_MOVE_X, 0] == 5
    # the claim still in flight is told again in the new session, confirmed once durable
    proto.durable[0] = 2**40
    proto.encode()
    ((data, to),) = list(proto.snapshots())
    (snap,) = back.receive(bytes(data), 20.1)
    assert to == B and snap.own_claims == [(2, 3, 4, 1)]
    assert back.confirmed == {(2, 3): 4}


def test_a_player_whose_client_never_comes_back_leaves_after_the_grace(netkit):
    proto = netkit.server(limits=NetLimits(reconnect_grace=30.0))
    proto, client = connected_pair(netkit, name="gone", proto=proto)
    timeout, grace = proto.timeout_ns, proto.grace_ns
    assert proto.expire(timeout + 1) == [PlayerAway(0, "gone", A)]
    assert proto.expire(timeout + grace) == []
    assert proto.expire(timeout + grace + 1) == [PlayerLeft(0, "gone", "timed_out", None)]
    assert proto.world.alive_count() == 0 and proto._free[0] == 0
    netkit.check_invariants(proto)
    (ev,) = netkit.connect(proto, netkit.client("next", salt=99), B, 40_000)
    assert ev.info.slot == 0  # the slot is free again


def test_guessed_session_ids_are_dropped(netkit):
    proto, client = connected_pair(netkit)
    sid = client.info.session_id
    before = netkit.state(proto)
    guesses = [sid ^ (1 << 16), sid ^ (1 << 31), sid & 0xFFFF, 1, 0, 0xFFFFFFFF,
               (sid & 0xFFFF0000) | 1, (sid & 0xFFFF0000) | 3000]
    key = client.token.c2s_key  # even with the right key, a wrong id is unknown
    for n, guess in enumerate(guesses):
        proto.receive_datagram(sign(pack_header(KEEPALIVE, guess, 10 + n), key), A, ns(10))
        proto.receive_datagram(sign(pack_header(INPUT, guess, 10 + n) + INPUT_PREFIX.pack(0, 1)
                                    + INPUT_RECORD.pack(5, 1, 1, 1), key), A, ns(10))
    bye = sign(pack_header(DISCONNECT, sid ^ (7 << 16), 40) + DISCONNECT_BODY.pack(1), key)
    assert proto.receive_datagram(bye, A, ns(10)) == []
    assert drop_counts(proto) == {"unknown_session": 2 * len(guesses) + 1}
    assert netkit.state(proto) == before


def test_client_ignores_server_packets_for_another_session(netkit):
    proto, client = connected_pair(netkit)
    connected_pair(netkit, name="other", salt=12, addr=B, proto=proto)
    tick(proto)
    data = bytearray(next(bytes(d) for d, a in proto.snapshots() if a == A))
    data[8:12] = (client.info.session_id ^ (1 << 20)).to_bytes(4, "little")
    assert client.receive(bytes(data), 0.1) == []
    fake_bye = sign(pack_header(DISCONNECT, client.info.session_id ^ 1, 5)
                    + DISCONNECT_BODY.pack(2), client.token.s2c_key)
    assert client.receive(fake_bye, 0.1) == []
    assert drop_counts(client) == {"unknown_session": 2}
    assert client.state == CONNECTED


def test_client_drops_stale_and_duplicate_snapshots(netkit):
    proto, client = connected_pair(netkit)
    snaps = []
    for n in range(3):
        tick(proto)
        snaps += [bytes(d) for d, _ in proto.snapshots()]
    assert [unpack_header(s).sequence for s in snaps] == [1, 2, 3]
    assert len(client.receive(snaps[0], 0.05)) == 1
    assert len(client.receive(snaps[2], 0.15)) == 1
    assert client.receive(snaps[1], 0.16) == []  # reordered: older than the newest
    assert client.receive(snaps[2], 0.17) == []  # duplicated
    assert drop_counts(client) == {"stale_sequence": 2}
    assert client.last_snapshot_tick == proto.world.tick - 1


def test_name_longer_than_32_bytes_is_refused_by_the_token_service(netkit):
    with pytest.raises(ValueError):
        netkit.client("x" * 33)
    netkit.client("é" * 16)  # 32 bytes of UTF-8 is fine


def test_unicode_names_survive_the_trip(netkit):
    proto = netkit.server()
    client = netkit.client("Zoë 🦜", salt=4)
    challenge, _ = challenge_of(proto, client, A)
    events, _ = respond(proto, client, A, challenge)
    assert events[0].name == "Zoë 🦜" and proto.names[0] == "Zoë 🦜"


def test_sessions_never_outnumber_slots(netkit):
    proto = netkit.server(max_players=3)
    for i in range(20):
        events = netkit.connect(proto, netkit.client(salt=1000 + i), (f"10.1.0.{i}", 2000 + i))
        assert len(events) == 1 and proto.datagrams_to_send() == []
    assert proto.connected_count() == 3
    assert drop_counts(proto) == {"server_full": 17}
    netkit.check_invariants(proto)
    assert proto.sessions[S_STATE].tolist().count(S_CONNECTED) == 3
    assert proto.sessions[S_LAST_RX_SEQ].max() == 0
    assert SNAPSHOT not in proto.accepted.nonzero()[0]


@pytest.mark.parametrize("salt", [1, 2**63 - 1, 2**63, 2**64 - 1])
def test_any_u64_salt_round_trips_and_is_forgotten_on_leave(netkit, salt):
    proto = netkit.server()
    client = netkit.client("s", salt=salt)
    (ev,) = netkit.connect(proto, client, A, 0)
    assert isinstance(ev, Connected)
    assert proto._same_attempt(0, ip_to_int(A[0]), A[1], salt)
    assert proto._by_client == {client.token.client_id: 0}
    proto.receive_datagram(client.disconnect(), A, ns(10))
    assert proto._by_client == {}
    netkit.check_invariants(proto)
    again = netkit.client("s", salt=salt)  # the same salt later: a new session
    assert isinstance(netkit.connect(proto, again, A, 20)[0], Connected)
    assert drop_counts(proto) == {}


def test_first_snapshot_tick_is_the_accepts_server_tick_past_2_to_the_32(netkit):
    proto = netkit.server()
    proto.world.clock[S.TICK] = 2**32 + 5
    proto.world.clock[S.HUNT_START] = 2**32 + 5
    client = netkit.client("late", salt=31)
    (ev,) = netkit.connect(proto, client, A, 0)
    (snap,) = tick(proto, {0: client}, 50)[0]
    assert snap.tick == ev.info.server_tick


def test_first_snapshot_tick_is_the_accepts_server_tick(netkit):
    proto = netkit.server()
    for _ in range(12):
        proto.world.step()
    client = netkit.client("p", salt=32)
    (ev,) = netkit.connect(proto, client, A, 0)
    (snap,) = tick(proto, {0: client}, 50)[0]
    assert snap.tick == ev.info.server_tick == 12 and snap.sequence == 1


def test_retries_piled_up_in_one_batch_get_one_accept(netkit):
    """A client resending every 0.25 s while the server stalls gets one answer per tick."""
    from net.security import SecuritySettings
    proto = netkit.server(security=SecuritySettings(connect_rate_per_address=0.0))
    client = netkit.client("patient", salt=77)
    addr = ("127.0.0.1", 4000)
    challenge, _ = challenge_of(proto, client, addr)
    client.receive(challenge, 0.0)
    (response,), _ = client.poll(0.0)
    batch = DatagramBatch.allocate(32)
    for _ in range(20):
        batch.put(response, ip_to_int(addr[0]), addr[1])
    events = proto.receive_batch(batch, 0)
    replies = proto.datagrams_to_send()
    assert len(events) == 1 and len(replies) == 1  # one session, one accept
    assert proto.drops[D.DUPLICATE_CONNECT] == 19
    batch.count = 0
    batch.put(response, ip_to_int(addr[0]), addr[1])
    assert proto.receive_batch(batch, 1) == []
    assert len(proto.datagrams_to_send()) == 1  # a later retry is answered again


def test_retries_beyond_the_address_burst_are_rate_limited(netkit):
    from net.security import SecuritySettings
    # the defaults: 20 handshake packets a second from one address, burst 8
    proto = netkit.server(security=SecuritySettings())
    client = netkit.client("eager", salt=77)
    request = client.connect(0.0)
    batch = DatagramBatch.allocate(32)
    for _ in range(20):
        batch.put(request, ip_to_int("10.0.0.1"), 4000)
    assert proto.receive_batch(batch, 0) == []
    assert len(proto.datagrams_to_send()) == 8  # stateless: each gets its own challenge
    assert drop_counts(proto) == {"rate_limited": 12}
    netkit.check_invariants(proto)
    # loopback sources (the host's own bots and tools) have no per-address bucket
    batch.count = 0
    for _ in range(20):
        batch.put(request, ip_to_int("127.0.0.1"), 4000)
    proto.receive_batch(batch, 0)
    assert len(proto.datagrams_to_send()) == 20


def test_an_unanswered_response_is_given_up_for_a_new_challenge(netkit):
    """The challenge is bound to the client's address: if its port changes (NAT
    rebinding) between challenge and response, resending the response is useless; every
    RESPONSE_REFRESH-th resend is a request, which gets a challenge where the client is
    now, and the client gets in."""
    from net.client import RESPONSE_REFRESH
    proto = netkit.server()
    client = netkit.client("rebound", salt=5)
    proto.receive_datagram(client.connect(0.0), A, 0)
    ((challenge, _),) = proto.datagrams_to_send()
    assert client.receive(challenge, 0.01) == []
    moved = ("10.0.0.1", 4999)  # the NAT gave the client another port
    sent = []
    for k in range(RESPONSE_REFRESH):
        out, _ = client.poll(0.01 + 0.3 * (k + 1))
        sent += out
        for data in out:
            proto.receive_datagram(data, moved, ns(10 + 300 * (k + 1)))
    types = [unpack_header(d).type for d in sent]
    assert types == [CHALLENGE_RESPONSE] * (RESPONSE_REFRESH - 1) + [CONNECT_REQUEST]
    # the server refused each response: its cookie names the address it was sent to
    assert drop_counts(proto) == {"wrong_address": RESPONSE_REFRESH - 1}
    # the new request is challenged at the new address, and the client gets in
    ((challenge, to),) = [r for r in proto.datagrams_to_send() if unpack_header(r[0]).type == CHALLENGE][-1:]
    assert to == moved
    client.receive(challenge, 3.0)
    (response,), _ = client.poll(3.0)
    (event,) = proto.receive_datagram(response, moved, ns(3000))
    assert isinstance(event, PlayerJoined) and proto.addresses[event.slot] == moved


def test_a_moving_disconnect_in_a_full_batch_of_requests_cannot_overflow_the_controls(netkit):
    """A DISCONNECT that also moves its session makes two control entries: a batch of
    one of them and handshake requests has more control entries than datagrams."""
    proto, client = connected_pair(netkit, name="m", max_players=2)
    other = netkit.client("x", salt=5)
    req = other.connect(0.5)
    disc = sign(pack_header(DISCONNECT, client.info.session_id, 1000)
                + DISCONNECT_BODY.pack(1), client.token.c2s_key)
    challenges = proto.gate.challenges
    events = proto.receive_batch(batch_of((disc, B), (req, C)), ns(1000))
    assert [type(e) for e in events] == [PlayerMoved, PlayerLeft]
    assert proto.gate.challenges == challenges + 1  # the request was answered too
    netkit.check_invariants(proto)


def test_a_disconnect_then_a_move_in_one_batch_keeps_the_books(netkit):
    """With move_after_silence 0: a DISCONNECT from the old address, then a newer packet
    from a new one, in the same batch: the session ends, the move is not applied to the
    freed slot, and no address keeps a session it does not have."""
    from net.security import SecuritySettings
    security = SecuritySettings(connect_rate=0.0, connect_rate_per_address=0.0,
                                max_sessions_per_address=0, move_after_silence=0.0)
    proto = netkit.server(security=security)
    proto, client = connected_pair(netkit, name="m", proto=proto)
    client._tx_seq = 5
    newer = client.input(1, 0, False, 0.1)  # sequence 6, from B
    disc = sign(pack_header(DISCONNECT, client.info.session_id, 3) + DISCONNECT_BODY.pack(1),
                client.token.c2s_key)  # sequence 3, from A
    events = proto.receive_batch(batch_of((disc, A), (newer, B)), ns(100))
    assert [type(e) for e in events] == [PlayerLeft]
    assert proto._per_ip == {} and proto.addresses[0] is None
    netkit.check_invariants(proto)


def test_a_client_whose_port_changes_before_its_accept_arrives_gets_in_there(netkit):
    """The accept is lost and the client's NAT rebinds: its resent responses carry a
    cookie for the old address (refused), its periodic request gets a challenge at the new
    one, and that response, of the same attempt and proving the token's key, moves the
    session (never heard from before) there and brings the accept."""
    from net.client import RESPONSE_REFRESH
    proto = netkit.server(max_players=1)  # full once it joins: the move needs no new slot
    client = netkit.client("nat", salt=77)
    proto.receive_datagram(client.connect(0.0), A, 0)
    ((challenge, _),) = proto.datagrams_to_send()
    client.receive(challenge, 0.0)
    (response,), _ = client.poll(0.0)
    (joined,) = proto.receive_datagram(response, A, ns(10))
    assert isinstance(joined, PlayerJoined)
    proto.datagrams_to_send()  # the accept is lost
    got = []
    for k in range(1, 3 * RESPONSE_REFRESH):
        out, _ = client.poll(0.3 * k)
        for data in out:  # every packet now leaves from another port
            got += proto.receive_datagram(data, B, ns(300 * k))
        for reply, to in proto.datagrams_to_send():
            assert to == B
            client.receive(reply, 0.3 * k)
        if client.state == CONNECTED:
            break
    assert client.state == CONNECTED and client.info.slot == joined.slot
    assert got == [PlayerMoved(joined.slot, "nat", A, B)]
    assert proto.addresses[joined.slot] == B and proto.connected_count() == 1
    netkit.check_invariants(proto)
    # another attempt (another salt) of the same client id is still a duplicate
    twin = netkit.client("nat", salt=78, token=client.token)
    proto.receive_datagram(twin.connect(5.0), C, ns(5000))
    assert proto.datagrams_to_send() == []
