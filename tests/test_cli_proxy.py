"""`xmarks proxy`: help, one-line usage errors (in process), and real runs as subprocesses
(--duration, SIGTERM, a taken port)."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import threading
import time

import pytest

from net.udp import UdpEndpoint
from tests.test_cli import assert_one_line_error, run
from tests.test_e2e_loopback import clean_env, free_udp_port, read_lines, xmarks_command


pytestmark = pytest.mark.usefixtures("no_xmarks_env")


def test_help_tells_to_set_the_servers_public_address(monkeypatch, capsys):
    code, out, err = run(monkeypatch, capsys, "proxy", "--help")
    assert code == 0 and err == ""
    flat = " ".join(out.split())
    assert "public_address" in flat and "XMARKS_PUBLIC_ADDRESS=127.0.0.1:7000" in flat
    for flag in ("--loss", "--duplicate", "--reorder", "--latency", "--jitter", "--seed",
                 "--duration", "--json", "--rebind-every", "--rate", "--queue-limit"):
        assert flag in out
    code, out, _ = run(monkeypatch, capsys, "--help")
    assert "proxy" in out


@pytest.mark.parametrize("args,words", [
    ((), ["--server"]),
    (("--server", "localhost:7777"), ["--server", "IPV4:PORT"]),
    (("--server", "127.0.0.1:7777", "--listen", "127.0.0.1"), ["--listen", "IPV4:PORT"]),
    (("--server", "127.0.0.1:7777", "--loss", "1.5"), ["--loss"]),
    (("--server", "127.0.0.1:7777", "--duplicate", "-0.1"), ["--duplicate"]),
    (("--server", "127.0.0.1:7777", "--latency", "-5"), ["--latency"]),
    (("--server", "127.0.0.1:7777", "--jitter", "nan"), ["--jitter", "jitter_ms"]),
    (("--server", "127.0.0.1:7777", "--latency", "1e9"), ["--latency", "latency_ms"]),
    (("--server", "127.0.0.1:7777", "--queue-limit", "0"), ["--queue-limit"]),
    (("--server", "127.0.0.1:7777", "--max-clients", "0"), ["--max-clients"]),
    (("--server", "127.0.0.1:7777", "--idle-timeout", "0"), ["--idle-timeout"]),
    (("--server", "127.0.0.1:7777", "--rebind-every", "-1"), ["--rebind-every"]),
    (("--server", "127.0.0.1:7777", "--duration", "0"), ["--duration"]),
    (("--server", "127.0.0.1:7777", "--loss", "lots"), ["--loss"]),
])
def test_bad_flags_are_one_line_and_exit_2(monkeypatch, capsys, args, words):
    code, out, err = run(monkeypatch, capsys, "proxy", *args)
    assert_one_line_error(code, out, err, *words)


def proxy_command(listen_port: int, *extra: str) -> list[str]:
    return xmarks_command() + ["proxy", "--listen", f"127.0.0.1:{listen_port}",
                               "--server", "127.0.0.1:9", "--loss", "0.05", *extra]


def test_duration_ends_it_with_exit_0_and_json_counters():
    port = free_udp_port()
    done = subprocess.run(proxy_command(port, "--duration", "0.5", "--json"),
                          capture_output=True, text=True, timeout=60, env=clean_env())
    assert done.returncode == 0, done.stderr
    counters = json.loads(done.stdout)
    assert counters["listen"] == f"127.0.0.1:{port}" and counters["server"] == "127.0.0.1:9"
    assert counters["up"]["sent"] == 0 and counters["clients"] == 0
    assert 0.4 <= counters["duration_s"] < 5
    assert f"public_address must be 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr


def test_sigterm_ends_it_with_exit_0_after_progress_lines():
    port = free_udp_port()
    proc = subprocess.Popen(proxy_command(port, "--report-every", "0.2"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=clean_env())
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=read_lines, args=(proc.stderr, lines), daemon=True).start()
    client = UdpEndpoint("127.0.0.1", 0, io="portable")
    err = []

    def wait_for(text: str) -> None:
        deadline = time.monotonic() + 60
        while not any(text in line for line in err):
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            assert line is not None, "the proxy exited early:\n" + "".join(err)
            err.append(line)

    try:
        wait_for("the server's public_address must be")  # printed once it is bound
        for i in range(50):
            client.send(b"hello %d" % i, ("127.0.0.1", port))
        wait_for("up sent 50 ")  # a progress line
        proc.send_signal(signal.SIGTERM)
        out = proc.stdout.read()
        proc.wait(timeout=30)
    finally:
        client.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, "".join(err)
    assert not any("Traceback" in line for line in err)
    assert "clients 1" in out and "up sent 50 " in out  # the final line, on stdout


def test_a_taken_port_is_one_line_and_exit_1():
    taken = UdpEndpoint("127.0.0.1", 0, io="portable")
    try:
        done = subprocess.run(proxy_command(taken.address[1], "--duration", "1"),
                              capture_output=True, text=True, timeout=60, env=clean_env())
    finally:
        taken.close()
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xmarks: error: cannot bind"), done.stderr
