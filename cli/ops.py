"""Operator commands over the admin API: status, players, kick, ban, unban, bans, hunt,
treasures. Each is one request (cli.admin_client); `--json` prints the server's answer
exactly as sent, otherwise a short table or line."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable

import click
from rich.console import Console
from rich.table import Table

from cli.admin_client import (DEFAULT_TOKEN_FILE, EXIT_CODES_HELP, EXIT_REFUSED, AdminError,
                              Answer, connect, printable)
from net.address import ip_to_int

U64_MAX = 2**64 - 1
PIPE_WIDTH = 160
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?[smhd])+|\d+(?:\.\d+)?")
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")


# ---- formatting and parsing (shared with cli.top) ---------------------------------------

def parse_duration(text: str) -> float:
    """'90s', '10m', '2h', '1d', '1h30m' or plain seconds ('300', '2.5') -> seconds > 0;
    ValueError otherwise."""
    t = text.strip().lower()
    if not _DURATION.fullmatch(t):
        raise ValueError(f"{text!r} is not a duration (e.g. 90s, 10m, 2h, 1d)")
    seconds = (float(t) if t[-1].isdigit()
               else sum(float(n) * _UNITS[u] for n, u in _PART.findall(t)))
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"{text!r} is not a duration > 0")
    return seconds


def format_seconds(seconds: float) -> str:
    """A duration the way an operator reads it: 4.2s, 42s, 3m 05s, 2h 07m, 1d 03h."""
    if not math.isfinite(seconds):
        return "-"
    if seconds < 10:
        return f"{max(seconds, 0.0):.1f}s"
    if seconds < 59.5:
        return f"{seconds:.0f}s"
    s = int(round(seconds))
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    if d:
        return f"{d}d {h:02d}h"
    if h:
        return f"{h}h {m:02d}m"
    return f"{m}m {s:02d}s"


def format_bytes(n: float) -> str:
    """Decimal units: 950 B, 12.3 kB, 4.56 MB, 1.20 GB."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            value = n / size
            return f"{value:.1f} {unit}" if value >= 10 else f"{value:.2f} {unit}"
    return f"{n:.0f} B"


def hunt_line(hunt: dict) -> str:
    return (f"hunt {hunt['id']}: {format_seconds(hunt['remaining_s'])} left of "
            f"{format_seconds(hunt['duration_s'])}")


def console() -> Console:
    """stdout, literal text: player names and server messages are never markup. Piped
    output is not cut to 80 columns (rich's default without a terminal): scripts get whole
    tables."""
    out = Console(markup=False, highlight=False, emoji=False)
    if not out.is_terminal and "COLUMNS" not in os.environ:
        out.width = PIPE_WIDTH
    return out


# ---- shared options ---------------------------------------------------------------------

def admin_options(fn: Callable) -> Callable:
    """--admin and --admin-token-file, as every command over the admin API takes them."""
    fn = click.option("--admin-token-file", default=DEFAULT_TOKEN_FILE, show_default=True,
                      metavar="PATH", envvar="XMARKS_ADMIN_TOKEN_FILE",
                      help="The admin token file `xmarks serve` wrote (or "
                           "XMARKS_ADMIN_TOKEN_FILE; XMARKS_ADMIN_TOKEN overrides it).")(fn)
    return click.option("--admin", default=None, metavar="IPV4:PORT",
                        help="The server's admin API (default 127.0.0.1:7778, or "
                             "XMARKS_ADMIN).")(fn)


def json_option(fn: Callable) -> Callable:
    return click.option("--json", "as_json", is_flag=True,
                        help="Print the server's JSON answer exactly as sent.")(fn)


def _command(fn: Callable) -> click.Command:
    return click.command(epilog=EXIT_CODES_HELP)(json_option(admin_options(fn)))


def _emit(answer: Answer, as_json: bool, human: Callable[[dict], None]) -> None:
    if as_json:
        click.echo(answer.text)
    else:
        human(answer.data)


def _target(pairs: dict[str, object]) -> tuple[str, object]:
    """The one given option of `pairs` ({flag: value or None}), else a usage error."""
    given = [(flag, value) for flag, value in pairs.items() if value is not None]
    if len(given) != 1:
        raise click.UsageError(f"give exactly one of {', '.join(pairs)}")
    return given[0]


def _address(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        ip_to_int(text)
    except ValueError:
        raise click.UsageError(f"--address: {printable(text)!r} is not an IPv4 address "
                               f"such as 203.0.113.5") from None
    return text


def _body(flag: str, value: object) -> dict:
    return {flag.lstrip("-").replace("-", "_"): value}


def _slots(slots: list[int]) -> str:
    return ("slot " if len(slots) == 1 else "slots ") + ", ".join(str(s) for s in slots)


# ---- read commands ----------------------------------------------------------------------

@_command
def status(admin, admin_token_file, as_json) -> None:
    """Show the running server: tick, players, hunt clock, tick phases against the budget,
    traffic, drops, leaders.

    \b
    Examples:
      xmarks status
      xmarks status --admin 127.0.0.1:7778 --json | jq .phases.total
    """
    answer = connect(admin, admin_token_file).get("/status")
    _emit(answer, as_json, _print_status)


def _print_status(s: dict) -> None:
    out = console()
    out.print(f"tick {s['tick']} at {s['tick_rate']:g} Hz (snapshots {s['snapshot_rate']:g} Hz),"
              f" up {format_seconds(s['uptime_s'])}")
    out.print(f"players {s['players']} / {s['max_players']} | {hunt_line(s['hunt'])}")
    table = Table(title=None, box=None, pad_edge=False)
    table.add_column(f"tick ms (budget {s['budget_ms']:g})")
    for head in ("p50", "p99", "max"):
        table.add_column(head, justify="right")
    for phase, fig in s["phases"].items():
        table.add_row(printable(phase), f"{fig['p50_ms']:.3f}", f"{fig['p99_ms']:.3f}",
                      f"{fig['max_ms']:.3f}")
    out.print(table)
    bw = s["bandwidth"]
    out.print(f"overruns {s['overruns']} | claims {s['claims']} | packets in {s['packets_in']} "
              f"out {s['packets_out']} | bytes out {format_bytes(s['bytes_out'])}")
    out.print(f"bandwidth out {format_bytes(bw['bytes_out_per_s'])}/s, "
              f"{bw['packets_out_per_s']:.0f} packets/s; in {bw['packets_in_per_s']:.0f} "
              f"packets/s")
    drops = sorted(s["drops"].items(), key=lambda kv: -kv[1])
    out.print("drops " + (", ".join(f"{printable(k)} {v}" for k, v in drops) or "none"))
    ledger = s.get("ledger")
    if ledger:
        error = f", last error: {printable(ledger['last_error'])}" if ledger["last_error"] else ""
        out.print(f"ledger {printable(ledger['backend'])}: {ledger['pending']} pending, "
                  f"{ledger['committed']} committed, {ledger['faults']} faults{error}")
    leaders = "  ".join(f"{r['rank']}. {printable(r['name'])} {r['score']}"
                        for r in s["leaderboard"][:5])
    out.print("leaders " + (leaders or "-"))
    last = s.get("last_hunt")
    if last:
        final = "  ".join(f"{r['rank']}. {printable(r['name'] or '(left)')} {r['score']}"
                          for r in last["results"][:5])
        out.print(f"hunt {last['id']} result " + (final or "-"))


@_command
def players(admin, admin_token_file, as_json) -> None:
    """List the connected players: slot, client id, name, address, score, RTT, idle time.

    \b
    Examples:
      xmarks players
      xmarks players --json | jq '.players[] | select(.rtt_ms > 200)'
    """
    answer = connect(admin, admin_token_file).get("/players")
    _emit(answer, as_json, _print_players)


def _print_players(data: dict) -> None:
    rows = data["players"]
    out = console()
    if not rows:
        out.print("no players connected")
        return
    table = Table(box=None, pad_edge=False)
    for head, right in (("slot", True), ("client id", True), ("name", False),
                        ("address", False), ("score", True), ("rtt ms", True),
                        ("idle", True), ("connected", True)):
        # ids and addresses are copied into kick/ban commands: never cut them short
        table.add_column(head, justify="right" if right else "left",
                         no_wrap=head != "name", min_width=8 if head == "name" else None)
    for p in rows:
        rtt = "-" if p["rtt_ms"] is None else f"{p['rtt_ms']:.1f}"
        table.add_row(str(p["slot"]), str(p["client_id"]), printable(p["name"]),
                      printable(p["address"]), str(p["score"]), rtt,
                      format_seconds(p["idle_s"]), format_seconds(p["connected_s"]))
    out.print(table)
    out.print(f"{len(rows)} player{'s' if len(rows) != 1 else ''}")


@_command
def bans(admin, admin_token_file, as_json) -> None:
    """List the bans in force, with the time each has left.

    \b
    Examples:
      xmarks bans
      xmarks bans --json
    """
    answer = connect(admin, admin_token_file).get("/bans")
    _emit(answer, as_json, _print_bans)


def _print_bans(data: dict) -> None:
    rows = data["bans"]
    out = console()
    if not rows:
        out.print("no bans")
        return
    table = Table(box=None, pad_edge=False)
    for head in ("kind", "value", "expires in", "reason"):
        table.add_column(head, justify="right" if head == "expires in" else "left")
    for b in rows:
        table.add_row(printable(b["kind"]), printable(b["value"]),
                      format_seconds(b["expires_in_s"]), printable(b.get("reason") or ""))
    out.print(table)


# ---- commands that change the game ------------------------------------------------------

@_command
@click.option("--slot", type=click.IntRange(min=0), default=None, metavar="N",
              help="The player in this session slot (see `xmarks players`).")
@click.option("--client-id", type=click.IntRange(0, U64_MAX), default=None, metavar="N",
              help="The player with this client id (the connect token's).")
@click.option("--address", default=None, metavar="IPV4",
              help="Every player connected from this IPv4 address.")
def kick(admin, admin_token_file, as_json, slot, client_id, address) -> None:
    """Disconnect players now (they are told "kicked" and may connect again; see `ban`).
    Give exactly one of --slot, --client-id, --address.

    \b
    Examples:
      xmarks kick --slot 3
      xmarks kick --client-id 42
      xmarks kick --address 203.0.113.5
    """
    flag, value = _target({"--slot": slot, "--client-id": client_id,
                           "--address": _address(address)})
    answer = connect(admin, admin_token_file).post("/kick", _body(flag, value))
    _emit(answer, as_json, lambda d: click.echo(f"kicked {_slots(d['kicked'])}"))


@_command
@click.option("--client-id", type=click.IntRange(0, U64_MAX), default=None, metavar="N",
              help="Ban this client id (the connect token's).")
@click.option("--address", default=None, metavar="IPV4", help="Ban this IPv4 address.")
@click.option("--for", "duration", default=None, metavar="DURATION",
              help="How long: 90s, 10m, 2h, 1d, 1h30m or plain seconds (default: the "
                   "server's, 1h).")
@click.option("--reason", default=None, help="Why, kept with the ban (shown by `xmarks bans`).")
def ban(admin, admin_token_file, as_json, client_id, address, duration, reason) -> None:
    """Ban a client id or an IPv4 address for a while: matching players are kicked and
    their connect requests are dropped (drop reason "banned") until the ban expires.
    Give exactly one of --client-id, --address.

    \b
    Examples:
      xmarks ban --client-id 42 --for 2h --reason "speed hack"
      xmarks ban --address 203.0.113.5 --for 1d
    """
    flag, value = _target({"--client-id": client_id, "--address": _address(address)})
    body = _body(flag, value)
    if duration is not None:
        try:
            body["seconds"] = parse_duration(duration)
        except ValueError as exc:
            raise click.UsageError(f"--for: {printable(exc)}") from None
    if reason is not None:
        body["reason"] = reason
    answer = connect(admin, admin_token_file).post("/ban", body)

    def human(d: dict) -> None:
        b = d["ban"]
        kicked = f"; kicked {_slots(d['kicked'])}" if d["kicked"] else ""
        click.echo(f"banned {printable(b['kind'])} {printable(b['value'])} for "
                   f"{format_seconds(b['expires_in_s'])}{kicked}")
    _emit(answer, as_json, human)


@_command
@click.option("--client-id", type=click.IntRange(0, U64_MAX), default=None, metavar="N",
              help="Lift the ban on this client id.")
@click.option("--address", default=None, metavar="IPV4",
              help="Lift the ban on this IPv4 address.")
def unban(admin, admin_token_file, as_json, client_id, address) -> None:
    """Lift a ban now. Give exactly one of --client-id, --address.

    \b
    Examples:
      xmarks unban --client-id 42
      xmarks unban --address 203.0.113.5
    """
    flag, value = _target({"--client-id": client_id, "--address": _address(address)})
    body = _body(flag, value)
    answer = connect(admin, admin_token_file).post("/unban", body)
    [(kind, _)] = body.items()
    if not answer.data.get("removed"):
        raise AdminError(f"no ban on {kind} {value}", EXIT_REFUSED)
    _emit(answer, as_json, lambda d: click.echo(f"lifted the ban on {kind} {value}"))


@_command
@click.argument("action", type=click.Choice(["end", "start", "duration"]))
@click.argument("seconds", required=False, metavar="[SECONDS]")
def hunt(admin, admin_token_file, as_json, action, seconds) -> None:
    """Control the hunt: `end` ranks and ends it now (the next one starts at once), `start`
    starts the next one now (treasures reburied), `duration SECONDS` sets the length of this
    hunt and the following ones (a length already past ends this hunt at the next tick).
    SECONDS also takes 90s, 10m, 2h.

    \b
    Examples:
      xmarks hunt end
      xmarks hunt start
      xmarks hunt duration 10m
    """
    body: dict | None = None
    if action == "duration":
        if seconds is None:
            raise click.UsageError("hunt duration: give SECONDS (e.g. 600 or 10m)")
        try:
            body = {"seconds": parse_duration(seconds)}
        except ValueError as exc:
            raise click.UsageError(f"SECONDS: {printable(exc)}") from None
    elif seconds is not None:
        raise click.UsageError(f"hunt {action} takes no SECONDS")
    answer = connect(admin, admin_token_file).post(f"/hunt/{action}", body)

    def human(d: dict) -> None:
        if action == "end":
            click.echo(f"ended hunt {d['ended']}; {hunt_line(d['hunt'])}")
            for r in d.get("results", []):
                click.echo(f"  {r['rank']}. {printable(r['name'] or '(left)')} {r['score']}")
        elif action == "start":
            click.echo(f"started {hunt_line(d['hunt'])}")
        else:
            click.echo(hunt_line(d["hunt"]))
    _emit(answer, as_json, human)


@_command
@click.argument("action", type=click.Choice(["info", "spawn", "clear"]), default="info")
@click.argument("count", required=False, metavar="[N]")
def treasures(admin, admin_token_file, as_json, action, count) -> None:
    """Show the treasures (`info`, the default), bury N more now (`spawn N`, into slots not
    buried), or remove every buried one (`clear`; they return with `spawn` or the next hunt).

    \b
    Examples:
      xmarks treasures
      xmarks treasures spawn 50
      xmarks treasures clear
    """
    if action == "spawn":
        if count is None:
            raise click.UsageError("treasures spawn: give N (1..65535)")
        try:
            n = int(count)
        except ValueError:
            n = 0
        if not 1 <= n <= 65535:
            raise click.UsageError(f"N: {printable(count)!r} is not a whole number in 1..65535")
        answer = connect(admin, admin_token_file).post("/treasures/spawn", {"count": n})
        _emit(answer, as_json, lambda d: click.echo(
            f"spawned {d['spawned']} treasure{'s' if d['spawned'] != 1 else ''} "
            f"({d['buried']} buried now)"))
        return
    if count is not None:
        raise click.UsageError(f"treasures {action} takes no N")
    client = connect(admin, admin_token_file)
    if action == "clear":
        answer = client.post("/treasures/clear")
        _emit(answer, as_json, lambda d: click.echo(f"cleared {d['cleared']} treasures"))
    else:
        _emit(client.get("/treasures"), as_json, _print_treasures)


def _print_treasures(d: dict) -> None:
    by_value = sorted(d["by_value"].items(), key=lambda kv: int(kv[0]) if str(kv[0]).isdigit()
                      else 0)
    values = "  ".join(f"{printable(v)}: {n}" for v, n in by_value) or "-"
    click.echo(f"capacity {d['capacity']} | buried {d['buried']} | claimed {d['claimed']}")
    click.echo(f"buried by value  {values}")

