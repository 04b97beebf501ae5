"""Compile (or load from numba's cache) every per-tick kernel before tick 0, and say so.

A cold start compiles some fifty kernels (30-60 s on a 2-core machine), a warm one loads
them from numba's cache in a second or two: the log says which it is, kernel by kernel,
while it happens (CompileLog), and sums it up when warm-up ends (warm-up time, kernels
compiled and loaded). The compile log stays on for the whole process: a kernel compiled
after warm-up (during a tick) is a stall the operator must see.
"""

from __future__ import annotations

import logging
import os
import random
import sys
from dataclasses import replace

import numpy as np
from numba.core import event as numba_event
from numba.core.dispatcher import Dispatcher

from net.client import ClientProtocol
from net.limits import NetLimits
from net.loopback import connect_in_memory
from net.server import ServerProtocol
from net.token import issue_token
from sim import schema as S
from sim.rules import GameRules
from sim.world import new_world
from store.records import ClaimBatch, Recorder
from tick.clock import now_ns

log = logging.getLogger("xmarks.warmup")

#: Packages whose kernels the summary counts.
KERNEL_PACKAGES = ("net", "sim", "tick", "store")
#: Compiles named in the summary line at most (the slowest).
SLOWEST_SHOWN = 5


def kernel_name(dispatcher: Dispatcher) -> str:
    fn = dispatcher.py_func
    return f"{fn.__module__}.{fn.__qualname__}"


class CompileLog(numba_event.Listener):
    """Logs each numba compile: the kernel a compile starts from at INFO, with its time
    (callees it compiles on the way at DEBUG); keeps {kernel: seconds} of those first
    kernels in `seconds`."""

    def __init__(self) -> None:
        self.depth = 0  # numba compiles callees inside their caller's compile
        self.started: list[int] = []
        self.seconds: dict[str, float] = {}

    def on_start(self, event) -> None:
        name = kernel_name(event.data["dispatcher"])
        level = logging.INFO if self.depth == 0 else logging.DEBUG
        log.log(level, "compiling %s%s ...", "  " * self.depth, name)
        self.depth += 1
        self.started.append(now_ns())

    def on_end(self, event) -> None:
        self.depth = max(0, self.depth - 1)
        took = (now_ns() - self.started.pop()) / 1e9 if self.started else 0.0
        name = kernel_name(event.data["dispatcher"])
        if self.depth == 0:  # a callee's time is inside its caller's
            self.seconds[name] = self.seconds.get(name, 0.0) + took
        level = logging.INFO if self.depth == 0 else logging.DEBUG
        log.log(level, "compiled %s%s in %.1f s", "  " * self.depth, name, took)


_compile_log: CompileLog | None = None


def watch_compiles() -> CompileLog:
    """Start logging numba compiles for the rest of the process (once; later calls
    return the same log)."""
    global _compile_log
    if _compile_log is None:
        _compile_log = CompileLog()
        numba_event.register("numba:compile", _compile_log)
    return _compile_log


def kernel_counts() -> dict[str, tuple[int, int]]:
    """{kernel: (signatures loaded from numba's cache, signatures compiled)} over every
    kernel of the xmarks packages imported so far, counted since the process began (the
    server's construction binds a few kernels before warm-up)."""
    seen: dict[int, Dispatcher] = {}
    for name, module in list(sys.modules.items()):
        if module is None or name.split(".")[0] not in KERNEL_PACKAGES:
            continue
        for value in list(vars(module).values()):
            if isinstance(value, Dispatcher):
                seen[id(value)] = value
    out = {}
    for d in seen.values():
        stats = d.stats
        out[kernel_name(d)] = (sum(stats.cache_hits.values()), sum(stats.cache_misses.values()))
    return out


def summary(counts: dict[str, tuple[int, int]], seconds: dict[str, float],
            took_s: float) -> str:
    """The line that ends warm-up: its time, kernels compiled and loaded, the slowest
    compiles. A compile counts every kernel numba compiled, callees included; a cache
    load counts the kernels called from Python only (their callees come in their code)."""
    compiled = sorted(k for k, (_, miss) in counts.items() if miss)
    loaded = sorted(k for k, (hit, miss) in counts.items() if hit and not miss)
    line = (f"warm-up took {took_s:.2f} s: {len(compiled) + len(loaded)} kernels ready, "
            f"{len(loaded)} loaded from numba's cache, {len(compiled)} compiled")
    if compiled:
        slow = sorted(seconds.items(), key=lambda kv: -kv[1])[:SLOWEST_SHOWN]
        if slow:
            line += " (slowest: " + ", ".join(f"{k} {s:.1f} s" for k, s in slow) + ")"
        line += "; later starts load them from the cache until a kernel source changes"
    return line


def warm_up(rules: GameRules, limits: NetLimits, tick_rate: float) -> None:
    """Run every kernel once on a tiny world with the real dtypes, so the first real tick
    is as fast as the thousandth. Each kernel is compiled once per process for its types.
    Logs each compile as it starts and ends, and a summary line at the end."""
    began = now_ns()
    compiles = watch_compiles()
    tiny = replace(rules, max_players=4, treasure_count=4, world_width=256.0,
                   world_height=256.0, cell_size=64.0)
    world = new_world(tiny, tick_rate)
    key = os.urandom(32)  # a throwaway server: its own key, its own token
    addr = ("127.0.0.1", 1)
    proto = ServerProtocol(world, replace(limits, rx_batch=8), tick_rate, random.Random(0),
                           key=key, address=addr, unix_origin_ms=1_000_000)
    client = ClientProtocol(issue_token(key, 1, [addr], "warmup", 1000, 60), salt=1)
    connect_in_memory(proto, client, addr)
    proto.receive_datagram(client.input(1, 1, True, 0.0), addr, 0)
    world.step()
    proto.encode()
    for data, _ in proto.snapshots():
        client.receive(bytes(data), 0.0)
    proto.expire(10**12)
    # the ledger writer's claim text (store.claim_json), bound here rather than on the
    # writer thread at the first claim, where loading it would hold the GIL mid-hunt
    recorder = Recorder(1, tiny.max_players)
    ClaimBatch(1, 1, 0, 0, np.zeros((1, S.EVENT_FIELDS), np.int64), recorder.client_ids,
               recorder.names, world.pi, world.ti, recorder.name_rows,
               recorder.name_lens).json_text()
    took = (now_ns() - began) / 1e9
    counts = kernel_counts()
    log.info("%s", summary(counts, compiles.seconds, took))
    log.debug("loaded from the cache: %s", ", ".join(
        sorted(k for k, (hit, miss) in counts.items() if hit and not miss)) or "-")


watch_compiles()  # from import on: the server's construction compiles a few kernels too
