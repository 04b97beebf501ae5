"""`xmarks replay`: re-run a recorded hunt from its input log and check the state hash."""

from __future__ import annotations

import json
import sys

import click


@click.command()
@click.argument("log_path", metavar="LOG", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def replay(log_path: str, as_json: bool) -> None:
    """Re-run the hunt recorded in LOG (`xmarks serve --input-log LOG`) and print the state
    hash at its end, with the live server's.

    Exit code 0 when the hashes are equal (or the log was cut short by a crash, so there is
    no live hash to compare: the replayed hash is still printed), 1 when they differ, 2 for
    a file that is not a usable input log.

    \b
    Examples:
      xmarks serve --bots 8 --duration 30 --input-log hunt.xmil
      xmarks replay hunt.xmil
    """
    from store.input_log import InputLogError
    from tick.replay import replay as run_replay

    try:
        result = run_replay(log_path)
    except InputLogError as exc:
        raise click.UsageError(str(exc)) from None
    report = {"log": log_path, "ticks": result.ticks, "final_tick": result.final_tick,
              "hash": result.hash, "live_hash": result.recorded_hash, "match": result.matches,
              "joins": result.joins, "leaves": result.leaves, "commands": result.commands}
    if as_json:
        click.echo(json.dumps(report))
    else:
        click.echo(f"replayed {result.ticks} ticks to tick {result.final_tick} "
                   f"({result.joins} joins, {result.leaves} leaves, {result.commands} commands)")
        click.echo(f"state hash  {result.hash}")
        if result.recorded_hash is None:
            click.echo("live hash   (none: the log was cut short, e.g. by a crash)")
        else:
            click.echo(f"live hash   {result.recorded_hash}  "
                       f"{'MATCH' if result.matches else 'DIFFERENT'}")
    if result.matches is False:
        sys.exit(1)
