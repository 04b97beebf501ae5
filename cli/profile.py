"""`xmarks profile FILE`: report on a tick timing recording (`serve --record-timings`)."""

from __future__ import annotations

import importlib
import json

import click

PLOT_HINT = "pip install 'xmarks[plot]'"


@click.command()
@click.argument("file", metavar="FILE")
@click.option("--top", type=click.IntRange(min=0), default=10, show_default=True,
              help="How many of the slowest ticks to list.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@click.option("--plot", "plot_path", default=None, metavar="OUT.png",
              help="Also draw tick time per tick against the budget, and per-phase "
                   "histograms, into a PNG (needs matplotlib: the `plot` extra).")
def profile(file, top, as_json, plot_path) -> None:
    """Percentiles per phase, the worst ticks, over-budget streaks, GC inside ticks.

    FILE is a recording written by `xmarks serve --record-timings FILE` (or `xmarks bench
    --record-timings FILE`). A recording cut short by a crash is read up to its last whole
    record. profiling/README.md specifies the format and defines every figure.

    \b
    Examples:
      xmarks serve --duration 60 --bots 8 --record-timings run.xmt
      xmarks profile run.xmt
      xmarks profile run.xmt --top 20 --plot run.png
      xmarks profile run.xmt --json
    """
    if plot_path is not None:
        try:  # fail before the work, with the hint
            importlib.import_module("matplotlib")
        except ImportError:
            raise click.UsageError(f"--plot needs matplotlib: {PLOT_HINT}") from None
    from profiling.profile_report import analyse, format_profile, plot_profile
    from profiling.recording import RecordingError, read_recording

    try:
        recording = read_recording(file)
    except RecordingError as exc:
        raise click.UsageError(str(exc)) from None
    report = analyse(recording, top=top)
    if plot_path is not None:
        try:
            plot_profile(recording, report, plot_path)
        except OSError as exc:
            raise click.UsageError(f"--plot: cannot write {plot_path}: "
                                   f"{exc.strerror or exc}") from None
        report["plot"] = plot_path
    if as_json:
        click.echo(json.dumps(report))
    else:
        click.echo(format_profile(report))
        if plot_path is not None:
            click.echo(f"plot written to {plot_path}")
