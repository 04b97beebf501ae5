"""`xmarks bench`: a server and a bot horde as two processes on loopback, and one report.

    spec -> world sizing -> temp TOML config -> `xmarks serve` (hidden stats options)
         -> ready file -> `xmarks bots --horde` -> ready file -> warm-up -> SIGUSR1 opens
         the server's window -> both measure `duration` s -> both reports -> both exit
         -> kernel floor probe (profiling.probe) in this process -> report dict

Timeline. The horde's run starts at the t_ns of its ready file (CLOCK_MONOTONIC, shared
by every process of the machine); its figures leave out the first `warmup` seconds. At
that same instant (t_ns + warmup) this process sends SIGUSR1 to the server, whose
tick.stats.StatsWindow opens at the next tick boundary and closes `duration` seconds
later: both windows cover the same steady state, within a tick. The probe runs after both
processes have exited, so it never competes with them for the machine's two cores.

Only the orchestration lives here: figures come from tick/stats.py (server), tick/horde.py
(bots) and profiling/probe.py (floor); this module joins them, checks targets and formats.
"""

from __future__ import annotations

import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from tick.clock import now_ns, sleep_until_ns

SCENARIOS = Path(__file__).with_name("scenarios.toml")

#: World sizing bounds: a side below this is already smaller than one view diameter.
MIN_WORLD_SIDE = 256.0
MAX_WORLD_SIDE = 65536.0  # sim.rules: world_width/world_height at most 65536
#: Warm-up when none is given: the bots' connect ramp (players / connect_rate) plus this.
WARMUP_SLACK_S = 3.0
#: Seconds a process may take to start (first run: numba compiles every kernel).
READY_TIMEOUT_S = 600.0
#: Seconds after the bots' end that the server's window may still need to close.
CLOSE_GRACE_S = 10.0
EXIT_TIMEOUT_S = 30.0
#: Share of the window the server may wait for its CPU before the report warns.
WAIT_WARN = 0.02
#: Seconds the bots keep playing after the server's window closes (see _tail_s).
BOTS_TAIL_S = 0.5
POLL_NS = 10_000_000

SPEC_KEYS = ("players", "tick_rate", "snapshot_rate", "duration", "warmup", "visible", "io",
             "seed", "connect_rate")
SCENARIO_KEYS = SPEC_KEYS + ("description", "targets")
OPS = {"<=": lambda v, b: v <= b, ">=": lambda v, b: v >= b, "==": lambda v, b: v == b}


class BenchUsageError(ValueError):
    """The bench was asked for something it cannot run (exit 2, one line)."""


class BenchError(RuntimeError):
    """The server or the bots failed; the run has no valid figures (exit 1)."""


@dataclass(frozen=True)
class BenchSpec:
    """What to run. warmup None: the connect ramp plus WARMUP_SLACK_S."""

    players: int
    tick_rate: float = 20.0
    snapshot_rate: float = 0.0
    duration: float = 10.0
    warmup: float | None = None
    visible: float = 32.0
    io: str = "auto"
    seed: int = 1
    connect_rate: float = 2000.0
    scenario: str | None = None
    pin: bool = True
    probe_repeats: int = 5
    targets: dict = field(default_factory=dict)

    @property
    def warmup_s(self) -> float:
        if self.warmup is not None:
            return float(self.warmup)
        return round(self.players / self.connect_rate + WARMUP_SLACK_S, 3)

    def check(self) -> None:
        """Raise BenchUsageError naming the first value the bench cannot use (the server's
        own settings are checked by cli.settings when the config is built)."""
        if not (isinstance(self.players, int) and 1 <= self.players <= 65535):
            raise BenchUsageError(f"players must be an integer in 1..65535, got {self.players!r}")
        for name in ("duration", "visible", "connect_rate"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise BenchUsageError(f"{name} must be a positive number, got {value!r}")
        if self.warmup is not None and not (math.isfinite(self.warmup) and self.warmup >= 0):
            raise BenchUsageError(f"warmup must be a number >= 0, got {self.warmup!r}")
        if self.io not in ("auto", "batched", "portable"):
            raise BenchUsageError(f"io must be auto, batched or portable, got {self.io!r}")
        if not 1 <= self.probe_repeats <= 100:
            raise BenchUsageError(f"probe repeats must be in 1..100, got {self.probe_repeats!r}")


# ---- scenarios ---------------------------------------------------------------------------

def load_scenarios(path: Path = SCENARIOS) -> tuple[dict, dict[str, dict]]:
    """(common targets, {name: scenario}) from a scenarios TOML file."""
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise BenchUsageError(f"cannot read scenarios {path}: {exc}") from None
    common = doc.get("targets", {})
    scenarios = doc.get("scenario", {})
    for name, sc in scenarios.items():
        unknown = set(sc) - set(SCENARIO_KEYS)
        if unknown:
            raise BenchUsageError(f"scenario {name}: unknown key {sorted(unknown)[0]!r}")
    return common, scenarios


def make_spec(scenario: str | None, flags: dict[str, Any], pin: bool = True,
              probe_repeats: int = 5, path: Path = SCENARIOS) -> BenchSpec:
    """A BenchSpec from a scenario's values, overridden by the flags that were given
    (None = not given); targets are the common ones plus the scenario's."""
    common, scenarios = load_scenarios(path)
    values: dict[str, Any] = {}
    targets = dict(common)
    if scenario is not None:
        if scenario not in scenarios:
            raise BenchUsageError(f"unknown scenario {scenario!r} (one of: "
                                  f"{', '.join(scenarios)})")
        sc = scenarios[scenario]
        values.update({k: v for k, v in sc.items() if k in SPEC_KEYS})
        targets.update(sc.get("targets", {}))
    values.update({k: v for k, v in flags.items() if v is not None})
    if "players" not in values:
        raise BenchUsageError("give --players N (or --scenario NAME)")
    for key in ("tick_rate", "snapshot_rate", "duration", "visible", "connect_rate"):
        if key in values and isinstance(values[key], int) and not isinstance(values[key], bool):
            values[key] = float(values[key])
    spec = BenchSpec(scenario=scenario, pin=pin, probe_repeats=probe_repeats, targets=targets,
                     **values)
    spec.check()
    return spec


# ---- world sizing and config -----------------------------------------------------------

def world_for(players: int, visible: float, view_radius: float | None = None,
              base_side: float | None = None, base_treasures: int | None = None) -> dict:
    """Game settings so that about `visible` other players are within view_radius of each
    player on average: a square of side sqrt(players * pi * r^2 / visible), within
    [MIN_WORLD_SIDE, MAX_WORLD_SIDE]; treasures scale with the area from the defaults
    (sim.rules.GameRules: 256 on 4096 x 4096); max_players = players.

    Players near an edge see fewer (their view circle is cut), so the mean is a little
    below `visible`; the snapshot cap (NetLimits.max_visible_players) bounds it above.
    """
    from sim.rules import GameRules
    base = GameRules()
    r = float(view_radius if view_radius is not None else base.view_radius)
    side0 = float(base_side if base_side is not None else base.world_width)
    t0 = int(base_treasures if base_treasures is not None else base.treasure_count)
    side = math.sqrt(players * math.pi * r * r / visible)
    side = float(round(min(MAX_WORLD_SIDE, max(MIN_WORLD_SIDE, side))))
    treasures = int(min(65535, max(1, round(t0 * (side * side) / (side0 * side0)))))
    density = players / (side * side)
    return {"world_width": side, "world_height": side, "treasure_count": treasures,
            "max_players": players,
            "expected_visible": round(min(players - 1, density * math.pi * r * r), 1)}


def bench_config(spec: BenchSpec) -> dict[str, dict[str, Any]]:
    """The server's TOML tables for a spec (cli.settings reads them)."""
    world = world_for(spec.players, spec.visible)
    # the timing ring must hold the whole window, whatever the warm-up
    ring_ticks = int((spec.warmup_s + spec.duration + 120) * spec.tick_rate * 1.2)
    return {
        "server": {"host": "127.0.0.1", "port": 0, "io": spec.io},
        "tick": {"tick_rate": spec.tick_rate, "snapshot_rate": spec.snapshot_rate,
                 "status_every": 0.0, "timing_ring": int(min(1 << 24, max(65536, ring_ticks)))},
        "game": {"world_width": world["world_width"], "world_height": world["world_height"],
                 "treasure_count": world["treasure_count"], "max_players": spec.players,
                 "seed": spec.seed},
    }


def to_toml(tables: dict[str, dict[str, Any]]) -> str:
    """TOML text for flat tables of str / bool / int / float values."""
    lines = []
    for name, table in tables.items():
        lines.append(f"[{name}]")
        for key, value in table.items():
            if isinstance(value, bool):
                text = "true" if value else "false"
            elif isinstance(value, str):
                text = json.dumps(value)
            elif isinstance(value, float):
                text = repr(value) if math.isfinite(value) else "nan"
            elif isinstance(value, int):
                text = str(value)
            else:
                raise TypeError(f"to_toml: {key} has unsupported type {type(value).__name__}")
            lines.append(f"{key} = {text}")
        lines.append("")
    return "\n".join(lines)


def validate_config(path: str) -> Any:
    """The ServerConfig the server will build from `path` (XMARKS_* ignored, as the bench
    strips them from the children's environment); BenchUsageError if invalid."""
    from cli.settings import SettingsError, build_config
    try:
        return build_config(path, {}, {})
    except SettingsError as exc:
        raise BenchUsageError(str(exc).replace(f"config {path}: ", "")) from None


# ---- targets and report ------------------------------------------------------------------

def get_figure(report: dict, dotted: str) -> Any:
    """report["a"]["b"] for "a.b"; None if absent."""
    value: Any = report
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def evaluate_targets(report: dict, targets: dict) -> list[dict]:
    """[{figure, op, bound, value, met}] (met None when the figure is missing or -1)."""
    out = []
    for figure, rule in targets.items():
        op, bound = rule
        value = get_figure(report, figure)
        known = value is not None and not (isinstance(value, (int, float))
                                           and not isinstance(value, bool) and value == -1)
        met = bool(OPS[op](value, bound)) if known else None
        out.append({"figure": figure, "op": op, "bound": bound, "value": value, "met": met})
    return out


def floor_ratio(server_us: float, floor_us: float) -> float:
    """server CPU per client-tick over the kernel floor; -1.0 if either is unknown."""
    if server_us <= 0 or floor_us <= 0:
        return -1.0
    return round(server_us / floor_us, 3)


def assemble(spec: BenchSpec, server: dict, bots: dict, probe: dict, extra: dict) -> dict:
    """The report: the issue's figures at the top level, each part whole below them."""
    floor = probe.get("kernel_floor_us_per_client_tick", -1.0)
    drops_s, drops_b = server.get("kernel_rcvbuf_drops", -1), bots.get("kernel_rcvbuf_drops", -1)
    snapshot_rate = spec.tick_rate / server.get("snapshot_every", 1)
    report = {
        "players": spec.players,
        "tick_rate": spec.tick_rate,
        "snapshot_rate": snapshot_rate,
        "duration_s": spec.duration,
        "warmup_s": spec.warmup_s,
        "window_s": server["window_s"],
        "ticks": server["ticks"],
        "ticks_expected": server["ticks_expected"],
        "ticks_over_budget": server["ticks_over_budget"],
        "overrun_pct": server["overrun_pct"],
        "budget_ms": server["budget_ms"],
        "phases": server["phases"],
        "latency_ms": bots.get("latency_ms", {}),
        "snapshot_bytes": {k: server["snapshot_bytes"][k] for k in ("mean", "p99", "max")},
        "bandwidth_out_mbps": server["bandwidth_out_mbps"],
        "server_cpu_us_per_client_tick": server["server_cpu_us_per_client_tick"],
        "kernel_floor_us_per_client_tick": floor,
        "floor_ratio": floor_ratio(server["server_cpu_us_per_client_tick"], floor),
        "server_cpu_busy_fraction": server["server_cpu_busy_fraction"],
        "server_cpu_wait_fraction": server.get("server_cpu_wait_fraction", -1.0),
        "py_allocs_per_tick": server["py_allocs_per_tick"],
        "gc_collections": server["gc_collections"],
        "rss_mb": server["rss_mb"],
        "rss_current_mb": server.get("rss_current_mb", -1.0),
        "kernel_rcvbuf_drops": (drops_s + drops_b) if min(drops_s, drops_b) >= 0 else -1,
        "kernel_rcvbuf_drops_server": drops_s,
        "kernel_rcvbuf_drops_bots": drops_b,
        "kernel_rcvbuf_drops_system": server.get("kernel_rcvbuf_drops_system", -1),
        "bots_cpu_saturated": bool(bots.get("bots_cpu_saturated", False)),
        "bots_cpu_busy_fraction": bots.get("cpu_busy_fraction", -1.0),
        "connected": bots.get("connected", 0),
        "clients_below_95pct": bots.get("clients_below_95pct", -1),
        "snapshots_per_bot_per_s": bots.get("snapshots_per_bot_per_s", {}),
        "io": server.get("io", "?"),
        "scenario": spec.scenario,
        **extra,
        "server": {k: v for k, v in server.items() if k != "snapshot_size_hist"},  # probe's
        "bots": bots,
        "probe": probe,
    }
    report["targets"] = evaluate_targets(report, spec.targets)
    report["warnings"] = warnings(spec, report)
    return report


def warnings(spec: BenchSpec, report: dict) -> list[str]:
    """What makes a figure easy to misread, in words."""
    out = []
    server, bots, probe = report["server"], report["bots"], report["probe"]
    if report["connected"] < spec.players:
        reasons = ", ".join(f"{n} x {why}" for why, n in bots.get("error_reasons", {}).items())
        out.append(f"{spec.players - report['connected']} of {spec.players} bots never "
                   f"connected{': ' + reasons if reasons else ''}")
    if report["bots_cpu_saturated"]:
        out.append("the bot process was saturated: latency and snapshot rates may be the "
                   "bots' limit, not the server's")
    if report["kernel_rcvbuf_drops"] > 0:
        out.append(f"the kernel dropped {report['kernel_rcvbuf_drops']} datagrams (server "
                   f"{report['kernel_rcvbuf_drops_server']}, bots "
                   f"{report['kernel_rcvbuf_drops_bots']}): a receive buffer overflowed")
    wait = report["server_cpu_wait_fraction"]
    if wait > WAIT_WARN:
        out.append(f"the server's tick thread waited {100 * wait:.1f}% of the window for a CPU"
                   " (another task ran on its core): tick times and overruns are pessimistic")
    if server["ticks_timed"] < server["ticks"]:
        out.append("the timing ring was smaller than the window: phases cover its last "
                   f"{server['ticks_timed']} ticks")
    if server["ticks"] < 0.95 * server["ticks_expected"]:
        out.append(f"the server ran {server['ticks']} ticks of {server['ticks_expected']} "
                   "due: it fell behind and dropped deadlines")
    if server["window_s"] < 0.9 * spec.duration:
        out.append(f"the server's window lasted {server['window_s']} s of {spec.duration}")
    if server["py_allocs_per_tick"] < 0:
        out.append(f"allocations not counted: {server.get('py_allocs_note') or 'unknown'}")
    if probe.get("lost", 0) > 0:
        out.append(f"the floor probe lost {probe['lost']} datagrams (socket buffers too "
                   "small?): the floor is a lower estimate")
    if report["floor_ratio"] < 0:
        out.append("no floor ratio (the probe or the server CPU figure is missing)")
    return out


def format_report(report: dict) -> str:
    """The human table."""
    r = report
    budget = r["budget_ms"]
    lines = [
        f"xmarks bench{' ' + r['scenario'] if r.get('scenario') else ''}: {r['players']} players,"
        f" {r['tick_rate']:g} Hz, {r['snapshot_rate']:g} snapshots/s, {r['window_s']:g} s "
        f"measured after {r['warmup_s']:g} s warm-up, io {r['io']}",
        f"world {r['world']['world_width']:g} x {r['world']['world_height']:g} "
        f"(~{r['world']['expected_visible']:g} players in view), "
        f"{r['world']['treasure_count']} treasures",
        "",
        f"ticks {r['ticks']} (due {r['ticks_expected']}), over budget {r['ticks_over_budget']}"
        f" = {r['overrun_pct']:.2f}%",
        f"{'phase':<8} {'p50 ms':>9} {'p99 ms':>9} {'max ms':>9}   (budget {budget:.2f} ms)",
    ]
    for name, s in r["phases"].items():
        lines.append(f"{name:<8} {s['p50_ms']:>9.3f} {s['p99_ms']:>9.3f} {s['max_ms']:>9.3f}")
    lat = r["latency_ms"]
    sps = r["snapshots_per_bot_per_s"]
    sb = r["snapshot_bytes"]
    lines += [
        "",
        f"latency input->ack ms   mean {lat.get('mean', 0):.2f}  p50 {lat.get('p50', 0):.2f}"
        f"  p99 {lat.get('p99', 0):.2f}  max {lat.get('max', 0):.2f}  ({lat.get('count', 0)} inputs)",
        f"snapshots bytes         mean {sb['mean']:.1f}  p99 {sb['p99']}  max {sb['max']}"
        f"   out {r['bandwidth_out_mbps']:.2f} Mbit/s",
        f"per bot snapshots/s     mean {sps.get('mean', 0):.2f}  min {sps.get('min', 0):.2f}"
        f"   below 95%: {r['clients_below_95pct']} of {r['connected']} connected",
        f"server CPU              {r['server_cpu_us_per_client_tick']:.3f} us/client-tick"
        f"  (busy {100 * r['server_cpu_busy_fraction']:.1f}% of one core, waited for it"
        f" {100 * max(0.0, r['server_cpu_wait_fraction']):.1f}%)",
        f"kernel floor            {r['kernel_floor_us_per_client_tick']:.3f} us/client-tick"
        f"   floor_ratio {r['floor_ratio']:.2f}",
        f"python                  {r['py_allocs_per_tick']:.1f} allocs/tick, "
        f"{r['gc_collections']} gc collections, RSS peak {r['rss_mb']:.1f} MB",
        f"kernel drops            {r['kernel_rcvbuf_drops']} (server "
        f"{r['kernel_rcvbuf_drops_server']}, bots {r['kernel_rcvbuf_drops_bots']})",
        f"bots                    CPU busy {100 * max(0.0, r['bots_cpu_busy_fraction']):.0f}%,"
        f" saturated: {'YES' if r['bots_cpu_saturated'] else 'no'}",
    ]
    if r["targets"]:
        lines += ["", "targets (reported, not enforced):"]
        for t in r["targets"]:
            mark = {True: "met", False: "MISSED", None: "n/a"}[t["met"]]
            lines.append(f"  {t['figure']:<28} {t['op']} {t['bound']!s:<8} "
                         f"{str(t['value']):<12} {mark}")
    for w in r["warnings"]:
        lines.append(f"warning: {w}")
    return "\n".join(lines)


# ---- processes -----------------------------------------------------------------------------

def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the bench dies, so nothing is left behind."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - not Linux: the server's --duration still ends it
        pass


def _child_env() -> dict[str, str]:
    """The environment without XMARKS_* (the bench's config is the whole config)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("XMARKS_")}


def _tail(path: str, lines: int = 5) -> str:
    try:
        with open(path, errors="replace") as f:
            text = f.read().strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


class _Proc:
    """One child process with its stdout/stderr in files of the work directory."""

    def __init__(self, name: str, args: list[str], workdir: str, cpu: int | None) -> None:
        self.name = name
        self.args = args
        self.out_path = os.path.join(workdir, f"{name}.out")
        self.err_path = os.path.join(workdir, f"{name}.err")
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.popen = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out,
                                          stderr=err, env=_child_env(),
                                          preexec_fn=_die_with_parent)
        self.cpu = None
        if cpu is not None:
            try:
                os.sched_setaffinity(self.popen.pid, {cpu})  # before it starts any thread
                self.cpu = cpu
            except OSError:
                pass

    def failed(self, what: str) -> BenchError:
        rc = self.popen.poll()
        tail = _tail(self.err_path)
        return BenchError(f"{self.name} {what}" + (f" (exit code {rc})" if rc is not None else "")
                          + (f": {tail}" if tail else ""))

    def stop(self, timeout: float = EXIT_TIMEOUT_S) -> int:
        """SIGTERM (a clean stop for both commands), then SIGKILL after `timeout`."""
        p = self.popen
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        return p.returncode


def _wait_ready(path: str, proc: _Proc, timeout_s: float) -> dict:
    deadline = now_ns() + int(timeout_s * 1e9)
    while True:
        if os.path.exists(path):
            with open(path) as f:
                return json.load(f)
        if proc.popen.poll() is not None:
            raise proc.failed("exited before it was ready")
        if now_ns() > deadline:
            raise proc.failed(f"was not ready after {timeout_s:g} s")
        sleep_until_ns(now_ns() + POLL_NS)


def _wait_exit(proc: _Proc, timeout_s: float) -> int | None:
    try:
        return proc.popen.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return None


def _wait_file(path: str, until_ns: int, proc: _Proc) -> bool:
    while not os.path.exists(path):
        if now_ns() > until_ns or proc.popen.poll() is not None:
            return os.path.exists(path)
        sleep_until_ns(now_ns() + POLL_NS)
    return True


def _cpus(pin: bool) -> tuple[int | None, int | None]:
    """(server cpu, bots cpu): two different cores when pinning and there are two."""
    if not pin or not hasattr(os, "sched_getaffinity"):
        return None, None
    cpus = sorted(os.sched_getaffinity(0))
    return (cpus[0], cpus[1]) if len(cpus) >= 2 else (None, None)


def run_bench(spec: BenchSpec, progress: Callable[[str], None] = lambda _: None,
              command: str = "", workdir: str | None = None) -> dict:
    """Run one bench; return the report (see assemble). `command` is recorded as given
    (the command line that asked for the run). Raises BenchUsageError for a spec the
    server refuses, BenchError when a process fails or no bot connected."""
    spec.check()
    load_before = _loadavg()
    own_dir = workdir is None
    tmp = tempfile.TemporaryDirectory(prefix="xmarks-bench-") if own_dir else None
    wd = tmp.name if tmp else workdir
    procs: list[_Proc] = []
    try:
        tables = bench_config(spec)
        config_path = os.path.join(wd, "bench.toml")
        with open(config_path, "w") as f:
            f.write(to_toml(tables))
        config = validate_config(config_path)
        warmup, duration = spec.warmup_s, spec.duration
        cpu_server, cpu_bots = _cpus(spec.pin)
        paths = {k: os.path.join(wd, f"{k}.json") for k in ("server_ready", "bots_ready", "stats")}
        cli = [sys.executable, "-m", "cli"]
        # --duration only as a safety net: the bench stops the server itself
        safety = READY_TIMEOUT_S + warmup + duration + 120
        server_args = cli + ["serve", "--config", config_path, "--log-level", "warning",
                             "--duration", f"{safety:g}", "--stats-json", paths["stats"],
                             "--stats-signal", "--stats-for", f"{duration:g}",
                             "--ready-file", paths["server_ready"]]
        # A throwaway start first: when a kernel source changed since the last run, numba
        # compiles here, and the measured server loads every kernel from the cache (a
        # compile in the measured process would inflate its RSS by 200+ MB).
        progress("loading the server's kernels (compiled once after a kernel edit)")
        prewarm = _Proc("prewarm", cli + ["serve", "--config", config_path, "--duration",
                                          "0.05", "--log-level", "error"], wd, cpu_server)
        procs.append(prewarm)
        if _wait_exit(prewarm, READY_TIMEOUT_S) != 0:
            prewarm.stop()
            raise prewarm.failed("(a first start of the server) failed")
        progress(f"starting the server ({spec.players} players, {spec.tick_rate:g} Hz)")
        server = _Proc("server", server_args, wd, cpu_server)
        procs.append(server)
        ready = _wait_ready(paths["server_ready"], server, READY_TIMEOUT_S)
        bots_args = cli + ["bots", "--horde", "--server", f"{ready['host']}:{ready['port']}",
                           "--count", str(spec.players),
                           "--duration", f"{warmup + duration + _tail_s(spec):g}",
                           "--warmup", f"{warmup:g}", "--seed", str(spec.seed), "--io", spec.io,
                           "--connect-rate", f"{spec.connect_rate:g}", "--json",
                           "--ready-file", paths["bots_ready"]]
        progress(f"starting {spec.players} bots")
        bots = _Proc("bots", bots_args, wd, cpu_bots)
        procs.append(bots)
        bots_ready = _wait_ready(paths["bots_ready"], bots, READY_TIMEOUT_S)
        open_at = int(bots_ready["t_ns"]) + int(warmup * 1e9)
        progress(f"warming up {warmup:g} s, then measuring {duration:g} s")
        sleep_until_ns(open_at)
        if server.popen.poll() is not None:
            raise server.failed("exited during the warm-up")
        os.kill(server.popen.pid, signal.SIGUSR1)  # open the server's window
        if _wait_exit(bots, duration + EXIT_TIMEOUT_S + 60) is None:
            bots.stop()
            raise bots.failed("did not finish in time")
        # the server's window closes `duration` after it opened; allow it a little more
        _wait_file(paths["stats"], open_at + int((duration + CLOSE_GRACE_S) * 1e9), server)
        server_rc = server.stop()
        bots_report = _read_json_line(bots.out_path)
        if bots_report is None:
            raise bots.failed("printed no report")
        if not os.path.exists(paths["stats"]):
            raise server.failed("wrote no figures")
        with open(paths["stats"]) as f:
            server_report = json.load(f)
        if server_rc not in (0, None):
            raise server.failed("failed")
        if not bots_report.get("connected"):
            reasons = bots_report.get("error_reasons") or {}
            raise BenchError("no bot connected to the server" + (
                ": " + ", ".join(f"{n} x {why}" for why, n in reasons.items()) if reasons else ""))
        progress("timing the kernel floor (batched send + recv of the same datagrams)")
        probe = _probe(spec, config, server_report)
        extra = {
            "command": command,
            "config": tables,
            "world": world_for(spec.players, spec.visible),
            "server_command": _display(server_args, wd),
            "bots_command": _display(bots_args, wd),
            "machine": {**_machine(cpu_server, cpu_bots), "loadavg_before": load_before,
                        "loadavg_after": _loadavg()},
        }
        return assemble(spec, server_report, bots_report, probe, extra)
    finally:
        for p in reversed(procs):
            p.stop(timeout=10)
        if tmp is not None:
            tmp.cleanup()


def _tail_s(spec: BenchSpec) -> float:
    """Seconds the bots run past the server's window: it opens up to a tick after the
    bots' warm-up ends, and must close before they disconnect."""
    return round(max(BOTS_TAIL_S, 3.0 / spec.tick_rate), 3)


def _probe(spec: BenchSpec, config, server: dict) -> dict:
    from profiling.probe import ProbeShape, run_probe
    players = max(1, round(server["clients_per_tick"]))
    if server["ticks"] <= 0 or server["snapshots"] <= 0:
        return {"kernel_floor_us_per_client_tick": -1.0, "note": "nothing to replay"}
    shape = ProbeShape(players=players, ticks=server["ticks"], snapshots=server["snapshots"],
                       inputs=server["packets_in"], snapshot_hist=server["snapshot_size_hist"])
    result = run_probe(shape, repeats=spec.probe_repeats, io="auto",
                       rx_batch=config.limits.batch_size(config.rules.max_players), max_players=spec.players)
    result["shape"] = {k: v for k, v in asdict(shape).items() if k != "snapshot_hist"}
    return result


def _read_json_line(path: str) -> dict | None:
    """The last line of a file that parses as a JSON object."""
    try:
        with open(path) as f:
            lines = f.read().strip().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            return obj
    return None


def _display(args: list[str], wd: str) -> str:
    """A child's command line as text, temp paths shown as <tmp>."""
    shown = ["xmarks" if a == "cli" else a for a in args[2:]]
    return " ".join(shown).replace(wd, "<tmp>")


def _loadavg() -> list[float]:
    """1, 5 and 15 minute load averages: a busy machine explains noisy figures."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def _machine(cpu_server: int | None, cpu_bots: int | None) -> dict:
    import numba
    import numpy
    return {"cpus": os.cpu_count(), "server_cpu": cpu_server, "bots_cpu": cpu_bots,
            "python": platform.python_version(), "numpy": numpy.__version__,
            "numba": numba.__version__, "kernel": platform.release()}

