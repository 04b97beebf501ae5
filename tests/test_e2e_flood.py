"""Garbage over real UDP while bots play: every bad datagram is counted, play goes on."""

from __future__ import annotations

import random
import threading
import time
import tracemalloc

from net.udp import UdpEndpoint
from net.wire import CONNECT_REQUEST, HEADER_SIZE, INPUT, pack_header
from tests.test_e2e_loopback import MIN_RATE_FRACTION, TICK_RATE, running_server  # noqa: F401
from tick.swarm import Swarm
from tests.conftest import NetKit


def garbage(rng: random.Random) -> bytes:
    """Random bytes, or a valid-looking header with a broken body, 0..1600 bytes."""
    kind = rng.randrange(4)
    if kind == 0:
        return rng.randbytes(rng.randrange(0, 1600))
    if kind == 1:  # right protocol id and version, forged session, wrong length
        return pack_header(INPUT, rng.getrandbits(32), rng.getrandbits(32)) + rng.randbytes(
            rng.randrange(0, 40))
    if kind == 2:  # a connect request of the wrong size
        return pack_header(CONNECT_REQUEST, 0, 0) + rng.randbytes(rng.choice((0, 100, 255)))
    return rng.randbytes(rng.randrange(0, HEADER_SIZE))


def test_flood_of_garbage_is_counted_and_play_goes_on(running_server):  # noqa: F811
    server, thread = running_server
    sent = []
    done = threading.Event()

    def flood() -> None:
        rng = random.Random(7)
        attacker = UdpEndpoint("127.0.0.1", 0)
        try:
            while not done.is_set() and len(sent) < 20_000:
                for _ in range(200):
                    packet = garbage(rng)
                    if attacker.send(packet, server.address):
                        sent.append(len(packet))
                done.wait(0.01)
        finally:
            attacker.close()

    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    attacker = threading.Thread(target=flood, daemon=True)
    attacker.start()
    report = Swarm(server.address, 6, seed=4, rate=TICK_RATE, key=NetKit.KEY).run(3.0)
    done.set()
    attacker.join(timeout=5)
    deadline = time.monotonic() + 3
    while server.protocol.connected_count() and time.monotonic() < deadline:
        time.sleep(0.05)  # the bots' DISCONNECTs are read on the next ticks
    sessions_left = server.protocol.connected_count()
    server.stop()
    thread.join(timeout=5)
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()

    assert not thread.is_alive()
    assert report.connected == 6
    assert report.snapshots_per_bot_per_s >= MIN_RATE_FRACTION * TICK_RATE
    dropped = int(server.protocol.drops.sum())
    # The kernel may lose some datagrams to a full receive buffer before the server sees
    # them; everything the server did read was garbage and must be counted as a drop.
    assert len(sent) > 1000
    assert 0.5 * len(sent) <= dropped <= len(sent)
    assert sessions_left == 0  # the bots left, and no garbage made a session
    assert grown < 2_000_000, f"memory grew by {grown} bytes under the flood"
