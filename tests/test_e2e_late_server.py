"""Bots started before the server is listening (a first run compiling its kernels) wait."""

from __future__ import annotations

import threading
import time

from tests.test_e2e_loopback import SMALL_DENSE, TICK_RATE, free_udp_port
from net.udp import UdpEndpoint
from tick.config import ServerConfig
from tick.rates import TickRates
from tick.server import GameServer
from tick.swarm import Swarm
from tests.conftest import NetKit


def test_bots_wait_past_the_protocol_connect_timeout_for_a_late_server():
    port = free_udp_port()
    late_by = 5.5  # longer than ClientProtocol's default 5 s connect timeout
    result = {}
    swarm = Swarm(("127.0.0.1", port), 4, seed=5, rate=TICK_RATE, key=NetKit.KEY)
    bots = threading.Thread(target=lambda: result.update(report=swarm.run(late_by + 2.0)))
    bots.start()
    config = ServerConfig(rules=SMALL_DENSE, rates=TickRates(tick_rate=TICK_RATE, status_every=0))
    server = GameServer(config, endpoint=UdpEndpoint("127.0.0.1", port), key=NetKit.KEY)
    server.warm_up()
    time.sleep(late_by)  # the server's socket exists, but nothing is read until run()
    serving = threading.Thread(target=server.run, daemon=True)
    serving.start()
    bots.join(timeout=10)
    server.stop()
    serving.join(timeout=5)
    server.close()
    report = result["report"]
    assert report.connected == 4, report
    assert report.snapshots_received > 0
