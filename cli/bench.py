"""`xmarks bench`: parse the options, run profiling.bench, print the table or the JSON."""

from __future__ import annotations

import json
import os
import shlex
import sys

import click


def _progress(quiet: bool):
    def say(message: str) -> None:
        if not quiet:
            click.echo(f"bench: {message}", err=True)
    return say


def _check_writable(path: str) -> None:
    """A usage error unless a file can be created at `path` (a directory that exists and
    is writable; not a directory itself)."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise click.UsageError(f"--record-timings: {path} is a directory")
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise click.UsageError(f"--record-timings: cannot write {path} (no writable "
                               f"directory {folder})")


def _command_line() -> str:
    """The command as typed, for the report (`xmarks bench ...`)."""
    argv = sys.argv[1:]
    if argv and argv[0] == "bench":
        argv = argv[1:]
    return "xmarks bench " + " ".join(shlex.quote(a) for a in argv)


@click.command()
@click.option("--players", type=int, default=None, help="Bots, one player each (1..65535).")
@click.option("--tick-rate", type=float, default=None, help="Server ticks per second (default 20).")
@click.option("--snapshot-rate", type=float, default=None,
              help="Snapshots per second to each client; divides the tick rate (default: every tick).")
@click.option("--duration", type=float, default=None,
              help="Seconds measured, after the warm-up (default 10).")
@click.option("--warmup", type=float, default=None,
              help="Seconds before measuring (default: the connect ramp + 3 s).")
@click.option("--visible", type=float, default=None,
              help="Other players in view of each player on average; sizes the world (default 32).")
@click.option("--io", type=click.Choice(["auto", "batched", "portable"]), default=None,
              help="UDP path of the server and the bots (default auto).")
@click.option("--seed", type=int, default=None, help="World and bots seed (default 1).")
@click.option("--connect-rate", type=float, default=None,
              help="New bots per second during the warm-up (default 2000).")
@click.option("--encode-threads", type=int, default=None,
              help="The server encodes snapshots on this many threads (default 1); above 1 "
                   "the server is not pinned to one core.")
@click.option("--ledger", type=click.Choice(["sqlite", "memory", "none"]), default=None,
              help="The server's ledger backend (default sqlite, as deployed); memory or "
                   "none show what the SQLite writer costs.")
@click.option("--scenario", default=None, metavar="NAME",
              help="Values from profiling/scenarios.toml; the flags given override them.")
@click.option("--list-scenarios", is_flag=True, help="Print the scenarios and exit.")
@click.option("--pin/--no-pin", default=True, show_default=True,
              help="Pin the server and the bots to different cores.")
@click.option("--probe-repeats", type=int, default=5, show_default=True,
              help="Repeats of the kernel floor probe (the median is reported).")
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object on stdout.")
@click.option("--quiet", is_flag=True, help="No progress lines on stderr.")
@click.option("--record-timings", type=click.Path(dir_okay=False), default=None,
              metavar="FILE", help="Record every tick of the measured server (its whole "
              "run) to FILE for `xmarks profile FILE`.")
def bench(players, tick_rate, snapshot_rate, duration, warmup, visible, io, seed,
          connect_rate, encode_threads, ledger, scenario, list_scenarios, pin, probe_repeats,
          as_json, quiet, record_timings) -> None:
    """Benchmark a server under a bot horde: two processes on 127.0.0.1, one report.

    Starts `xmarks serve` and the bots (each pinned to its own core), lets the bots connect
    and warm up, measures --duration seconds on both sides, then times the kernel's floor
    for the same datagrams (a raw batched send+recv probe) and prints a table, or one JSON
    object with --json. The world is sized so each player sees about --visible others.

    Targets (profiling/scenarios.toml) are reported, not enforced: exit code 0 when the
    run completed, 1 when the server or the bots failed, 2 for a usage error.
    profiling/README.md explains every figure.

    \b
    Examples:
      xmarks bench --players 1000 --tick-rate 20 --duration 10
      xmarks bench --players 5000 --tick-rate 20 --duration 10 --json
      xmarks bench --scenario 10k-20hz
      xmarks bench --scenario ci --json
      xmarks bench --list-scenarios
    """
    from profiling.bench import BenchError, run_bench
    from profiling.bench_report import format_report
    from profiling.bench_spec import BenchUsageError, load_scenarios, make_spec

    if list_scenarios:
        try:
            _, scenarios = load_scenarios()
        except BenchUsageError as exc:
            raise click.UsageError(str(exc)) from None
        for name, sc in scenarios.items():
            click.echo(f"{name:<20} {sc.get('description', '')}")
        return
    flags = {"players": players, "tick_rate": tick_rate, "snapshot_rate": snapshot_rate,
             "duration": duration, "warmup": warmup, "visible": visible, "io": io,
             "seed": seed, "connect_rate": connect_rate, "encode_threads": encode_threads,
             "ledger": ledger}
    try:
        spec = make_spec(scenario, flags, pin=pin, probe_repeats=probe_repeats)
    except BenchUsageError as exc:
        raise click.UsageError(str(exc)) from None
    if record_timings:  # fail now, not after the server's start
        _check_writable(record_timings)
    command = _command_line()
    try:
        report = run_bench(spec, progress=_progress(quiet), command=command,
                           record_timings=record_timings)
    except BenchUsageError as exc:
        raise click.UsageError(str(exc)) from None
    except BenchError as exc:
        if as_json:
            click.echo(json.dumps({"error": str(exc), "command": command}))
        raise click.ClickException(f"bench failed: {exc}") from None
    if as_json:
        click.echo(json.dumps(report))
        if not quiet:  # the table shows them; with --json they would go unseen
            for warning in report["warnings"]:
                click.echo(f"bench: warning: {warning}", err=True)
    else:
        click.echo(format_report(report))
