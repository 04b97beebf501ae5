"""SIGTERM / SIGINT: the real server process tells its clients and exits 0."""

import signal
import socket
import subprocess
import sys
import time

import pytest

from net.client import CONNECTED, ClientProtocol, Connected, Disconnected
from net.keys import create_key_file
from net.token import issue_token
from net.udp import UdpEndpoint
from tick.clock import unix_s


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return False


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_tells_clients_and_exits_zero(signum, tmp_path):
    port = free_port()
    key_file = tmp_path / "xmarks.key"
    key = create_key_file(key_file)
    server = subprocess.Popen(
        [sys.executable, "-m", "cli", "serve", "--port", str(port), "--duration", "60",
         "--key-file", str(key_file)],
        stderr=subprocess.PIPE, text=True,
        env={"XMARKS_MAX_PLAYERS": "16", "XMARKS_TREASURE_COUNT": "8",
             **{k: v for k, v in __import__("os").environ.items() if not k.startswith("XMARKS_")}})
    endpoint = UdpEndpoint("127.0.0.1", 0)
    client = ClientProtocol(issue_token(key, 1, [("127.0.0.1", port)], "watcher",
                                        unix_s(), 300))
    events = []
    try:
        lines = []
        assert wait_for(lambda: lines.append(server.stderr.readline()) or "serving on" in lines[-1], 60)
        endpoint.send(client.connect(time.monotonic()), ("127.0.0.1", port))

        def pump() -> bool:
            for data, _ in endpoint.recv_all():
                events.extend(client.receive(data, time.monotonic()))
            out, evs = client.poll(time.monotonic())
            events.extend(evs)
            for data in out:
                endpoint.send(data, ("127.0.0.1", port))
            return False

        assert wait_for(lambda: pump() or client.state == CONNECTED, 10)
        assert any(isinstance(e, Connected) for e in events)
        sent = time.monotonic()
        server.send_signal(signum)
        assert server.wait(timeout=5) == 0
        assert time.monotonic() - sent < 5
        assert wait_for(lambda: pump() or any(isinstance(e, Disconnected) for e in events), 2)
        told = [e for e in events if isinstance(e, Disconnected)]
        assert told[0].reason == "server" and told[0].code == 2  # DISCONNECT_SERVER_SHUTDOWN
    finally:
        endpoint.close()
        if server.poll() is None:
            server.kill()
        server.wait()
        server.stderr.close()
