"""Time the durable layer: ledger group commits and world checkpoints.

    python -m profiling.ledger_bench [--ticks 100] [--tick-ms 50] [--claims 0,10,100,1000]
        [--players 10000] [--dir PATH] [--json]

Ledger: one SqliteLedger per (synchronous, claims per tick); the bench submits one tick of
claim records every --tick-ms, as the server would, and reports from the writer thread:
commit latency (one transaction: INSERT OR IGNORE of the tick's records + COMMIT) and
confirm latency (submit -> confirmed_tick covers the tick: what a player waits for its
claim to be confirmed), p50 / p99 in ms; the tick thread's side (submit, and building the
records from the world's events) in microseconds; and records per second with no pacing
(the writer's ceiling: it then commits several ticks per transaction).
Checkpoint: a World of --players joined players: capture (np.copy of the state arrays, on
the tick thread), save (digest, npz, fsync, rename, fsync dir; on the writer thread) and
load, median of several runs.

The files go to --dir (default: a temporary folder in the current directory, so the
fsyncs hit the disk the server would use, not a tmpfs); they are removed afterwards.
Numbers are for comparing runs on one machine, not absolutes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time

import numpy as np

from sim import schema as S
from sim.rules import GameRules
from sim.world import new_world
from store.checkpoint import capture, load_checkpoint, save_checkpoint
from store.records import LedgerRecord, Recorder
from store.sqlite_ledger import SqliteLedger

UID = 4242


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def claim_records(uid: int, first_seq: int, tick: int, n: int) -> list[LedgerRecord]:
    return [LedgerRecord(uid, first_seq + i, tick, "claim", 0, 0x9E3779B97F4A7C15 * (i + 1) % 2**64,
                         i, f"player-{i}", i % 256, tick // 100, 1 + i % 5, 10 * tick + i,
                         1_800_000_000_000 + 50 * tick, None) for i in range(n)]


def build_cost_us(claims: int, repeats: int = 200) -> float:
    """Microseconds for Recorder.world_records over a tick of `claims` claim events."""
    if claims == 0:
        return 0.0
    rules = GameRules(max_players=max(claims, 1), treasure_count=max(claims, 1), seed=1)
    world = new_world(rules, 20.0)
    recorder = Recorder(UID, rules.max_players)
    for i in range(claims):
        world.events[i] = (S.EVENT_CLAIM, 7, i, 1, i, 3)
    world.clock[S.EVENT_COUNT] = claims
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        recorder.world_records(world, 0)
        times.append((time.perf_counter_ns() - t0) / 1e3)
    return float(np.median(times))


def bench_paced(folder: str, sync: str, claims: int, ticks: int, tick_s: float) -> dict:
    path = os.path.join(folder, f"paced-{sync}-{claims}.sqlite3")
    ledger = SqliteLedger(path, UID, clock=time.perf_counter, synchronous=sync)
    commits: list[tuple[float, int]] = []
    confirmed_at: list[tuple[float, int]] = []

    def hook(seconds: float, n: int) -> None:
        commits.append((seconds, n))
        confirmed_at.append((time.perf_counter(), ledger.confirmed_tick()))

    ledger.on_commit = hook
    submitted_at = []
    submit_us = []
    seq = 1
    deadline = time.perf_counter()
    for tick in range(ticks):
        records = claim_records(UID, seq, tick, claims)
        seq += claims
        t0 = time.perf_counter()
        ledger.submit(tick, records)
        submit_us.append((time.perf_counter() - t0) * 1e6)
        submitted_at.append(t0)
        deadline += tick_s
        time.sleep(max(0.0, deadline - time.perf_counter()))
    ok = ledger.close(60.0)
    confirm_ms = []
    j = 0
    for tick, t0 in enumerate(submitted_at):
        while j < len(confirmed_at) and confirmed_at[j][1] < tick:
            j += 1
        if j < len(confirmed_at):
            confirm_ms.append((confirmed_at[j][0] - t0) * 1e3)
    commit_ms = [s * 1e3 for s, _ in commits]
    return {"sync": sync, "claims_per_tick": claims, "ticks": ticks, "all_committed": ok,
            "commits": len(commits), "commit_p50_ms": _pct(commit_ms, 50),
            "commit_p99_ms": _pct(commit_ms, 99), "confirm_p50_ms": _pct(confirm_ms, 50),
            "confirm_p99_ms": _pct(confirm_ms, 99), "submit_p99_us": _pct(submit_us, 99),
            "build_us": build_cost_us(claims)}


def bench_unpaced(folder: str, sync: str, claims: int = 1000, ticks: int = 200) -> dict:
    """Records per second when the writer never waits for the next tick."""
    path = os.path.join(folder, f"unpaced-{sync}.sqlite3")
    ledger = SqliteLedger(path, UID, clock=time.perf_counter, synchronous=sync)
    batches = [claim_records(UID, 1 + t * claims, t, claims) for t in range(ticks)]
    commits = []
    ledger.on_commit = lambda s, n: commits.append(n)
    t0 = time.perf_counter()
    for tick, records in enumerate(batches):
        ledger.submit(tick, records)
    ok = ledger.close(120.0)
    seconds = time.perf_counter() - t0
    return {"sync": sync, "records": claims * ticks, "seconds": seconds, "all_committed": ok,
            "records_per_s": claims * ticks / seconds, "commits": len(commits)}


def bench_checkpoint(folder: str, players: int, repeats: int = 5) -> dict:
    rules = GameRules(max_players=players, seed=1)
    world = new_world(rules, 20.0)
    recorder = Recorder(UID, players)
    for slot in range(players):
        world.join(slot)
        recorder.joined(0, 0, slot, slot + 1, f"player-{slot}", 0)
    for _ in range(3):
        world.step()
    path = os.path.join(folder, "checkpoint.npz")
    copy_ms, save_ms, load_ms = [], [], []
    for _ in range(max(20, repeats)):
        t0 = time.perf_counter()
        cp = capture(world, recorder)
        copy_ms.append((time.perf_counter() - t0) * 1e3)
    state_bytes = sum(a.nbytes for a in cp.arrays.values())
    for _ in range(repeats):
        cp = capture(world, recorder)
        t0 = time.perf_counter()
        save_checkpoint(path, cp)
        save_ms.append((time.perf_counter() - t0) * 1e3)
        t0 = time.perf_counter()
        load_checkpoint(path, rules)
        load_ms.append((time.perf_counter() - t0) * 1e3)
    return {"players": players, "state_bytes": state_bytes, "file_bytes": os.path.getsize(path),
            "capture_ms": float(np.median(copy_ms)), "capture_p99_ms": _pct(copy_ms, 99),
            "save_ms": float(np.median(save_ms)), "load_ms": float(np.median(load_ms))}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ticks", type=int, default=100, help="paced ticks per configuration")
    ap.add_argument("--tick-ms", type=float, default=50.0)
    ap.add_argument("--claims", default="0,10,100,1000", help="claims per tick, comma-separated")
    ap.add_argument("--players", type=int, default=10_000, help="players in the checkpointed world")
    ap.add_argument("--dir", default=None, help="where the files go (default: a temporary "
                                               "folder in the current directory)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    claims = [int(c) for c in args.claims.split(",")]
    folder = tempfile.mkdtemp(prefix="xmarks-ledger-bench-", dir=args.dir or ".")
    try:
        paced = [bench_paced(folder, sync, n, args.ticks, args.tick_ms / 1e3)
                 for sync in ("FULL", "NORMAL") for n in claims]
        unpaced = [bench_unpaced(folder, sync) for sync in ("FULL", "NORMAL")]
        checkpoint = bench_checkpoint(folder, args.players)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if args.json:
        print(json.dumps({"paced": paced, "unpaced": unpaced, "checkpoint": checkpoint}, indent=1))
        return
    print(f"ledger: one commit per {args.tick_ms:g} ms tick, {args.ticks} ticks per row")
    print(f"{'sync':>6} {'claims/tick':>11} {'commits':>7} {'commit p50':>10} {'p99 ms':>7}"
          f" {'confirm p50':>11} {'p99 ms':>7} {'submit p99 us':>13} {'build us':>8}")
    for r in paced:
        ms = [f"{r[k]:.2f}" if r["commits"] else "-" for k in
              ("commit_p50_ms", "commit_p99_ms", "confirm_p50_ms", "confirm_p99_ms")]
        print(f"{r['sync']:>6} {r['claims_per_tick']:>11} {r['commits']:>7} {ms[0]:>10} "
              f"{ms[1]:>7} {ms[2]:>11} {ms[3]:>7} {r['submit_p99_us']:>13.1f} "
              f"{r['build_us']:>8.1f}")
    print("(a tick without records commits nothing: it is confirmed once the ticks before it are)")
    print("ledger, unpaced (the writer's ceiling):")
    for r in unpaced:
        print(f"{r['sync']:>6} {r['records']:>9} records in {r['commits']:>4} commits: "
              f"{r['records_per_s']:>10,.0f} records/s")
    c = checkpoint
    print(f"checkpoint at {c['players']} players: state {c['state_bytes'] / 1e6:.2f} MB, file "
          f"{c['file_bytes'] / 1e6:.2f} MB | capture {c['capture_ms']:.3f} ms (p99 "
          f"{c['capture_p99_ms']:.3f}) | save {c['save_ms']:.1f} ms | load {c['load_ms']:.1f} ms")


if __name__ == "__main__":
    main()
