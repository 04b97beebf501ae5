"""`xmarks top`: a live dashboard of a running server, redrawn from GET /status.

`render_status` turns one status answer (the admin contract's dict) into a rich renderable
and is pure, so it is tested without a server; the command only fetches and redraws.
"""

from __future__ import annotations

import click
from rich.console import Group, RenderableType
from rich.live import Live
from rich.styled import Styled
from rich.table import Table
from rich.text import Text

from cli.admin_client import (EXIT_CODES_HELP, EXIT_UNREACHABLE, AdminClient, AdminError,
                              connect, printable)
from cli.ops import admin_options, console, format_bytes, format_seconds
from tick.clock import now_ns, sleep_until_ns

PHASE_ORDER = ("drain", "decode", "step", "encode", "send", "total")
#: Bars span 0 .. BAR_SCALE x the tick budget; the budget line sits at 1 / BAR_SCALE of it.
BAR_WIDTH = 30
BAR_SCALE = 1.5
BUDGET_MARK = "│"
LEADERS_SHOWN = 5
DROPS_SHOWN = 6
#: Slower than this, a fetch counts as unreachable; the server itself answers within 2 s.
FETCH_TIMEOUT_S = 3.0


def _cells(ms: float, budget_ms: float) -> int:
    """How many of BAR_WIDTH cells `ms` fills on the 0..BAR_SCALE*budget scale."""
    if budget_ms <= 0:
        return 0
    return max(0, min(BAR_WIDTH, round(ms / (budget_ms * BAR_SCALE) * BAR_WIDTH)))


def phase_bar(p50_ms: float, p99_ms: float, budget_ms: float) -> Text:
    """█ up to p50, ▒ up to p99, the budget line │ at its place, » if p99 is off the scale.
    Green while p99 is under 3/4 of the budget, yellow under it, red at or over it."""
    full, shade = _cells(p50_ms, budget_ms), _cells(p99_ms, budget_ms)
    style = ("green" if p99_ms < 0.75 * budget_ms else "yellow" if p99_ms < budget_ms
             else "red")
    mark = round(BAR_WIDTH / BAR_SCALE)
    bar = Text()
    for i in range(BAR_WIDTH):
        if i == mark:
            bar.append(BUDGET_MARK, style="bold")
        bar.append("█" if i < full else "▒" if i < shade else " ", style=style)
    bar.append("»" if p99_ms > budget_ms * BAR_SCALE else " ", style=style)
    return bar


def hunt_clock(hunt: dict, width: int = 20) -> Text:
    """hunt N ▕████░░░░▏ 2m 31s left of 5m 00s"""
    duration, remaining = hunt["duration_s"], hunt["remaining_s"]
    done = 0 if duration <= 0 else round(min(1.0, max(0.0, 1 - remaining / duration)) * width)
    clock = Text(f"hunt {hunt['id']} ")
    clock.append("▕" + "█" * done + "░" * (width - done) + "▏", style="cyan")
    clock.append(f" {format_seconds(remaining)} left of {format_seconds(duration)}")
    return clock


def _phases(s: dict) -> Table:
    budget = s["budget_ms"]
    table = Table(box=None, pad_edge=False, title_justify="left")
    table.add_column("phase")
    for head in ("p50 ms", "p99 ms", "max ms"):
        table.add_column(head, justify="right")
    table.add_column(Text(f"█ p50 ▒ p99 {BUDGET_MARK} budget {budget:g} ms"), no_wrap=True)
    phases = s["phases"]
    for name in [*(p for p in PHASE_ORDER if p in phases),
                 *(p for p in phases if p not in PHASE_ORDER)]:
        fig = phases[name]
        table.add_row(printable(name), f"{fig['p50_ms']:.2f}", f"{fig['p99_ms']:.2f}",
                      f"{fig['max_ms']:.2f}", phase_bar(fig["p50_ms"], fig["p99_ms"], budget))
    return table


def _traffic(s: dict) -> Table:
    bw = s["bandwidth"]
    table = Table(box=None, pad_edge=False, show_header=True)
    table.add_column("traffic")
    table.add_column("", justify="right")
    table.add_row("players", f"{s['players']} / {s['max_players']}")
    table.add_row("out", f"{format_bytes(bw['bytes_out_per_s'])}/s")
    table.add_row("packets out", f"{bw['packets_out_per_s']:.0f}/s")
    table.add_row("packets in", f"{bw['packets_in_per_s']:.0f}/s")
    table.add_row("sent", format_bytes(s["bytes_out"]))
    table.add_row("claims", str(s["claims"]))
    overruns = Text(str(s["overruns"]), style="red" if s["overruns"] else "")
    table.add_row("overruns", overruns)
    return table


def _drops(s: dict) -> Table:
    table = Table(box=None, pad_edge=False)
    table.add_column("drops")
    table.add_column("", justify="right")
    ranked = sorted(s["drops"].items(), key=lambda kv: (-kv[1], kv[0]))
    for reason, n in ranked[:DROPS_SHOWN]:
        table.add_row(printable(reason), str(n))
    if len(ranked) > DROPS_SHOWN:
        table.add_row(f"{len(ranked) - DROPS_SHOWN} more", str(sum(n for _, n in
                                                                  ranked[DROPS_SHOWN:])))
    if not ranked:
        table.add_row("none", "")
    return table


def _leaders(s: dict) -> Table:
    table = Table(box=None, pad_edge=False)
    table.add_column("#", justify="right")
    table.add_column("leaders")
    table.add_column("score", justify="right")
    for row in s["leaderboard"][:LEADERS_SHOWN]:
        table.add_row(str(row["rank"]), printable(row["name"]), str(row["score"]))
    if not s["leaderboard"]:
        table.add_row("", "-", "")
    return table


def render_status(status: dict | None, where: str, problem: str | None = None,
                  stale_s: float | None = None) -> RenderableType:
    """One frame of `xmarks top` for a GET /status answer (None: never reached yet).

    `problem` (the last fetch's error) shows as an "unreachable" line above the last good
    status, which is shown dimmed with its age `stale_s`.
    """
    parts: list[RenderableType] = []
    head = Text(f"xmarks top  {where}", style="bold")
    if status is not None:
        head.append(f"  tick {status['tick']}  {status['tick_rate']:g} Hz  up "
                    f"{format_seconds(status['uptime_s'])}", style="")
    parts.append(head)
    if problem is not None:
        line = Text(f"unreachable: {printable(problem)}; retrying", style="bold red")
        if stale_s is not None:
            line.append(f" (figures below are {format_seconds(stale_s)} old)", style="red")
        parts.append(line)
    if status is None:
        if problem is None:
            parts.append(Text("waiting for the first status..."))
        return Group(*parts)
    body: list[RenderableType] = [hunt_clock(status["hunt"]), _phases(status)]
    side = Table.grid(padding=(0, 3))
    side.add_row(_traffic(status), _drops(status), _leaders(status))
    body.append(side)
    ledger = status.get("ledger")
    if ledger:
        text = Text(f"ledger {printable(ledger['backend'])}: {ledger['pending']} pending, "
                    f"{ledger['committed']} committed, {ledger['faults']} faults")
        if ledger.get("last_error"):
            text.append(f", last error: {printable(ledger['last_error'])}", style="red")
        body.append(text)
    if problem is not None:  # the last good figures, dimmed under the warning
        return Group(*parts, Styled(Group(*body), "dim"))
    return Group(*parts, *body)


def watch(client: AdminClient, interval: float, live: Live) -> None:
    """Fetch and redraw every `interval` seconds until Ctrl-C; an unreachable server is
    shown and retried; any other failure (e.g. the token rejected) ends it."""
    last: dict | None = None
    last_ok = 0
    step = int(interval * 1e9)
    deadline = now_ns()
    while True:
        problem = stale = None
        try:
            last = client.get("/status").data
            last_ok = now_ns()
        except AdminError as exc:
            if exc.exit_code != EXIT_UNREACHABLE:
                raise
            problem = exc.reason
            stale = (now_ns() - last_ok) / 1e9 if last is not None else None
        live.update(render_status(last, client.where, problem, stale), refresh=True)
        deadline += step
        now = now_ns()
        if deadline < now:  # a slow fetch: start the schedule again rather than hurry
            deadline = now + step
        sleep_until_ns(deadline)


@click.command(epilog=EXIT_CODES_HELP + "\nCtrl-C ends `xmarks top` with exit code 0.")
@admin_options
@click.option("--interval", type=click.FloatRange(min=0.1), default=1.0, show_default=True,
              metavar="SECONDS", help="Seconds between two refreshes.")
@click.option("--once", is_flag=True, help="Print one frame on stdout and exit (scripts).")
def top(admin, admin_token_file, interval, once) -> None:
    """A live dashboard of the running server: tick time per phase (p50/p99) against the
    budget, players, bandwidth, packets, overruns, drops by reason, leaders, hunt clock.
    Keeps retrying while the server is unreachable.

    \b
    Examples:
      xmarks top
      xmarks top --admin 127.0.0.1:7778 --interval 2
      xmarks top --once
    """
    client = connect(admin, admin_token_file, timeout=FETCH_TIMEOUT_S)
    out = console()
    if once:
        out.print(render_status(client.get("/status").data, client.where))
        return
    try:
        with Live(render_status(None, client.where), console=out, auto_refresh=False,
                  transient=False) as live:
            watch(client, interval, live)
    except KeyboardInterrupt:
        pass
