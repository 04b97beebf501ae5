"""The `xmarks` command line: help with examples; every mistake is one line and exit 2.

Most cases run cli.main.main() in this process (fast); a few run the installed console
script as a subprocess, to see exactly what a user sees (no traceback, the exit code).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli.main import main
from net.keys import create_key_file

ERROR_PREFIX = "xmarks: error:"


pytestmark = pytest.mark.usefixtures("no_xmarks_env")


def run(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """main() with argv = xmarks *args: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["xmarks", *args])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, out, err, *words):
    assert code == 2, (code, err)
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(ERROR_PREFIX), err
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0], (word, err)
    assert out == ""


# ---- help ---------------------------------------------------------------------------

@pytest.mark.parametrize("args,examples", [
    ((), ["xmarks serve", "xmarks bots"]),
    (("serve",), ["xmarks serve", "--config", "XMARKS_"]),
    (("bots",), ["xmarks bots --server"]),
])
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_has_examples(monkeypatch, capsys, args, examples, flag):
    code, out, err = run(monkeypatch, capsys, *args, flag)
    assert code == 0 and err == ""
    assert out.startswith("Usage: ")  # in-process, click names the program after argv[0]
    assert "Examples:" in out
    for example in examples:
        assert example in out


def test_serve_help_lists_every_flag(monkeypatch, capsys):
    _, out, _ = run(monkeypatch, capsys, "serve", "--help")
    for flag in ("--host", "--port", "--tick-rate", "--config", "--seed", "--duration",
                 "--bots", "--log-level"):
        assert flag in out


def test_bots_help_lists_every_flag(monkeypatch, capsys):
    _, out, _ = run(monkeypatch, capsys, "bots", "--help")
    for flag in ("--server", "--count", "--duration", "--seed", "--json", "--quiet"):
        assert flag in out


def test_version(monkeypatch, capsys):
    code, out, err = run(monkeypatch, capsys, "--version")
    assert code == 0 and out.startswith("xmarks ") and err == ""


# Regression: bare `xmarks` printed "xmarks: error: Usage: ..." and the whole help on stderr.
def test_bare_xmarks_shows_help_or_one_line(monkeypatch, capsys):
    code, out, err = run(monkeypatch, capsys)
    if code == 0:
        assert "Usage: " in out and "Examples:" in out and err == ""
    else:
        assert_one_line_error(code, out, err)


# ---- bad flags ----------------------------------------------------------------------

@pytest.mark.parametrize("args,words", [
    (("serve", "--port", "abc"), ["--port", "abc"]),
    (("serve", "--port", "70000"), ["port", "70000"]),
    (("serve", "--port", "-1"), ["port", "-1"]),
    (("serve", "--port", "1.5"), ["--port", "1.5"]),
    (("serve", "--tick-rate", "0"), ["tick_rate"]),
    (("serve", "--tick-rate", "-20"), ["tick_rate"]),
    (("serve", "--tick-rate", "241"), ["tick_rate"]),
    (("serve", "--tick-rate", "nan"), ["tick_rate"]),
    (("serve", "--tick-rate", "inf"), ["tick_rate"]),
    (("serve", "--tick-rate", "fast"), ["--tick-rate", "fast"]),
    (("serve", "--duration", "-1"), ["--duration", "-1"]),
    (("serve", "--duration", "0"), ["--duration"]),
    (("serve", "--duration", "soon"), ["--duration", "soon"]),
    (("serve", "--seed", "x"), ["--seed"]),
    (("serve", "--seed", "-1"), ["seed"]),
    (("serve", "--bots", "-1"), ["--bots"]),
    (("serve", "--log-level", "loud"), ["--log-level", "loud"]),
    (("serve", "--nope"), ["--nope"]),
    (("serve", "extra"), ["extra"]),
    (("serve", "--port"), ["--port"]),
    (("bots",), ["--server"]),
    (("bots", "--server", "localhost"), ["--server", "localhost"]),
    (("bots", "--server", "1.2.3.4:0"), ["--server"]),
    (("bots", "--server", "1.2.3.4:99999"), ["--server"]),
    (("bots", "--server", ":7777"), ["--server"]),
    (("bots", "--server", "h:7777", "--count", "0"), ["--count"]),
    (("bots", "--server", "h:7777", "--count", "many"), ["--count"]),
    (("bots", "--server", "h:7777", "--duration", "-1"), ["--duration"]),
    (("bots", "--server", "h:7777", "--seed", "1.5"), ["--seed"]),
    (("nosuch",), ["nosuch"]),
])
def test_bad_flags_are_one_line_and_exit_2(monkeypatch, capsys, args, words):
    assert_one_line_error(*run(monkeypatch, capsys, *args), *words)


# ---- bad config files and environment -----------------------------------------------

CONFIGS = {
    "invalid TOML": ("[game\nseed = 1\n", ["not valid TOML"]),
    "unknown key": ("[game]\nnope = 1\n", ["game.nope"]),
    "unknown section": ("[bogus]\nseed = 1\n", ["bogus"]),
    "key in the wrong section": ("[net]\nseed = 1\n", ["net.seed"]),
    "top-level key": ("seed = 1\n", ["seed"]),
    "wrong type": ("[server]\nport = \"x\"\n", ["port"]),
    "float for an int": ("[game]\nmax_players = 4.5\n", ["max_players"]),
    "bool for an int": ("[net]\nrx_batch = true\n", ["rx_batch"]),
    "invalid value": ("[game]\nworld_width = -5.0\n", ["world_width"]),
    "too large": ("[net]\nmax_visible_players = 120\nmax_visible_treasures = 32\n",
                  ["max_visible_players"]),
    "bad weights": ("[game]\nvalue_weights = [1, \"a\"]\n", ["value_weights"]),
    "section not a table": ("game = 5\n", ["game"]),
}


@pytest.mark.parametrize("label", list(CONFIGS))
def test_bad_config_files(monkeypatch, capsys, tmp_path, label):
    text, words = CONFIGS[label]
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert_one_line_error(*run(monkeypatch, capsys, "serve", "--config", str(path)), *words)


def test_missing_config_file(monkeypatch, capsys, tmp_path):
    path = tmp_path / "missing.toml"
    assert_one_line_error(*run(monkeypatch, capsys, "serve", "--config", str(path)),
                          "missing.toml")


def test_config_that_is_a_directory(monkeypatch, capsys, tmp_path):
    assert_one_line_error(*run(monkeypatch, capsys, "serve", "--config", str(tmp_path)),
                          "--config")


@pytest.mark.parametrize("name,value,words", [
    ("XMARKS_TICK_RATE", "fast", ["tick_rate", "fast"]),
    ("XMARKS_TICK_RATE", "0", ["tick_rate"]),
    ("XMARKS_PORT", "http", ["port", "http"]),
    ("XMARKS_PORT", "99999", ["port"]),
    ("XMARKS_SEED", "", ["seed"]),
    ("XMARKS_MAX_PLAYERS", "0", ["max_players"]),
    ("XMARKS_VALUE_WEIGHTS", "a,b", ["value_weights"]),
    ("XMARKS_SESSION_TIMEOUT", "-3", ["session_timeout"]),
    ("XMARKS_NOPE", "1", ["XMARKS_NOPE"]),
    ("XMARKS_", "1", ["XMARKS_"]),
    ("XMARKS_SERVER", "1", ["XMARKS_SERVER"]),
])
def test_bad_environment(monkeypatch, capsys, name, value, words):
    monkeypatch.setenv(name, value)
    assert_one_line_error(*run(monkeypatch, capsys, "serve", "--duration", "0.1"), *words)


def test_a_flag_overrides_a_bad_environment_value_only_if_valid(monkeypatch, capsys):
    # the environment is read (and checked) even when a flag overrides the same setting
    monkeypatch.setenv("XMARKS_NOPE", "1")
    assert_one_line_error(*run(monkeypatch, capsys, "serve", "--port", "0"), "XMARKS_NOPE")


# ---- the real console script ----------------------------------------------------------

def xmarks_command() -> list[str]:
    script = Path(sys.executable).with_name("xmarks")
    return [str(script)] if script.exists() else [sys.executable, "-m", "cli"]


@pytest.mark.parametrize("args,env,words", [
    (["serve", "--port", "abc"], {}, ["--port"]),
    (["serve", "--tick-rate", "0"], {}, ["tick_rate"]),
    (["serve", "--config", "/nonexistent/xmarks.toml"], {}, ["/nonexistent/xmarks.toml"]),
    (["serve"], {"XMARKS_TICK_RATE": "fast"}, ["tick_rate"]),
    (["serve"], {"XMARKS_BOGUS": "1"}, ["XMARKS_BOGUS"]),
])
def test_console_script_errors(args, env, words):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("XMARKS_")}
    environ.update(env)
    proc = subprocess.run(xmarks_command() + args, capture_output=True, text=True,
                          timeout=30, env=environ)
    assert_one_line_error(proc.returncode, proc.stdout, proc.stderr, *words)


def test_console_script_help():
    proc = subprocess.run(xmarks_command() + ["--help"], capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 0 and "Examples:" in proc.stdout and proc.stderr == ""


def test_python_dash_m_cli_is_the_same_program():
    proc = subprocess.run([sys.executable, "-m", "cli", "serve", "--duration", "-1"],
                          capture_output=True, text=True, timeout=30,
                          cwd=Path(__file__).resolve().parent.parent)
    assert_one_line_error(proc.returncode, proc.stdout, proc.stderr, "--duration")


def free_udp_port() -> int:
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_bots_exit_1_when_nobody_answers(tmp_path):
    port = free_udp_port()  # nothing listens there
    create_key_file(tmp_path / "k")
    proc = subprocess.run(xmarks_command() + ["bots", "--server", f"127.0.0.1:{port}",
                                              "--count", "2", "--duration", "0.6", "--json",
                                              "--key-file", str(tmp_path / "k")],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    assert report["connected"] == 0 and report["bots"] == 2
    assert "Traceback" not in proc.stderr


def test_bots_without_a_key_file_is_a_usage_error(tmp_path):
    proc = subprocess.run(xmarks_command() + ["bots", "--server", "127.0.0.1:7777",
                                              "--key-file", str(tmp_path / "missing")],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("xmarks: error: --key-file") and "missing" in line


# Regressions: a bad --host failed only at bind time (exit 1), and serve logged an INFO line
# before binding, so a taken port was two lines on stderr.
def test_bad_host_is_a_usage_error():
    proc = subprocess.run(xmarks_command() + ["serve", "--host", "999.1.1.1", "--port", "0",
                                              "--duration", "0.2"],
                          capture_output=True, text=True, timeout=60)
    assert_one_line_error(proc.returncode, proc.stdout, proc.stderr, "host")


def test_port_in_use_is_one_line():
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        proc = subprocess.run(xmarks_command() + ["serve", "--port", str(port),
                                                  "--duration", "0.2"],
                              capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(ERROR_PREFIX), proc.stderr
    assert str(port) in lines[0]


def test_batched_io_where_it_cannot_load_is_a_usage_error(monkeypatch, capsys):
    import net.udp

    def unavailable(io):
        raise ValueError("io='batched' needs Linux recvmmsg/sendmmsg (unavailable here)")
    monkeypatch.setattr(net.udp, "_resolve_io", unavailable)
    code, out, err = run(monkeypatch, capsys, "serve", "--io", "batched", "--port", "0",
                         "--duration", "1")
    assert code == 2
    assert err.startswith("xmarks: error: --io:") and err.count("\n") == 1
    assert "Traceback" not in err
