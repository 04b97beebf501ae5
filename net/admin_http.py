"""The admin API's HTTP side: auth, routes, argument checks, and the hand-off to the tick.

The one socket outside net/udp.py (the agreed exception): a small HTTP/1.1 server on a
daemon thread (stdlib ThreadingHTTPServer). It never touches the world. Each request that
passes auth and argument checks becomes an AdminCall, is handed to `handle` (which queues
it for the tick thread) and waits for the answer; the tick thread carries it out between
two ticks (tick/admin.py). A call not taken within `answer_timeout` is withdrawn, so a
503 means nothing was done. The contract is /work/briefs/admin_api.md, summed up in the
README ("Admin API").
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger("xmarks.admin")

JSON_TYPE = "application/json; charset=utf-8"
#: Largest request body read (413 beyond).
MAX_BODY = 64 * 1024
#: A body too large but no larger than this is read and dropped before the 413, so the
#: client sees the answer rather than a reset connection.
DISCARD_LIMIT = 1 << 20
#: Seconds a request waits for the tick thread before 503 "server busy".
ANSWER_TIMEOUT_S = 2.0
#: Connections served at once; more are closed unanswered (the API is for a few tools).
MAX_CONNECTIONS = 32
#: Seconds a connection may take to send its request.
REQUEST_TIMEOUT_S = 5.0

#: Longest ban, in seconds (ten years).
MAX_BAN_SECONDS = 315_360_000.0
DEFAULT_BAN_SECONDS = 3600.0
MAX_REASON_CHARS = 200
MAX_HUNT_SECONDS = 1e8  # as sim.control.MAX_HUNT_SECONDS
MAX_SPAWN = 65535
U64_MAX = 2**64 - 1

#: path -> (method, command name). GET /metrics is the one route without auth.
ROUTES: dict[str, tuple[str, str]] = {
    "/status": ("GET", "status"),
    "/players": ("GET", "players"),
    "/kick": ("POST", "kick"),
    "/ban": ("POST", "ban"),
    "/bans": ("GET", "bans"),
    "/unban": ("POST", "unban"),
    "/hunt/end": ("POST", "hunt_end"),
    "/hunt/start": ("POST", "hunt_start"),
    "/hunt/duration": ("POST", "hunt_duration"),
    "/treasures": ("GET", "treasures"),
    "/treasures/spawn": ("POST", "treasures_spawn"),
    "/treasures/clear": ("POST", "treasures_clear"),
    "/metrics": ("GET", "metrics"),
}


class AdminSettingsError(ValueError):
    """An [admin] setting has a value the server cannot use."""


@dataclass(frozen=True)
class AdminSettings:
    """The admin API: where it listens and where its bearer token lives."""

    admin_enabled: bool = True
    admin_host: str = "127.0.0.1"
    admin_port: int = 7778  # 0: any free port
    admin_token_file: str = "xmarks.admin-token"

    def validate(self) -> None:
        """Raise AdminSettingsError naming the first bad setting."""
        if not isinstance(self.admin_enabled, bool):
            raise AdminSettingsError(f"admin_enabled must be true or false, "
                                     f"got {self.admin_enabled!r}")
        try:
            ipaddress.IPv4Address(self.admin_host)
        except ValueError:
            raise AdminSettingsError(f"admin_host must be an IPv4 address such as "
                                     f"127.0.0.1, got {self.admin_host!r}") from None
        if (isinstance(self.admin_port, bool) or not isinstance(self.admin_port, int)
                or not 0 <= self.admin_port <= 65535):
            raise AdminSettingsError(f"admin_port must be an integer in 0..65535, "
                                     f"got {self.admin_port!r}")
        if not isinstance(self.admin_token_file, str) or not self.admin_token_file:
            raise AdminSettingsError(f"admin_token_file must be a file path, "
                                     f"got {self.admin_token_file!r}")


class AdminBindError(RuntimeError):
    """The admin API's address cannot be bound (one line naming it)."""


class BadRequest(ValueError):
    """An argument is missing or wrong: 400 with this one-line message."""


# ---- a call on its way to the tick thread ------------------------------------------------

_PENDING, _TAKEN, _WITHDRAWN = 0, 1, 2


class AdminCall:
    """One checked request (name, args) and, once the tick thread answered, its HTTP
    status and JSON body. Either the tick thread takes it or the HTTP side withdraws it,
    never both (a lock decides), so a withdrawn call is never carried out."""

    __slots__ = ("name", "args", "status", "body", "_state", "_lock", "_done")

    def __init__(self, name: str, args: dict[str, Any]) -> None:
        self.name = name
        self.args = args
        self.status = 0
        self.body: dict[str, Any] = {}
        self._state = _PENDING
        self._lock = threading.Lock()
        self._done = threading.Event()

    def take(self) -> bool:
        """Tick side: claim the call; False if the HTTP side already gave up on it."""
        with self._lock:
            if self._state != _PENDING:
                return False
            self._state = _TAKEN
            return True

    def withdraw(self) -> bool:
        """HTTP side: give up on the call; False if the tick thread has already taken it."""
        with self._lock:
            if self._state != _PENDING:
                return False
            self._state = _WITHDRAWN
            return True

    def answer(self, status: int, body: dict[str, Any]) -> None:
        self.status, self.body = status, body
        self._done.set()

    def wait(self, timeout: float) -> bool:
        return self._done.wait(timeout)


# ---- argument checks ---------------------------------------------------------------------

def _int(args: dict, key: str, low: int, high: int) -> int:
    value = args[key]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadRequest(f"{key} must be an integer in {low}..{high}, got {_show(value)}")
    return value


def _number(args: dict, key: str, high: float) -> float:
    """A JSON number in (0, high]."""
    value = args[key]
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not math.isfinite(value) or not 0 < value <= high):
        raise BadRequest(f"{key} must be a number > 0 and at most {high:.0f}, "
                         f"got {_show(value)}")
    return float(value)


def _address(args: dict, key: str) -> str:
    value = args[key]
    try:
        if not isinstance(value, str):
            raise ValueError
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise BadRequest(f"{key} must be an IPv4 address such as 203.0.113.5, "
                         f"got {_show(value)}") from None


def _show(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (str, int, float, bool, type(None))) \
        else type(value).__name__
    return text if len(text) <= 40 else text[:37] + "..."


def _one_of(args: dict, keys: tuple[str, ...]) -> str:
    given = [k for k in keys if k in args]
    if len(given) != 1:
        raise BadRequest(f"give exactly one of {', '.join(keys)}")
    return given[0]


def _player_key(args: dict, keys: tuple[str, ...]) -> dict[str, Any]:
    """{key: checked value} for the one of slot / client_id / address given."""
    key = _one_of(args, keys)
    if key == "slot":
        return {"slot": _int(args, "slot", 0, 65535)}
    if key == "client_id":
        return {"client_id": _int(args, "client_id", 0, U64_MAX)}
    return {"address": _address(args, "address")}


def _reason(args: dict) -> str:
    value = args.get("reason", "")
    if not isinstance(value, str) or len(value) > MAX_REASON_CHARS:
        raise BadRequest(f"reason must be a string of at most {MAX_REASON_CHARS} characters")
    return value


def _required(args: dict, key: str) -> None:
    if key not in args:
        raise BadRequest(f"{key} is required")


def _ban_args(args: dict) -> dict[str, Any]:
    seconds = (_number(args, "seconds", MAX_BAN_SECONDS) if "seconds" in args
               else DEFAULT_BAN_SECONDS)
    return {**_player_key(args, ("client_id", "address")), "seconds": seconds,
            "reason": _reason(args)}


def _duration_args(args: dict) -> dict[str, Any]:
    _required(args, "seconds")
    return {"seconds": _number(args, "seconds", MAX_HUNT_SECONDS)}


def _spawn_args(args: dict) -> dict[str, Any]:
    _required(args, "count")
    return {"count": _int(args, "count", 1, MAX_SPAWN)}


#: command -> (the keys it takes, the check returning its arguments); others take none
_CHECKS: dict[str, tuple[tuple[str, ...], Callable[[dict], dict[str, Any]]]] = {
    "kick": (("slot", "client_id", "address"),
             lambda args: _player_key(args, ("slot", "client_id", "address"))),
    "ban": (("client_id", "address", "seconds", "reason"), _ban_args),
    "unban": (("client_id", "address"),
              lambda args: _player_key(args, ("client_id", "address"))),
    "hunt_duration": (("seconds",), _duration_args),
    "treasures_spawn": (("count",), _spawn_args),
}


def _reject_constant(name: str):
    raise BadRequest(f"the body is not valid JSON: {name} is not a JSON number")


def check_args(name: str, body: bytes) -> dict[str, Any]:
    """The checked arguments of command `name` from its JSON body (empty = no arguments);
    BadRequest with a one-line message naming the argument otherwise."""
    if body.strip():
        try:
            args = json.loads(body, parse_constant=_reject_constant)
        except BadRequest:
            raise
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            raise BadRequest("the body is not valid JSON") from None
        if not isinstance(args, dict):
            raise BadRequest("the body must be a JSON object")
    else:
        args = {}
    allowed, check = _CHECKS.get(name, ((), lambda a: {}))
    for key in args:
        if key not in allowed:
            raise BadRequest(f"unknown argument {_show(key)}"
                             + (f" (takes {', '.join(allowed)})" if allowed else
                                " (takes none)"))
    return check(args)


# ---- HTTP --------------------------------------------------------------------------------

class _Handler(BaseHTTPRequestHandler):
    server_version = "xmarks-admin"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    timeout = REQUEST_TIMEOUT_S
    server: _HttpServer

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def _serve(self, method: str) -> None:
        self.close_connection = True  # one request per connection: no idle threads
        path = urlsplit(self.path).path
        owner = self.server.owner
        if path == "/metrics" and method == "GET":
            return self._metrics(owner.metrics)
        # the body is read first, whatever the answer: closing a socket with unread data
        # resets the connection, and the client could lose the answer
        try:
            body, problem = self._read_body(), None
        except (BadRequest, _TooLarge) as exc:
            body, problem = b"", exc
        if not self._authorized(owner.token):
            return self._reply(401, {"error": "unauthorized"})
        route = ROUTES.get(path)
        if route is None:
            return self._reply(404, {"error": f"no such endpoint: {_show(path)}"})
        want, name = route
        if method != want:
            return self._reply(405, {"error": f"{path} takes {want}"}, (("Allow", want),))
        if isinstance(problem, _TooLarge):
            return self._reply(413, {"error": f"the body is larger than {MAX_BODY} bytes"})
        try:
            if problem is not None:
                raise problem
            args = check_args(name, body if method == "POST" else b"")
        except BadRequest as exc:
            return self._reply(400, {"error": str(exc)})
        call = AdminCall(name, args)
        try:
            owner.handle(call)
        except Exception as exc:  # queue full, or the server is stopping
            log.debug("admin call %s not queued: %s", name, exc)
            return self._reply(503, {"error": "server busy"})
        if not call.wait(owner.answer_timeout):
            if call.withdraw() or not call.wait(owner.answer_timeout):
                return self._reply(503, {"error": "server busy"})
        self._reply(call.status, call.body)

    def _authorized(self, token: bytes) -> bool:
        scheme, _, given = self.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(given.strip().encode("utf-8", "replace"), token)

    def _read_body(self) -> bytes:
        """The request body (Content-Length bytes); _TooLarge past MAX_BODY (read and
        dropped up to DISCARD_LIMIT), BadRequest for a body we cannot frame."""
        if "Transfer-Encoding" in self.headers:
            raise BadRequest("chunked bodies are not supported: send Content-Length")
        text = self.headers.get("Content-Length")
        if text is None:
            return b""
        if not text.strip().isdigit():
            raise BadRequest("Content-Length must be a whole number")
        length = int(text)
        if length > MAX_BODY:
            if length <= DISCARD_LIMIT:
                while length > 0:
                    chunk = self.rfile.read(min(length, 65536))
                    if not chunk:
                        break
                    length -= len(chunk)
            raise _TooLarge
        return self.rfile.read(length)

    def _metrics(self, metrics: Callable[[], tuple[bytes, str]] | None) -> None:
        if metrics is None:
            return self._reply(404, {"error": "metrics are not available"})
        try:
            body, content_type = metrics()
        except Exception as exc:  # a scrape must never take the API down
            log.exception("metrics failed")
            return self._reply(500, {"error": f"metrics failed: {type(exc).__name__}"})
        self._send(200, body, content_type)

    def _reply(self, status: int, obj: dict[str, Any], headers=()) -> None:
        try:
            data = json.dumps(obj, allow_nan=False).encode("utf-8") + b"\n"
        except ValueError:  # a NaN slipped into an answer: say so rather than send bad JSON
            log.exception("admin answer is not JSON")
            status, data = 500, b'{"error": "internal error: bad number in answer"}\n'
        self._send(status, data, JSON_TYPE, headers)

    def _send(self, status: int, data: bytes, content_type: str, headers=()) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def send_error(self, code: int, message: str | None = None,
                   explain: str | None = None) -> None:
        """http.server's own errors (a malformed request line, 501...) as JSON too."""
        self.close_connection = True
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "error"
        self._reply(code, {"error": message or phrase})

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        log.debug("admin %s %s", self.address_string(), format % args)


class _TooLarge(Exception):
    pass


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 16

    def __init__(self, address: tuple[str, int], owner: AdminServer) -> None:
        self.owner = owner
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(address, _Handler)

    def process_request(self, request, client_address) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except Exception:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request, client_address) -> None:
        log.debug("admin connection from %s failed", client_address[0], exc_info=True)


class AdminServer:
    """The admin API on (host, port) (port 0: any free port), bound on construction
    (AdminBindError if it cannot be) and served on a daemon thread after start().

    token: the bearer token (str); handle: takes each checked AdminCall and queues it for
    the tick thread (raising refuses it with 503); metrics: returns (body, content type)
    for GET /metrics, called on the HTTP thread (None: 404).
    """

    def __init__(self, host: str, port: int, token: str,
                 handle: Callable[[AdminCall], None],
                 metrics: Callable[[], tuple[bytes, str]] | None = None, *,
                 answer_timeout: float = ANSWER_TIMEOUT_S) -> None:
        if not token:
            raise ValueError("the admin token must not be empty")
        self.token = token.encode("utf-8")
        self.handle = handle
        self.metrics = metrics
        self.answer_timeout = answer_timeout
        try:
            self._httpd = _HttpServer((host, port), self)
        except OSError as exc:
            raise AdminBindError(f"cannot bind the admin API on {host}:{port}: "
                                 f"{exc.strerror or exc} (set admin_port, or "
                                 f"admin_enabled = false)") from None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        """Serve on a daemon thread (returns at once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._httpd.serve_forever,
                                            kwargs={"poll_interval": 0.1},
                                            name="xmarks-admin", daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Stop serving and release the port."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()
