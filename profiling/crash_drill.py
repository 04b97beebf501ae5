"""The long crash drill: a server killed with SIGKILL again and again while bots claim.

    python -m profiling.crash_drill --bots 300 --rounds 5 --round-s 40     # ~4 min
    python -m profiling.crash_drill --bots 60 --rounds 3 --round-s 15 --json   # short

One directory, one world. Each round starts `xmarks serve` there (the first round a new
world, every later one resumes it from the checkpoint and the ledger), plays `--bots`
Python bots (the same client ids every round, so they are the same players coming back)
for `--round-s` seconds at a random point of which the server is killed with SIGKILL.
After each kill the drill reads the ledger and checks:

- every claim any bot was shown as confirmed is in the ledger, under its client id
  (`lost_confirmed` must stay 0);
- the next round's server resumes: same world, the hunt id never goes back, the log says
  "resumed world", and the bots get their scores back (`scores_back`: bots whose first
  score after rejoining is at least their score in the ledger);
- confirmed claims' treasures are not buried again in the same generation (checked in
  the checkpoint the last round's server writes when it is stopped with SIGTERM, which
  must exit 0 within 5 s).

Python bots, not the horde: only `net.client` tracks confirmed claims ("my" rows). They
cost about 40 us of Python per bot per tick, so a few hundred is the most one core of a
2-core machine drives at 20 Hz next to the server.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time

from net.keys import load_key
from profiling.bench_spec import to_toml, world_for
from sim import schema as S
from sim.rules import GameRules
from store.checkpoint import load_checkpoint
from store.sqlite_ledger import SqliteLedger, read_world_uid
from tick.clock import now_s
from tick.swarm import Swarm

READY_TIMEOUT_S = 180.0


def _serve(where: str, port: int, log) -> subprocess.Popen:
    ready = os.path.join(where, "ready.json")
    if os.path.exists(ready):
        os.remove(ready)
    env = {k: v for k, v in os.environ.items() if not k.startswith("XMARKS_")}
    env["XMARKS_ADMIN_ENABLED"] = "false"
    proc = subprocess.Popen([sys.executable, "-m", "cli", "serve", "--config", "world.toml",
                             "--port", str(port), "--ready-file", "ready.json",
                             "--duration", "3600"], cwd=where, stdout=subprocess.DEVNULL,
                            stderr=log, env=env)
    deadline = now_s() + READY_TIMEOUT_S
    while not os.path.exists(ready):
        if proc.poll() is not None or now_s() > deadline:
            proc.kill()
            raise RuntimeError(f"the server did not start (see {log.name})")
        time.sleep(0.05)
    return proc


def _records(where: str) -> list:
    path = os.path.join(where, "xmarks-ledger.sqlite3")
    ledger = SqliteLedger(path, read_world_uid(path), clock=now_s)
    try:
        return ledger.records_since(0)
    finally:
        ledger.close(1.0)


def _scores(records: list, hunt: int) -> dict[int, int]:
    out: dict[int, int] = {}
    for r in records:
        if r.hunt == hunt and r.kind in ("join", "claim", "score"):
            out[r.client_id] = r.score
    return out


def drill(bots: int, rounds: int, round_s: float, seed: int = 1) -> dict:
    rng = random.Random(seed)
    where = tempfile.mkdtemp(prefix="xmarks-crash-drill-")
    world = world_for(bots, 32.0)
    rules = dict(world_width=world["world_width"], world_height=world["world_height"],
                 treasure_count=world["treasure_count"], max_players=bots, seed=seed,
                 dig_time=0.5, hunt_duration=3600.0)
    with open(os.path.join(where, "world.toml"), "w") as f:
        f.write(to_toml({"game": rules, "store": {"checkpoint_every": 2.0},
                         "tick": {"status_every": 0.0}}))
    port = 20000 + rng.randrange(20000)
    client_ids = [rng.getrandbits(62) | 1 for _ in range(bots)]
    confirmed: dict[tuple[int, int, int], int] = {}  # (client, tick, treasure) -> value
    report = {"bots": bots, "rounds": [], "directory": where}
    last_hunt = -1
    prev_scores: dict[int, int] = {}
    with open(os.path.join(where, "serve.log"), "w") as log:
        for k in range(rounds):
            server = _serve(where, port, log)
            key = load_key(os.path.join(where, "xmarks.key"))
            swarm = Swarm(("127.0.0.1", port), bots, seed=seed + k, key=key,
                          client_ids=client_ids, progress=None)
            stop = threading.Event()
            thread = threading.Thread(target=swarm.run, args=(round_s + 60,),
                                      kwargs={"stop": stop.is_set}, daemon=True)
            thread.start()
            first_scores: dict[int, int] = {}
            kill_at = now_s() + round_s * rng.uniform(0.6, 1.0)
            last = k == rounds - 1
            while now_s() < kill_at and thread.is_alive():
                for bot in swarm.bots:  # each bot's first score after it (re)joined
                    snap = bot.latest
                    if snap is not None and bot.client.token.client_id not in first_scores:
                        first_scores[bot.client.token.client_id] = snap.score
                time.sleep(0.05)
            if last:
                server.send_signal(signal.SIGTERM)
                t0 = now_s()
                code = server.wait(timeout=30)
                stopped_s = now_s() - t0
            else:
                server.send_signal(signal.SIGKILL)
                code = server.wait(timeout=30)
                stopped_s = None
            for bot in swarm.bots:
                cid = bot.client.token.client_id
                for (tick, treasure), value in bot.client.confirmed.items():
                    confirmed[(cid, tick, treasure)] = value
            stop.set()
            thread.join(timeout=30)
            records = _records(where)
            claims = {(r.client_id, r.tick & 0xFFFFFFFF, r.treasure) for r in records
                      if r.kind == "claim"}
            hunt = max(r.hunt for r in records)
            scores = _scores(records, hunt)
            round_report = {
                "round": k + 1, "ended_by": "SIGTERM" if last else "SIGKILL",
                "exit_code": code, "stop_s": None if stopped_s is None else round(stopped_s, 2),
                "connected": swarm.connected, "claims_in_ledger": len(claims),
                "confirmed_seen": len(confirmed),
                "lost_confirmed": len(set(confirmed) - claims), "hunt": hunt,
                "hunt_went_back": hunt < last_hunt,
            }
            if k:
                round_report["scores_back"] = sum(
                    1 for cid, score in first_scores.items() if score >= prev_scores.get(cid, 0))
                round_report["bots_seen"] = len(first_scores)
            report["rounds"].append(round_report)
            prev_scores, last_hunt = scores, hunt
    with open(os.path.join(where, "serve.log")) as f:
        report["resumes_logged"] = f.read().count("resumed world")
    cp = load_checkpoint(os.path.join(where, "xmarks-checkpoint.npz"), GameRules(**rules))
    by_key = {(r.client_id, r.tick & 0xFFFFFFFF, r.treasure): r for r in _records(where)
              if r.kind == "claim"}
    ti = cp.arrays["ti"]
    report["reburied_same_generation"] = sum(
        1 for key in confirmed if key in by_key
        and ti[S.T_GEN, key[2]] == by_key[key].treasure_gen
        and ti[S.T_STATE, key[2]] == S.BURIED)
    report["lost_confirmed_total"] = len(set(confirmed) - set(by_key))
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bots", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--round-s", type=float, default=15.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = drill(args.bots, args.rounds, args.round_s, args.seed)
    if args.json:
        print(json.dumps(report))
        return
    for r in report["rounds"]:
        print(" | ".join(f"{k} {v}" for k, v in r.items()))
    print(f"resumes logged {report['resumes_logged']} | confirmed claims lost "
          f"{report['lost_confirmed_total']} | reburied in the same generation "
          f"{report['reburied_same_generation']} | files in {report['directory']}")


if __name__ == "__main__":
    main()
