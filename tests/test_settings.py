"""cli/settings.py: defaults < TOML < XMARKS_* environment < flags, and one error per mistake."""

from __future__ import annotations

import pytest

from cli.settings import SettingsError, build_config, read_env, read_toml
from net.limits import NetLimits
from sim.rules import GameRules
from tick.config import ServerConfig
from tick.rates import TickRates
from net.security import SecuritySettings


def toml(tmp_path, text: str) -> str:
    path = tmp_path / "xmarks.toml"
    path.write_text(text)
    return str(path)


FULL = """
[server]
host = "0.0.0.0"
port = 9000

[tick]
tick_rate = 30
status_every = 0

[game]
world_width = 1024.0
max_players = 64
seed = 42
value_weights = [1, 2, 3]

[net]
session_timeout = 7.5
max_visible_players = 20

[security]
key_file = "/etc/xmarks/key"
public_address = "203.0.113.5:9000"
connect_rate_per_address = 5
max_sessions_per_address = 4
"""


def test_defaults_alone():
    assert build_config(None, {}, {}) == ServerConfig()
    assert build_config(None, {}, None) == ServerConfig()
    assert build_config(None, {}, {"port": None, "seed": None}) == ServerConfig()


def test_toml_fills_every_section(tmp_path):
    config = build_config(toml(tmp_path, FULL), {}, {})
    assert (config.host, config.port) == ("0.0.0.0", 9000)
    assert config.rates == TickRates(tick_rate=30.0, status_every=0.0)
    assert isinstance(config.rates.tick_rate, float)  # an int in TOML becomes the float
    assert config.rules == GameRules(world_width=1024.0, max_players=64, seed=42,
                                     value_weights=(1, 2, 3))
    assert config.limits == NetLimits(session_timeout=7.5, max_visible_players=20)
    assert config.security == SecuritySettings(
        key_file="/etc/xmarks/key", public_address="203.0.113.5:9000",
        connect_rate_per_address=5.0, max_sessions_per_address=4)


def test_host_0000_needs_a_public_address():
    with pytest.raises(SettingsError, match="public_address"):
        build_config(None, {"XMARKS_HOST": "0.0.0.0"}, {})


@pytest.mark.parametrize("key,value,match", [
    ("public_address", "example.com:7777", "public_address"),
    ("public_address", "1.2.3.4", "public_address"),
    ("connect_rate", "-1", "connect_rate"),
    ("packet_rate", "nan", "packet_rate"),
    ("max_sessions_per_address", "70000", "max_sessions_per_address"),
    ("challenge_timeout", "0", "challenge_timeout"),
    ("key_file", "", "key_file")])
def test_bad_security_settings_name_the_setting(key, value, match):
    with pytest.raises(SettingsError, match=match) as err:
        build_config(None, {f"XMARKS_{key.upper()}": value}, {})
    assert f"XMARKS_{key.upper()}" in str(err.value)


def test_precedence_defaults_toml_env_flags(tmp_path):
    path = toml(tmp_path, "[server]\nport = 1111\n[game]\nseed = 1\nmax_players = 50\n"
                          "[tick]\ntick_rate = 10\n")
    environ = {"XMARKS_PORT": "2222", "XMARKS_SEED": "2", "XMARKS_SESSION_TIMEOUT": "9"}
    flags = {"port": 3333, "tick_rate": None, "host": None, "seed": None}
    config = build_config(path, environ, flags)
    assert config.port == 3333  # flag > env > toml
    assert config.rules.seed == 2  # env > toml (the flag is unset)
    assert config.rules.max_players == 50  # toml > default
    assert config.rates.tick_rate == 10.0  # toml; the None flag does not override it
    assert config.limits.session_timeout == 9.0  # env > default
    assert config.host == "127.0.0.1"  # default
    assert config.rules.treasure_count == GameRules().treasure_count


def test_falsy_flags_still_override():
    config = build_config(None, {"XMARKS_PORT": "5000", "XMARKS_SEED": "5"},
                          {"port": 0, "seed": 0})
    assert config.port == 0 and config.rules.seed == 0


def test_env_strings_are_converted():
    config = build_config(None, {"XMARKS_TICK_RATE": "60", "XMARKS_SEED": "0x10",
                                 "XMARKS_VALUE_WEIGHTS": "5, 3,1",
                                 "XMARKS_HOST": "0.0.0.0", "XMARKS_RX_BATCH": "64",
                                 "XMARKS_PUBLIC_ADDRESS": "198.51.100.7:7777"}, {})
    assert config.rates.tick_rate == 60.0
    assert config.rules.seed == 16
    assert config.rules.value_weights == (5, 3, 1)
    assert config.host == "0.0.0.0"
    assert config.limits.rx_batch == 64


def test_other_environment_variables_are_ignored():
    environ = {"PATH": "/bin", "XMARKSPORT": "1", "xmarks_port": "1", "MY_XMARKS_SEED": "3"}
    assert build_config(None, environ, {}) == ServerConfig()


def test_reads_os_environ_when_none_is_given(monkeypatch):
    monkeypatch.setenv("XMARKS_TREASURE_COUNT", "512")
    assert build_config(None, None, {}).rules.treasure_count == 512


def test_read_env_and_read_toml_flatten(tmp_path):
    assert read_env({"XMARKS_TICK_RATE": "30", "HOME": "/root"}) == {"tick_rate": "30"}
    flat = read_toml(toml(tmp_path, FULL))
    assert flat["port"] == 9000 and flat["seed"] == 42 and flat["value_weights"] == [1, 2, 3]


def test_empty_toml_is_all_defaults(tmp_path):
    assert build_config(toml(tmp_path, ""), {}, {}) == ServerConfig()


# ---- mistakes -----------------------------------------------------------------------

def one_line_error(excinfo, *words):
    message = str(excinfo.value)
    assert "\n" not in message and message
    for word in words:
        assert word in message, (word, message)


@pytest.mark.parametrize("text,words", [
    ("[game\n", ["not valid TOML"]),
    ("seed = = 1\n", ["not valid TOML"]),
    ("[game]\nseed = 1\n[game]\nseed = 2\n", ["not valid TOML"]),
    ("[bogus]\nx = 1\n", ["[bogus]"]),
    ("[game]\nnope = 1\n", ["game.nope"]),
    ("[game]\nport = 1\n", ["game.port"]),
    ("[server]\nseed = 1\n", ["server.seed"]),
    ("[net]\ntick_rate = 1\n", ["net.tick_rate"]),
    ("seed = 1\n", ["seed"]),
    ("game = [1, 2]\n", ["game"]),
    ("[server]\nport = \"http\"\n", ["port", "http"]),
    ("[server]\nport = 7777.0\n", ["port"]),
    ("[server]\nhost = 127\n", ["host"]),
    ("[tick]\ntick_rate = \"fast\"\n", ["tick_rate"]),
    ("[tick]\ntick_rate = true\n", ["tick_rate"]),
    ("[tick]\ntick_rate = 0\n", ["tick_rate"]),
    ("[tick]\ntick_rate = inf\n", ["tick_rate"]),
    ("[tick]\ntick_rate = nan\n", ["tick_rate"]),
    ("[game]\nvalue_weights = 5\n", ["value_weights"]),
    ("[game]\nvalue_weights = []\n", ["value_weights"]),
    ("[game]\nvalue_weights = [1.5]\n", ["value_weights"]),
    ("[game]\nmax_players = 0\n", ["max_players"]),
    ("[game]\nmax_players = 65536\n", ["max_players"]),
    ("[game]\nseed = -1\n", ["seed"]),
    ("[game]\nworld_width = 70000.0\n", ["world_width"]),
    ("[net]\nsession_timeout = 0\n", ["session_timeout"]),
    ("[net]\nrx_batch = -1\n", ["rx_batch"]),
    ("[net]\nmax_visible_players = 100\n", ["max_visible_players"]),
    ("[server]\nport = 65536\n", ["port"]),
])
def test_bad_toml(tmp_path, text, words):
    with pytest.raises(SettingsError) as excinfo:
        build_config(toml(tmp_path, text), {}, {})
    one_line_error(excinfo, *words)


def test_missing_file(tmp_path):
    with pytest.raises(SettingsError) as excinfo:
        build_config(str(tmp_path / "nope.toml"), {}, {})
    one_line_error(excinfo, "nope.toml")


def test_unreadable_path(tmp_path):
    with pytest.raises(SettingsError) as excinfo:
        build_config(str(tmp_path), {}, {})
    one_line_error(excinfo, str(tmp_path))


@pytest.mark.parametrize("environ,words", [
    ({"XMARKS_NOPE": "1"}, ["XMARKS_NOPE"]),
    ({"XMARKS_": "1"}, ["XMARKS_"]),
    ({"XMARKS_GAME": "1"}, ["XMARKS_GAME"]),
    ({"XMARKS_TICK_RATE": "fast"}, ["tick_rate", "fast"]),
    ({"XMARKS_TICK_RATE": ""}, ["tick_rate"]),
    ({"XMARKS_TICK_RATE": "0"}, ["tick_rate"]),
    ({"XMARKS_PORT": "7777.5"}, ["port"]),
    ({"XMARKS_PORT": "-5"}, ["port"]),
    ({"XMARKS_SEED": "seven"}, ["seed"]),
    ({"XMARKS_VALUE_WEIGHTS": "1,,2"}, ["value_weights"]),
    ({"XMARKS_VALUE_WEIGHTS": "0,0"}, ["value_weights"]),
    ({"XMARKS_MAX_VISIBLE_TREASURES": "33"}, ["max_visible_treasures"]),
])
def test_bad_environment(environ, words):
    with pytest.raises(SettingsError) as excinfo:
        build_config(None, environ, {})
    one_line_error(excinfo, *words)


@pytest.mark.parametrize("flags,words", [
    ({"port": 70000}, ["port"]),
    ({"tick_rate": 0.0}, ["tick_rate"]),
    ({"seed": -1}, ["seed"]),
    ({"nope": 1}, ["nope"]),
])
def test_bad_flags(flags, words):
    with pytest.raises(SettingsError) as excinfo:
        build_config(None, {}, flags)
    one_line_error(excinfo, *words)


def test_an_unknown_environment_variable_is_an_error_even_if_flags_are_fine():
    with pytest.raises(SettingsError):
        build_config(None, {"XMARKS_PROT": "9000"}, {"port": 9000})


def test_settings_error_is_a_value_error():
    assert issubclass(SettingsError, ValueError)
