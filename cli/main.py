"""The `xmarks` command line. Every mistake is one line on stderr and a non-zero exit."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys

import click

from cli.bench import bench
from cli.logs import LOG_FORMATS, setup_logging
from cli.ops import ban, bans, hunt, kick, players, status, treasures, unban
from cli.profile import profile
from cli.proxy import proxy
from cli.replay import replay
from cli.settings import SettingsError, build_config
from cli.token import token
from cli.top import top
from net.address import parse_endpoint
from net.admin_http import AdminBindError
from net.admin_token import TOKEN_ENV, AdminTokenError, ensure_admin_token
from net.keys import KeyFileError, ensure_key_file, load_key

log = logging.getLogger("xmarks")

EXIT_USAGE = 2


def _parse_endpoint(text: str) -> tuple[str, int]:
    """IPv4:PORT -> (host, port) as a click error; the server speaks IPv4 only."""
    try:
        return parse_endpoint(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="xmarks", message="xmarks %(version)s")
def cli() -> None:
    """xmarks: a real-time treasure-hunt game server over UDP.

    \b
    Examples:
      xmarks serve --bots 8                 # a live world with 8 hunting bots
      xmarks serve --port 7777 --duration 60
      xmarks bots --server 127.0.0.1:7777 --count 50 --duration 15 --json
      xmarks bench --players 1000 --tick-rate 20 --duration 10
      xmarks status                         # a running server, over its admin API
      xmarks top                            # ... as a live dashboard
      xmarks kick --slot 3; xmarks ban --address 203.0.113.5 --for 2h
    """


@cli.command()
@click.option("--host", default=None, help="Address to bind (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="UDP port (default 7777).")
@click.option("--tick-rate", type=float, default=None, help="Ticks per second, a whole number 1..240 (default 20).")
@click.option("--snapshot-rate", type=float, default=None,
              help="Snapshots per second to each client; must divide the tick rate (default: one per tick).")
@click.option("--io", type=click.Choice(["auto", "batched", "portable"]), default=None,
              help="UDP path: batched recvmmsg/sendmmsg (Linux) or portable socket calls (default auto).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="TOML file with [server], [tick], [game], [net], [security], [admin] and "
                   "[store] tables (README, Configuration).")
@click.option("--seed", type=int, default=None, help="World seed (same seed + inputs = same world).")
@click.option("--key-file", default=None, metavar="PATH",
              help="Token key file, created (mode 0600) if missing (default xmarks.key).")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop by itself after this many seconds (exit 0).")
@click.option("--bots", "bot_count", type=click.IntRange(min=0), default=0,
              help="Also start this many hunting bots against the server (a live demo).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              default="info", show_default=True,
              help="info: claims, hunts, kicks, status lines; debug adds joins and leaves.")
@click.option("--log-format", type=click.Choice(LOG_FORMATS), default="text",
              show_default=True, help="json: one JSON object per line (ts, level, logger, "
                                      "msg, event and its fields).")
@click.option("--input-log", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Record what the simulation consumes each tick to FILE, for `xmarks "
                   "replay FILE` (the same world, bit for bit).")
@click.option("--record-timings", type=click.Path(dir_okay=False), default=None,
              metavar="FILE", help="Write every tick's phase times and every garbage "
              "collection to FILE (read it with `xmarks profile FILE`).")
# Hidden: the measurement window `xmarks bench` reads (tick/stats.py, profiling/README.md).
@click.option("--stats-json", type=click.Path(dir_okay=False), default=None, hidden=True,
              help="Write the figures of a measurement window to this file as JSON.")
@click.option("--stats-after", type=click.FloatRange(min=0), default=0.0, hidden=True,
              help="Open the window this many seconds after the first tick.")
@click.option("--stats-for", type=click.FloatRange(min=0, min_open=True), default=None,
              hidden=True, help="Close the window this long after it opened (default: at exit).")
@click.option("--stats-signal", is_flag=True, hidden=True,
              help="Open the window on SIGUSR1 instead of at --stats-after.")
@click.option("--ready-file", type=click.Path(dir_okay=False), default=None, hidden=True,
              help="Write {host, port, pid, t_ns} here once warmed up, just before tick 0.")
def serve(host, port, tick_rate, snapshot_rate, io, config_path, seed, key_file, duration,
          bot_count, log_level, log_format, stats_json, stats_after, stats_for, stats_signal,
          ready_file, input_log, record_timings) -> None:
    """Serve one world over UDP until Ctrl-C, SIGTERM or --duration.

    Settings come from defaults < --config FILE < XMARKS_* environment variables < flags.
    Any setting of the config file has a variable: XMARKS_TICK_RATE=30, XMARKS_SEED=7.

    \b
    Examples:
      xmarks serve
      xmarks serve --bots 8
      xmarks serve --config world.toml --port 9000 --duration 300
      XMARKS_TREASURE_COUNT=512 xmarks serve
    """
    setup_logging(log_level, log_format)
    try:
        config = build_config(config_path, None, {"host": host, "port": port,
                                                  "tick_rate": tick_rate, "seed": seed,
                                                  "snapshot_rate": snapshot_rate, "io": io,
                                                  "key_file": key_file,
                                                  "input_log": input_log})
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None
    key_path = config.security.key_file

    def load_key_file() -> bytes:  # after the bind: a taken port leaves no key file behind
        try:
            key, created = ensure_key_file(key_path)
        except KeyFileError as exc:
            raise click.UsageError(str(exc)) from None
        if created:
            log.info("created token key file %s (mode 0600; `xmarks token` and `xmarks bots` "
                     "read it: keep it secret)", key_path)
        return key

    admin_created: list[bool] = []

    def load_admin_token() -> str:  # after the UDP bind, as the key
        path = config.admin.admin_token_file
        try:
            token, created = ensure_admin_token(path, os.environ)
        except AdminTokenError as exc:
            raise click.UsageError(str(exc)) from None
        admin_created.append(created)
        return token

    from store.ledger import LedgerError
    from tick.ledger_keeper import StoreStartError
    from tick.server import GameServer, install_signal_handlers  # numba loads here, not for --help

    try:
        server = GameServer(config, key=load_key_file, admin_token=load_admin_token)
    except AdminBindError as exc:  # a taken admin port: one line, exit 1, like the UDP port
        raise click.ClickException(str(exc)) from None
    except (StoreStartError, LedgerError) as exc:  # the ledger / checkpoint on disk
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot bind {config.host}:{config.port}: {exc.strerror}") from None
    except ValueError as exc:  # e.g. --io batched where recvmmsg/sendmmsg cannot load
        raise click.UsageError(f"--io: {exc}") from None
    install_signal_handlers(server)  # a Ctrl-C during warm-up still ends in a clean exit 0
    if server.admin is not None:
        if TOKEN_ENV in os.environ:
            log.info("admin API token from %s", TOKEN_ENV)
        else:
            log.info("%s admin token file %s (mode 0600; `xmarks status` and the other "
                     "operator commands read it)", "created" if admin_created[-1] else "using",
                     config.admin.admin_token_file)
    recorder = None
    if record_timings:  # opened before warm-up: a path it cannot write fails at once
        from tick.timings import TimingRecorder
        try:
            recorder = TimingRecorder(record_timings, server.tick_rate)
        except OSError as exc:
            server.close()
            raise click.UsageError(f"--record-timings: cannot write {record_timings}: "
                                   f"{exc.strerror or exc}") from None
    log.info("warming up kernels (first run compiles them, later runs load numba's cache)...")
    server.warm_up()
    stats = None
    if stats_json:
        from tick.stats import StatsWindow
        stats = StatsWindow(server, stats_json, after_s=None if stats_signal else stats_after,
                            for_s=stats_for)
        stats.attach()
        if stats_signal:
            stats.install_signal()
    if ready_file:
        from tick.stats import write_ready
        write_ready(ready_file, server.address)
    swarm = None
    if bot_count:
        host_, port_ = server.address
        swarm = subprocess.Popen(
            [sys.executable, "-m", "cli", "bots", "--server", f"{host_}:{port_}",
             "--count", str(bot_count), "--duration", str(duration or 10**9), "--quiet",
             "--key-file", key_path, "--log-format", log_format])
        log.info("started %d bots (pid %d)", bot_count, swarm.pid)
    if recorder is not None:
        server.timings.attach(recorder)
    try:
        server.run(duration)
        if stats is not None:
            stats.finish()  # before close(): the figures read the socket's kernel drops
    finally:
        server.close()
        if recorder is not None:
            server.timings.detach()
            log.info("recorded %d ticks in %s: `xmarks profile %s`", recorder.ticks_written,
                     record_timings, record_timings)
        if swarm is not None:
            swarm.terminate()
            swarm.wait(timeout=10)
    from profiling.report import format_summary, phase_summary

    summary = phase_summary(server.timings.latest())
    if summary:
        log.info("tick phases (last %d ticks):\n%s", len(server.timings.latest()),
                 format_summary(summary, 1000.0 / config.rates.tick_rate))


@cli.command()
@click.option("--server", "server_addr", required=True, metavar="HOST:PORT",
              help="The server to hunt on.")
@click.option("--count", type=click.IntRange(1, 65535), default=10, show_default=True,
              help="How many bots (they share one UDP socket).")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), default=30.0,
              show_default=True, help="Seconds to hunt before disconnecting.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bots' choices.")
@click.option("--key-file", default="xmarks.key", show_default=True, metavar="PATH",
              help="The server's token key: the bots issue their own connect tokens with it.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@click.option("--quiet", is_flag=True, help="Print nothing (for the serve --bots demo).")
@click.option("--log-format", type=click.Choice(LOG_FORMATS), default="text",
              show_default=True, help="Log lines on stderr as text or JSON objects.")
# Hidden: the bench's bot process (tick/horde.py: every bot a column of arrays, numba kernels).
@click.option("--horde", is_flag=True, hidden=True,
              help="Drive the bots as one horde (thousands from one process).")
@click.option("--warmup", type=click.FloatRange(min=0), default=0.0, hidden=True,
              help="Horde: seconds at the start that latency and rates leave out.")
@click.option("--io", type=click.Choice(["auto", "batched", "portable"]), default="auto",
              hidden=True, help="Horde: the UDP path.")
@click.option("--connect-rate", type=click.FloatRange(min=0, min_open=True), default=2000.0,
              hidden=True, help="Horde: new bots per second.")
@click.option("--input-rate", type=click.FloatRange(min=0, min_open=True), default=None,
              hidden=True, help="Horde: inputs per bot per second (default: the tick rate).")
@click.option("--ready-file", type=click.Path(dir_okay=False), default=None, hidden=True,
              help="Horde: write {host, port, pid, t_ns} here just before the run starts.")
def bots(server_addr, count, duration, seed, key_file, as_json, quiet, log_format, horde,
         warmup, io, connect_rate, input_rate, ready_file) -> None:
    """Run COUNT bots that really hunt: follow the heat hint, walk to revealed treasure, dig.

    Exit code 0 if every bot connected, 1 otherwise.

    \b
    Examples:
      xmarks bots --server 127.0.0.1:7777 --count 50 --duration 15 --json
    """
    setup_logging("warning" if quiet else "info", log_format)
    try:
        server = _parse_endpoint(server_addr)
    except click.BadParameter as exc:
        raise click.UsageError(f"--server: {exc.message}") from None
    try:
        key = load_key(key_file)
    except KeyFileError as exc:
        raise click.UsageError(f"--key-file: {exc}") from None
    from tick.swarm import Swarm

    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(1))
    if horde:
        report = _run_horde(server, key, count, seed, duration, warmup, io, connect_rate,
                            input_rate, ready_file, lambda: bool(stopping))
    else:
        report = Swarm(server, count, seed=seed, key=key).run(duration,
                                                              stop=lambda: bool(stopping))
    if as_json:
        click.echo(json.dumps(report.as_dict()))
    elif not quiet:
        for key, value in report.as_dict().items():
            click.echo(f"{key:>24}  {value}")
    if report.connected < count and not stopping:
        reasons = ", ".join(f"{n} x {why}" for why, n in report.error_reasons.items())
        click.echo(f"xmarks: {count - report.connected} of {count} bots never connected"
                   f"{': ' + reasons if reasons else ''}", err=True)
        sys.exit(1)


def _run_horde(server, key, count, seed, duration, warmup, io, connect_rate, input_rate,
               ready_file, stop):
    """The horde's run for `bots --horde`: warm-up and measured time are both in
    `duration` (the first `warmup` seconds are left out of the figures)."""
    from tick.horde import Horde
    from tick.stats import write_ready

    try:
        horde = Horde(server, count, seed=seed, input_rate=input_rate,
                      connect_rate=connect_rate, io=io, key=key)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if ready_file:
        write_ready(ready_file, horde.endpoint.address)
    from tick.swarm import watch_horde_connects  # "n/N bots connected" once a second
    return horde.run(duration, warmup=warmup, stop=watch_horde_connects(horde, stop))


cli.add_command(bench)
cli.add_command(token)
cli.add_command(top)
cli.add_command(status)
cli.add_command(players)
cli.add_command(kick)
cli.add_command(ban)
cli.add_command(unban)
cli.add_command(bans)
cli.add_command(hunt)
cli.add_command(treasures)
cli.add_command(profile)
cli.add_command(proxy)
cli.add_command(replay)


def main() -> None:
    """Entry point: click's errors become one line (`xmarks: error: ...`), exit 2."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("xmarks: aborted", err=True)
        sys.exit(1)
    except click.exceptions.NoArgsIsHelpError as exc:  # bare `xmarks`: help, as --help
        click.echo(exc.ctx.get_help())
        sys.exit(0)
    except click.UsageError as exc:
        click.echo(f"xmarks: error: {exc.format_message()}", err=True)
        sys.exit(EXIT_USAGE)
    except click.ClickException as exc:
        click.echo(f"xmarks: error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
