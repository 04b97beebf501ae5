"""Read the tick timing ring (tick.timings) and summarise it per phase."""

from __future__ import annotations

import numpy as np

from tick.timings import FIRST_PHASE, PHASES


def phase_summary(rows: np.ndarray) -> dict[str, dict[str, float]]:
    """{phase: {p50, p99, max}} in ms over `rows` (int64[n, COLUMNS]), plus "total"."""
    if len(rows) == 0:
        return {}
    durations = rows[:, FIRST_PHASE:FIRST_PHASE + len(PHASES)].astype(np.float64) / 1e6
    columns = {name: durations[:, k] for k, name in enumerate(PHASES)}
    columns["total"] = durations.sum(axis=1)
    out = {}
    for name, values in columns.items():
        p50, p99 = np.percentile(values, [50, 99])
        out[name] = {"p50": round(float(p50), 4), "p99": round(float(p99), 4),
                     "max": round(float(values.max()), 4)}
    return out


def format_summary(summary: dict[str, dict[str, float]], budget_ms: float) -> str:
    """A small table: one line per phase, ms, with the tick budget for scale."""
    lines = [f"{'phase':<8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}   (budget {budget_ms:.1f} ms)"]
    for name, s in summary.items():
        lines.append(f"{name:<8} {s['p50']:>8.3f} {s['p99']:>8.3f} {s['max']:>8.3f}")
    return "\n".join(lines)
