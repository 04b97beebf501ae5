"""A small client of the admin API (contract v1): one HTTP request, one JSON answer, and every
failure as one line carrying the exit code the operator commands promise.

Exit codes: 1 the server refused (401 token rejected, 404, 405, 409, 413, other 4xx);
2 usage (a bad flag or token file, or a 400 answer: an argument the server calls bad);
3 the admin API is unreachable, timed out, or failed (5xx, e.g. 503 server busy).
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import click

from net.address import parse_endpoint
from net.admin_token import TOKEN_ENV, AdminTokenError, read_admin_token

DEFAULT_ADMIN = "127.0.0.1:7778"
DEFAULT_TOKEN_FILE = "xmarks.admin-token"
ADMIN_ENV = "XMARKS_ADMIN"
#: The server answers within 2 s (or 503 server busy): 5 s covers a slow loopback too.
TIMEOUT_S = 5.0

EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE = 1, 2, 3

EXIT_CODES_HELP = ("\b\nExit codes: 0 done;\n"
                   "1 refused by the server (e.g. no such player) or admin token rejected;\n"
                   "2 usage error (a bad flag, or an argument the server calls bad);\n"
                   "3 admin API unreachable, timed out or failing (5xx).")


class AdminError(click.ClickException):
    """A failed admin request or setup: one line (`xmarks: error: ...`) and its exit code."""

    def __init__(self, message: str, exit_code: int, reason: str | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.reason = message if reason is None else reason  # the short why, for `top`


def printable(text: Any) -> str:
    """`text` with control characters replaced: remote strings never drive the terminal."""
    return "".join(ch if ch.isprintable() else "\ufffd" for ch in str(text))


def admin_endpoint(text: str | None, environ: Mapping[str, str]) -> tuple[str, int]:
    """--admin IPV4:PORT, else $XMARKS_ADMIN, else 127.0.0.1:7778; usage error naming the
    source of a bad value."""
    source = "--admin"
    if text is None:
        text, source = environ.get(ADMIN_ENV), ADMIN_ENV
        if not text:
            text, source = DEFAULT_ADMIN, "--admin"
    try:
        return parse_endpoint(text.strip())
    except ValueError:
        raise AdminError(f"{source}: {printable(text)!r} is not IPV4:PORT "
                         f"(e.g. {DEFAULT_ADMIN})", EXIT_USAGE) from None


def read_token(path: str, environ: Mapping[str, str]) -> str:
    """The admin token (net.admin_token: $XMARKS_ADMIN_TOKEN wins over the file), or a
    usage error in one line."""
    try:
        return read_admin_token(path, environ)
    except AdminTokenError as exc:
        raise AdminError(printable(exc), EXIT_USAGE) from None


@dataclass(frozen=True)
class Answer:
    """A 2xx answer: the body exactly as sent, and its JSON."""
    status: int
    body: bytes
    data: Any

    @property
    def text(self) -> str:
        return self.body.decode("utf-8").rstrip("\r\n")


class AdminClient:
    """Requests to one admin API. Every failure raises AdminError (one line + exit code)."""

    def __init__(self, host: str, port: int, token: str, timeout: float = TIMEOUT_S) -> None:
        self.host, self.port = host, port
        self.token = token
        self.timeout = timeout
        # the admin API is local or tunnelled: an http_proxy variable must not reroute it
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def get(self, path: str) -> Answer:
        return self.request("GET", path)

    def post(self, path: str, body: Mapping[str, Any] | None = None) -> Answer:
        return self.request("POST", path, {} if body is None else body)

    def request(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Answer:
        data = None if body is None else json.dumps(body).encode("utf-8")
        req = urllib.request.Request(f"http://{self.where}{path}", data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json; charset=utf-8")
        try:
            with self._opener.open(req, timeout=self.timeout) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            try:
                raw = exc.read()
            except (OSError, http.client.HTTPException):
                raw = b""
            raise self._refusal(exc.code, raw, path) from None
        except urllib.error.URLError as exc:
            raise self._unreachable(exc.reason) from None
        except (OSError, http.client.HTTPException) as exc:  # timeouts, resets mid-answer
            raise self._unreachable(exc) from None
        try:
            parsed = json.loads(raw.decode("utf-8"))
        except ValueError:
            raise AdminError(f"the admin API at {self.where} answered {path} with something "
                             f"that is not JSON", EXIT_UNREACHABLE) from None
        return Answer(status, raw, parsed)

    def _unreachable(self, reason: Any) -> AdminError:
        if isinstance(reason, (socket.timeout, TimeoutError)):
            why = "timed out"
        elif isinstance(reason, OSError) and reason.strerror:
            why = reason.strerror
        else:
            why = str(reason) or type(reason).__name__
        why = printable(why)
        return AdminError(f"cannot reach the admin API at {self.where}: {why}",
                          EXIT_UNREACHABLE, why)

    def _refusal(self, code: int, raw: bytes, path: str) -> AdminError:
        try:
            said = json.loads(raw)["error"]
        except (ValueError, KeyError, TypeError):
            said = http.client.responses.get(code, "error")
        said = printable(said)
        if code == 401:
            return AdminError(f"admin token rejected (HTTP 401): check --admin-token-file "
                              f"or {TOKEN_ENV}", EXIT_REFUSED)
        if code == 400:
            return AdminError(f"{said} (HTTP 400)", EXIT_USAGE)
        if code >= 500:
            return AdminError(f"the admin API at {self.where} failed on {path}: {said} "
                              f"(HTTP {code})", EXIT_UNREACHABLE, f"{said} (HTTP {code})")
        return AdminError(f"{said} (HTTP {code})", EXIT_REFUSED)


def connect(admin: str | None, token_file: str, timeout: float = TIMEOUT_S,
            environ: Mapping[str, str] | None = None) -> AdminClient:
    """The client for --admin / --admin-token-file (and their environment variables)."""
    environ = os.environ if environ is None else environ
    host, port = admin_endpoint(admin, environ)
    return AdminClient(host, port, read_token(token_file, environ), timeout)
