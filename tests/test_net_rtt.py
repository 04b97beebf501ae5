"""net/rtt.py through ServerProtocol: a session's smoothed round-trip time from the first ack
of each snapshot tick, against a plain-Python EWMA."""

from __future__ import annotations

import random

from net.rtt import SENT_RING, SENT_TICK, new_sent_ring, note_sent

A = ("10.0.0.1", 4000)


def deliver(proto, client, now_s: float) -> None:
    for data, _addr in proto.snapshots():
        client.receive(bytes(data), now_s)


def tick(proto, client, sent_ns: int) -> int:
    """Step, encode, 'send' at sent_ns and deliver to the client; return the tick."""
    proto.world.step()
    proto.encode()
    proto.snapshots_sent(sent_ns)
    deliver(proto, client, sent_ns / 1e9)
    return proto.world.tick - 1


def connected(netkit, name="r"):
    proto = netkit.server()
    client = netkit.client(name)
    netkit.connect(proto, client, A, 0)
    proto.world.step()  # tick 0's snapshot could not be acked: ack 0 means "none"
    return proto, client, client.info.slot


def test_the_first_ack_of_a_tick_gives_the_sample(netkit):
    proto, client, slot = connected(netkit)
    t = tick(proto, client, netkit.ns(100))
    assert client.last_snapshot_tick == t
    assert proto.rtt_ns(slot) is None
    proto.receive_datagram(client.input(0, 0, False, 0.13), A, netkit.ns(130))
    assert proto.rtt_ns(slot) == netkit.ns(30)
    # the same ack again (the next input before the next snapshot): no new sample
    proto.receive_datagram(client.input(1, 0, False, 0.4), A, netkit.ns(400))
    assert proto.rtt_ns(slot) == netkit.ns(30)


def test_smoothing_matches_a_plain_ewma(netkit):
    proto, client, slot = connected(netkit)
    rnd = random.Random(11)
    srtt = None
    now = netkit.ns(1000)
    for k in range(60):
        now += netkit.ns(50)
        tick(proto, client, now)
        delay = rnd.randrange(1, 200_000_000)
        if rnd.random() < 0.2:
            continue  # this snapshot's ack never comes; the next one's will
        proto.receive_datagram(client.input(0, 0, False, (now + delay) / 1e9), A, now + delay)
        srtt = delay if srtt is None else srtt + (delay - srtt) // 8
        assert proto.rtt_ns(slot) == srtt, k
    assert srtt is not None


def test_no_sample_for_a_tick_whose_send_time_is_gone(netkit):
    proto, client, slot = connected(netkit)
    t = tick(proto, client, netkit.ns(100))
    # SENT_RING ticks later that row holds another tick
    note_sent(proto.sent, t + SENT_RING, netkit.ns(999))
    proto.receive_datagram(client.input(0, 0, False, 0.2), A, netkit.ns(200))
    assert proto.rtt_ns(slot) is None


def test_no_sample_for_a_tick_never_noted(netkit):
    proto, client, slot = connected(netkit)
    proto.world.step()
    proto.encode()  # encoded, but the driver never said it was sent
    deliver(proto, client, 0.1)
    proto.receive_datagram(client.input(0, 0, False, 0.2), A, netkit.ns(200))
    assert proto.rtt_ns(slot) is None


def test_a_sample_is_never_zero_or_negative(netkit):
    proto, client, slot = connected(netkit)
    tick(proto, client, netkit.ns(500))
    proto.receive_datagram(client.input(0, 0, False, 0.4), A, netkit.ns(400))  # clock skew
    assert proto.rtt_ns(slot) == 1


def test_the_ring_keys_ticks_modulo_its_size():
    ring = new_sent_ring()
    assert (ring[SENT_TICK] == -1).all()
    note_sent(ring, 5, 123)
    note_sent(ring, 5 + SENT_RING, 456)  # the same row
    assert ring[SENT_TICK, 5] == 5 + SENT_RING and ring[1, 5] == 456
    note_sent(ring, 2**32 + 7, 9)  # ticks beyond u32: the wire's ack is tick mod 2**32
    assert ring[SENT_TICK, 7] == 2**32 + 7


def test_a_new_session_in_the_slot_starts_without_rtt(netkit):
    proto, client, slot = connected(netkit)
    tick(proto, client, netkit.ns(100))
    proto.receive_datagram(client.input(0, 0, False, 0.15), A, netkit.ns(150))
    assert proto.rtt_ns(slot) == netkit.ns(50)
    proto.kick(slot)
    again = netkit.client("again")
    netkit.connect(proto, again, A, 300)
    assert again.info.slot == slot and proto.rtt_ns(slot) is None
