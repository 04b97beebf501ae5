"""Reading a small secret file (the token key, the admin token) safely and in one line."""

from __future__ import annotations

import os
import stat

#: Bytes read at most: secret files are tens of bytes; a huge file is refused unread.
READ_LIMIT = 4096


def read_secret_file(path: str | os.PathLike, what: str, error: type[Exception],
                     missing_hint: str = "") -> tuple[bytes, int]:
    """(the first READ_LIMIT bytes, st_mode) of the regular file at `path`; else
    error("<what> '<path>' ...") in one line. The caller judges the mode (who may read it).
    """
    where = os.fspath(path)
    try:
        # O_NONBLOCK: a FIFO at the path must not hang the start; no effect on files.
        fd = os.open(where, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            if not stat.S_ISREG(mode):
                raise error(f"{what} {where!r} is not a regular file")
            return f.read(READ_LIMIT), mode
    except FileNotFoundError:
        raise error(f"{what} {where!r} does not exist{missing_hint}") from None
    except IsADirectoryError:
        raise error(f"{what} {where!r} is a directory") from None
    except OSError as exc:
        raise error(f"cannot read {what} {where!r}: {exc.strerror}") from None
