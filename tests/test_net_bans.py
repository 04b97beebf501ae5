"""net/bans.py: the ban list (expiry, bound, eviction), and ServerProtocol refusing banned
addresses before any cryptography and banned client ids once their token opens."""

from __future__ import annotations

import random

import pytest

from net import drops as D
from net.address import ip_to_int
from net.bans import ADDRESS, CLIENT_ID, MAX_REASON, Ban, BanList
from net.client import CONNECTED, Connected

S = 1_000_000_000  # ns per second

A = ("10.0.0.1", 4000)
B = ("10.0.0.2", 4001)


# ---- the list ----------------------------------------------------------------------------

def test_ban_lasts_until_its_expiry_and_is_then_forgotten():
    bans = BanList()
    bans.ban(CLIENT_ID, 42, until_ns=10 * S, reason="cheating")
    bans.ban(ADDRESS, ip_to_int("203.0.113.5"), until_ns=5 * S)
    assert bans.client_banned(42, 0) and bans.client_banned(42, 10 * S - 1)
    assert not bans.client_banned(43, 0)
    assert bans.address_banned(ip_to_int("203.0.113.5"), 4 * S)
    assert not bans.address_banned(ip_to_int("203.0.113.6"), 4 * S)
    assert not bans.client_banned(ip_to_int("203.0.113.5"), 0)  # kinds do not mix
    assert not bans.address_banned(42, 0)
    assert len(bans) == 2
    assert not bans.address_banned(ip_to_int("203.0.113.5"), 5 * S)  # lapses at until_ns
    assert len(bans) == 1  # and is forgotten there
    assert not bans.client_banned(42, 10 * S)
    assert len(bans) == 0


def test_active_lists_bans_in_force_soonest_first_and_purges_lapsed():
    bans = BanList()
    bans.ban(CLIENT_ID, 1, 30 * S)
    bans.ban(ADDRESS, 7, 10 * S, "flood")
    bans.ban(CLIENT_ID, 2, 20 * S)
    bans.ban(CLIENT_ID, 3, 5 * S)
    assert bans.active(6 * S) == [Ban(ADDRESS, 7, 10 * S, "flood"), Ban(CLIENT_ID, 2, 20 * S, ""),
                                  Ban(CLIENT_ID, 1, 30 * S, "")]
    assert len(bans) == 3
    assert bans.purge(25 * S) == 2 and [b.value for b in bans.active(25 * S)] == [1]


def test_a_new_ban_replaces_the_old_one_of_the_same_key():
    bans = BanList()
    bans.ban(CLIENT_ID, 9, 100 * S, "first")
    bans.ban(CLIENT_ID, 9, 1 * S, "second")
    assert len(bans) == 1
    assert bans.active(0) == [Ban(CLIENT_ID, 9, 1 * S, "second")]
    assert not bans.client_banned(9, 2 * S)


def test_unban():
    bans = BanList()
    bans.ban(ADDRESS, 5, 10 * S)
    assert not bans.unban(CLIENT_ID, 5)
    assert bans.unban(ADDRESS, 5)
    assert not bans.address_banned(5, 0)
    assert not bans.unban(ADDRESS, 5)


def test_a_full_list_evicts_the_ban_expiring_first_and_counts_it():
    bans = BanList(capacity=3)
    bans.ban(CLIENT_ID, 1, 50 * S)
    bans.ban(CLIENT_ID, 2, 10 * S)
    bans.ban(ADDRESS, 3, 30 * S)
    bans.ban(CLIENT_ID, 9, 5 * S)  # even a shorter new ban takes the place of the soonest
    assert len(bans) == 3 and bans.evicted == 1
    assert {(b.kind, b.value) for b in bans.active(0)} == {(CLIENT_ID, 1), (ADDRESS, 3),
                                                           (CLIENT_ID, 9)}
    bans.ban(CLIENT_ID, 1, 60 * S)  # a key already held: no eviction
    assert bans.evicted == 1


def test_a_full_list_drops_lapsed_bans_before_evicting():
    bans = BanList(capacity=2)
    bans.ban(CLIENT_ID, 1, 5 * S)
    bans.ban(CLIENT_ID, 2, 50 * S)
    bans.ban(CLIENT_ID, 3, 60 * S, now=10 * S)  # ban 1 has lapsed: it makes the room
    assert bans.evicted == 0
    assert [b.value for b in bans.active(10 * S)] == [2, 3]


def test_the_list_stays_bounded_under_a_flood_of_bans():
    """Against a plain model: every new ban goes in, the held one expiring first goes out."""
    rnd = random.Random(5)
    bans, model = BanList(capacity=64), {}
    for k in range(2000):
        value, until = rnd.randrange(300), rnd.randrange(1, 100) * S
        key = (ADDRESS, value)
        if key not in model and len(model) >= 64:
            del model[min(model, key=lambda m: (model[m], m))]
        model[key] = until
        bans.ban(ADDRESS, value, until)
        assert len(bans) <= 64
    assert {(b.kind, b.value): b.until_ns for b in bans.active(0)} == model
    assert bans.evicted > 0


def test_reason_is_cut_and_kind_checked():
    bans = BanList()
    assert len(bans.ban(CLIENT_ID, 1, S, "x" * 1000).reason) == MAX_REASON
    with pytest.raises(ValueError, match="kind"):
        bans.ban("name", 1, S)
    with pytest.raises(ValueError, match="capacity"):
        BanList(capacity=0)


# ---- ServerProtocol at the door ----------------------------------------------------------

def handshake(netkit, proto, client, addr, ms):
    """Send the request (and, if challenged, the response) at `ms`; return what the
    server sent back and the client's events."""
    now = netkit.ns(ms)
    replies, events = [], []
    out = [client.connect(netkit.sec(ms))]
    for _ in range(2):
        for data in out:
            proto.receive_datagram(data, addr, now)
        got = proto.datagrams_to_send()
        if not got:  # dropped: the client would only resend the same
            break
        replies += got
        for data, _to in got:
            events += client.receive(data, netkit.sec(ms))
        out, _ = client.poll(netkit.sec(ms) + 1)
        if not out:
            break
    return replies, events


def test_a_banned_address_is_dropped_before_any_cryptography(netkit, monkeypatch):
    proto = netkit.server()
    proto.bans.ban(ADDRESS, ip_to_int(A[0]), until_ns=netkit.ns(1000))

    def never(*args):
        raise AssertionError("the token was opened for a banned address")
    monkeypatch.setattr(proto.gate, "check_request", never)
    monkeypatch.setattr(proto.gate, "check_response", never)
    client = netkit.client("mallory")
    before = netkit.state(proto)
    proto.receive_datagram(client.connect(0.0), A, netkit.ns(10))
    assert proto.datagrams_to_send() == []
    assert D.drops_by_reason(proto.drops) == {"banned": 1}
    assert netkit.state(proto) == before
    # a challenge response from the address is refused the same way (C0)
    proto.receive_datagram(client.connect(0.0)[:3] + bytes([9]) + client.connect(0.0)[4:],
                           A, netkit.ns(20))
    assert D.drops_by_reason(proto.drops) == {"banned": 2}


def test_a_banned_client_id_is_dropped_once_its_token_opens(netkit):
    proto = netkit.server()
    proto.bans.ban(CLIENT_ID, 77, until_ns=netkit.ns(1000))
    banned = netkit.client("eve", client_id=77)
    replies, events = handshake(netkit, proto, banned, A, 10)
    assert replies == [] and events == []
    assert D.drops_by_reason(proto.drops) == {"banned": 1}
    assert proto.connected_count() == 0
    # another client from the same address is let in: the ban names the client id
    other = netkit.client("bob", client_id=78)
    _, events = handshake(netkit, proto, other, A, 20)
    assert any(isinstance(e, Connected) for e in events)
    netkit.check_invariants(proto)


def test_a_client_banned_after_its_challenge_cannot_answer_it(netkit):
    proto = netkit.server()
    client = netkit.client("late", client_id=90)
    proto.receive_datagram(client.connect(0.0), A, netkit.ns(10))
    ((challenge, _),) = proto.datagrams_to_send()
    client.receive(challenge, 0.01)
    response, _ = client.poll(1.0)
    proto.bans.ban(CLIENT_ID, 90, until_ns=netkit.ns(1000))
    proto.receive_datagram(response[0], A, netkit.ns(20))
    assert proto.datagrams_to_send() == [] and proto.connected_count() == 0
    assert D.drops_by_reason(proto.drops) == {"banned": 1}


def test_after_the_ban_expires_the_client_gets_in(netkit):
    proto = netkit.server()
    proto.bans.ban(CLIENT_ID, 5, until_ns=netkit.ns(500))
    proto.bans.ban(ADDRESS, ip_to_int(B[0]), until_ns=netkit.ns(500))
    _, events = handshake(netkit, proto, netkit.client("a", client_id=5), A, 100)
    assert events == []
    _, events = handshake(netkit, proto, netkit.client("b", client_id=6), B, 100)
    assert events == []
    assert D.drops_by_reason(proto.drops) == {"banned": 2}
    a = netkit.client("a", client_id=5)
    _, events = handshake(netkit, proto, a, A, 500)
    assert any(isinstance(e, Connected) for e in events) and a.state == CONNECTED
    _, events = handshake(netkit, proto, netkit.client("b", client_id=6), B, 500)
    assert any(isinstance(e, Connected) for e in events)
    assert len(proto.bans) == 0
    netkit.check_invariants(proto)


def test_kick_helpers_find_sessions_by_client_id_and_address(netkit):
    proto = netkit.server(max_players=4)
    slots = {}
    for cid, addr in ((1, A), (2, B), (3, (A[0], 5000))):
        netkit.connect(proto, netkit.client(f"p{cid}", client_id=cid), addr)
    for slot in range(3):
        slots[proto.client_id(slot)] = slot
    assert proto.slot_of_client(2) == slots[2] and proto.slot_of_client(99) is None
    assert proto.slots_of_address(ip_to_int(A[0])) == sorted([slots[1], slots[3]])
    assert proto.slots_of_address(ip_to_int("10.9.9.9")) == []
    proto.kick(slots[1])
    assert proto.slots_of_address(ip_to_int(A[0])) == [slots[3]]
    assert proto.slot_of_client(1) is None
    netkit.check_invariants(proto)
