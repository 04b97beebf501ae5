"""The server's token key on disk: 32 bytes as 64 hex characters (then an optional
newline), in a file only its owner may read.

Anyone who reads the key can mint connect tokens for any client id, and anyone who can
replace it can lock every client out, so the file is created 0600 and a world-writable
one is refused. A group/other-readable one is allowed (e.g. a container secret mounted
0444) but logged as a warning.
"""

from __future__ import annotations

import logging
import os
import stat

from net.secret_file import READ_LIMIT, read_secret_file
from net.token import TOKEN_KEY_BYTES

log = logging.getLogger("xmarks")

KEY_HEX_CHARS = 2 * TOKEN_KEY_BYTES  # 64
_HEX = frozenset(b"0123456789abcdefABCDEF")


class KeyFileError(ValueError):
    """The key file (or key variable) is missing or unusable. One line naming it."""


def load_key(path: str | os.PathLike) -> bytes:
    """Read the 32-byte key from `path`; KeyFileError naming the path and the problem."""
    where = os.fspath(path)
    data, mode = read_secret_file(where, "key file", KeyFileError)
    if os.name == "posix":
        if mode & stat.S_IWOTH:
            raise KeyFileError(f"key file {where!r} is world-writable; "
                               f"run: chmod 600 {where}")
        if mode & (stat.S_IRGRP | stat.S_IROTH):
            log.warning("key file %r is readable by group or others (mode %04o); anyone "
                        "who reads it can mint tokens: chmod 600 %s", where,
                        stat.S_IMODE(mode), where)
    return _parse_hex(data, f"key file {where!r}")


def create_key_file(path: str | os.PathLike) -> bytes:
    """Write a new random key to `path` (mode 0600); KeyFileError if the file exists.

    O_EXCL makes creation atomic: two servers starting together cannot both write a
    key and end up with different ones, and an existing key is never overwritten. (A
    reader racing the write may still see a short file for a moment and fail.)
    """
    where = os.fspath(path)
    key = os.urandom(TOKEN_KEY_BYTES)
    try:
        fd = os.open(where, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(f"key file {where!r} already exists (not overwritten)") from None
    except OSError as exc:
        raise KeyFileError(f"cannot create key file {where!r}: {exc.strerror}") from None
    try:
        if os.name == "posix":
            os.fchmod(fd, 0o600)  # the umask could have taken the owner's bits too
        os.write(fd, key.hex().encode("ascii") + b"\n")
        os.fsync(fd)
    except OSError as exc:
        os.close(fd)
        os.unlink(where)  # no half-written key left for the next start to trip on
        raise KeyFileError(f"cannot write key file {where!r}: {exc.strerror}") from None
    os.close(fd)
    return key


def ensure_key_file(path: str | os.PathLike) -> tuple[bytes, bool]:
    """(key, created): load the key at `path`, or create it if there is no file."""
    try:
        return load_key(path), False
    except KeyFileError:
        if os.path.lexists(path):
            raise
    try:
        return create_key_file(path), True
    except KeyFileError:
        if os.path.lexists(path):  # another process created it in between: use theirs
            return load_key(path), False
        raise


def key_from_env(value: str, name: str = "XMARKS_KEY") -> bytes:
    """The 32-byte key from a variable holding 64 hex characters; KeyFileError naming
    the variable (never its value) otherwise."""
    return _parse_hex(value.strip().encode("utf-8", "replace"), name)


def _parse_hex(data: bytes, where: str) -> bytes:
    """64 hex characters, optionally followed by one newline -> 32 bytes."""
    if data.endswith(b"\r\n"):
        data = data[:-2]
    elif data.endswith(b"\n"):
        data = data[:-1]
    if len(data) != KEY_HEX_CHARS:
        size = f"{len(data)}+" if len(data) >= READ_LIMIT else str(len(data))
        raise KeyFileError(f"{where} must hold {KEY_HEX_CHARS} hex characters "
                           f"(a {TOKEN_KEY_BYTES}-byte key), found {size}")
    if not _HEX.issuperset(data):
        raise KeyFileError(f"{where} must hold {KEY_HEX_CHARS} hex characters, "
                           f"found other characters")
    return bytes.fromhex(data.decode("ascii"))
