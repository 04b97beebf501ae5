"""`xmarks profile`: what a tick timing recording says, as a dict, a text report, a plot.

    analyse(recording, top) -> report dict (the --json output)
    format_profile(report)  -> the text report
    plot_profile(recording, report, path) -> a PNG (matplotlib: the `plot` extra)

Definitions (profiling/README.md, "Reading xmarks profile"):
- a tick's total is the sum of its phases: from its start to the end of its send;
- percentiles are numpy's default (linear interpolation) over every recorded tick;
- a tick is over budget when its total exceeds one tick period (1 / tick_rate); a
  streak is a run of consecutive ticks (consecutive tick numbers) over budget;
- a collection is inside a tick when it started between the tick's start and its end;
  its share is its duration over that tick's total.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone

import numpy as np

from profiling.recording import Recording
from tick.gcwatch import GC_DURATION, GC_GENERATION, GC_START
from tick.timings import COL_START, COL_TICK

QUANTILES = (50, 90, 99)
#: In-tick collections listed in the JSON at most (the longest ones when there are more).
MAX_GC_EVENTS = 1000
#: Streaks listed (the longest ones).
MAX_STREAKS = 10
#: "MOSTLY OK" up to this share of ticks over budget (the bench's overrun target, 1%).
OVER_BUDGET_OK = 0.01
#: The plot's tick-time axis ends at this many budgets (longer ticks are marked at its top).
CLIP_BUDGETS = 4


def _ms(ns: float) -> float:
    return round(float(ns) / 1e6, 6)


def analyse(rec: Recording, top: int = 10) -> dict:
    """The report of recording `rec` with its `top` worst ticks (see the module doc)."""
    ticks = rec.ticks
    n = len(ticks)
    dur = rec.durations_ns.astype(np.float64)
    total = dur.sum(axis=1)
    start = ticks[:, COL_START]
    t0 = int(start[0])
    budget = rec.budget_ns
    gc = _gc_in_ticks(rec, total)
    gc_ms_by_tick = np.zeros(n)
    np.add.at(gc_ms_by_tick, gc["tick_index"], gc["duration_ns"] / 1e6)

    columns = {name: dur[:, k] for k, name in enumerate(rec.phases)}
    columns["total"] = total
    mean_total = float(total.mean())
    percentiles = {}
    for name, values in columns.items():
        qs = np.percentile(values, QUANTILES)
        percentiles[name] = {**{f"p{q}_ms": _ms(v) for q, v in zip(QUANTILES, qs)},
                             "max_ms": _ms(values.max()), "mean_ms": _ms(values.mean()),
                             "share": round(float(values.mean()) / mean_total, 4)
                             if mean_total else 0.0}

    order = np.argsort(-total, kind="stable")[:max(0, top)]
    worst = [{"tick": int(ticks[i, COL_TICK]), "at_s": round((int(start[i]) - t0) / 1e9, 3),
              "total_ms": _ms(total[i]),
              "phases_ms": {p: _ms(dur[i, k]) for k, p in enumerate(rec.phases)},
              "gc_ms": round(float(gc_ms_by_tick[i]), 6)} for i in order]

    over = total > budget
    streaks = _streaks(over, ticks[:, COL_TICK], start, t0)
    end = int(start[-1] + total[-1])
    gc_report = _gc_report(rec, gc, over, t0)
    report = {
        "file": rec.path,
        "format_version": rec.version,
        "tick_rate": rec.tick_rate,
        "budget_ms": round(budget / 1e6, 6),
        "phases": list(rec.phases),
        "ticks": n,
        "first_tick": int(ticks[0, COL_TICK]),
        "last_tick": int(ticks[-1, COL_TICK]),
        "tick_gaps": int(np.count_nonzero(np.diff(ticks[:, COL_TICK]) != 1)),
        "duration_s": round((end - t0) / 1e9, 3),
        "started_unix_ms": int(round(rec.unix_ms(t0))),
        "complete": rec.complete,
        "ignored_bytes": rec.ignored_bytes,
        "loop_overruns": rec.end["overruns"] if rec.end else None,
        "percentiles": percentiles,
        "worst": worst,
        "over_budget": streaks,
        "gc": gc_report,
    }
    report["verdict"] = verdict(report)
    return report


def _streaks(over: np.ndarray, tick: np.ndarray, start: np.ndarray, t0: int) -> dict:
    """Runs of consecutive over-budget ticks: a run breaks at an in-budget tick or at a
    gap in the tick numbers."""
    n = len(over)
    breaks = np.ones(n + 1, bool)  # breaks[i]: a run cannot continue from i-1 into i
    breaks[1:n] = np.diff(tick) != 1
    run_start = over & (breaks[:n] | ~np.concatenate(([False], over[:-1])))
    starts = np.flatnonzero(run_start)
    runs = []
    for s in starts:
        e = s
        while e + 1 < n and over[e + 1] and not breaks[e + 1]:
            e += 1
        runs.append((int(e - s + 1), int(s), int(e)))
    runs.sort(key=lambda r: (-r[0], r[1]))

    def as_dict(run):
        length, s, e = run
        return {"length": length, "first_tick": int(tick[s]), "last_tick": int(tick[e]),
                "at_s": round((int(start[s]) - t0) / 1e9, 3)}

    count = int(over.sum())
    return {
        "ticks": count,
        "pct": round(100.0 * count / n, 3) if n else 0.0,
        "runs": len(runs),
        "isolated": sum(1 for r in runs if r[0] == 1),
        "streaks": sum(1 for r in runs if r[0] >= 2),
        "longest": as_dict(runs[0]) if runs else None,
        "longest_streaks": [as_dict(r) for r in runs[:MAX_STREAKS] if r[0] >= 2],
    }


def _gc_in_ticks(rec: Recording, total: np.ndarray) -> dict:
    """Which tick (row index) each collection started in (-1: between ticks), and the
    phase it started in."""
    g = rec.gc
    start = rec.ticks[:, COL_START]
    at = g[:, GC_START]
    idx = np.searchsorted(start, at, side="right") - 1
    inside = idx >= 0
    safe = np.maximum(idx, 0)
    inside &= at < start[safe] + total[safe]
    phase = np.full(len(g), -1)
    if len(g):
        bounds = np.cumsum(rec.durations_ns[safe], axis=1)  # end of each phase, from start
        offset = (at - start[safe])[:, None]
        phase = np.where(inside, (offset >= bounds).sum(axis=1), -1)
        phase = np.minimum(phase, len(rec.phases) - 1)
    return {"inside": inside, "tick_index": safe[inside], "phase": phase,
            "duration_ns": g[inside, GC_DURATION].astype(np.float64)}


def _gc_report(rec: Recording, gc: dict, over: np.ndarray, t0: int) -> dict:
    g = rec.gc
    inside = gc["inside"]
    rows = g[inside]
    idx = gc["tick_index"]
    total = rec.durations_ns.sum(axis=1)
    events = []
    for k in range(len(rows)):
        i = int(idx[k])
        events.append({
            "tick": int(rec.ticks[i, COL_TICK]), "at_s": round((int(rows[k, GC_START]) - t0) / 1e9, 3),
            "generation": int(rows[k, GC_GENERATION]),
            "duration_ms": _ms(rows[k, GC_DURATION]),
            "share": round(min(1.0, rows[k, GC_DURATION] / total[i]), 4) if total[i] else 1.0,
            "phase": rec.phases[int(gc["phase"][inside][k])],
            "tick_over_budget": bool(over[i])})
    if len(events) > MAX_GC_EVENTS:
        events = sorted(events, key=lambda e: -e["duration_ms"])[:MAX_GC_EVENTS]
        events.sort(key=lambda e: e["at_s"])

    def by_gen(r):
        gens, counts = np.unique(r[:, GC_GENERATION], return_counts=True)
        return {str(int(k)): int(c) for k, c in zip(gens, counts)}

    return {
        "collections": len(g),
        "in_ticks": int(inside.sum()),
        "between_ticks": int((~inside).sum()),
        "by_generation": by_gen(g),
        "in_ticks_by_generation": by_gen(rows),
        "in_ticks_ms": _ms(rows[:, GC_DURATION].sum()) if len(rows) else 0.0,
        "over_budget_ticks_with_gc": int(len(np.unique(idx[over[idx]]))) if len(idx) else 0,
        "lost": rec.end["gc_lost"] if rec.end else 0,
        "events": events,
    }


def verdict(report: dict) -> str:
    """One line: does the recording keep the budget, and if not, what to look at."""
    budget = report["budget_ms"]
    pc = report["percentiles"]
    p99 = pc["total"]["p99_ms"]
    phases = report["phases"]
    heavy = max(phases, key=lambda p: pc[p]["p99_ms"])
    ob = report["over_budget"]
    gc = report["gc"]
    head = (f"p99 tick {p99:.2f} ms = {100 * p99 / budget:.0f}% of the {budget:g} ms budget, "
            f"{heavy} the heaviest phase at p99 ({pc[heavy]['p99_ms']:.2f} ms)")
    if ob["ticks"] == 0:
        return f"OK: no tick over budget; {head}"
    worst = report["worst"][0] if report["worst"] else None
    gc_note = (f"; GC inside {gc['over_budget_ticks_with_gc']} of them"
               if gc["over_budget_ticks_with_gc"] else "")
    longest = ob["longest"]["length"] if ob["longest"] else 0
    over = (f"{ob['ticks']} of {report['ticks']} ticks ({ob['pct']:.2f}%) over budget, "
            f"longest streak {longest}{gc_note}")
    if ob["ticks"] <= OVER_BUDGET_OK * report["ticks"]:
        spike = ""
        if worst:
            top_phase = max(worst["phases_ms"], key=worst["phases_ms"].get)
            spike = (f"; worst tick {worst['tick']} ({worst['total_ms']:.2f} ms, mostly "
                     f"{top_phase})")
        return f"MOSTLY OK: {over}{spike}; {head}"
    return f"OVER BUDGET: {over}; {head}"


# ---- text ----------------------------------------------------------------------------------

def _utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _n(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def format_profile(report: dict) -> str:
    """The text report of analyse()."""
    phases = report["phases"]
    state = "complete" if report["complete"] else "cut short (no END record)"
    if report["ignored_bytes"]:
        state += f", {report['ignored_bytes']} trailing bytes of a partial record ignored"
    overruns = report["loop_overruns"]
    lines = [
        f"recording {report['file']}: {report['ticks']} ticks ({report['first_tick']}.."
        f"{report['last_tick']}) over {report['duration_s']:g} s at {report['tick_rate']:g} Hz "
        f"(budget {report['budget_ms']:.2f} ms), from {_utc(report['started_unix_ms'])}",
        f"  {state}" + (f"; the loop counted {overruns} overruns" if overruns is not None else "")
        + (f"; {report['tick_gaps']} gaps in the tick numbers" if report["tick_gaps"] else ""),
        "",
        f"{'phase':<8} {'p50 ms':>9} {'p90 ms':>9} {'p99 ms':>9} {'max ms':>9} {'mean ms':>9} "
        f"{'share':>6}",
    ]
    for name in (*phases, "total"):
        s = report["percentiles"][name]
        lines.append(f"{name:<8} {s['p50_ms']:>9.3f} {s['p90_ms']:>9.3f} {s['p99_ms']:>9.3f} "
                     f"{s['max_ms']:>9.3f} {s['mean_ms']:>9.3f} {100 * s['share']:>5.1f}%")
    if report["worst"]:
        lines += ["", f"worst {len(report['worst'])} ticks (ms):",
                  f"{'tick':>9} {'at s':>8} {'total':>9} "
                  + " ".join(f"{p:>8}" for p in phases) + f" {'gc':>8}"]
        for w in report["worst"]:
            flag = " *" if w["total_ms"] > report["budget_ms"] else ""
            lines.append(f"{w['tick']:>9} {w['at_s']:>8.2f} {w['total_ms']:>9.3f} "
                         + " ".join(f"{w['phases_ms'][p]:>8.3f}" for p in phases)
                         + f" {w['gc_ms']:>8.3f}{flag}")
    ob = report["over_budget"]
    lines.append("")
    if ob["ticks"]:
        lg = ob["longest"]
        lines.append(f"over budget: {_n(ob['ticks'], 'tick')} ({ob['pct']:.2f}%): "
                     f"{_n(ob['streaks'], 'streak')} of 2+ ticks, {ob['isolated']} isolated; "
                     f"longest {_n(lg['length'], 'tick')} ({lg['first_tick']}.."
                     f"{lg['last_tick']}, at {lg['at_s']:.2f} s)")
        for s in ob["longest_streaks"][1:5]:
            lines.append(f"  then {s['length']} ticks ({s['first_tick']}..{s['last_tick']}, "
                         f"at {s['at_s']:.2f} s)")
    else:
        lines.append("over budget: no tick")
    gc = report["gc"]
    gens = ", ".join(f"gen{g} {n}" for g, n in gc["in_ticks_by_generation"].items())
    lines.append(f"gc: {_n(gc['collections'], 'collection')}, {gc['in_ticks']} inside ticks"
                 + (f" ({gens}; {gc['in_ticks_ms']:.3f} ms in all)" if gc["in_ticks"] else "")
                 + f", {gc['between_ticks']} between ticks"
                 + (f"; {gc['lost']} not recorded (ring full)" if gc["lost"] else ""))
    shown = sorted(gc["events"], key=lambda e: -e["duration_ms"])[:max(5, len(report["worst"]))]
    if shown:
        lines.append(f"{'tick':>9} {'gen':>4} {'ms':>9} {'share':>6}  phase")
        for e in sorted(shown, key=lambda e: e["at_s"]):
            lines.append(f"{e['tick']:>9} {e['generation']:>4} {e['duration_ms']:>9.3f} "
                         f"{100 * e['share']:>5.1f}%  {e['phase']}"
                         + ("  (tick over budget)" if e["tick_over_budget"] else ""))
    lines += ["", f"verdict: {report['verdict']}"]
    return "\n".join(lines)


# ---- plot ----------------------------------------------------------------------------------

def plot_profile(rec: Recording, report: dict, path: str) -> None:
    """Write a PNG to `path`: (a) each tick's phases stacked against the budget line,
    (b) a histogram of each phase's durations. Needs matplotlib (ImportError without)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ticks = rec.ticks
    start = ticks[:, COL_START]
    x = (start - start[0]) / 1e9
    ms = rec.durations_ns.astype(np.float64) / 1e6
    total = ms.sum(axis=1)
    budget = report["budget_ms"]
    fig = Figure(figsize=(12, 8), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, height_ratios=(3, 2))

    top.stackplot(x, ms.T, labels=rec.phases, linewidth=0)
    top.axhline(budget, color="red", linestyle="--", linewidth=1,
                label=f"budget {budget:g} ms ({rec.tick_rate:g} Hz)")
    # a few huge ticks (the first ones, a stall) would flatten the rest: cut the axis at
    # CLIP_BUDGETS budgets and mark the ticks above it at its top edge
    ceiling = max(budget, min(float(total.max()), CLIP_BUDGETS * budget)) * 1.1
    events = report["gc"]["events"]
    if events:
        by_tick = {int(t): i for i, t in enumerate(ticks[:, COL_TICK])}
        gi = [by_tick[e["tick"]] for e in events if e["tick"] in by_tick]
        top.scatter(x[gi], np.minimum(total[gi], ceiling), marker="v", color="black", s=18,
                    zorder=4, clip_on=False, label="GC inside the tick")
    above = total > ceiling
    if above.any():
        top.scatter(x[above], np.full(int(above.sum()), ceiling), marker="^", color="red",
                    s=24, zorder=3, clip_on=False,
                    label=f"{int(above.sum())} ticks above {ceiling:.0f} ms "
                          f"(max {float(total.max()):.1f} ms)")
    top.set_xlim(x[0], x[-1] if x[-1] > x[0] else x[0] + 1)
    top.set_ylim(0, ceiling)
    top.set_xlabel("time since the first recorded tick (s)")
    top.set_ylabel("tick time (ms), phases stacked")
    top.set_title(f"{os.path.basename(rec.path)}: {len(ticks)} ticks, p99 {report['percentiles']['total']['p99_ms']:.2f} ms, "
                  f"{report['over_budget']['ticks']} over budget")
    top.legend(loc="upper right", fontsize="small", ncols=2)

    positive = ms[ms > 0]
    lo = max(float(positive.min()) if positive.size else 1e-3, 1e-4)
    hi = max(float(total.max()), budget, lo * 10)
    bins = np.geomspace(lo, hi, 60)
    for k, name in enumerate(rec.phases):
        bottom.hist(np.clip(ms[:, k], lo, None), bins=bins, histtype="step", label=name)
    bottom.hist(np.clip(total, lo, None), bins=bins, histtype="step", color="black",
                linewidth=1.5, label="total")
    bottom.axvline(budget, color="red", linestyle="--", linewidth=1, label="budget")
    bottom.set_xscale("log")
    bottom.set_yscale("log")
    bottom.set_xlabel("duration (ms, log scale)")
    bottom.set_ylabel("ticks")
    bottom.set_title("per-phase durations")
    bottom.legend(loc="upper right", fontsize="small", ncols=2)
    fig.savefig(path, format="png")
