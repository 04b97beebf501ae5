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
(bots) and profiling/probe.py (floor); profiling/bench_spec.py says what to run (spec,
scenarios, world sizing, config) and profiling/bench_report.py joins the figures, checks
targets and formats.
"""

from __future__ import annotations

import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
from dataclasses import asdict
from typing import Callable

from profiling.bench_report import assemble
from profiling.bench_spec import BenchSpec, bench_config, to_toml, validate_config, world_for
from tick.clock import now_ns, sleep_until_ns

#: Seconds a process may take to start (first run: numba compiles every kernel).
READY_TIMEOUT_S = 600.0
#: Seconds after the bots' end that the server's window may still need to close.
CLOSE_GRACE_S = 10.0
EXIT_TIMEOUT_S = 30.0
#: Seconds the bots keep playing after the server's window closes (see _tail_s).
BOTS_TAIL_S = 0.5
POLL_NS = 10_000_000
#: While waiting on a child: how often its log is read for progress lines to pass on,
#: and how often "measuring: N s left" is said.
WATCH_NS = 200_000_000
MEASURE_EVERY_NS = 5_000_000_000
#: Lines of the children's logs (tick/warmup.py, tick/swarm.py) passed on as progress.
KERNEL_LINE = re.compile(r"((?:compiling|compiled) \S+.*|warm-up took .*)$")
BOTS_LINE = re.compile(r"(\d+/\d+ bots connected.*|all \d+ bots connected.*)$")


class BenchError(RuntimeError):
    """The server or the bots failed; the run has no valid figures (exit 1)."""


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


class _Follow:
    """The new whole lines of a child's log file, each time lines() is called."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.offset = 0
        self.rest = b""

    def lines(self) -> list[str]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return []
        self.offset += len(data)
        *whole, self.rest = (self.rest + data).split(b"\n")
        return [line.decode(errors="replace") for line in whole]


def _relay(follow: _Follow, pattern: re.Pattern, progress: Callable[[str], None]) -> None:
    """Pass on the child's new log lines that match `pattern` (its group 1)."""
    for line in follow.lines():
        m = pattern.search(line)
        if m:
            progress(m.group(1))


def _wait_exit_watching(proc: _Proc, timeout_s: float, watch: Callable[[], None]) -> int | None:
    """proc's exit code, calling watch() every WATCH_NS meanwhile; None after timeout_s."""
    deadline = now_ns() + int(timeout_s * 1e9)
    while True:
        watch()
        rc = proc.popen.poll()
        if rc is not None:
            watch()
            return rc
        if now_ns() > deadline:
            return None
        sleep_until_ns(min(deadline, now_ns() + WATCH_NS))


def _wait_file(path: str, until_ns: int, proc: _Proc) -> bool:
    while not os.path.exists(path):
        if now_ns() > until_ns or proc.popen.poll() is not None:
            return os.path.exists(path)
        sleep_until_ns(now_ns() + POLL_NS)
    return True


def _cpus(pin: bool, encode_threads: int = 1) -> tuple[int | None, int | None]:
    """(server cpu, bots cpu): two different cores when pinning and there are two. A server
    encoding on several threads is left free to use every core (the bots keep theirs)."""
    if not pin or not hasattr(os, "sched_getaffinity"):
        return None, None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return (None if encode_threads > 1 else cpus[0]), cpus[1]


def run_bench(spec: BenchSpec, progress: Callable[[str], None] = lambda _: None,
              command: str = "", workdir: str | None = None,
              record_timings: str | None = None) -> dict:
    """Run one bench; return the report (see assemble). `command` is recorded as given
    (the command line that asked for the run). Raises BenchUsageError for a spec the
    server refuses, BenchError when a process fails or no bot connected.

    progress: called with a line at each step (kernels compiling or loaded, bots
    connecting n/N, seconds of measurement left, ...). record_timings: a file the
    measured server records every tick's timings in (`xmarks serve --record-timings`:
    its whole run, the bots' connect ramp included; `xmarks profile` reads it)."""
    spec.check()
    load_before = _loadavg()
    own_dir = workdir is None
    tmp = tempfile.TemporaryDirectory(prefix="xmarks-bench-") if own_dir else None
    wd = tmp.name if tmp else workdir
    procs: list[_Proc] = []
    try:
        tables = bench_config(spec)
        key_path = os.path.join(wd, "xmarks.key")  # made by the first start, 0600
        tables["security"]["key_file"] = key_path
        # the ledger and checkpoints are measured as deployed, in the bench's directory
        # (--ledger memory / none: to see what the SQLite writer costs)
        tables["store"] = {"ledger_path": os.path.join(wd, "xmarks-ledger.sqlite3"),
                           "checkpoint_path": os.path.join(wd, "xmarks-checkpoint.npz"),
                           "ledger_backend": spec.ledger}
        config_path = os.path.join(wd, "bench.toml")
        with open(config_path, "w") as f:
            f.write(to_toml(tables))
        config = validate_config(config_path)
        warmup, duration = spec.warmup_s, spec.duration
        cpu_server, cpu_bots = _cpus(spec.pin, spec.encode_threads)
        paths = {k: os.path.join(wd, f"{k}.json") for k in ("server_ready", "bots_ready", "stats")}
        cli = [sys.executable, "-m", "cli"]
        # --duration only as a safety net: the bench stops the server itself
        safety = READY_TIMEOUT_S + warmup + duration + 120
        server_args = cli + ["serve", "--config", config_path, "--log-level", "warning",
                             "--duration", f"{safety:g}", "--stats-json", paths["stats"],
                             "--stats-signal", "--stats-for", f"{duration:g}",
                             "--ready-file", paths["server_ready"]]
        if record_timings:
            server_args += ["--record-timings", os.path.abspath(record_timings)]
        # A throwaway start first: when a kernel source changed since the last run, numba
        # compiles here, and the measured server loads every kernel from the cache (a
        # compile in the measured process would inflate its RSS by 200+ MB).
        progress("loading the server's kernels (compiled once after a kernel edit)")
        prewarm = _Proc("prewarm", cli + ["serve", "--config", config_path, "--duration",
                                          "0.05", "--log-level", "info"], wd, cpu_server)
        procs.append(prewarm)
        kernels = _Follow(prewarm.err_path)
        if _wait_exit_watching(prewarm, READY_TIMEOUT_S,
                               lambda: _relay(kernels, KERNEL_LINE, progress)) != 0:
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
                           "--key-file", key_path,
                           "--ready-file", paths["bots_ready"]]
        progress(f"starting {spec.players} bots")
        bots = _Proc("bots", bots_args, wd, cpu_bots)
        procs.append(bots)
        bots_ready = _wait_ready(paths["bots_ready"], bots, READY_TIMEOUT_S)
        open_at = int(bots_ready["t_ns"]) + int(warmup * 1e9)
        progress(f"warming up {warmup:g} s, then measuring {duration:g} s")
        connecting = _Follow(bots.err_path)
        while now_ns() < open_at:  # the bots connect meanwhile: pass their count on
            _relay(connecting, BOTS_LINE, progress)
            sleep_until_ns(min(open_at, now_ns() + WATCH_NS))
        if server.popen.poll() is not None:
            raise server.failed("exited during the warm-up")
        os.kill(server.popen.pid, signal.SIGUSR1)  # open the server's window
        progress(f"measuring {duration:g} s")
        if _wait_exit_watching(bots, duration + EXIT_TIMEOUT_S + 60,
                               _measuring(open_at, duration, connecting, progress)) is None:
            bots.stop()
            raise bots.failed("did not finish in time")
        # the server's window closes `duration` after it opened; allow it a little more
        _wait_file(paths["stats"], open_at + int((duration + CLOSE_GRACE_S) * 1e9), server)
        server_rc = server.stop()
        if record_timings:
            progress(f"tick timings recorded in {record_timings} "
                     f"(xmarks profile {record_timings})")
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
        progress("reporting")
        return assemble(spec, server_report, bots_report, probe, extra)
    finally:
        for p in reversed(procs):
            p.stop(timeout=10)
        if tmp is not None:
            tmp.cleanup()


def _measuring(open_at: int, duration: float, connecting: _Follow,
               progress: Callable[[str], None]) -> Callable[[], None]:
    """A watch for the measured part: "measuring: N s left" every MEASURE_EVERY_NS, and
    the bots' connect lines if some are still connecting."""
    close_at = open_at + int(duration * 1e9)
    state = {"next": open_at + MEASURE_EVERY_NS, "closed": False}

    def watch() -> None:
        _relay(connecting, BOTS_LINE, progress)
        now = now_ns()
        if now >= close_at:
            if not state["closed"]:
                state["closed"] = True
                progress("measured; waiting for both reports")
        elif now >= state["next"]:
            state["next"] = now + MEASURE_EVERY_NS
            progress(f"measuring: {(close_at - now) / 1e9:.0f} s left")
    return watch


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
