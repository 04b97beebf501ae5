"""Log output of `xmarks serve` / `xmarks bots`: the familiar text lines, or JSON lines.

JSON lines carry one object per record: ts (ISO-8601 UTC, ms), level, logger, msg (the
formatted message), exc (a traceback, when there is one), and every key the call passed in
`extra=` (the server's notable events pass `event` and its fields). A value JSON cannot
hold is written as its str(); nothing a record carries can make the formatter raise.
"""

from __future__ import annotations

import json
import logging
import math
import sys
from datetime import datetime, timezone
from typing import Any

TEXT_FORMAT = "%(asctime)s %(levelname)-5s %(message)s"
TEXT_DATEFMT = "%H:%M:%S"
LOG_FORMATS = ("text", "json")

#: Attributes every LogRecord has: whatever else a record carries came in `extra=`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message", "asctime", "taskName"}
_FIXED = ("ts", "level", "logger", "msg", "exc")


def _plain(value: Any) -> Any:
    """A JSON-safe form of `value`: numbers, strings, bools, None, lists and dicts of them;
    numpy scalars as numbers; non-finite floats and anything else as str()."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item) and getattr(value, "shape", None) == ():
        try:
            return _plain(item())
        except Exception:  # noqa: BLE001 - a broken item() must not lose the line
            pass
    try:
        return str(value)
    except Exception:  # noqa: BLE001
        return f"<unprintable {type(value).__name__}>"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        try:
            msg = record.getMessage()
        except Exception as exc:  # noqa: BLE001 - bad %-args: keep the raw message
            msg = f"{record.msg!s} (unformattable args: {exc})"
        ts = datetime.fromtimestamp(record.created, timezone.utc)
        out: dict[str, Any] = {
            "ts": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "msg": msg,
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in _FIXED:
                out[key] = _plain(value)
        return json.dumps(out, ensure_ascii=False, allow_nan=False)


def setup_logging(level: str, fmt: str = "text") -> None:
    """Root logging to stderr at `level` (debug, info, warning, error) in `fmt`: "text"
    (HH:MM:SS LEVEL message, as always) or "json" (one object per line)."""
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, got {fmt!r}")
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT, TEXT_DATEFMT))
    logging.basicConfig(level=getattr(logging, level.upper()), handlers=[handler])
