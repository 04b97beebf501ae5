"""`xmarks proxy`: a user-space UDP proxy with netem's knobs (loss, duplicates, reordering,
latency, jitter, rate), for trying clients and the server on a bad network (tick/proxy.py)."""

from __future__ import annotations

import json
import signal

import click

from net.address import parse_endpoint
from net.link import LinkSettings
from tick.proxy import ProxySettings

PROBABILITY = click.FloatRange(0.0, 1.0)
MILLISECONDS = click.FloatRange(min=0.0)

#: LinkSettings field -> the flag that sets it (for error messages).
_FLAGS = {"loss": "--loss", "duplicate": "--duplicate", "reorder": "--reorder",
          "corrupt": "--corrupt", "latency_ms": "--latency", "jitter_ms": "--jitter",
          "reorder_delay_ms": "--reorder-delay", "rate": "--rate",
          "queue_limit": "--queue-limit", "max_clients": "--max-clients",
          "idle_timeout": "--idle-timeout", "rebind_every": "--rebind-every",
          "report_every": "--report-every", "listen": "--listen", "server": "--server",
          "seed": "--seed", "max_in_flight": "--max-in-flight"}


def _endpoint(flag: str, text: str) -> str:
    try:
        parse_endpoint(text)
    except ValueError as exc:
        raise click.UsageError(f"{flag}: {exc}") from None
    return text


def _line(counters: dict) -> str:
    """One progress line: what each direction did so far."""
    parts = [f"{counters['duration_s']:.0f} s", f"clients {counters['clients']}"]
    for direction in ("up", "down"):
        c = counters[direction]
        parts.append(f"{direction} sent {c['sent']} lost {c['lost']} dup {c['duplicated']} "
                     f"reord {c['reordered']} qdrop {c['queue_dropped']} "
                     f"delivered {c['delivered']} in flight {c['in_flight']}")
    if counters["rebinds"]:
        parts.append(f"rebinds {counters['rebinds']}")
    if counters["clients_refused"] or counters["stray"]:
        parts.append(f"refused {counters['clients_refused']} stray {counters['stray']}")
    return "xmarks proxy: " + " | ".join(parts)


@click.command()
@click.option("--listen", default="127.0.0.1:7000", show_default=True, metavar="IPV4:PORT",
              help="Where clients send; the server's public_address must name it.")
@click.option("--server", "server_addr", required=True, metavar="IPV4:PORT",
              help="The game server to forward to.")
@click.option("--loss", type=PROBABILITY, default=0.0, show_default=True,
              help="Probability a datagram is dropped.")
@click.option("--duplicate", type=PROBABILITY, default=0.0, show_default=True,
              help="Probability a datagram is delivered twice.")
@click.option("--reorder", type=PROBABILITY, default=0.0, show_default=True,
              help="Probability a datagram is held back --reorder-delay ms, so later ones "
                   "overtake it.")
@click.option("--reorder-delay", type=MILLISECONDS, default=100.0, show_default=True,
              metavar="MS", help="How long a reordered datagram is held back.")
@click.option("--latency", type=MILLISECONDS, default=0.0, show_default=True, metavar="MS",
              help="One-way delay, each direction (the round trip gets twice this).")
@click.option("--jitter", type=MILLISECONDS, default=0.0, show_default=True, metavar="MS",
              help="Delay += uniform(-MS, +MS), never below zero; it reorders datagrams "
                   "closer together than the jitter, as netem's does.")
@click.option("--corrupt", type=PROBABILITY, default=0.0, show_default=True,
              help="Probability one random bit of a datagram is flipped.")
@click.option("--rate", type=click.FloatRange(min=0.0), default=0.0, show_default=True,
              metavar="BYTES_PER_S", help="Bandwidth cap per client and direction (0: none).")
@click.option("--queue-limit", type=int, default=10_000, show_default=True, metavar="N",
              help="Datagrams one client's link holds in one direction; more are dropped.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the impairments (the same seed and traffic: the same fates).")
@click.option("--max-clients", type=int, default=4096, show_default=True, metavar="N",
              help="Client addresses served at once (one upstream socket each).")
@click.option("--idle-timeout", type=float, default=60.0, show_default=True, metavar="S",
              help="Forget a client silent this long (its upstream socket is closed).")
@click.option("--rebind-every", type=float, default=0.0, show_default=True, metavar="S",
              help="Move each client's upstream to a new source port this often, like a "
                   "NAT rebinding (0: never); a server may follow a session to its new "
                   "address only on an authenticated packet.")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), default=None,
              metavar="S", help="Stop by itself after this many seconds (exit 0).")
@click.option("--report-every", type=float, default=5.0, show_default=True, metavar="S",
              help="Seconds between progress lines on stderr (0: none).")
@click.option("--json", "as_json", is_flag=True,
              help="At exit, print the counters as one JSON object on stdout.")
@click.option("--quiet", is_flag=True, help="No progress lines.")
def proxy(listen, server_addr, loss, duplicate, reorder, reorder_delay, latency, jitter,
          corrupt, rate, queue_limit, seed, max_clients, idle_timeout, rebind_every,
          duration, report_every, as_json, quiet) -> None:
    """Forward UDP between clients and a server through an impaired link, in both
    directions: the same settings each way, drawn independently per client and direction.

    Clients connect to --listen, so their connect tokens must name the proxy's address,
    and the server must accept those tokens: start it with public_address set to the
    proxy's --listen address (XMARKS_PUBLIC_ADDRESS, or public_address in [security]).
    Progress every --report-every seconds on stderr; Ctrl-C, SIGTERM or --duration
    stops it (exit 0).

    \b
    Examples:
      XMARKS_PUBLIC_ADDRESS=127.0.0.1:7000 xmarks serve --port 7777 &
      xmarks proxy --listen 127.0.0.1:7000 --server 127.0.0.1:7777 \\
                   --loss 0.05 --duplicate 0.1 --latency 250 --jitter 250 --seed 1
      xmarks bots --server 127.0.0.1:7000 --count 50 --duration 30
    \b
      xmarks proxy --server 127.0.0.1:7777 --loss 0.2 --latency 100 --reorder 0.04
      xmarks proxy --server 127.0.0.1:7777 --rebind-every 10 --duration 60 --json
    """
    link = LinkSettings(loss=loss, duplicate=duplicate, reorder=reorder, corrupt=corrupt,
                        latency_ms=latency, jitter_ms=jitter, reorder_delay_ms=reorder_delay,
                        rate=rate, queue_limit=queue_limit)
    settings = ProxySettings(listen=_endpoint("--listen", listen),
                             server=_endpoint("--server", server_addr), up=link, down=link,
                             seed=seed, max_clients=max_clients, idle_timeout=idle_timeout,
                             rebind_every=rebind_every, report_every=report_every)
    try:
        settings.validate()
    except ValueError as exc:
        name = str(exc).split(" ", 1)[0]
        raise click.UsageError(f"{_FLAGS.get(name, name)}: {exc}") from None

    from tick.proxy import Proxy

    try:
        running = Proxy(settings)
    except OSError as exc:
        raise click.ClickException(f"cannot bind {listen}: {exc.strerror or exc}") from None
    signal.signal(signal.SIGINT, lambda *_: running.stop())
    signal.signal(signal.SIGTERM, lambda *_: running.stop())
    if not quiet:
        click.echo(f"xmarks proxy: {listen} -> {server_addr}, each way: {link.describe()}; "
                   f"the server's public_address must be {listen}", err=True)
    report = None if quiet else (lambda counters: click.echo(_line(counters), err=True))
    try:
        counters = running.run(duration, report=report)
    finally:
        running.close()
    if as_json:
        click.echo(json.dumps(counters))
    elif not quiet:
        click.echo(_line(counters))
