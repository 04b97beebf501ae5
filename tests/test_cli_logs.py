"""Structured logs (cli/logs.py) and the server's notable events (tick/server.py,
tick/overrun_log.py): JSON lines parse and carry their fields, text stays as it was, and
overrun warnings are rate limited (times stepped by hand)."""

from __future__ import annotations

import io
import json
import logging
import re
import time
from types import SimpleNamespace

import numpy as np
import pytest

from cli.logs import JsonFormatter, setup_logging
from net.events import PlayerJoined, PlayerLeft
from sim import schema as S
from tick.overrun_log import EVERY_NS, OverrunLimiter, log_overrun, overrun_fields
from tick.timings import COLUMNS, FIRST_PHASE, PHASES

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
SEC = 1_000_000_000


@pytest.fixture
def json_log():
    """A logger writing JSON lines to a buffer; yields (logger, lines())."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("xmarks.test_cli_logs")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, lambda: [json.loads(line) for line in out.getvalue().splitlines()]
    logger.removeHandler(handler)


@pytest.fixture
def bare_root():
    """A function that takes pytest's handlers off the root logger (setup_logging, like
    logging.basicConfig, configures a root without handlers only); call it in the test
    body, as pytest adds them per phase. Restored afterwards."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    yield root.handlers.clear
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


# ---- the JSON formatter -------------------------------------------------------------

def test_json_line_has_the_fixed_fields_and_the_extras(json_log):
    log, lines = json_log
    log.info("claim: %s dug treasure #%d", "ada", 7,
             extra={"event": "claim", "slot": 3, "value": 2.5, "ok": True, "none": None,
                    "tags": ("a", 1), "nested": {"k": [1, 2]}})
    [line] = lines()
    assert TS.match(line["ts"]), line["ts"]
    assert line == {"ts": line["ts"], "level": "INFO", "logger": "xmarks.test_cli_logs",
                    "msg": "claim: ada dug treasure #7", "event": "claim", "slot": 3,
                    "value": 2.5, "ok": True, "none": None, "tags": ["a", 1],
                    "nested": {"k": [1, 2]}}


def test_a_plain_record_leaks_no_logging_internals(json_log):
    log, lines = json_log
    log.warning("just words")
    assert set(lines()[0]) == {"ts", "level", "logger", "msg"}


def test_values_json_cannot_hold_become_text_and_never_raise(json_log):
    log, lines = json_log

    class Odd:
        def __str__(self) -> str:
            return "odd!"

    class Broken:
        def __str__(self) -> str:
            raise RuntimeError("no")
    log.info("x", extra={"i64": np.int64(5), "f32": np.float32(0.5), "nan": float("nan"),
                         "inf": float("-inf"), "odd": Odd(), "broken": Broken(),
                         "arr": np.arange(3), "bytes": b"\x00\xff", "key": {1: "one"}})
    [line] = lines()
    assert line["i64"] == 5 and isinstance(line["i64"], int)
    assert line["f32"] == 0.5
    assert line["nan"] == "nan" and line["inf"] == "-inf"
    assert line["odd"] == "odd!"
    assert line["broken"] == "<unprintable Broken>"
    assert line["arr"] == "[0 1 2]"
    assert line["bytes"] == "b'\\x00\\xff'"
    assert line["key"] == {"1": "one"}


def test_fixed_fields_win_over_extras_and_exceptions_are_kept(json_log):
    log, lines = json_log
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed %s", "here", extra={"level": "fake", "ts": "fake"})
    [line] = lines()
    assert line["level"] == "ERROR" and TS.match(line["ts"])
    assert line["msg"] == "failed here"
    assert "Traceback" in line["exc"] and "ValueError: boom" in line["exc"]


def test_ts_is_utc_with_milliseconds():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", (), None)
    record.created = 1_700_000_000.1234
    assert json.loads(JsonFormatter().format(record))["ts"] == "2023-11-14T22:13:20.123Z"


def test_bad_format_arguments_still_give_a_line():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%d players", ("many",), None)
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"].startswith("%d players")


# ---- setup_logging ------------------------------------------------------------------

def test_setup_logging_json_on_stderr(bare_root, capsys):
    bare_root()
    setup_logging("info", "json")
    logging.getLogger("xmarks.server").info("serving", extra={"event": "start", "port": 7})
    logging.getLogger("xmarks.server").debug("hidden at info")
    err = capsys.readouterr().err
    [line] = [json.loads(text) for text in err.splitlines()]
    assert (line["msg"], line["event"], line["port"], line["logger"]) == (
        "serving", "start", 7, "xmarks.server")


def test_setup_logging_text_is_as_before(bare_root, capsys):
    bare_root()
    setup_logging("debug", "text")
    logging.getLogger("xmarks.server").debug("join: ada", extra={"event": "join"})
    err = capsys.readouterr().err
    assert re.fullmatch(r"\d\d:\d\d:\d\d DEBUG join: ada\n", err), err


def test_setup_logging_rejects_an_unknown_format(bare_root):
    with pytest.raises(ValueError, match="log format"):
        setup_logging("info", "yaml")


def test_serve_and_bots_take_log_format():
    from tests.test_cli_ops import xmarks
    for command in ("serve", "bots"):
        code, out, _ = xmarks(command, "--help")
        assert code == 0 and "--log-format [text|json]" in out
    code, _, err = xmarks("serve", "--log-format", "yaml")
    assert code == 2 and err.startswith("xmarks: error:") and "--log-format" in err


# ---- overrun rate limit -------------------------------------------------------------

def test_first_overrun_is_reported_at_once_then_one_line_a_second():
    limit = OverrunLimiter()
    assert limit.note(5 * SEC) == 1
    assert limit.note(5 * SEC + SEC // 2) == 0
    assert limit.note(5 * SEC + SEC - 1) == 0
    assert limit.note(6 * SEC) == 3  # the two held back, and this one
    assert limit.note(6 * SEC + 1) == 0
    assert limit.pending == 1
    assert limit.note(60 * SEC) == 2  # after a quiet minute: at once, with the one held


def test_sustained_overload_gives_about_one_line_a_second_and_counts_them_all():
    limit = OverrunLimiter()
    every = SEC // 1000  # an overrun every ms for 10 s
    counts = [limit.note(i * every) for i in range(10_000)]
    lines = [c for c in counts if c]
    assert len(lines) == 10  # t = 0, 1, ..., 9 s
    assert sum(lines) + limit.pending == 10_000


def test_limiter_every_is_configurable():
    limit = OverrunLimiter(every_ns=10)
    assert [limit.note(t) for t in (0, 5, 10, 11, 25)] == [1, 0, 2, 0, 2]
    assert EVERY_NS == SEC


def timing_row(tick: int, phase_ns: list[int]) -> np.ndarray:
    row = np.zeros(COLUMNS, np.int64)
    row[0] = tick
    row[FIRST_PHASE:FIRST_PHASE + len(PHASES)] = phase_ns
    return row


def test_overrun_line_carries_the_phase_breakdown(json_log):
    log, lines = json_log
    row = timing_row(812, [1_000_000, 2_500_000, 30_000_000, 20_000_000, 1_250_000])
    log_overrun(log, row, 20.0, 4, 17)
    [line] = lines()
    assert line["level"] == "WARNING"
    assert {k: line[k] for k in ("event", "tick", "total_ms", "budget_ms", "drain_ms",
                                 "decode_ms", "step_ms", "encode_ms", "send_ms", "count",
                                 "overruns")} == {
        "event": "overrun", "tick": 812, "total_ms": 54.75, "budget_ms": 50.0,
        "drain_ms": 1.0, "decode_ms": 2.5, "step_ms": 30.0, "encode_ms": 20.0,
        "send_ms": 1.25, "count": 4, "overruns": 17}
    assert line["msg"] == ("overrun: tick 812 took 54.75 ms of 50.00 (drain 1.00 decode 2.50 "
                           "step 30.00 encode 20.00 send 1.25); 4 overruns since the last "
                           "line, 17 in all")
    assert overrun_fields(row, 20.0, 4, 17)["event"] == "overrun"


# ---- the server's events ------------------------------------------------------------

def events_of(caplog) -> list[tuple[int, str, dict]]:
    """(level, event, extra fields) of every xmarks.server record with an event."""
    skip = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime",
                                                                       "taskName"}
    return [(r.levelno, r.event, {k: v for k, v in vars(r).items() if k not in skip})
            for r in caplog.records if r.name == "xmarks.server" and hasattr(r, "event")]


def test_session_events_join_leave_debug_kick_info(caplog):
    from tick.server import GameServer
    events = [PlayerJoined(slot=2, session_id=9, name="ada", address=("10.0.0.5", 4000)),
              PlayerLeft(slot=2, name="ada", reason="kicked"),
              PlayerLeft(slot=3, name="bob", reason="timed_out")]
    with caplog.at_level(logging.DEBUG, logger="xmarks.server"):
        GameServer._on_session_events(None, events)
    got = events_of(caplog)
    assert got == [
        (logging.DEBUG, "join", {"event": "join", "slot": 2, "player": "ada",
                                 "address": "10.0.0.5:4000"}),
        (logging.INFO, "kick", {"event": "kick", "slot": 2, "player": "ada",
                                "reason": "kicked"}),
        (logging.DEBUG, "leave", {"event": "leave", "slot": 3, "player": "bob",
                                  "reason": "timed_out"}),
    ]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="xmarks.server"):
        GameServer._on_session_events(None, events)
    assert [e[1] for e in events_of(caplog)] == ["kick"]


def test_world_events_claim_hunt_end_ranks_hunt_start(caplog):
    from tick.server import GameServer
    events = np.zeros((8, S.EVENT_FIELDS), np.int64)
    events[0, [S.EV_KIND, S.EV_A, S.EV_C, S.EV_D]] = (S.EVENT_CLAIM, 1, 5, 3)
    events[1, [S.EV_KIND, S.EV_A, S.EV_B]] = (S.EVENT_HUNT_END, 4, 2)
    events[2, [S.EV_KIND, S.EV_A, S.EV_B, S.EV_D]] = (S.EVENT_RANK, 0, 1, 9)
    events[3, [S.EV_KIND, S.EV_A, S.EV_B, S.EV_D]] = (S.EVENT_RANK, 1, 0, 4)
    pi = np.zeros((max(S.P_SCORE + 1, 8), 4), np.int32)
    pi[S.P_SCORE, 1] = 9
    fake = SimpleNamespace(
        world=SimpleNamespace(events=events, event_count=4, pi=pi,
                              kr=SimpleNamespace(hunt_ticks=6000)),
        protocol=SimpleNamespace(names=["ada", "bob", "", ""]), tick_rate=20.0)
    with caplog.at_level(logging.INFO, logger="xmarks.server"):
        GameServer._on_world_events(fake)
    got = [(level, fields) for level, _, fields in events_of(caplog)]
    assert got == [
        (logging.INFO, {"event": "claim", "slot": 1, "player": "bob", "treasure": 5,
                        "value": 3, "score": 9}),
        (logging.INFO, {"event": "hunt_end", "hunt": 4, "ranked": 2}),
        (logging.INFO, {"event": "rank", "rank": 1, "slot": 1, "player": "bob", "score": 9}),
        (logging.INFO, {"event": "rank", "rank": 2, "slot": 0, "player": "ada", "score": 4}),
        (logging.INFO, {"event": "hunt_start", "hunt": 5, "duration_s": 300.0}),
    ]
    texts = [r.getMessage() for r in caplog.records if r.name == "xmarks.server"]
    assert texts[0] == "claim: bob dug treasure #5 worth 3 (score 9)"  # text as before
    assert texts[1] == "hunt 4 over: 2 ranked"


def test_a_real_server_logs_start_and_rate_limited_overruns(caplog, monkeypatch):
    """Every tick of a 0.3 s run reported as an overrun: one warning line (the first, at
    once), not one per tick; the start line carries its fields."""
    import tick.server as server_module
    from net.udp import UdpEndpoint
    from sim.rules import GameRules
    from tick.config import ServerConfig
    from tick.rates import TickRates

    rules = GameRules(world_width=256.0, world_height=256.0, max_players=8, treasure_count=8,
                      cell_size=64.0, seed=3)
    config = ServerConfig(rules=rules, rates=TickRates(tick_rate=50.0, status_every=0))
    server = server_module.GameServer(config, endpoint=UdpEndpoint("127.0.0.1", 0),
                                      key=bytes(32))
    address = "%s:%d" % server.address
    real = server_module.next_deadline
    monkeypatch.setattr(server_module, "next_deadline",
                        lambda deadline, done, period: (real(deadline, done, period)[0], True))
    try:
        for _ in range(2):  # compile outside the timed run
            server.run_tick()
        with caplog.at_level(logging.INFO, logger="xmarks.server"):
            began = time.monotonic()
            server.run(0.3)
            took = time.monotonic() - began
    finally:
        server.close()
    got = events_of(caplog)
    start = [fields for _, event, fields in got if event == "start"]
    assert start and start[0]["address"] == address
    assert start[0]["tick_rate"] == 50.0 and start[0]["max_players"] == 8
    overruns = [(level, fields) for level, event, fields in got if event == "overrun"]
    assert server.timings.overruns >= 3  # the run had several ticks, all "overran"
    # one line at the first overrun, then at most one a second (1 for a run under 1 s)
    assert 1 <= len(overruns) <= 1 + int(took)
    level, fields = overruns[0]
    assert level == logging.WARNING and fields["count"] == 1 and fields["overruns"] == 1
    assert fields["budget_ms"] == 20.0
    assert set(fields) >= {f"{p}_ms" for p in PHASES} | {"tick", "total_ms"}
