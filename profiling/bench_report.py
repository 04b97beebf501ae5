"""The report of `xmarks bench`: the server's, the bots' and the probe's figures joined,
targets checked, warnings in words, and the human table (profiling/README.md explains
every figure).
"""

from __future__ import annotations

from typing import Any

from profiling.bench_spec import BenchSpec

#: Share of the window the server may wait for its CPU before the report warns.
WAIT_WARN = 0.02
OPS = {"<=": lambda v, b: v <= b, ">=": lambda v, b: v >= b, "==": lambda v, b: v == b}


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
