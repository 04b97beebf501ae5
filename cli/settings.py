"""Fill a ServerConfig from defaults, a TOML file, XMARKS_* variables and flags (lowest to
highest precedence). Every mistake becomes one SettingsError naming the setting."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from typing import Any

from net.limits import NetLimits
from sim.rules import GameRules
from tick.config import ServerConfig
from tick.rates import TickRates


class SettingsError(ValueError):
    """A setting could not be read or is invalid; the message names it."""


#: TOML sections and the settings dataclass each fills. "server" holds host and port.
SECTIONS = {"game": GameRules, "net": NetLimits, "tick": TickRates}
SERVER_KEYS = ("host", "port")


def _fields(cls) -> dict[str, Any]:
    return {f.name: f.type for f in dataclasses.fields(cls)}


def _section_of(key: str) -> str:
    if key in SERVER_KEYS:
        return "server"
    for section, cls in SECTIONS.items():
        if key in _fields(cls):
            return section
    raise SettingsError(f"unknown setting {key!r}")


def _coerce(key: str, value: Any, default: Any) -> Any:
    """Convert `value` to the type of `default` (strings come from the environment)."""
    try:
        if isinstance(default, bool):
            raise TypeError
        if isinstance(default, int):
            if isinstance(value, str):
                return int(value, 0)
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
                return tuple(int(v, 0) for v in value.split(","))
            if not isinstance(value, list):
                raise TypeError
            return tuple(value)
        if isinstance(default, str):
            if not isinstance(value, str):
                raise TypeError
            return value
    except (TypeError, ValueError):
        kind = type(default).__name__ if not isinstance(default, tuple) else "list of integers"
        raise SettingsError(f"{key} must be a {kind}, got {value!r}") from None
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
        if not name.startswith("XMARKS_"):
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
    if path:
        merged.update(read_toml(path))
    merged.update(read_env(os.environ if environ is None else environ))
    merged.update({k: v for k, v in (flags or {}).items() if v is not None})
    base = ServerConfig()
    parts: dict[str, dict[str, Any]] = {"server": {}, **{s: {} for s in SECTIONS}}
    for key, value in merged.items():
        section = _section_of(key)
        default = getattr(base, key) if section == "server" else getattr(
            getattr(base, {"game": "rules", "net": "limits", "tick": "rates"}[section]), key)
        parts[section][key] = _coerce(key, value, default)
    config = ServerConfig(
        rules=GameRules(**parts["game"]), limits=NetLimits(**parts["net"]),
        rates=TickRates(**parts["tick"]), **parts["server"])
    try:
        config.validate()
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    return config
