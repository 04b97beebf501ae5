"""Time the per-tick kernels in process, without sockets: decode, step and encode at N players.

    python -m profiling.kernels --players 1000 --players 10000 --ticks 200 [--visible 32]
        [--encode-threads 2]

Every player is a real session (connected through ServerProtocol) that sends one INPUT per
tick; it keeps a heading and turns at random about every `turn_every` ticks, digs now and
then, and acks the newest snapshot (as a client that receives everything). The batch of
inputs is decoded, the world stepped and every snapshot encoded, as the server's tick
does. The world is sized so about `visible` other players are in view of each. Prints the
median and p99 per phase (ms) and snapshot sizes. Numbers are for comparing runs on one
machine, not absolutes.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import time
from dataclasses import replace

import numpy as np

from net.batch import DatagramBatch
from net.client import ClientProtocol
from net.limits import NetLimits
from net.loopback import connect_in_memory
from net.security import SecuritySettings
from net.server import ServerProtocol
from net.token import issue_token
from sim.rules import GameRules
from sim.world import new_world
from tick.encoders import EncodeCrew
from tick.warmup import warm_up


def world_side(players: int, view_radius: float, visible: float) -> float:
    """The square world's side giving about `visible` players within view_radius of each."""
    return min(65536.0, math.sqrt(players * math.pi * view_radius ** 2 / visible))


def measure(players: int, ticks: int, tick_rate: float = 20.0, seed: int = 1,
            visible: float = 32.0, turn_every: int = 40, encode_threads: int = 1) -> dict:
    """Run `ticks` ticks with `players` sessions; return per-phase ms stats and sizes."""
    base = GameRules()
    side = world_side(players, base.view_radius, visible)
    treasures = max(16, min(65535, int(base.treasure_count * (side / base.world_width) ** 2)))
    rules = replace(base, max_players=players, seed=seed, world_width=side, world_height=side,
                    treasure_count=treasures)
    limits = replace(NetLimits(), rx_batch=players, session_timeout=3600.0,
                     encode_threads=encode_threads)
    warm_up(rules, limits, tick_rate)
    world = new_world(rules, tick_rate)
    key, server = os.urandom(32), ("127.0.0.1", 7777)
    # every player shares 127.0.x.1 and they all join at t = 0: no per-address limits
    security = SecuritySettings(connect_rate=0.0, connect_rate_per_address=0.0,
                                max_sessions_per_address=0, packet_rate=0.0)
    proto = ServerProtocol(world, limits, tick_rate, random.Random(seed), key=key,
                           address=server, security=security, unix_origin_ms=10**12)
    clients = []
    for i in range(players):
        client = ClientProtocol(issue_token(key, i + 1, [server], f"p{i}", 10**9, 3600),
                                salt=i + 1)
        addr = (f"127.0.{i // 50000}.1", 10000 + i % 50000)
        connect_in_memory(proto, client, addr)
        clients.append((client, addr))
    crew = EncodeCrew(proto)  # encode_threads parts, as the server runs them
    rng = random.Random(seed)
    batch = DatagramBatch.allocate(players)
    ip = [int.from_bytes(bytes(map(int, a[0].split("."))), "big") for _, a in clients]
    phases = {"decode": [], "step": [], "encode": []}
    sizes = []
    headings = [rng.uniform(0, 2 * math.pi) for _ in clients]
    last_tick = 0
    for tick in range(ticks):
        batch.count = 0
        for i, (client, addr) in enumerate(clients):
            if rng.random() < 1.0 / turn_every:
                headings[i] = rng.uniform(0, 2 * math.pi)
            client.last_snapshot_tick = last_tick  # as if every snapshot arrived
            packet = client.input(int(127 * math.cos(headings[i])),
                                  int(127 * math.sin(headings[i])), rng.random() < 0.05,
                                  tick / tick_rate)
            batch.put(packet, ip[i], addr[1])
        t0 = time.perf_counter_ns()
        proto.receive_batch(batch, tick)
        t1 = time.perf_counter_ns()
        world.step()
        t2 = time.perf_counter_ns()
        n = crew.encode()
        t3 = time.perf_counter_ns()
        last_tick = world.tick - 1
        phases["decode"].append(t1 - t0)
        phases["step"].append(t2 - t1)
        phases["encode"].append(t3 - t2)
        if tick >= ticks // 4:  # past the first full snapshots
            sizes.append(np.diff(proto.out_off[:n + 1]))
    all_sizes = np.concatenate(sizes)
    out = {"players": players, "ticks": ticks}
    for name, values in phases.items():
        ms = np.asarray(values, np.float64) / 1e6
        out[name] = {"p50": round(float(np.median(ms)), 4),
                     "p99": round(float(np.percentile(ms, 99)), 4)}
    out["encode_us_per_client"] = round(out["encode"]["p50"] * 1000 / players, 3)
    out["snapshot_bytes"] = {"mean": round(float(all_sizes.mean()), 1),
                             "p99": int(np.percentile(all_sizes, 99)),
                             "max": int(all_sizes.max())}
    out["world_side"] = round(side, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--players", type=int, action="append")
    parser.add_argument("--ticks", type=int, default=200)
    parser.add_argument("--visible", type=float, default=32.0)
    parser.add_argument("--encode-threads", type=int, default=1,
                        help="encode in this many parts on as many threads (net encode_threads)")
    args = parser.parse_args()
    for players in args.players or [1000, 10000]:
        r = measure(players, args.ticks, visible=args.visible,
                    encode_threads=args.encode_threads)
        print(f"{players:>6} players: decode p50 {r['decode']['p50']:.3f} ms "
              f"(p99 {r['decode']['p99']:.3f}) | step p50 {r['step']['p50']:.3f} ms "
              f"(p99 {r['step']['p99']:.3f}) | encode p50 {r['encode']['p50']:.3f} ms "
              f"(p99 {r['encode']['p99']:.3f}, {r['encode_us_per_client']} us/client) | "
              f"snapshot bytes mean {r['snapshot_bytes']['mean']} p99 {r['snapshot_bytes']['p99']} "
              f"max {r['snapshot_bytes']['max']} (world {r['world_side']})")


if __name__ == "__main__":
    main()
