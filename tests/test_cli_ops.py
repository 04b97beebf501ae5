"""Operator commands (cli/ops.py, cli/admin_client.py) against a fake admin API over real
HTTP: human output, --json kept byte for byte, what each command asks the server, and the
exit codes (0 done, 1 refused, 2 usage, 3 unreachable) with one-line errors."""

from __future__ import annotations

import json
import socket
import sys

import pytest
from click.testing import CliRunner

from cli.admin_client import AdminClient, AdminError, admin_endpoint, read_token
from cli.main import main
from cli.ops import format_seconds, parse_duration
from tests.admin_fake import TOKEN, FakeAdmin, dumps

ERROR_PREFIX = "xmarks: error:"


pytestmark = pytest.mark.usefixtures("no_xmarks_env")


@pytest.fixture
def fake():
    with FakeAdmin() as server:
        yield server


def xmarks(*args, env=None) -> tuple[int, str, str]:
    """cli.main.main() with argv = xmarks *args, output captured by click's CliRunner:
    (exit code, stdout, stderr), as a user sees them."""
    runner = CliRunner()
    with runner.isolation(env=env) as (out, err, _):
        argv, sys.argv = sys.argv, ["xmarks", *args]
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        finally:
            sys.argv = argv
        return code, out.getvalue().decode(), err.getvalue().decode()


def ops(fake, token_file, *args, env=None):
    return xmarks(*args, "--admin", fake.address, "--admin-token-file", token_file, env=env)


def assert_error(result, code, *words):
    got, out, err = result
    assert got == code, (got, out, err)
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(ERROR_PREFIX), err
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0], (word, err)
    assert out == ""


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- reads: human output and --json -------------------------------------------------

def test_status_lines_and_table(fake, token_file):
    code, out, err = ops(fake, token_file, "status")
    assert code == 0 and err == ""
    assert "tick 1234 at 20 Hz" in out
    assert "players 2 / 64" in out
    assert "hunt 3: 2m 31s left of 5m 00s" in out
    total = next(line for line in out.splitlines() if line.startswith("total"))
    assert total.split()[1:] == ["30.000", "60.000", "75.000"]
    assert "overruns 7" in out and "claims 17" in out
    assert "drops bad_tag 5, rate_limited 1" in out
    assert "ledger sqlite: 3 pending, 120 committed, 0 faults" in out
    assert "leaders 1. bot-1 40  2. ada 10" in out
    assert fake.requests == [("GET", "/status", {}, f"Bearer {TOKEN}")]


@pytest.mark.parametrize("args,path", [(("status",), "/status"), (("players",), "/players"),
                                       (("bans",), "/bans"), (("treasures",), "/treasures"),
                                       (("treasures", "info"), "/treasures")])
def test_json_is_the_servers_answer_byte_for_byte(fake, token_file, args, path):
    code, out, err = ops(fake, token_file, *args, "--json")
    assert code == 0 and err == ""
    expected = dumps(fake._answer("GET", path, {}, f"Bearer {TOKEN}")[1]).decode()
    assert out == expected + "\n"
    json.loads(out)


def test_players_table(fake, token_file):
    code, out, _ = ops(fake, token_file, "players")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["slot", "client", "id", "name", "address", "score", "rtt",
                                "ms", "idle", "connected"]
    assert lines[1].split() == ["0", "42", "ada", "127.0.0.1:50001", "10", "12.5", "0.1s",
                                "1m", "15s"]
    assert lines[2].split() == ["1", "7", "bot-1", "127.0.0.2:50002", "40", "-", "1.5s",
                                "1h", "01m"]
    assert lines[-1] == "2 players"


def test_piped_tables_keep_whole_ids_and_addresses(fake, token_file):
    fake.game.players[0].update(client_id=2**64 - 1, name="n" * 32,
                                address="255.255.255.255:65535")
    code, out, _ = ops(fake, token_file, "players")
    assert code == 0
    assert out.splitlines()[1].split()[1:4] == [str(2**64 - 1), "n" * 32,
                                                "255.255.255.255:65535"]


def test_players_none_connected(fake, token_file):
    fake.game.players = []
    code, out, _ = ops(fake, token_file, "players")
    assert (code, out) == (0, "no players connected\n")


def test_names_are_shown_literally_without_terminal_control(fake, token_file):
    fake.game.players[0]["name"] = "[red]x\x1b[2Jy"
    code, out, _ = ops(fake, token_file, "players")
    assert code == 0
    assert "[red]x\ufffd[2Jy" in out and "\x1b" not in out


# ---- changes ------------------------------------------------------------------------

@pytest.mark.parametrize("args,body,says", [
    (("--slot", "1"), {"slot": 1}, "kicked slot 1"),
    (("--client-id", "42"), {"client_id": 42}, "kicked slot 0"),
    (("--address", "127.0.0.2"), {"address": "127.0.0.2"}, "kicked slot 1"),
])
def test_kick(fake, token_file, args, body, says):
    code, out, err = ops(fake, token_file, "kick", *args)
    assert (code, out, err) == (0, says + "\n", "")
    assert fake.requests[-1][:3] == ("POST", "/kick", body)
    assert len(fake.game.players) == 1


def test_kick_of_no_one_is_refused_exit_1(fake, token_file):
    assert_error(ops(fake, token_file, "kick", "--client-id", "99"), 1,
                 "no such player", "409")
    assert len(fake.game.players) == 2


@pytest.mark.parametrize("args,words", [
    ((), ["exactly one of --slot, --client-id, --address"]),
    (("--slot", "1", "--client-id", "2"), ["exactly one"]),
    (("--address", "1.2.3"), ["--address", "not an IPv4 address"]),
    (("--slot", "-1"), ["--slot"]),
    (("--client-id", str(2**64)), ["--client-id"]),
])
def test_kick_usage_errors_exit_2_and_ask_nothing(fake, token_file, args, words):
    assert_error(ops(fake, token_file, "kick", *args), 2, *words)
    assert fake.requests == []


def test_ban_sends_seconds_and_reason(fake, token_file):
    code, out, err = ops(fake, token_file, "ban", "--client-id", "42", "--for", "1h30m",
                         "--reason", "speed hack")
    assert (code, err) == (0, "")
    assert out == "banned client_id 42 for 1h 30m; kicked slot 0\n"
    assert fake.requests[-1][:3] == ("POST", "/ban", {"client_id": 42, "seconds": 5400.0,
                                                      "reason": "speed hack"})


def test_ban_without_for_leaves_the_default_to_the_server(fake, token_file):
    code, out, _ = ops(fake, token_file, "ban", "--address", "203.0.113.5")
    assert code == 0
    assert out == "banned address 203.0.113.5 for 1h 00m\n"
    assert fake.requests[-1][2] == {"address": "203.0.113.5"}


@pytest.mark.parametrize("duration", ["10x", "0", "0s", "-5m", "m", "1e3", "nan"])
def test_ban_bad_duration_exit_2(fake, token_file, duration):
    assert_error(ops(fake, token_file, "ban", "--client-id", "1", "--for", duration), 2,
                 "--for")
    assert fake.requests == []


def test_bans_unban_round_trip(fake, token_file):
    assert ops(fake, token_file, "bans")[:2] == (0, "no bans\n")
    ops(fake, token_file, "ban", "--address", "203.0.113.5", "--for", "2h",
        "--reason", "flood")
    code, out, _ = ops(fake, token_file, "bans")
    assert code == 0
    assert out.splitlines()[1].split() == ["address", "203.0.113.5", "2h", "00m", "flood"]
    code, out, _ = ops(fake, token_file, "unban", "--address", "203.0.113.5")
    assert (code, out) == (0, "lifted the ban on address 203.0.113.5\n")
    assert fake.game.bans == []
    assert_error(ops(fake, token_file, "unban", "--address", "203.0.113.5"), 1,
                 "no such ban", "409")


@pytest.mark.parametrize("args,path,body,says", [
    (("end",), "/hunt/end", {}, "ended hunt 3; hunt 4: 5m 00s left of 5m 00s"),
    (("start",), "/hunt/start", {}, "started hunt 4: 5m 00s left of 5m 00s"),
    (("duration", "10m"), "/hunt/duration", {"seconds": 600.0},
     "hunt 3: 7m 31s left of 10m 00s"),
    (("duration", "45"), "/hunt/duration", {"seconds": 45.0}, "hunt 3: 0.0s left of 45s"),
])
def test_hunt(fake, token_file, args, path, body, says):
    code, out, err = ops(fake, token_file, "hunt", *args)
    assert (code, out, err) == (0, says + "\n", "")
    assert fake.requests[-1][:3] == ("POST", path, body)


@pytest.mark.parametrize("args,words", [
    (("duration",), ["give SECONDS"]),
    (("duration", "soon"), ["not a duration"]),
    (("end", "5"), ["takes no SECONDS"]),
    (("pause",), ["pause"]),
])
def test_hunt_usage_errors(fake, token_file, args, words):
    assert_error(ops(fake, token_file, "hunt", *args), 2, *words)
    assert fake.requests == []


def test_a_bad_argument_the_server_rejects_is_exit_2(fake, token_file):
    assert_error(ops(fake, token_file, "hunt", "duration", "2000000"), 2,
                 "seconds: must be a number", "HTTP 400")


def test_treasures(fake, token_file):
    code, out, _ = ops(fake, token_file, "treasures")
    assert code == 0
    assert out == "capacity 16 | buried 10 | claimed 6\nburied by value  1: 8  3: 2\n"
    assert ops(fake, token_file, "treasures", "clear")[:2] == (0, "cleared 10 treasures\n")
    code, out, _ = ops(fake, token_file, "treasures", "spawn", "50")
    assert (code, out) == (0, "spawned 10 treasures (10 buried now)\n")
    assert fake.requests[-1][:3] == ("POST", "/treasures/spawn", {"count": 50})
    assert_error(ops(fake, token_file, "treasures", "spawn", "1"), 1, "no free treasure",
                 "409")


@pytest.mark.parametrize("args,words", [
    (("spawn",), ["give N"]), (("spawn", "0"), ["1..65535"]), (("spawn", "x"), ["1..65535"]),
    (("spawn", "65536"), ["1..65535"]), (("clear", "3"), ["takes no N"]),
    (("bury",), ["bury"]),
])
def test_treasures_usage_errors(fake, token_file, args, words):
    assert_error(ops(fake, token_file, "treasures", *args), 2, *words)
    assert fake.requests == []


# ---- auth, address and the transport ------------------------------------------------

def test_wrong_token_is_rejected_exit_1_and_nothing_changes(fake, tmp_path):
    path = tmp_path / "other-token"
    path.write_text("not-the-token-0123456789\n")
    path.chmod(0o600)
    assert_error(ops(fake, str(path), "kick", "--slot", "0"), 1, "admin token rejected")
    assert len(fake.game.players) == 2


def test_token_variable_wins_over_the_file(fake, tmp_path):
    path = tmp_path / "stale-token"
    path.write_text("stale-token-0123456789\n")
    path.chmod(0o600)
    code, _, err = ops(fake, str(path), "status", env={"XMARKS_ADMIN_TOKEN": TOKEN})
    assert (code, err) == (0, "")
    assert fake.requests[-1][3] == f"Bearer {TOKEN}"


def test_missing_token_file_is_a_usage_error(fake, tmp_path):
    assert_error(ops(fake, str(tmp_path / "nope"), "status"), 2, "nope")
    assert fake.requests == []


def test_admin_address_from_the_environment(fake, token_file):
    code, _, err = xmarks("status", "--admin-token-file", token_file,
                          env={"XMARKS_ADMIN": fake.address})
    assert (code, err) == (0, "")
    assert len(fake.requests) == 1


@pytest.mark.parametrize("args,env,words", [
    (("--admin", "localhost"), None, ["--admin", "IPV4:PORT"]),
    (("--admin", "127.0.0.1:99999"), None, ["--admin"]),
    ((), {"XMARKS_ADMIN": "nowhere"}, ["XMARKS_ADMIN", "IPV4:PORT"]),
])
def test_bad_admin_address_is_a_usage_error(token_file, args, env, words):
    assert_error(xmarks("status", "--admin-token-file", token_file, *args, env=env), 2, *words)


def test_unreachable_server_is_one_line_exit_3(token_file):
    port = free_tcp_port()
    assert_error(xmarks("status", "--admin", f"127.0.0.1:{port}", "--admin-token-file",
                        token_file), 3, f"cannot reach the admin API at 127.0.0.1:{port}",
                 "refused")


@pytest.mark.parametrize("code", [500, 503])
def test_server_failure_is_exit_3(fake, token_file, code):
    fake.fail = (code, {"error": "server busy"})
    assert_error(ops(fake, token_file, "players"), 3, "server busy", f"HTTP {code}")


def test_error_answer_that_is_not_json_still_one_line(fake, token_file):
    fake.fail = (502, ["not", "an", "object"])
    assert_error(ops(fake, token_file, "status"), 3, "Bad Gateway", "HTTP 502")


def test_client_maps_404_and_405_to_refusals(fake):
    client = AdminClient(*admin_endpoint(fake.address, {}), TOKEN)
    with pytest.raises(AdminError) as info:
        client.get("/nope")
    assert info.value.exit_code == 1 and "no such endpoint /nope (HTTP 404)" in info.value.message
    with pytest.raises(AdminError) as info:
        client.get("/kick")
    assert info.value.exit_code == 1 and "HTTP 405" in info.value.message


def test_client_times_out_as_unreachable():
    with socket.socket() as listener:  # accepts connections (backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        client = AdminClient("127.0.0.1", listener.getsockname()[1], TOKEN, timeout=0.3)
        with pytest.raises(AdminError) as info:
            client.get("/status")
    assert info.value.exit_code == 3
    assert info.value.message.endswith(": timed out")


@pytest.mark.parametrize("content,env", [
    ("", {}),
    ("two words here, sixteen+\n", {}),
    (TOKEN, {"XMARKS_ADMIN_TOKEN": "short"}),
])
def test_unusable_token_is_a_usage_error(tmp_path, content, env):
    path = tmp_path / "t"
    path.write_text(content)
    path.chmod(0o600)
    with pytest.raises(AdminError) as info:
        read_token(str(path), env)
    assert info.value.exit_code == 2


def test_read_token(tmp_path):
    path = tmp_path / "t"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    assert read_token(str(path), {}) == TOKEN
    assert read_token(str(path), {"XMARKS_ADMIN_TOKEN": "y" * 20}) == "y" * 20
    path.chmod(0o644)  # readable by others: refused
    with pytest.raises(AdminError) as info:
        read_token(str(path), {})
    assert info.value.exit_code == 2 and "chmod 600" in info.value.message


# ---- help and the helpers -----------------------------------------------------------

@pytest.mark.parametrize("command", ["status", "players", "kick", "ban", "unban", "bans",
                                     "hunt", "treasures", "top"])
def test_help_has_examples_and_exit_codes(command):
    code, out, err = xmarks(command, "--help")
    assert (code, err) == (0, "")
    assert "Examples:" in out and f"xmarks {command}" in out
    assert "Exit codes: 0 done;\n  1 refused by the server" in out
    assert "3 admin API unreachable" in out
    assert "--admin" in out


def test_top_level_help_lists_the_operator_commands():
    code, out, _ = xmarks("--help")
    assert code == 0
    for command in ("status", "players", "kick", "ban", "unban", "bans", "hunt", "treasures",
                    "top"):
        assert f"  {command} " in out


@pytest.mark.parametrize("text,seconds", [("90s", 90.0), ("10m", 600.0), ("2h", 7200.0),
                                          ("1d", 86400.0), ("1h30m", 5400.0), ("300", 300.0),
                                          ("2.5", 2.5), (" 1.5H ", 5400.0)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("seconds,text", [(4.25, "4.2s"), (42, "42s"), (59.4, "59s"),
                                          (59.6, "1m 00s"), (185, "3m 05s"),
                                          (7620, "2h 07m"), (97200, "1d 03h")])
def test_format_seconds(seconds, text):
    assert format_seconds(seconds) == text
