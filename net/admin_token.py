"""The admin API's bearer token on disk: 32 random bytes as 43 url-safe base64 characters
(then a newline), in a file only its owner may read or write.

Whoever holds the token can kick, ban and end hunts, so the file is created 0600 and one
that group or others may read or write is refused (unlike the token key, which a
container may mount 0444: the admin token is ours alone). XMARKS_ADMIN_TOKEN, when set,
wins over the file, for the server and the operator tools alike.
"""

from __future__ import annotations

import base64
import os
import stat
import tempfile
from collections.abc import Mapping

from net.secret_file import read_secret_file

TOKEN_ENV = "XMARKS_ADMIN_TOKEN"
TOKEN_BYTES = 32
MIN_TOKEN_CHARS = 16
MAX_TOKEN_CHARS = 512


class AdminTokenError(ValueError):
    """The admin token (file or variable) is missing or unusable. One line naming it."""


def new_admin_token() -> str:
    """32 random bytes as 43 url-safe base64 characters (no padding)."""
    return base64.urlsafe_b64encode(os.urandom(TOKEN_BYTES)).rstrip(b"=").decode("ascii")


def check_token(text: str, where: str) -> str:
    """The token in `text` (surrounding whitespace removed); AdminTokenError naming `where`
    (never the value) unless it is 16..512 visible ASCII characters."""
    token = text.strip()
    if not MIN_TOKEN_CHARS <= len(token) <= MAX_TOKEN_CHARS:
        raise AdminTokenError(f"{where} must hold an admin token of {MIN_TOKEN_CHARS}.."
                              f"{MAX_TOKEN_CHARS} characters, found {len(token)}")
    if not all("!" <= c <= "~" for c in token):
        raise AdminTokenError(f"{where} must hold visible ASCII characters only "
                              f"(it goes in an HTTP header)")
    return token


def load_admin_token(path: str | os.PathLike) -> str:
    """The token in the file at `path`; AdminTokenError naming the path and the problem."""
    where = os.fspath(path)
    data, mode = read_secret_file(where, "admin token file", AdminTokenError,
                                  f" (`xmarks serve` creates it; or set {TOKEN_ENV})")
    if os.name == "posix" and mode & 0o077:
        raise AdminTokenError(f"admin token file {where!r} is open to group or others "
                              f"(mode {stat.S_IMODE(mode):04o}); run: chmod 600 {where}")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise AdminTokenError(f"admin token file {where!r} must hold visible ASCII "
                              f"characters only") from None
    return check_token(text, f"admin token file {where!r}")


def create_admin_token(path: str | os.PathLike) -> str:
    """Write a new token to `path` (mode 0600); AdminTokenError if that fails or the file
    exists (it is never overwritten).

    The token is written and synced under a temporary name in the same directory, then
    hard-linked to `path`: the link appears whole or not at all, so a reader racing the
    creation never sees a short file, and of two servers starting together one wins.
    """
    where = os.fspath(path)
    token = new_admin_token()
    directory = os.path.dirname(os.path.abspath(where))
    try:
        fd, temp = tempfile.mkstemp(prefix=".xmarks-admin-token.", dir=directory)
    except OSError as exc:
        raise AdminTokenError(f"cannot create admin token file {where!r}: "
                              f"{exc.strerror}") from None
    try:
        try:
            if os.name == "posix":
                os.fchmod(fd, 0o600)  # mkstemp's mode already; the umask cannot widen it
            os.write(fd, token.encode("ascii") + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(temp, where)
    except FileExistsError:
        raise AdminTokenError(f"admin token file {where!r} already exists "
                              f"(not overwritten)") from None
    except OSError as exc:
        raise AdminTokenError(f"cannot create admin token file {where!r}: "
                              f"{exc.strerror}") from None
    finally:
        os.unlink(temp)
    return token


def ensure_admin_token(path: str | os.PathLike,
                       environ: Mapping[str, str] | None = None) -> tuple[str, bool]:
    """(token, created) for the server: XMARKS_ADMIN_TOKEN from `environ` if set (no file
    is touched then); else the file at `path`, created if there is none."""
    if environ is not None and TOKEN_ENV in environ:
        return check_token(environ[TOKEN_ENV], TOKEN_ENV), False
    if not os.path.lexists(path):
        try:
            return create_admin_token(path), True
        except AdminTokenError:
            if not os.path.lexists(path):
                raise
            # another process created it in between: use theirs (whole, see create)
    return load_admin_token(path), False


def read_admin_token(path: str | os.PathLike, environ: Mapping[str, str]) -> str:
    """The token for an operator tool: XMARKS_ADMIN_TOKEN from `environ` if set, else the
    file at `path`. AdminTokenError (one line) if neither gives a usable token."""
    if TOKEN_ENV in environ:
        return check_token(environ[TOKEN_ENV], TOKEN_ENV)
    return load_admin_token(path)
