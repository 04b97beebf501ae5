"""End to end over loopback UDP: a real GameServer, real sockets, hunting bots, the real CLI.

The machine is a shared 2-core box: rates are checked with some slack, and every wait
has a timeout so a hang fails the test instead of the suite.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from net.client import CLOSED
from net.drops import drops_by_reason
from net.udp import UdpEndpoint
from sim.rules import GameRules
from tick.config import ServerConfig
from tick.rates import TickRates
from tick.server import GameServer
from tick.swarm import Swarm
from tests.conftest import NetKit

TICK_RATE = 20.0
# Bots must see >= 90% of the tick rate on an idle machine. This is a shared 2-core box
# running server, bots and (maybe) other test suites at once, so the assertion allows 80%.
MIN_RATE_FRACTION = 0.8

SMALL_DENSE = GameRules(world_width=256.0, world_height=256.0, max_players=16,
                        treasure_count=32, cell_size=64.0, dig_time=0.2, reveal_radius=128.0,
                        respawn_delay=0.5, seed=3)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def running_server():
    """A GameServer on 127.0.0.1:<ephemeral> in a thread; yields (server, thread)."""
    config = ServerConfig(rules=SMALL_DENSE, rates=TickRates(tick_rate=TICK_RATE,
                                                             status_every=0))
    server = GameServer(config, endpoint=UdpEndpoint("127.0.0.1", 0), key=NetKit.KEY)
    server.warm_up()
    thread = threading.Thread(target=server.run, name="xmarks-server", daemon=True)
    thread.start()
    yield server, thread
    server.stop()
    thread.join(timeout=5)
    server.endpoint.close()


def test_swarm_hunts_then_server_stops_and_tells_every_bot(running_server):
    server, thread = running_server
    assert server.address[0] == "127.0.0.1" and server.address[1] > 0
    swarm = Swarm(server.address, 10, seed=1, rate=TICK_RATE, key=NetKit.KEY)
    hunt_for = 4.0
    stopper = threading.Timer(hunt_for, server.stop)
    stopper.start()
    try:
        report = swarm.run(hunt_for + 1.5)  # keeps listening after the server stops
    finally:
        stopper.cancel()
    thread.join(timeout=5)
    assert not thread.is_alive(), "the server loop did not stop"

    assert report.bots == 10 and report.connected == 10
    for bot in swarm.bots:
        assert bot.connected_at is not None and not bot.denied
        # every bot heard the server's DISCONNECT (shutdown), not a timeout
        assert bot.client.state == CLOSED
        assert bot.error == "disconnected (server)", bot.error
        assert bot.closed_at is not None
        connected_for = bot.closed_at - bot.connected_at
        assert connected_for > hunt_for - 1.0
        rate = bot.snapshots / connected_for
        assert rate >= MIN_RATE_FRACTION * TICK_RATE, (bot.client.name, rate)
        assert int(bot.client.drops.sum()) == 0
    assert report.snapshots_per_bot_per_s >= MIN_RATE_FRACTION * TICK_RATE
    assert report.claims > 0 and server.claims > 0
    assert report.errors == 10  # each one is the shutdown notice checked above
    assert server.protocol.connected_count() == 0
    assert not server.protocol.accepting
    assert server.timings.recorded >= hunt_for * TICK_RATE * MIN_RATE_FRACTION


def test_bots_that_leave_free_their_slots(running_server):
    server, _thread = running_server
    report = Swarm(server.address, 5, seed=2, rate=TICK_RATE, key=NetKit.KEY).run(1.5)
    assert report.connected == 5 and report.errors == 0
    deadline = time.monotonic() + 3
    while server.protocol.connected_count() and time.monotonic() < deadline:
        time.sleep(0.05)  # the DISCONNECTs are read on the server's next tick
    assert server.protocol.connected_count() == 0
    assert server.world.alive_count() == 0
    assert drops_by_reason(server.protocol.drops) == {}


# ---- the real command line, as subprocesses ----------------------------------------------

def xmarks_command() -> list[str]:
    script = Path(sys.executable).with_name("xmarks")
    if script.exists():
        return [str(script)]
    found = shutil.which("xmarks")
    return [found] if found else [sys.executable, "-m", "cli"]


def clean_env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith("XMARKS_")}


def read_lines(stream, into: queue.Queue) -> None:
    for line in iter(stream.readline, ""):
        into.put(line)
    into.put(None)


def test_cli_serve_and_bots_over_loopback(tmp_path):
    port = free_udp_port()
    config = tmp_path / "world.toml"
    config.write_text(
        "[game]\nworld_width = 256.0\nworld_height = 256.0\nmax_players = 32\n"
        "treasure_count = 32\ncell_size = 64.0\ndig_time = 0.2\nreveal_radius = 128.0\n"
        "[tick]\ntick_rate = 20.0\nstatus_every = 0\n")
    serve = subprocess.Popen(
        xmarks_command() + ["serve", "--port", str(port), "--duration", "5",
                            "--log-level", "debug",  # joins and leaves are debug lines
                            "--config", str(config), "--key-file", str(tmp_path / "k")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=clean_env())
    lines: queue.Queue = queue.Queue()
    reader = threading.Thread(target=read_lines, args=(serve.stderr, lines), daemon=True)
    reader.start()
    log = []
    try:
        deadline = time.monotonic() + 60  # a cold numba cache compiles every kernel
        while not any("serving on" in line for line in log):
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            assert line is not None, "serve exited early:\n" + "".join(log)
            log.append(line)
        assert f"127.0.0.1:{port}" in log[-1]

        bots = subprocess.run(
            xmarks_command() + ["bots", "--server", f"127.0.0.1:{port}", "--count", "5",
                                "--duration", "2.5", "--json", "--key-file", str(tmp_path / "k")],
            capture_output=True, text=True, timeout=30, env=clean_env())
        assert bots.returncode == 0, bots.stderr
        report = json.loads(bots.stdout)
        assert {"connected", "snapshots_received", "snapshots_per_bot_per_s", "claims",
                "errors"} <= set(report)
        assert report["connected"] == 5 and report["errors"] == 0
        assert report["snapshots_received"] > 0
        assert report["snapshots_per_bot_per_s"] >= MIN_RATE_FRACTION * 20.0
        assert isinstance(report["claims"], int) and report["claims"] >= 0

        assert serve.wait(timeout=20) == 0  # stops by itself after --duration
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()
    reader.join(timeout=5)
    serve.stderr.close()
    while True:
        try:
            line = lines.get_nowait()
        except queue.Empty:
            break
        if line is not None:
            log.append(line)
    text = "".join(log)
    assert "Traceback" not in text
    assert "stopped at tick" in text
    assert text.count("join: bot-") == 5
    assert text.count("leave: bot-") == 5


# ---- the UDP endpoint ---------------------------------------------------------------------

class Hung(Exception):
    """Raised by an interval timer: the call under test did not return in time."""


def within(seconds: float, call):
    """call() in this (main) thread, interrupted by SIGALRM after `seconds`."""
    import signal

    def alarm(signum, frame):  # noqa: ARG001
        raise Hung(f"did not return within {seconds} s")
    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return call()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_endpoint_round_trip_and_oversize_marking():
    from net.batch import DatagramBatch
    from net.wire import MAX_DATAGRAM
    a, b = UdpEndpoint(), UdpEndpoint()
    try:
        assert a.send(b"hello", b.address)
        assert a.send_many([(b"x" * 1300, b.address), (b"y" * 1536, b.address),
                            (memoryview(b"z" * 10), b.address)]) == (3, 1300 + 1536 + 10)
        batch = DatagramBatch.allocate(8)
        time.sleep(0.1)  # loopback delivers at once; this is slack for a loaded machine
        assert within(2, lambda: b.drain(batch)) == 4 == batch.count
        assert bytes(batch.data[0, :5]) == b"hello" and batch.length[0] == 5
        assert batch.length[1] == 1300 and batch.length[1] > MAX_DATAGRAM
        assert batch.length[2] == MAX_DATAGRAM + 1  # filled the slot: maybe cut, oversize
        assert batch.length[3] == 10
        host, port = a.address
        assert batch.port[0] == port and batch.ip[0] == 0x7F000001
        assert within(2, lambda: b.drain(batch)) == 0  # nothing left: returns at once
    finally:
        a.close()
        b.close()


# Regression: drain() and recv_all() `continue`d on every OSError, so a closed endpoint
# (EBADF) spun forever at 100% CPU.
@pytest.mark.parametrize("call", ["drain", "recv_all"])
def test_closed_endpoint_does_not_spin(call):
    from net.batch import DatagramBatch
    endpoint = UdpEndpoint()
    endpoint.close()

    def attempt():
        try:
            if call == "drain":
                return endpoint.drain(DatagramBatch.allocate(4))
            return endpoint.recv_all()
        except OSError:
            return None  # raising is fine too: the point is to return
    within(1.0, attempt)
