"""Fill a ServerConfig from defaults, a TOML file, XMARKS_* variables and flags (lowest to
highest precedence). Every mistake becomes one SettingsError naming the setting."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from typing import Any

from net.admin_http import AdminSettings
from store.settings import StoreSettings
from net.admin_token import TOKEN_ENV
from net.limits import NetLimits
from net.security import SecuritySettings
from sim.rules import GameRules
from tick.config import ServerConfig
from tick.rates import TickRates


class SettingsError(ValueError):
    """A setting could not be read or is invalid; the message names it."""


#: TOML sections and the settings dataclass each fills. "server" holds host and port.
SECTIONS = {"game": GameRules, "net": NetLimits, "tick": TickRates,
            "security": SecuritySettings, "admin": AdminSettings, "store": StoreSettings}
#: XMARKS_ variables that are not settings (secrets read where they are used).
# XMARKS_ variables that are not server settings: the admin token, and where the operator
# commands find the admin API (cli.admin_client; XMARKS_ADMIN_TOKEN_FILE is the server's
# admin_token_file setting, which the commands read too)
NOT_SETTINGS = frozenset({TOKEN_ENV, "XMARKS_ADMIN"})
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")
SERVER_KEYS = ("host", "port", "io")


def _fields(cls) -> dict[str, Any]:
    return {f.name: f.type for f in dataclasses.fields(cls)}


def _section_of(key: str) -> str:
    if key in SERVER_KEYS:
        return "server"
    for section, cls in SECTIONS.items():
        if key in _fields(cls):
            return section
    raise SettingsError(f"unknown setting {key!r}")


def _parse_int(text: str) -> int:
    """Decimal (leading zeros allowed, as in 08080), or 0x / 0o / 0b prefixed."""
    text = text.strip()
    if text.lower().lstrip("+-").startswith(("0x", "0o", "0b")):
        return int(text, 0)
    return int(text, 10)


def _coerce(key: str, value: Any, default: Any, from_env: bool) -> Any:
    """Convert `value` to the type of `default`. Only environment values are parsed from
    strings: in TOML a number written as a string is a mistake."""
    try:
        if isinstance(default, bool):
            if isinstance(value, str) and from_env and value.strip().lower() in _TRUE + _FALSE:
                return value.strip().lower() in _TRUE
            if not isinstance(value, bool):
                raise TypeError
            return value
        if isinstance(value, str) and not from_env and not isinstance(default, str):
            raise TypeError
        if isinstance(default, int):
            if isinstance(value, str):
                return _parse_int(value)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError
            return value
        if isinstance(default, float):
            if isinstance(value, str):
                return float(value)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError
            return float(value)
        if isinstance(default, tuple):
            if isinstance(value, str):
                return tuple(_parse_int(v) for v in value.split(","))
            if not isinstance(value, list):
                raise TypeError
            return tuple(value)
        if isinstance(default, str):
            if not isinstance(value, str):
                raise TypeError
            return value
    except (TypeError, ValueError):
        kind = {int: "an integer", float: "a number", str: "a string",
                bool: "true or false"}.get(
            type(default), "a list of integers")
        raise SettingsError(f"{key} must be {kind}, got {value!r}") from None
    raise SettingsError(f"{key} cannot be set")


def read_toml(path: str) -> dict[str, Any]:
    """Flatten a config file into {setting: value}; unknown sections or keys are errors."""
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except OSError as exc:
        raise SettingsError(f"cannot read config {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"config {path} is not valid TOML: {exc}") from None
    flat: dict[str, Any] = {}
    for section, table in doc.items():
        if section not in SECTIONS and section != "server":
            raise SettingsError(f"config {path}: unknown section [{section}]")
        if not isinstance(table, dict):
            raise SettingsError(f"config {path}: [{section}] must be a table")
        for key, value in table.items():
            if _section_of_safe(key) != section:
                raise SettingsError(f"config {path}: unknown setting {section}.{key}")
            flat[key] = value
    return flat


def _section_of_safe(key: str) -> str | None:
    try:
        return _section_of(key)
    except SettingsError:
        return None


def read_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """XMARKS_<SETTING> variables, e.g. XMARKS_TICK_RATE=30; unknown names are errors."""
    flat = {}
    for name, value in environ.items():
        if not name.startswith("XMARKS_") or name in NOT_SETTINGS:
            continue
        key = name[len("XMARKS_"):].lower()
        if _section_of_safe(key) is None:
            raise SettingsError(f"unknown environment variable {name}")
        flat[key] = value
    return flat


def build_config(path: str | None = None, environ: Mapping[str, str] | None = None,
                 flags: Mapping[str, Any] | None = None) -> ServerConfig:
    """The validated ServerConfig from file < environment < flags (None flags are unset)."""
    merged: dict[str, Any] = {}
    source: dict[str, str] = {}  # where each set value came from, for error messages
    if path:
        merged.update(read_toml(path))
        source.update({k: f"config {path}" for k in merged})
    env = read_env(os.environ if environ is None else environ)
    merged.update(env)
    source.update({k: f"XMARKS_{k.upper()}" for k in env})
    given = {k: v for k, v in (flags or {}).items() if v is not None}
    merged.update(given)
    source.update({k: "--" + k.replace("_", "-") for k in given})
    base = ServerConfig()
    parts: dict[str, dict[str, Any]] = {"server": {}, **{s: {} for s in SECTIONS}}
    for key, value in merged.items():
        section = _section_of(key)
        default = getattr(base, key) if section == "server" else getattr(
            getattr(base, {"game": "rules", "net": "limits", "tick": "rates",
                           "security": "security", "admin": "admin",
                           "store": "store"}[section]), key)
        from_env = key in env and env[key] is value
        try:
            parts[section][key] = _coerce(key, value, default, from_env)
        except SettingsError as exc:
            raise SettingsError(f"{source[key]}: {exc}") from None
    config = ServerConfig(
        rules=GameRules(**parts["game"]), limits=NetLimits(**parts["net"]),
        rates=TickRates(**parts["tick"]), security=SecuritySettings(**parts["security"]),
        admin=AdminSettings(**parts["admin"]), store=StoreSettings(**parts["store"]),
        **parts["server"])
    try:
        config.validate()
    except ValueError as exc:
        # every validate() message starts with the setting (or "a/b" for a pair of them)
        names = str(exc).split(" ", 1)[0].split("/")
        where = "".join(f"{source[n]}: " for n in names[:1] if n in source) or "".join(
            f"{source[n]}: " for n in names[1:] if n in source)
        raise SettingsError(f"{where}{exc}") from None
    return config
