"""A long run on a bad network: a server, `xmarks proxy` with one of the issue's two
impairment profiles, and a bot horde playing through the proxy for minutes.

    python -m profiling.impaired --bots 2000 --duration 300          # both profiles, ~11 min
    python -m profiling.impaired --bots 200 --duration 30 --json     # the short version
    python -m profiling.impaired --profile lossy --bots 50 --swarm   # Python bots, not the horde

Profiles (each applied in both directions, drawn independently):

- `jittery`: 5% loss, 10% duplicates, 250 +- 250 ms (uniform) one way;
- `lossy`: 20% loss, 100 ms one way, 4% reordered (held back 100 ms).

For each profile, three processes on loopback: `xmarks serve` (a world sized for the bots
as `xmarks bench` sizes it, `public_address` = the proxy's listening address, a status
line every 5 s, the bench's measurement window after the warm-up), `xmarks proxy` and
`xmarks bots --horde` (or `--swarm`: `xmarks bots`, one Python client per bot). The
report joins, per profile:

- bots: connected / errors (and why), snapshots per bot per second (mean, min), claims,
  input->ack latency (the horde's; it now includes the impaired round trip), datagrams the
  bots dropped by reason (late snapshots are `stale_sequence`);
- proxy: per direction sent / lost / duplicated / reordered / queue-dropped / delivered;
- server: ticks over budget, tick p99, snapshots, and its last status line (its drops by
  reason: duplicated inputs show up as `replayed`).

What to look for: every bot connected and none timed out; snapshots per bot per second
near the tick rate times (1 - loss) less the late ones; the server's overruns no worse than
without the proxy. The proxy is one Python process forwarding every datagram twice (about
10 us each): at 2,000 bots and 20 Hz it forwards some 90,000 datagrams a second and needs
a core of its own; its `queue_dropped` and the horde's `bots_cpu_saturated` say when the
tools, not the server, are the limit. On a 2-core machine keep to a few hundred bots.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile

from net.udp import UdpEndpoint
from profiling.bench_spec import to_toml, world_for
from tick.clock import now_ns, sleep_until_ns

PROFILES = {
    "jittery": ["--loss", "0.05", "--duplicate", "0.1", "--latency", "250", "--jitter", "250"],
    "lossy": ["--loss", "0.2", "--latency", "100", "--reorder", "0.04"],
}
READY_TIMEOUT_S = 180.0  # a cold numba cache compiles every kernel first
POLL_NS = 50_000_000
#: Datagrams one link may hold: a horde is one socket, so one link carries every bot.
QUEUE_LIMIT = 100_000


class ImpairedError(RuntimeError):
    """A process failed; the run has no figures."""


class _Child:
    """A child process with its output in files of the work directory."""

    def __init__(self, name: str, args: list[str], wd: str) -> None:
        self.name = name
        self.out = os.path.join(wd, f"{name}.out")
        self.err = os.path.join(wd, f"{name}.err")
        env = {k: v for k, v in os.environ.items() if not k.startswith("XMARKS_")}
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.popen = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out,
                                          stderr=err, env=env)

    def tail(self, lines: int = 5) -> str:
        try:
            with open(self.err, errors="replace") as f:
                return " | ".join(f.read().strip().splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 30.0) -> int:
        p = self.popen
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        return p.returncode

    def json_out(self) -> dict | None:
        try:
            with open(self.out) as f:
                lines = [line for line in f.read().splitlines() if line.startswith("{")]
            return json.loads(lines[-1]) if lines else None
        except (OSError, ValueError):
            return None


def _free_port() -> int:
    endpoint = UdpEndpoint("127.0.0.1", 0, io="portable")
    port = endpoint.address[1]
    endpoint.close()
    return port


def _wait_for(path: str, child: _Child, timeout_s: float) -> dict:
    deadline = now_ns() + int(timeout_s * 1e9)
    while not os.path.exists(path):
        if child.popen.poll() is not None:
            raise ImpairedError(f"{child.name} exited early: {child.tail()}")
        if now_ns() > deadline:
            raise ImpairedError(f"{child.name} not ready after {timeout_s:g} s: {child.tail()}")
        sleep_until_ns(now_ns() + POLL_NS)
    with open(path) as f:
        return json.load(f)


def _wait_line(child: _Child, text: str, timeout_s: float) -> None:
    deadline = now_ns() + int(timeout_s * 1e9)
    while True:
        try:
            with open(child.err, errors="replace") as f:
                if text in f.read():
                    return
        except OSError:
            pass
        if child.popen.poll() is not None:
            raise ImpairedError(f"{child.name} exited early: {child.tail()}")
        if now_ns() > deadline:
            raise ImpairedError(f"{child.name} not ready after {timeout_s:g} s: {child.tail()}")
        sleep_until_ns(now_ns() + POLL_NS)


def _admin_off() -> dict:
    """The server's admin API switched off where it has one (it binds a fixed port, so
    two servers in a row could collide with a third one left running)."""
    from cli.settings import SECTIONS
    for section, cls in SECTIONS.items():
        if "admin_enabled" in {f.name for f in dataclasses.fields(cls)}:
            return {section: {"admin_enabled": False}}
    return {}


def _status_line(child: _Child) -> str:
    """The server's last status line (tick figures and drops by reason)."""
    try:
        with open(child.err, errors="replace") as f:
            lines = [line for line in f.read().splitlines() if "| players" in line]
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""


def run_profile(name: str, bots: int, duration: float, tick_rate: float, seed: int,
                swarm: bool, wd: str, progress=lambda _: None) -> dict:
    """One profile: server, proxy, bots; the joined figures."""
    listen = f"127.0.0.1:{_free_port()}"
    warmup = round(bots / 2000.0 + 5.0, 1)  # the horde's connect ramp, and resends
    world = world_for(bots, 32.0)
    key = os.path.join(wd, "xmarks.key")
    paths = {k: os.path.join(wd, f"{name}-{k}.json") for k in ("ready", "stats")}
    config = os.path.join(wd, f"{name}.toml")
    with open(config, "w") as f:
        f.write(to_toml({
            "server": {"host": "127.0.0.1", "port": 0},
            "tick": {"tick_rate": tick_rate, "status_every": 5.0},
            "game": {"world_width": world["world_width"], "world_height": world["world_height"],
                     "treasure_count": world["treasure_count"], "max_players": bots,
                     "seed": seed},
            "security": {"key_file": key, "public_address": listen,
                         "connect_rate_per_address": 0.0, "max_sessions_per_address": 0,
                         "connect_rate": 20000.0},
            **_admin_off(),
        }))
    cli = [sys.executable, "-m", "cli"]
    safety = READY_TIMEOUT_S + warmup + duration + 120
    children: list[_Child] = []
    try:
        progress(f"{name}: starting the server ({bots} players, {tick_rate:g} Hz)")
        server = _Child(f"{name}-server", cli + [
            "serve", "--config", config, "--duration", f"{safety:g}",
            "--ready-file", paths["ready"], "--stats-json", paths["stats"],
            "--stats-after", f"{warmup:g}", "--stats-for", f"{duration:g}"], wd)
        children.append(server)
        ready = _wait_for(paths["ready"], server, READY_TIMEOUT_S)
        progress(f"{name}: proxy {listen} -> {ready['host']}:{ready['port']} "
                 f"({' '.join(PROFILES[name])})")
        proxy = _Child(f"{name}-proxy", cli + [
            "proxy", "--listen", listen, "--server", f"{ready['host']}:{ready['port']}",
            *PROFILES[name], "--seed", str(seed), "--queue-limit", str(QUEUE_LIMIT),
            "--json"], wd)
        children.append(proxy)
        _wait_line(proxy, "xmarks proxy: ", 60.0)  # its first line comes once it is bound
        bot_args = ["bots", "--server", listen, "--count", str(bots), "--json",
                    "--key-file", key, "--seed", str(seed)]
        if swarm:
            bot_args += ["--duration", f"{warmup + duration:g}"]
        else:
            bot_args += ["--horde", "--duration", f"{warmup + duration:g}",
                         "--warmup", f"{warmup:g}"]
        progress(f"{name}: {bots} bots for {warmup:g} s warm-up + {duration:g} s")
        players = _Child(f"{name}-bots", cli + bot_args, wd)
        children.append(players)
        try:
            players.popen.wait(timeout=warmup + duration + 120)
        except subprocess.TimeoutExpired:
            raise ImpairedError("the bots did not finish in time") from None
        bots_report = players.json_out()
        if bots_report is None:
            raise ImpairedError(f"the bots printed no report: {players.tail()}")
        proxy.stop()
        proxy_report = proxy.json_out() or {}
        status = _status_line(server)
        server.stop()
        stats = {}
        if os.path.exists(paths["stats"]):
            with open(paths["stats"]) as f:
                stats = json.load(f)
        return _summary(name, bots_report, proxy_report, stats, status)
    finally:
        for child in reversed(children):
            child.stop()


def _summary(name: str, bots: dict, proxy: dict, stats: dict, status: str) -> dict:
    keep = ("lost", "duplicated", "reordered", "queue_dropped", "sent", "delivered")
    phases = stats.get("phases", {})
    return {
        "profile": name,
        "flags": " ".join(PROFILES[name]),
        "bots": {k: bots.get(k) for k in (
            "bots", "connected", "errors", "error_reasons", "snapshots_per_bot_per_s",
            "claims", "latency_ms", "drops", "bots_cpu_saturated") if k in bots},
        "proxy": {d: {k: proxy.get(d, {}).get(k) for k in keep} for d in ("up", "down")},
        "server": {"overrun_pct": stats.get("overrun_pct"),
                   "tick_total_p99_ms": phases.get("total", {}).get("p99_ms"),
                   "snapshots": stats.get("snapshots"),
                   "packets_in": stats.get("packets_in"),
                   "cpu_busy_fraction": stats.get("server_cpu_busy_fraction"),
                   "status": status},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=["both", *PROFILES], default="both")
    parser.add_argument("--bots", type=int, default=2000)
    parser.add_argument("--duration", type=float, default=300.0,
                        help="measured seconds per profile (after the warm-up)")
    parser.add_argument("--tick-rate", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--swarm", action="store_true",
                        help="Python bots (xmarks bots) instead of the horde")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args()
    if not 1 <= args.bots <= 65535 or not args.duration > 0:
        parser.error("--bots must be in 1..65535 and --duration > 0")
    names = list(PROFILES) if args.profile == "both" else [args.profile]
    results = []
    with tempfile.TemporaryDirectory(prefix="xmarks-impaired-") as wd:
        for name in names:
            try:
                results.append(run_profile(name, args.bots, args.duration, args.tick_rate,
                                           args.seed, args.swarm, wd,
                                           lambda line: print(line, file=sys.stderr)))
            except ImpairedError as exc:
                print(f"impaired: error: {exc}", file=sys.stderr)
                sys.exit(1)
    if args.json:
        print(json.dumps({"bots": args.bots, "duration_s": args.duration,
                          "profiles": results}))
        return
    for r in results:
        print(f"== {r['profile']}: {r['flags']}")
        for part in ("bots", "proxy", "server"):
            for key, value in r[part].items():
                print(f"  {part:>6} {key:<26} {value}")


if __name__ == "__main__":
    main()
