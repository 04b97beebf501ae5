"""A fake admin API server for the operator CLI tests: the contract of v1 (auth, routes,
status codes, answers) over real HTTP on 127.0.0.1, with an in-memory game behind it.

`FakeAdmin` records every request it got (method, path, body, authorization); tests set
`fail` to make every answer a chosen error (e.g. (503, {"error": "server busy"})).
"""

from __future__ import annotations

import copy
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = "t0ken-for-the-tests_0123456789abcdefghijklmno"

STATUS = {
    "tick": 1234, "tick_rate": 20.0, "snapshot_rate": 20.0, "uptime_s": 61.7,
    "players": 2, "max_players": 64,
    "hunt": {"id": 3, "elapsed_s": 149.0, "remaining_s": 151.0, "duration_s": 300.0},
    "budget_ms": 50.0,
    "phases": {"drain": {"p50_ms": 0.11, "p99_ms": 0.31, "max_ms": 0.9},
               "decode": {"p50_ms": 0.21, "p99_ms": 0.41, "max_ms": 1.0},
               "step": {"p50_ms": 3.0, "p99_ms": 6.0, "max_ms": 9.0},
               "encode": {"p50_ms": 20.0, "p99_ms": 40.0, "max_ms": 61.0},
               "send": {"p50_ms": 1.0, "p99_ms": 2.0, "max_ms": 3.0},
               "total": {"p50_ms": 30.0, "p99_ms": 60.0, "max_ms": 75.0}},
    "overruns": 7, "drops": {"bad_tag": 5, "rate_limited": 1},
    "packets_in": 1000, "packets_out": 2000, "bytes_out": 1234567, "claims": 17,
    "bandwidth": {"bytes_out_per_s": 12345.0, "packets_out_per_s": 160.0,
                  "packets_in_per_s": 150.0},
    "leaderboard": [{"rank": 1, "slot": 1, "name": "bot-1", "score": 40},
                    {"rank": 2, "slot": 0, "name": "ada", "score": 10}],
    "ledger": {"backend": "sqlite", "pending": 3, "committed": 120, "faults": 0,
               "last_error": None},
}

PLAYERS = [
    {"slot": 0, "client_id": 42, "name": "ada", "address": "127.0.0.1:50001", "score": 10,
     "rtt_ms": 12.5, "idle_s": 0.05, "connected_s": 75.0},
    {"slot": 1, "client_id": 7, "name": "bot-1", "address": "127.0.0.2:50002", "score": 40,
     "rtt_ms": None, "idle_s": 1.5, "connected_s": 3700.0},
]


def dumps(obj) -> bytes:
    """The fake's own JSON style (compact), so a test can tell its bytes were kept."""
    return json.dumps(obj, separators=(",", ":")).encode("utf-8")


class FakeGame:
    """What the fake's answers come from; every change a request makes lands here."""

    def __init__(self) -> None:
        self.status = copy.deepcopy(STATUS)
        self.players = copy.deepcopy(PLAYERS)
        self.bans: list[dict] = []
        self.hunt = dict(self.status["hunt"])
        self.capacity, self.buried, self.claimed = 16, 10, 6

    def kick(self, body: dict) -> tuple[int, dict]:
        keys = [k for k in ("slot", "client_id", "address") if k in body]
        if len(keys) != 1 or len(body) != 1:
            return 400, {"error": "give exactly one of slot, client_id, address"}
        key = keys[0]
        if key == "address":
            hit = [p for p in self.players if p["address"].split(":")[0] == body[key]]
        else:
            hit = [p for p in self.players if p[key] == body[key]]
        if not hit:
            return 409, {"error": "no such player"}
        self.players = [p for p in self.players if p not in hit]
        return 200, {"kicked": [p["slot"] for p in hit]}

    def ban(self, body: dict) -> tuple[int, dict]:
        keys = [k for k in ("client_id", "address") if k in body]
        if len(keys) != 1:
            return 400, {"error": "give exactly one of client_id, address"}
        seconds = body.get("seconds", 3600.0)
        if not isinstance(seconds, (int, float)) or seconds <= 0:
            return 400, {"error": "seconds: must be a number > 0"}
        key = keys[0]
        self.bans.append({"kind": key, "value": body[key], "expires_in_s": float(seconds),
                          "reason": body.get("reason", "")})
        code, kicked = self.kick({key: body[key]})
        return 200, {"ban": {"kind": key, "value": body[key], "expires_in_s": float(seconds)},
                     "kicked": kicked["kicked"] if code == 200 else []}

    def unban(self, body: dict) -> tuple[int, dict]:
        keys = [k for k in ("client_id", "address") if k in body]
        if len(keys) != 1:
            return 400, {"error": "give exactly one of client_id, address"}
        left = [b for b in self.bans if not (b["kind"] == keys[0] and b["value"] == body[keys[0]])]
        if len(left) == len(self.bans):
            return 409, {"error": "no such ban"}
        self.bans = left
        return 200, {"removed": True}

    def hunt_action(self, action: str, body: dict) -> tuple[int, dict]:
        if action == "duration":
            seconds = body.get("seconds")
            if not isinstance(seconds, (int, float)) or not 0 < seconds <= 1e6:
                return 400, {"error": "seconds: must be a number in (0, 1000000]"}
            self.hunt["duration_s"] = float(seconds)
            self.hunt["remaining_s"] = max(0.0, seconds - self.hunt["elapsed_s"])
            return 200, {"hunt": self.hunt}
        ended = self.hunt["id"]
        self.hunt = {"id": ended + 1, "elapsed_s": 0.0, "remaining_s": self.hunt["duration_s"],
                     "duration_s": self.hunt["duration_s"]}
        return 200, ({"hunt": self.hunt, "ended": ended} if action == "end"
                     else {"hunt": self.hunt})

    def treasures(self, action: str, body: dict) -> tuple[int, dict]:
        if action == "spawn":
            count = body.get("count")
            if not isinstance(count, int) or not 1 <= count <= 65535:
                return 400, {"error": "count: must be an integer in 1..65535"}
            spawned = min(count, self.capacity - self.buried - self.claimed)
            if spawned == 0:
                return 409, {"error": "no free treasure slot"}
            self.buried += spawned
            return 200, {"spawned": spawned, "buried": self.buried}
        cleared, self.buried = self.buried, 0
        return 200, {"cleared": cleared}

    def info(self) -> dict:
        return {"capacity": self.capacity, "buried": self.buried, "claimed": self.claimed,
                "by_value": {"1": self.buried - 2, "3": 2} if self.buried >= 2 else {}}


class FakeAdmin:
    """The fake server on a thread: `with FakeAdmin() as fake: ... fake.address`."""

    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.game = FakeGame()
        self.requests: list[tuple[str, str, object, str | None]] = []
        self.fail: tuple[int, dict] | None = None
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                fake._handle(self, "GET")

            def do_POST(self) -> None:
                fake._handle(self, "POST")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def address(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"{host}:{port}"

    def __enter__(self) -> "FakeAdmin":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        auth = h.headers.get("Authorization")
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = None
        self.requests.append((method, h.path, body, auth))
        code, answer = self._answer(method, h.path, body, auth)
        data = dumps(answer)
        h.send_response(code)
        h.send_header("Content-Type", "application/json; charset=utf-8")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _answer(self, method: str, path: str, body, auth: str | None) -> tuple[int, dict]:
        if self.fail is not None:
            return self.fail
        if auth != f"Bearer {self.token}":
            return 401, {"error": "unauthorized"}
        game = self.game
        gets = {"/status": lambda: {**game.status, "hunt": game.hunt},
                "/players": lambda: {"players": game.players},
                "/bans": lambda: {"bans": game.bans},
                "/treasures": game.info}
        posts = {"/kick": game.kick, "/ban": game.ban, "/unban": game.unban,
                 "/hunt/end": lambda b: game.hunt_action("end", b),
                 "/hunt/start": lambda b: game.hunt_action("start", b),
                 "/hunt/duration": lambda b: game.hunt_action("duration", b),
                 "/treasures/spawn": lambda b: game.treasures("spawn", b),
                 "/treasures/clear": lambda b: game.treasures("clear", b)}
        if path not in gets and path not in posts:
            return 404, {"error": f"no such endpoint {path}"}
        if method == "GET":
            return (200, gets[path]()) if path in gets else (405, {"error": "use POST"})
        if path not in posts:
            return 405, {"error": "use GET"}
        if not isinstance(body, dict):
            return 400, {"error": "body: not a JSON object"}
        return posts[path](body)
