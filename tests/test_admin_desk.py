"""tick/admin.py through the real admin API of a real GameServer (UDP and HTTP on 127.0.0.1,
ports 0), ticks run by hand with run_tick(), real clients over UDP: every endpoint's answer
and effect, bad input, and one end-to-end run with the server on its own thread."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from net import drops as D
from net.admin_http import AdminBindError, AdminCall, AdminSettings
from net.client import CONNECTED, ClientProtocol, Connected, Disconnected, Snapshot
from net.token import issue_token
from net.udp import UdpEndpoint
from net.wire import DISCONNECT_KICKED
from sim import schema as S
from sim.rules import GameRules
from tick.clock import now_ns, unix_s
from tick.config import ServerConfig
from tick.rates import TickRates
from tick.server import GameServer

KEY = bytes(range(32))
TOKEN = "desk-test-token-0123456789abcdef"
RULES = GameRules(world_width=512.0, world_height=512.0, max_players=6, treasure_count=12,
                  cell_size=64.0, seed=4)


def config(**admin) -> ServerConfig:
    return ServerConfig(rules=RULES, rates=TickRates(tick_rate=20.0, status_every=0), port=0,
                        admin=AdminSettings(admin_port=0, **admin))


@pytest.fixture
def server():
    srv = GameServer(config(), key=KEY, admin_token=TOKEN)
    srv.warm_up()  # a kernel compiling in the first tick would outlast the clients' patience
    yield srv
    srv.close()


class Player:
    """A real client over UDP, pumped by hand: it answers the handshake, sends an INPUT
    (acking the newest snapshot) whenever pumped while connected, and keeps every event."""

    def __init__(self, server: GameServer, client_id: int, name: str) -> None:
        self.server_addr = server.address
        self.endpoint = UdpEndpoint("127.0.0.1", 0)
        self.client_id, self.name = client_id, name
        self.events: list = []
        self.inputs = True  # send an INPUT (an ack) on every pump
        self.client = self._client()

    def _client(self) -> ClientProtocol:
        token = issue_token(KEY, self.client_id, [self.server_addr], self.name, unix_s(), 300)
        return ClientProtocol(token)

    @property
    def address(self) -> str:
        return "%s:%d" % self.endpoint.address

    def connect(self) -> None:
        self.endpoint.send(self.client.connect(time.monotonic()), self.server_addr)

    def reconnect(self) -> None:
        self.client = self._client()
        self.connect()

    def pump(self) -> None:
        now = time.monotonic()
        for data, _ in self.endpoint.recv_all():
            self.events += self.client.receive(data, now)
        out, evs = self.client.poll(now)
        self.events += evs
        for data in out:
            self.endpoint.send(data, self.server_addr)
        if self.client.state == CONNECTED and self.inputs:
            self.endpoint.send(self.client.input(1, 0, False, now), self.server_addr)

    def kicked(self) -> bool:
        return any(isinstance(e, Disconnected) and e.code == DISCONNECT_KICKED
                   for e in self.events)

    def snapshots(self) -> list[Snapshot]:
        return [e for e in self.events if isinstance(e, Snapshot)]

    def close(self) -> None:
        self.endpoint.close()


@pytest.fixture
def players(server):
    made: list[Player] = []

    def make(n: int = 1, connect: bool = True) -> list[Player]:
        new = [Player(server, 100 + len(made) + k, f"p{len(made) + k}") for k in range(n)]
        made.extend(new)
        if connect:
            for p in new:
                p.connect()
            assert ticks_until(server, made, lambda: all(p.client.state == CONNECTED
                                                         for p in new))
        return new
    yield make
    for p in made:
        p.close()


def tick(server: GameServer, players=(), pause: float = 0.002) -> None:
    server.run_tick()
    time.sleep(pause)
    for p in players:
        p.pump()


def ticks_until(server, players, done, limit: int = 200, pause: float = 0.002) -> bool:
    for _ in range(limit):
        if done():
            return True
        tick(server, players, pause)
    return done()


def http(address, method: str, path: str, body=None, token: str | None = TOKEN):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request("http://%s:%d%s" % (*address, path), data=data, method=method)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def call(server, players, method: str, path: str, body=None, token: str | None = TOKEN):
    """An HTTP request from another thread, answered while this one runs the ticks."""
    box: dict = {}
    worker = threading.Thread(
        target=lambda: box.update(r=http(server.admin.address, method, path, body, token)))
    worker.start()
    while worker.is_alive():
        tick(server, players, pause=0.005)
    worker.join()
    return box["r"]


# ---- reads -------------------------------------------------------------------------------

STATUS_KEYS = {"tick", "tick_rate", "snapshot_rate", "uptime_s", "players", "max_players", "hunt",
               "budget_ms", "phases", "overruns", "drops", "packets_in", "packets_out",
               "bytes_out", "claims", "bandwidth", "leaderboard", "last_hunt", "ledger"}


def test_status_reports_the_running_server(server, players):
    ps = players(2)
    for _ in range(25):  # a little over a second: the bandwidth window has two samples
        tick(server, ps, pause=0.05)
    status, st = call(server, ps, "GET", "/status")
    assert status == 200 and set(st) == STATUS_KEYS
    assert 0 < st["tick"] <= server.world.tick
    assert (st["tick_rate"], st["snapshot_rate"], st["budget_ms"]) == (20.0, 20.0, 50.0)
    assert (st["players"], st["max_players"]) == (2, RULES.max_players)
    assert st["hunt"] == {"id": 0, "elapsed_s": pytest.approx(st["tick"] / 20.0),
                          "remaining_s": pytest.approx(RULES.hunt_duration - st["tick"] / 20.0),
                          "duration_s": RULES.hunt_duration}
    assert set(st["phases"]) == {"drain", "decode", "step", "encode", "send", "total"}
    for figures in st["phases"].values():
        assert set(figures) == {"p50_ms", "p99_ms", "max_ms"}
        assert 0 <= figures["p50_ms"] <= figures["p99_ms"] <= figures["max_ms"]
    assert st["phases"]["total"]["max_ms"] > 0
    assert all(isinstance(v, int) and v > 0 for v in st["drops"].values())
    assert set(st["drops"]) <= set(D.REASONS)
    assert 0 < st["packets_in"] <= server.packets_in
    assert 0 < st["packets_out"] <= server.packets_out and 0 < st["bytes_out"] <= server.bytes_out
    assert st["claims"] == server.claims
    bw = st["bandwidth"]
    assert bw["bytes_out_per_s"] > 0 and bw["packets_out_per_s"] > 0
    assert bw["packets_in_per_s"] > 0
    # the leaderboard lists every player in the hunt, ranked from 1
    assert [r["rank"] for r in st["leaderboard"]] == [1, 2]
    assert {r["name"] for r in st["leaderboard"]} == {"p0", "p1"}
    assert st["last_hunt"] is None  # no hunt has ended yet
    ledger = st["ledger"]  # the default: SQLite, in the test's own directory
    assert ledger["backend"] == "sqlite" and ledger["faults"] == 0
    assert ledger["last_error"] is None and ledger["committed"] >= 1
    assert st["uptime_s"] > 1.0


def test_status_shows_the_ledger_when_there_is_one(server):
    class Ledger:
        def status(self):
            return {"backend": "sqlite", "pending": 3, "committed": 40, "faults": 1,
                    "last_error": "disk I/O error", "last_commit_s": 0.001}
    server.ledger = Ledger()
    _, st = call(server, [], "GET", "/status")
    assert st["ledger"] == {"backend": "sqlite", "pending": 3, "committed": 40, "faults": 1,
                            "last_error": "disk I/O error"}


def test_players_lists_each_session_with_rtt_and_idle_time(server, players):
    ps = players(3)
    for _ in range(10):
        tick(server, ps, pause=0.01)
    status, body = call(server, ps, "GET", "/players")
    assert status == 200
    rows = body["players"]
    assert [r["slot"] for r in rows] == sorted(r["slot"] for r in rows) == [0, 1, 2]
    by_id = {r["client_id"]: r for r in rows}
    for p in ps:
        row = by_id[p.client_id]
        assert set(row) == {"slot", "client_id", "name", "address", "score", "rtt_ms", "idle_s",
                            "connected_s"}
        assert (row["name"], row["address"]) == (p.name, p.address)
        assert row["slot"] == p.client.info.slot
        assert row["score"] == int(server.world.pi[S.P_SCORE, row["slot"]])
        # loopback, but a snapshot waits for the client's next input and the next drain
        assert row["rtt_ms"] is not None and 0 < row["rtt_ms"] < 1000
        assert 0 <= row["idle_s"] < 1.0
        assert row["connected_s"] > 0.05


def test_a_player_that_never_acks_has_no_rtt(server, players):
    (p,) = players(1, connect=False)
    p.inputs = False  # connects, takes its snapshots, never acks one
    p.connect()
    assert ticks_until(server, [p], lambda: p.client.state == CONNECTED)
    for _ in range(5):
        tick(server, [p])
    assert p.snapshots()
    _, body = call(server, [p], "GET", "/players")
    assert body["players"][0]["rtt_ms"] is None


# ---- kick and ban ------------------------------------------------------------------------

def test_kick_by_slot_sends_disconnect_kicked(server, players):
    a, b = players(2)
    slot = a.client.info.slot
    tick_before = server.world.tick
    status, body = call(server, [a, b], "POST", "/kick", {"slot": slot})
    assert (status, body) == (200, {"kicked": [slot]})
    assert ticks_until(server, [a, b], a.kicked)
    assert server.protocol.connected_count() == 1 and b.client.state == CONNECTED
    assert server.world.pi[S.P_ALIVE, slot] == 0
    ((at, name, args),) = server.admin_log
    assert name == "kick" and args == {"slot": slot} and at >= tick_before
    # a kicked client may come back: a kick is not a ban
    a.reconnect()
    assert ticks_until(server, [a, b], lambda: a.client.state == CONNECTED)


def test_kick_by_client_id_and_by_address(server, players):
    a, b, c = players(3)
    status, body = call(server, [a, b, c], "POST", "/kick", {"client_id": b.client_id})
    assert (status, body) == (200, {"kicked": [b.client.info.slot]})
    status, body = call(server, [a, b, c], "POST", "/kick", {"address": "127.0.0.1"})
    assert status == 200 and body["kicked"] == sorted([a.client.info.slot, c.client.info.slot])
    assert ticks_until(server, [a, b, c], lambda: a.kicked() and b.kicked() and c.kicked())
    assert server.protocol.connected_count() == 0


@pytest.mark.parametrize("args", [{"slot": 4}, {"slot": 60000}, {"client_id": 999},
                                  {"address": "10.0.0.1"}])
def test_kick_of_nobody_is_409_and_logs_nothing(server, players, args):
    (a,) = players(1)
    status, body = call(server, [a], "POST", "/kick", args)
    assert status == 409 and "no player matches" in body["error"]
    assert server.admin_log == [] and server.protocol.connected_count() == 1


def test_ban_kicks_and_keeps_the_client_out_until_it_expires(server, players):
    a, b = players(2)
    status, body = call(server, [a, b], "POST", "/ban",
                        {"client_id": a.client_id, "seconds": 1.5, "reason": "griefing"})
    banned_at = time.monotonic()
    assert status == 200
    assert body == {"ban": {"kind": "client_id", "value": a.client_id, "expires_in_s": 1.5},
                    "kicked": [a.client.info.slot]}
    assert ticks_until(server, [a, b], a.kicked)
    _, bans = call(server, [a, b], "GET", "/bans")
    (ban,) = bans["bans"]
    assert ban["kind"] == "client_id" and ban["value"] == a.client_id
    assert ban["reason"] == "griefing" and 0 < ban["expires_in_s"] < 1.5
    a.reconnect()  # it keeps asking (a request every 0.25 s)
    assert ticks_until(server, [a, b], lambda: a.client.state == CONNECTED, limit=600,
                       pause=0.01)
    assert time.monotonic() - banned_at >= 1.5  # not before the ban lapsed
    assert server.protocol.drops[D.BANNED] >= 1
    assert [e for e in a.events if isinstance(e, Connected)]
    assert [n for _, n, _ in server.admin_log] == ["ban"]


def test_ban_by_address_then_unban(server, players):
    (a,) = players(1)
    status, body = call(server, [a], "POST", "/ban", {"address": "127.0.0.1"})
    assert status == 200 and body["kicked"] == [a.client.info.slot]
    assert body["ban"] == {"kind": "address", "value": "127.0.0.1", "expires_in_s": 3600.0}
    assert ticks_until(server, [a], a.kicked)
    a.reconnect()
    for _ in range(20):
        tick(server, [a], pause=0.02)
    assert a.client.state != CONNECTED and server.protocol.drops[D.BANNED] >= 1
    assert call(server, [a], "GET", "/bans")[1]["bans"][0]["value"] == "127.0.0.1"
    assert call(server, [a], "POST", "/unban", {"address": "127.0.0.1"}) == (200, {"removed": True})
    status, body = call(server, [a], "POST", "/unban", {"address": "127.0.0.1"})
    assert status == 409 and "no ban" in body["error"]
    assert call(server, [a], "GET", "/bans") == (200, {"bans": []})
    assert ticks_until(server, [a], lambda: a.client.state == CONNECTED, pause=0.01)
    assert [n for _, n, _ in server.admin_log] == ["ban", "unban"]


# ---- hunts -------------------------------------------------------------------------------

def test_hunt_end_ranks_players_and_shows_the_final_board(server, players):
    a, b = players(2)
    sa, sb = a.client.info.slot, b.client.info.slot
    server.world.pi[S.P_SCORE, sa], server.world.pi[S.P_SCORE, sb] = 7, 3
    seen = []
    handle = server._on_world_events
    server._on_world_events = lambda: (seen.extend(
        server.world.events[:server.world.event_count].tolist()), handle())
    at = server.world.tick
    status, body = call(server, [a, b], "POST", "/hunt/end")
    assert status == 200 and body["ended"] == 0
    assert body["hunt"] == {"id": 1, "elapsed_s": 0.0, "remaining_s": RULES.hunt_duration,
                            "duration_s": RULES.hunt_duration}
    # the operator sees the final results, in the answer and in the status after it
    names = {sa: server.protocol.names[sa], sb: server.protocol.names[sb]}
    ids = {sa: server.protocol.client_id(sa), sb: server.protocol.client_id(sb)}
    expected = [{"rank": 1, "slot": sa, "score": 7, "client_id": ids[sa], "name": names[sa]},
                {"rank": 2, "slot": sb, "score": 3, "client_id": ids[sb], "name": names[sb]}]
    assert body["results"] == expected
    last = call(server, [a, b], "GET", "/status")[1]["last_hunt"]
    assert last["id"] == 0 and last["results"] == expected
    end = [e for e in seen if e[0] == S.EVENT_HUNT_END]
    ranks = [e for e in seen if e[0] == S.EVENT_RANK]
    assert len(end) == 1 and end[0][2:4] == [0, 2] and end[0][1] >= at
    assert [(e[2], e[3], e[5]) for e in ranks] == [(0, sa, 7), (1, sb, 3)]
    assert server.world.final_board[:2, [S.LB_SLOT, S.LB_SCORE]].tolist() == [[sa, 7], [sb, 3]]
    assert (server.world.pi[S.P_SCORE] == 0).all()
    # the clients are shown the result
    assert ticks_until(server, [a, b], lambda: any(
        s.hunt_result == (0, [(sa, 7), (sb, 3)]) for s in a.snapshots()))
    assert [n for _, n, _ in server.admin_log] == ["hunt_end"]


def test_hunt_start_reburies_everything_and_opens_the_next_hunt(server):
    assert call(server, [], "POST", "/treasures/clear")[0] == 200
    status, body = call(server, [], "POST", "/hunt/start")
    assert status == 200 and body["hunt"]["id"] == 1 and body["hunt"]["elapsed_s"] == 0.0
    assert call(server, [], "GET", "/treasures")[1]["buried"] == RULES.treasure_count
    assert [n for _, n, _ in server.admin_log] == ["treasures_clear", "hunt_start"]


def test_hunt_duration_applies_to_the_running_hunt(server):
    for _ in range(10):
        tick(server)
    status, body = call(server, [], "POST", "/hunt/duration", {"seconds": 600})
    hunt = body["hunt"]
    assert status == 200 and hunt["duration_s"] == 600.0 and hunt["id"] == 0
    assert hunt["remaining_s"] == pytest.approx(600.0 - hunt["elapsed_s"])
    assert server.world.kr.hunt_ticks == 12000
    # a duration already past: the hunt ends on the next tick
    status, body = call(server, [], "POST", "/hunt/duration", {"seconds": 0.1})
    assert status == 200 and body["hunt"]["remaining_s"] == 0.0
    tick(server)
    assert int(server.world.clock[S.HUNT_ID]) == 1
    assert server.world.kr.hunt_ticks == 2  # and the next hunts are as short
    assert [a for _, n, a in server.admin_log] == [{"seconds": 600.0}, {"seconds": 0.1}]


# ---- treasures ---------------------------------------------------------------------------

def test_treasure_info_spawn_and_clear(server):
    status, info = call(server, [], "GET", "/treasures")
    cap = RULES.treasure_count
    assert status == 200 and (info["capacity"], info["buried"], info["claimed"]) == (cap, cap, 0)
    values = server.world.ti[S.T_VALUE].tolist()
    assert info["by_value"] == {str(v): values.count(v) for v in set(values)}
    status, body = call(server, [], "POST", "/treasures/spawn", {"count": 1})
    assert status == 409 and "no room" in body["error"]
    assert call(server, [], "POST", "/treasures/clear") == (200, {"cleared": cap})
    assert call(server, [], "GET", "/treasures")[1] == {"capacity": cap, "buried": 0,
                                                         "claimed": 0, "by_value": {}}
    assert call(server, [], "POST", "/treasures/spawn", {"count": 3}) == (
        200, {"spawned": 3, "buried": 3})
    for _ in range(200):  # nothing comes back by itself (no respawn timer runs)
        tick(server, pause=0)
    assert call(server, [], "GET", "/treasures")[1]["buried"] == 3
    assert call(server, [], "POST", "/treasures/spawn", {"count": 65535}) == (
        200, {"spawned": cap - 3, "buried": cap})
    assert [a for _, n, a in server.admin_log] == [{}, {"count": 3}, {"count": 65535}]


# ---- bad input, auth, failures -----------------------------------------------------------

def test_bad_input_and_bad_tokens_change_nothing(server, players):
    (a,) = players(1)
    hunt_ticks = server.world.kr.hunt_ticks
    for method, path, body, token, code in [
        ("POST", "/treasures/clear", None, None, 401),
        ("POST", "/hunt/end", None, "wrong-token-wrong-token", 401),
        ("POST", "/kick", {"slot": 0, "address": "127.0.0.1"}, TOKEN, 400),
        ("POST", "/treasures/spawn", {"count": 0}, TOKEN, 400),
        ("POST", "/hunt/duration", {"seconds": -1}, TOKEN, 400),
        ("POST", "/ban", {"client_id": a.client_id, "seconds": "long"}, TOKEN, 400),
        ("GET", "/hunt/end", None, TOKEN, 405),
        ("POST", "/hunt/stop", None, TOKEN, 404),
    ]:
        status, answer = http(server.admin.address, method, path, body, token)
        assert status == code and "\n" not in answer["error"], (path, answer)
    tick(server, [a])
    assert server.admin_log == [] and a.client.state == CONNECTED
    assert len(server.protocol.bans) == 0 and server.desk.calls.empty()
    assert int(server.world.clock[S.HUNT_ID]) == 0 and server.world.kr.hunt_ticks == hunt_ticks
    assert (server.world.ti[S.T_STATE] != S.REMOVED).all()


def test_a_failing_command_is_a_500_and_the_tick_goes_on(server, monkeypatch):
    def broken(*args):
        raise RuntimeError("boom")
    monkeypatch.setitem(server.desk._handlers, "treasures_clear", broken)
    status, body = call(server, [], "POST", "/treasures/clear")
    assert status == 500 and body == {"error": "internal error: RuntimeError"}
    assert server.admin_log == []
    assert call(server, [], "GET", "/status")[0] == 200


def test_calls_still_queued_at_stop_get_503(server):
    call_ = AdminCall("status", {})
    server.desk.submit(call_)
    server.desk.close()
    assert call_.wait(0) and (call_.status, call_.body) == (503, {"error": "server stopping"})
    with pytest.raises(Exception):
        server.desk.submit(AdminCall("status", {}))


def test_an_idle_desk_answers_nothing(server, monkeypatch):
    def never(*args, **kw):
        raise AssertionError("an empty queue was read")
    with monkeypatch.context() as patch:
        patch.setattr(server.desk.calls, "get_nowait", never)
        for _ in range(5):
            tick(server, pause=0)


# ---- construction ------------------------------------------------------------------------

def test_no_token_or_disabled_means_no_admin_api():
    for srv in (GameServer(config(), key=KEY),
                GameServer(config(admin_enabled=False), key=KEY, admin_token=TOKEN)):
        assert srv.admin is None
        srv.run_tick()
        srv.close()


def test_a_taken_admin_port_fails_before_the_key_is_read_and_frees_the_udp_port():
    read = []
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = ServerConfig(rules=RULES, port=0, admin=AdminSettings(admin_port=port))
        with pytest.raises(AdminBindError, match=f"127.0.0.1:{port}"):
            GameServer(cfg, key=lambda: read.append(1) or KEY, admin_token=lambda: TOKEN)
    assert read == []


# ---- end to end --------------------------------------------------------------------------

def test_end_to_end_status_players_kick_while_the_server_runs():
    srv = GameServer(config(), key=KEY, admin_token=TOKEN)
    srv.warm_up()
    runner = threading.Thread(target=srv.run, daemon=True)
    runner.start()
    p = Player(srv, 4242, "remote")
    try:
        p.connect()
        deadline = time.monotonic() + 20
        while p.client.state != CONNECTED and time.monotonic() < deadline:
            p.pump()
            time.sleep(0.01)
        assert p.client.state == CONNECTED
        for _ in range(20):
            p.pump()
            time.sleep(0.02)
        status, st = http(srv.admin.address, "GET", "/status")
        assert status == 200 and st["players"] == 1 and st["tick"] > 0
        status, body = http(srv.admin.address, "GET", "/players")
        (row,) = body["players"]
        assert row["client_id"] == 4242 and row["address"] == p.address
        assert row["rtt_ms"] is not None
        status, body = http(srv.admin.address, "POST", "/kick", {"client_id": 4242})
        assert (status, body) == (200, {"kicked": [row["slot"]]})
        deadline = time.monotonic() + 5
        while not p.kicked() and time.monotonic() < deadline:
            p.pump()
            time.sleep(0.01)
        assert p.kicked()
        assert http(srv.admin.address, "GET", "/status")[1]["players"] == 0
        with urllib.request.urlopen("http://%s:%d/metrics" % srv.admin.address,
                                    timeout=10) as r:
            assert r.status == 200 and b"xmarks_" in r.read()
    finally:
        srv.stop()
        runner.join(10)
        srv.close()
        p.close()
    assert not runner.is_alive()
    assert [n for _, n, _ in srv.admin_log] == ["kick"]


# ---- `xmarks serve` ----------------------------------------------------------------------

def serve(tmp_path, env: dict, *args: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("XMARKS_")}
    environ.update(env)
    return subprocess.run([sys.executable, "-m", "cli", "serve", "--port", "0",
                           "--key-file", str(tmp_path / "k"), *args],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={**environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})


def test_serve_creates_the_admin_token_file(tmp_path):
    proc = serve(tmp_path, {"XMARKS_ADMIN_PORT": "0", "XMARKS_MAX_PLAYERS": "8"},
                 "--duration", "0.3")
    assert proc.returncode == 0, proc.stderr
    token = tmp_path / "xmarks.admin-token"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600 and len(token.read_text()) == 44
    assert "admin API on http://127.0.0.1:" in proc.stderr
    assert "created admin token file xmarks.admin-token" in proc.stderr


def test_serve_with_a_taken_admin_port_is_one_line_exit_1(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = serve(tmp_path, {"XMARKS_ADMIN_PORT": str(port)}, "--duration", "0.3")
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("xmarks: error: cannot bind the admin API")
    assert str(port) in lines[0]
    assert not (tmp_path / "k").exists()  # no key file for a server that never started


def test_serve_refuses_a_token_file_open_to_others(tmp_path):
    (tmp_path / "xmarks.admin-token").write_text("x" * 43 + "\n")
    (tmp_path / "xmarks.admin-token").chmod(0o644)
    proc = serve(tmp_path, {"XMARKS_ADMIN_PORT": "0"}, "--duration", "0.3")
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and "chmod 600" in lines[0] and lines[0].startswith("xmarks: error:")


def test_serve_without_the_admin_api(tmp_path):
    proc = serve(tmp_path, {"XMARKS_ADMIN_ENABLED": "false"}, "--duration", "0.3")
    assert proc.returncode == 0, proc.stderr
    assert "admin API" not in proc.stderr
    assert not (tmp_path / "xmarks.admin-token").exists()


def ledger_server():
    from store.settings import StoreSettings
    cfg = ServerConfig(rules=RULES, rates=TickRates(tick_rate=20.0, status_every=0), port=0,
                       admin=AdminSettings(admin_port=0),
                       store=StoreSettings(ledger_backend="memory", checkpoint_every=0))
    srv = GameServer(cfg, key=KEY, admin_token=TOKEN)
    srv.warm_up()
    return srv


def test_a_kick_after_a_hunt_end_records_each_event_once():
    """Between two ticks world.events still holds the last step's events (already in the
    ledger): a kick must not record them again, only an operator's hunt end adds its own."""
    import collections
    srv = ledger_server()
    ps = [Player(srv, 100 + k, f"p{k}") for k in range(2)]
    try:
        for p in ps:
            p.connect()
        assert ticks_until(srv, ps, lambda: all(p.client.state == CONNECTED for p in ps))
        for _ in range(5):
            tick(srv, ps)
        assert srv.desk.carry_out(srv, "hunt_end", {}, now_ns())[0] == 200
        assert srv.desk.carry_out(srv, "kick", {"slot": 1}, now_ns())[0] == 200
        srv.run_tick()
        srv.ledger.flush()
        kinds = collections.Counter(r.kind for r in srv.ledger.records_since(0))
        assert (kinds["hunt_end"], kinds["rank"], kinds["hunt_start"]) == (1, 2, 2)
        assert kinds["leave"] == 1 and kinds["join"] == 2
    finally:
        srv.close()
        for p in ps:
            p.close()


def test_joins_after_an_operators_hunt_end_belong_to_the_new_hunt():
    srv = ledger_server()
    a = Player(srv, 100, "a")
    try:
        srv.desk.carry_out(srv, "hunt_end", {}, now_ns())  # hunt 1 from this tick boundary
        a.connect()
        assert ticks_until(srv, [a], lambda: a.client.state == CONNECTED)
        srv.ledger.flush()
        (join,) = [r for r in srv.ledger.records_since(0) if r.kind == "join"]
        assert join.hunt == int(srv.world.clock[S.HUNT_ID]) == 1
    finally:
        srv.close()
        a.close()
