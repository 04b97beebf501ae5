"""net/admin_http.py over real HTTP on 127.0.0.1 (port 0) against a fake tick side: auth,
routes, argument checks, sizes, the hand-off and its timeout; and the [admin] settings."""

from __future__ import annotations

import json
import queue
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest

from cli.settings import SettingsError, build_config
from net.admin_http import (DEFAULT_BAN_SECONDS, JSON_TYPE, MAX_BODY, AdminBindError, AdminCall,
                            AdminServer, AdminSettings, check_args)
from tick.config import ServerConfig

TOKEN = "test-admin-token-0123456789abcdef"


class FakeDesk:
    """The tick side: answers at once (echoing the call), never, late, or is full."""

    def __init__(self, mode: str = "answer", delay: float = 0.0) -> None:
        self.mode, self.delay = mode, delay
        self.calls: list[AdminCall] = []

    def handle(self, call: AdminCall) -> None:
        if self.mode == "full":
            raise queue.Full
        self.calls.append(call)
        if self.mode == "answer":
            assert call.take()
            call.answer(200, {"name": call.name, "args": call.args})
        elif self.mode == "late":
            assert call.take()
            threading.Timer(self.delay, call.answer, (200, {"late": True})).start()


@pytest.fixture
def desk():
    return FakeDesk()


@pytest.fixture
def api(desk):
    server = AdminServer("127.0.0.1", 0, TOKEN, desk.handle,
                         lambda: (b"xmarks_players 3\n", "text/plain; version=0.0.4"),
                         answer_timeout=0.3)
    server.start()
    yield server
    server.close()


def request(api, method: str, path: str, body=None, token: str | None = TOKEN,
            headers: dict | None = None) -> tuple[int, dict, dict]:
    """(status, JSON body, headers)."""
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    req = urllib.request.Request("http://%s:%d%s" % (*api.address, path), data=data,
                                 method=method, headers=headers or {})
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read()), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read()), dict(e.headers)


def raw(api, text: bytes) -> bytes:
    """Send raw bytes, return the whole answer."""
    with socket.create_connection(api.address, timeout=10) as s:
        s.sendall(text)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


# ---- the happy path ----------------------------------------------------------------------

def test_a_call_reaches_the_tick_side_and_its_answer_comes_back(api, desk):
    status, body, headers = request(api, "GET", "/status")
    assert status == 200 and body == {"name": "status", "args": {}}
    assert headers["Content-Type"] == JSON_TYPE and headers["Cache-Control"] == "no-store"
    status, body, _ = request(api, "POST", "/kick", {"slot": 3})
    assert (status, body) == (200, {"name": "kick", "args": {"slot": 3}})
    assert [c.name for c in desk.calls] == ["status", "kick"]


@pytest.mark.parametrize("path, method, name", [
    ("/status", "GET", "status"), ("/players", "GET", "players"), ("/bans", "GET", "bans"),
    ("/treasures", "GET", "treasures"), ("/hunt/end", "POST", "hunt_end"),
    ("/hunt/start", "POST", "hunt_start"), ("/treasures/clear", "POST", "treasures_clear"),
])
def test_every_route_without_arguments(api, path, method, name):
    status, body, _ = request(api, method, path, b"" if method == "POST" else None)
    assert (status, body) == (200, {"name": name, "args": {}})
    if method == "POST":  # an empty object is no arguments too
        assert request(api, method, path, {})[:2] == (200, {"name": name, "args": {}})


def test_checked_arguments_and_defaults(api):
    cases = [
        ("/kick", {"client_id": 2**64 - 1}, {"client_id": 2**64 - 1}),
        ("/kick", {"address": "203.0.113.5"}, {"address": "203.0.113.5"}),
        ("/ban", {"client_id": 5}, {"client_id": 5, "seconds": DEFAULT_BAN_SECONDS,
                                    "reason": ""}),
        ("/ban", {"address": "10.1.2.3", "seconds": 90, "reason": "spam"},
         {"address": "10.1.2.3", "seconds": 90.0, "reason": "spam"}),
        ("/unban", {"address": "10.1.2.3"}, {"address": "10.1.2.3"}),
        ("/hunt/duration", {"seconds": 0.5}, {"seconds": 0.5}),
        ("/treasures/spawn", {"count": 65535}, {"count": 65535}),
    ]
    for path, given, want in cases:
        status, body, _ = request(api, "POST", path, given)
        assert status == 200 and body["args"] == want, path
    assert isinstance(check_args("ban", b'{"client_id": 1, "seconds": 5}')["seconds"], float)


def test_metrics_need_no_token(api, desk):
    req = urllib.request.Request("http://%s:%d/metrics" % api.address)
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200 and r.read() == b"xmarks_players 3\n"
        assert r.headers["Content-Type"] == "text/plain; version=0.0.4"
    assert desk.calls == []


def test_metrics_absent_or_failing():
    for metrics, code in ((None, 404), (lambda: 1 / 0, 500)):
        server = AdminServer("127.0.0.1", 0, TOKEN, FakeDesk().handle, metrics)
        server.start()
        try:
            status, body, _ = request(server, "GET", "/metrics", token=None)
            assert status == code and "error" in body
        finally:
            server.close()


# ---- auth --------------------------------------------------------------------------------

@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {TOKEN}x"},
    {"Authorization": f"Bearer {TOKEN[:-1]}"}, {"Authorization": f"Basic {TOKEN}"},
    {"Authorization": TOKEN}, {"Authorization": "Bearer "}, {"Authorization": "Bearer ünï"},
])
def test_without_the_token_nothing_happens(api, desk, headers):
    for method, path, body in (("GET", "/status", None), ("POST", "/kick", {"slot": 1}),
                               ("POST", "/hunt/end", b""), ("GET", "/nowhere", None),
                               ("POST", "/ban", b"not json")):
        status, answer, _ = request(api, method, path, body, token=None, headers=headers)
        assert (status, answer) == (401, {"error": "unauthorized"}), (method, path)
    assert desk.calls == []


def test_the_scheme_is_case_insensitive(api):
    status, _, _ = request(api, "GET", "/status", token=None,
                           headers={"Authorization": f"bearer {TOKEN}"})
    assert status == 200


# ---- routes, methods, sizes --------------------------------------------------------------

def test_unknown_path_is_404_and_wrong_method_405(api, desk):
    status, body, _ = request(api, "GET", "/stats")
    assert status == 404 and "/stats" in body["error"]
    assert request(api, "GET", "/status/")[0] == 404
    status, body, headers = request(api, "GET", "/kick")
    assert status == 405 and headers["Allow"] == "POST"
    status, _, headers = request(api, "POST", "/status", b"")
    assert status == 405 and headers["Allow"] == "GET"
    assert request(api, "DELETE", "/bans")[0] == 405
    assert request(api, "PUT", "/ban", {"client_id": 1})[0] == 405
    assert desk.calls == []


def test_a_query_string_is_ignored(api):
    assert request(api, "GET", "/status?verbose=1")[:2] == (200, {"name": "status",
                                                                  "args": {}})


def test_bodies_over_64_kib_are_413(api, desk):
    status, body, _ = request(api, "POST", "/treasures/spawn", b" " * (MAX_BODY + 1))
    assert status == 413 and str(MAX_BODY) in body["error"]
    status, _, _ = request(api, "POST", "/treasures/spawn", b"x" * (4 * MAX_BODY))
    assert status == 413
    assert desk.calls == []
    exactly = json.dumps({"count": 5}).encode().ljust(MAX_BODY, b" ")
    assert request(api, "POST", "/treasures/spawn", exactly)[0] == 200


@pytest.mark.parametrize("path, body, words", [
    ("/kick", b"{", ["not valid JSON"]),
    ("/kick", b"\xff\xfe", ["not valid JSON"]),
    ("/kick", b"[1, 2]", ["JSON object"]),
    ("/kick", b'"slot"', ["JSON object"]),
    ("/kick", b"{}", ["exactly one of slot, client_id, address"]),
    ("/kick", b'{"slot": 1, "client_id": 2}', ["exactly one"]),
    ("/kick", b'{"slot": -1}', ["slot", "0..65535"]),
    ("/kick", b'{"slot": 65536}', ["slot"]),
    ("/kick", b'{"slot": 1.0}', ["slot", "integer"]),
    ("/kick", b'{"slot": true}', ["slot"]),
    ("/kick", b'{"slot": "1"}', ["slot"]),
    ("/kick", b'{"client_id": 18446744073709551616}', ["client_id"]),
    ("/kick", b'{"address": "10.0.0.256"}', ["address", "IPv4"]),
    ("/kick", b'{"address": "10.0.0.1:7777"}', ["address"]),
    ("/kick", b'{"address": 167772161}', ["address"]),
    ("/kick", b'{"name": "bob"}', ["unknown argument", "name"]),
    ("/ban", b'{"slot": 1}', ["unknown argument", "slot"]),
    ("/ban", b'{"client_id": 1, "seconds": 0}', ["seconds"]),
    ("/ban", b'{"client_id": 1, "seconds": -5}', ["seconds"]),
    ("/ban", b'{"client_id": 1, "seconds": NaN}', ["NaN"]),
    ("/ban", b'{"client_id": 1, "seconds": Infinity}', ["Infinity"]),
    ("/ban", b'{"client_id": 1, "seconds": 1e300}', ["seconds"]),
    ("/ban", b'{"client_id": 1, "reason": 5}', ["reason"]),
    ("/ban", b'{"client_id": 1, "reason": "' + b"x" * 201 + b'"}', ["reason", "200"]),
    ("/unban", b'{}', ["exactly one of client_id, address"]),
    ("/hunt/duration", b'{}', ["seconds is required"]),
    ("/hunt/duration", b'{"seconds": "60"}', ["seconds"]),
    ("/hunt/duration", b'{"seconds": 1e9}', ["seconds"]),
    ("/treasures/spawn", b'{}', ["count is required"]),
    ("/treasures/spawn", b'{"count": 0}', ["count", "1..65535"]),
    ("/treasures/spawn", b'{"count": 65536}', ["count"]),
    ("/treasures/spawn", b'{"count": 2.5}', ["count"]),
    ("/hunt/end", b'{"now": true}', ["unknown argument", "takes none"]),
    ("/treasures/clear", b"[]", ["JSON object"]),
    ("/kick", b"[" * 100000 + b"]" * 100000, ["larger than"]),
])
def test_bad_arguments_are_400_naming_them(api, desk, path, body, words):
    status, answer, _ = request(api, "POST", path, body)
    assert status == (413 if len(body) > MAX_BODY else 400)
    assert all(w in answer["error"] for w in words), answer
    assert "\n" not in answer["error"]
    assert desk.calls == []


def test_deep_json_is_a_400_not_a_crash(api, desk):
    status, answer, _ = request(api, "POST", "/kick", b"[" * 30000 + b"]" * 30000)
    assert status == 400 and desk.calls == []


def test_malformed_requests_get_json_errors(api):
    answer = raw(api, b"GARBAGE\r\n\r\n")
    assert answer.startswith(b"HTTP/1.") or answer.startswith(b"{")
    assert b'"error"' in answer
    answer = raw(api, b"POST /kick HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode()
                 + b"\r\nContent-Length: ten\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400") and b"Content-Length" in answer
    answer = raw(api, b"POST /kick HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode()
                 + b"\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400") and b"chunked" in answer


# ---- the hand-off ------------------------------------------------------------------------

def test_no_answer_in_time_is_503_and_the_call_is_withdrawn(api, desk):
    desk.mode = "never"
    t0 = time.monotonic()
    status, body, _ = request(api, "POST", "/hunt/end", b"")
    assert (status, body) == (503, {"error": "server busy"})
    assert time.monotonic() - t0 >= 0.3
    (call,) = desk.calls
    assert not call.take()  # the tick thread will skip it: nothing was done


def test_a_call_taken_in_time_waits_for_its_answer(api, desk):
    desk.mode, desk.delay = "late", 0.45  # taken at once, answered after the timeout
    status, body, _ = request(api, "GET", "/status")
    assert (status, body) == (200, {"late": True})


def test_a_full_queue_is_503(api, desk):
    desk.mode = "full"
    assert request(api, "GET", "/players")[:2] == (503, {"error": "server busy"})


def test_take_and_withdraw_exclude_each_other():
    call = AdminCall("x", {})
    assert call.take() and not call.withdraw() and not call.take()
    call = AdminCall("x", {})
    assert call.withdraw() and not call.take()


# ---- binding -----------------------------------------------------------------------------

def test_a_taken_port_is_one_line_naming_it():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(AdminBindError) as exc:
            AdminServer("127.0.0.1", port, TOKEN, FakeDesk().handle)
    text = str(exc.value)
    assert f"127.0.0.1:{port}" in text and "\n" not in text and "admin_port" in text


def test_close_releases_the_port():
    server = AdminServer("127.0.0.1", 0, TOKEN, FakeDesk().handle)
    server.start()
    port = server.address[1]
    server.close()
    again = AdminServer("127.0.0.1", port, TOKEN, FakeDesk().handle)
    again.close()


def test_an_empty_token_is_refused():
    with pytest.raises(ValueError):
        AdminServer("127.0.0.1", 0, "", FakeDesk().handle)


# ---- settings ----------------------------------------------------------------------------

@pytest.mark.parametrize("field, value", [
    ("admin_enabled", "yes"), ("admin_host", "localhost"), ("admin_host", "::1"),
    ("admin_port", -1), ("admin_port", 65536), ("admin_port", True), ("admin_port", "7778"),
    ("admin_token_file", ""), ("admin_token_file", None),
])
def test_bad_settings_name_the_setting(field, value):
    with pytest.raises(ValueError) as exc:
        AdminSettings(**{field: value}).validate()
    assert str(exc.value).startswith(field)
    with pytest.raises(ValueError, match=f"^{field}"):
        ServerConfig(admin=AdminSettings(**{field: value})).validate()


def test_settings_come_from_toml_and_environment(tmp_path):
    assert build_config(None, {}, {}).admin == AdminSettings()
    path = tmp_path / "x.toml"
    path.write_text('[admin]\nadmin_enabled = false\nadmin_host = "0.0.0.0"\nadmin_port = 0\n'
                    'admin_token_file = "/run/xmarks/token"\n')
    assert build_config(str(path), {}, {}).admin == AdminSettings(False, "0.0.0.0", 0,
                                                                  "/run/xmarks/token")
    env = {"XMARKS_ADMIN_ENABLED": "false", "XMARKS_ADMIN_PORT": "9000",
           "XMARKS_ADMIN_TOKEN": "a-secret-that-is-not-a-setting"}
    assert build_config(None, env, {}).admin == AdminSettings(admin_enabled=False,
                                                              admin_port=9000)
    assert build_config(None, {"XMARKS_ADMIN_ENABLED": "On"}, {}).admin.admin_enabled is True


@pytest.mark.parametrize("toml, env, words", [
    ("[admin]\nadmin_enabled = 1\n", {}, ["admin_enabled", "true or false"]),
    ("[admin]\nadmin_enabled = \"false\"\n", {}, ["admin_enabled"]),
    ("[admin]\nadmin_port = 70000\n", {}, ["admin_port", "0..65535"]),
    ("[admin]\nport = 1\n", {}, ["admin.port"]),
    ("", {"XMARKS_ADMIN_ENABLED": "maybe"}, ["XMARKS_ADMIN_ENABLED", "admin_enabled"]),
    ("", {"XMARKS_ADMIN_HOST": "example.com"}, ["XMARKS_ADMIN_HOST", "admin_host"]),
])
def test_bad_admin_settings_are_one_settings_error(tmp_path, toml, env, words):
    path = tmp_path / "x.toml"
    path.write_text(toml)
    with pytest.raises(SettingsError) as exc:
        build_config(str(path), env, {})
    assert all(w in str(exc.value) for w in words), str(exc.value)


def test_limits_agree_with_the_simulation():
    import net.admin_http as http_side
    import sim.control as control
    assert http_side.MAX_HUNT_SECONDS == control.MAX_HUNT_SECONDS
    assert http_side.MAX_SPAWN == control.MAX_SPAWN
