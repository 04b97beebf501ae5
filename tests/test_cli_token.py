"""`xmarks token` (cli/token.py): the token it prints opens with the key file; every
mistake is one `xmarks: error:` line and exit 2."""

from __future__ import annotations

import json
import sys

import pytest
from click.testing import CliRunner

import cli.main
from cli.token import token
from net.keys import create_key_file
from net.token import ConnectToken, open_token
from tick.clock import unix_s


@pytest.fixture
def key_file(tmp_path):
    path = tmp_path / "xmarks.key"
    return str(path), create_key_file(path)


def invoke(*args):
    return CliRunner().invoke(token, list(args), catch_exceptions=False)


def test_token_opens_with_the_key(key_file):
    path, key = key_file
    before = unix_s()
    result = invoke("--key-file", path, "--server", "127.0.0.1:7777", "--client-id", "42",
                    "--name", "ada")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 1
    tok = ConnectToken.from_text(lines[0])
    assert tok.client_id == 42 and tok.servers == (("127.0.0.1", 7777),)
    assert before <= tok.create <= unix_s() and tok.expire == tok.create + 300
    opened = open_token(key, *(tok.expire, tok.nonce, tok.sealed))
    assert opened is not None
    assert (opened.name, opened.client_id, opened.c2s_key, opened.s2c_key) == \
        ("ada", 42, tok.c2s_key, tok.s2c_key)


def test_json(key_file):
    path, key = key_file
    result = invoke("--key-file", path, "--server", "10.0.0.1:1", "--server", "10.0.0.2:65535",
                    "--client-id", str(2**64 - 1), "--expires", "60", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert set(out) == {"token", "client_id", "name", "servers", "create", "expire"}
    assert out["client_id"] == 2**64 - 1 and out["name"] == ""
    assert out["servers"] == ["10.0.0.1:1", "10.0.0.2:65535"]
    assert out["expire"] == out["create"] + 60
    tok = ConnectToken.from_text(out["token"])
    assert (tok.create, tok.expire) == (out["create"], out["expire"])
    assert open_token(key, tok.expire, tok.nonce, tok.sealed).servers == tok.servers


def test_default_key_file_is_xmarks_key(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    key = create_key_file("xmarks.key")
    result = invoke("--server", "127.0.0.1:7777", "--client-id", "1")
    tok = ConnectToken.from_text(result.output.strip())
    assert open_token(key, tok.expire, tok.nonce, tok.sealed) is not None


def test_help_has_examples():
    result = invoke("--help")
    assert result.exit_code == 0 and "xmarks token --server" in result.output


# ---- errors: through cli.main.main(), exactly as a user sees them ------------------------

def run_main(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    if "token" not in cli.main.cli.commands:  # until the lead registers it in cli/main.py
        monkeypatch.setitem(cli.main.cli.commands, "token", token)
    monkeypatch.setattr(sys, "argv", ["xmarks", "token", *args])
    code = 0
    try:
        cli.main.main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err


def test_main_runs_it(monkeypatch, capsys, key_file):
    code, out, err = run_main(monkeypatch, capsys, "--key-file", key_file[0], "--server",
                              "127.0.0.1:7777", "--client-id", "3")
    assert code == 0 and err == "" and ConnectToken.from_text(out.strip()).client_id == 3


@pytest.mark.parametrize("args,words", [
    (["--key-file", "{missing}", "--server", "127.0.0.1:7777", "--client-id", "1"],
     ["does not exist"]),
    (["--key-file", "{key}", "--server", "localhost:7777", "--client-id", "1"],
     ["--server", "IPV4:PORT"]),
    (["--key-file", "{key}", "--server", "127.0.0.1", "--client-id", "1"], ["--server"]),
    (["--key-file", "{key}", "--server", "127.0.0.1:0", "--client-id", "1"], ["--server"]),
    (["--key-file", "{key}", "--server", "127.0.0.1:7777", "--client-id", "1",
      "--name", "x" * 33], ["--name", "33"]),
    (["--key-file", "{key}", "--client-id", "1"], ["--server"]),
    (["--key-file", "{key}", "--server", "127.0.0.1:7777"], ["--client-id"]),
    (["--key-file", "{key}", "--server", "127.0.0.1:7777", "--client-id", "-1"],
     ["--client-id"]),
    (["--key-file", "{key}", "--server", "127.0.0.1:7777", "--client-id", str(2**64)],
     ["--client-id"]),
    (["--key-file", "{key}", "--server", "127.0.0.1:7777", "--client-id", "1",
      "--expires", "0"], ["--expires"]),
    (["--key-file", "{key}", "--client-id", "1"]
     + [a for i in range(9) for a in ("--server", f"10.0.0.{i}:7777")], ["at most 8"]),
])
def test_errors_are_one_line_exit_2(monkeypatch, capsys, tmp_path, key_file, args, words):
    args = [a.format(missing=tmp_path / "none.key", key=key_file[0]) for a in args]
    code, out, err = run_main(monkeypatch, capsys, *args)
    assert code == 2, (code, err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("xmarks: error:"), err
    assert out == "" and "Traceback" not in err
    for word in words:
        assert word in lines[0], (word, err)


def test_bad_key_file_content(monkeypatch, capsys, tmp_path):
    path = tmp_path / "k"
    path.write_text("nothex")
    path.chmod(0o600)
    code, out, err = run_main(monkeypatch, capsys, "--key-file", str(path), "--server",
                              "127.0.0.1:7777", "--client-id", "1")
    assert code == 2 and err.count("\n") == 1 and "64 hex" in err and out == ""
