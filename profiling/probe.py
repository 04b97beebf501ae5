"""The kernel floor probe: what the same datagrams cost with nothing but batched syscalls.

A bench run tells us the server sent X snapshots (with a known size histogram) and
received Y inputs of I bytes over T ticks with N players. The probe replays a sample of
that traffic between loopback sockets opened through net.udp.UdpEndpoint, in the
server's rhythm, and times only what the server itself pays:

- per sample tick, one send_batch() of X/T snapshots (sizes drawn to follow the run's
  histogram) from a "server" socket to a sink socket. On loopback the sender's syscall
  also delivers into the receiver's buffer, as it did for the server; the sink is then
  emptied, untimed (the bots paid that);
- per sample tick, Y/T inputs of I bytes are sent to the "server" socket, untimed (the
  bots paid that), then drained, timed, in batches of `rx_batch` until a drain comes back
  short, as the tick's drain phase does.

kernel_floor_us_per_client_tick = (send + receive time) / (sample ticks * N), the median
of `repeats` repeats. Times are the probe thread's CPU time (CLOCK_THREAD_CPUTIME_ID: on
this kernel, without IRQ time accounting, it includes the softirq work of loopback
delivery done in the syscall), so another task taking the CPU does not inflate the floor;
the wall-clock figure is reported beside it. The server's figure is CPU time too
(getrusage), so the two are on the same basis. The server's own CPU per client-tick over this floor is the bench's
floor_ratio: how much the server spends above the bare cost of moving its datagrams.

Usable alone: python -m profiling.probe --players 10000 --snapshot-bytes 150
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass, field

import numpy as np

from net.address import ip_to_int
from net.batch import DatagramBatch
from net.udp import UdpEndpoint
from net.wire import INPUT, MAX_INPUTS_PER_PACKET, input_packet_size, pack_header
from tick.clock import now_ns
from tick.stats import thread_cpu_ns

#: Datagrams a probe repeat moves at least (small runs are sampled over more ticks, so
#: one repeat is not a handful of microseconds of clock noise).
MIN_SAMPLE_DATAGRAMS = 20_000
MIN_SAMPLE_TICKS = 20
MAX_SAMPLE_TICKS = 2_000
#: Kernel bytes one small datagram takes in a socket buffer (as tick.server sizes them).
TRUESIZE = 1280
#: The default input datagram: a steady-state INPUT with its newest record and 3 repeats.
DEFAULT_INPUT_BYTES = input_packet_size(MAX_INPUTS_PER_PACKET)


@dataclass
class ProbeShape:
    """The traffic of a run (or a made-up one): per-tick counts are snapshots / ticks and
    inputs / ticks. snapshot_hist: [[size, count], ...] (a size histogram, any counts; its
    shape is what is used)."""

    players: int
    ticks: int
    snapshots: int
    inputs: int
    snapshot_hist: list = field(default_factory=list)
    input_bytes: int = DEFAULT_INPUT_BYTES

    @property
    def snapshots_per_tick(self) -> float:
        return self.snapshots / self.ticks if self.ticks else 0.0

    @property
    def inputs_per_tick(self) -> float:
        return self.inputs / self.ticks if self.ticks else 0.0


def sample_ticks(per_tick: float) -> int:
    """Ticks to replay per repeat: MIN_SAMPLE_TICKS, or more until MIN_SAMPLE_DATAGRAMS
    snapshots are moved, at most MAX_SAMPLE_TICKS."""
    if per_tick <= 0:
        return MIN_SAMPLE_TICKS
    need = math.ceil(MIN_SAMPLE_DATAGRAMS / per_tick)
    return int(min(MAX_SAMPLE_TICKS, max(MIN_SAMPLE_TICKS, need)))


def per_tick_counts(per_tick: float, ticks: int) -> np.ndarray:
    """int64[ticks] whole counts whose running sum tracks per_tick * k (no drift)."""
    edges = np.floor(np.arange(ticks + 1) * per_tick + 1e-9).astype(np.int64)
    return np.diff(edges)


def sizes_from_hist(hist: list, n: int, seed: int = 0) -> np.ndarray:
    """int32[n] datagram sizes following a [[size, count], ...] histogram: the (k + 0.5)/n
    quantiles (so the mean and spread match), in a seeded random order."""
    if n <= 0:
        return np.zeros(0, np.int32)
    if not hist:
        raise ValueError("sizes_from_hist: empty histogram")
    values = np.array([h[0] for h in hist], np.int64)
    counts = np.array([h[1] for h in hist], np.float64)
    order = np.argsort(values)
    values, counts = values[order], counts[order]
    cum = np.cumsum(counts) / counts.sum()
    q = (np.arange(n) + 0.5) / n
    sizes = values[np.minimum(np.searchsorted(cum, q, side="left"), len(values) - 1)]
    np.random.default_rng(seed).shuffle(sizes)
    return sizes.astype(np.int32)


def _pack(sizes: np.ndarray, fill: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(buf uint8[sum], off int32[n+1]) with datagram j = sizes[j] bytes, each starting
    with `fill` (a real header, so nothing about the bytes is unusual)."""
    off = np.zeros(len(sizes) + 1, np.int32)
    np.cumsum(sizes, out=off[1:])
    buf = np.zeros(int(off[-1]) + 1, np.uint8)
    head = np.frombuffer(fill, np.uint8)
    for j in range(len(sizes)):
        k = min(len(head), int(sizes[j]))
        buf[off[j]:off[j] + k] = head[:k]
    return buf, off


def _empty(endpoint: UdpEndpoint, batch: DatagramBatch) -> int:
    got = 0
    while True:
        n = endpoint.drain(batch)
        got += n
        if n < batch.capacity:
            return got


def run_probe(shape: ProbeShape, repeats: int = 5, io: str = "auto", rx_batch: int = 4096,
              max_players: int | None = None, seed: int = 0) -> dict:
    """Time the shape's traffic; return the floor and its parts (see the module docs).

    io: the UdpEndpoint I/O path ("auto" takes batched where available: the floor is
    the batched path's). max_players sizes the "server" socket's buffers as tick.server
    does (default: players).
    """
    if shape.players <= 0 or shape.ticks <= 0:
        raise ValueError("run_probe: players and ticks must be positive")
    s_tick, i_tick = shape.snapshots_per_tick, shape.inputs_per_tick
    ticks = sample_ticks(max(s_tick, i_tick))
    s_counts = per_tick_counts(s_tick, ticks)
    i_counts = per_tick_counts(i_tick, ticks)
    hist = shape.snapshot_hist or [[200, 1]]
    sizes = sizes_from_hist(hist, int(s_counts.sum()), seed)
    buf, off = _pack(sizes, pack_header(5, 0x12345678, 1))
    in_sizes = np.full(int(i_counts.max(initial=0)), shape.input_bytes, np.int32)
    in_buf, in_off = _pack(in_sizes, pack_header(INPUT, 0x12345678, 1))

    buffer = 2 * (max_players or shape.players) * TRUESIZE  # as tick.server sizes its socket
    tick_bytes = int(s_counts.max(initial=0)) * TRUESIZE * 2 + (1 << 20)
    server = UdpEndpoint("127.0.0.1", 0, io=io, rcvbuf=buffer, sndbuf=buffer)
    sink = UdpEndpoint("127.0.0.1", 0, io=io, rcvbuf=tick_bytes)
    source = UdpEndpoint("127.0.0.1", 0, io=io, sndbuf=buffer)
    try:
        lo = ip_to_int("127.0.0.1")
        n_max = int(max(s_counts.max(initial=0), i_counts.max(initial=0), 1))
        to_sink = (np.full(n_max, lo, np.int64), np.full(n_max, sink.address[1], np.int64))
        to_server = (np.full(n_max, lo, np.int64), np.full(n_max, server.address[1], np.int64))
        rx = DatagramBatch.allocate(rx_batch)
        sink_rx = DatagramBatch.allocate(1024)
        starts = np.zeros(ticks + 1, np.int64)
        np.cumsum(s_counts, out=starts[1:])
        runs = []
        for rep in range(repeats + 1):  # repeat 0 warms caches and buffers, not counted
            send_ns = recv_ns = wall_ns = sent = received = sink_got = 0
            for t in range(ticks):
                a, b = int(starts[t]), int(starts[t + 1])
                n = b - a
                if n:
                    # the tick's datagrams are a contiguous run of buf: offsets rebased
                    sub_off = off[a:b + 1]
                    w0, c0 = now_ns(), thread_cpu_ns()
                    got, _ = server.send_batch(buf[sub_off[0]:], sub_off - sub_off[0],
                                               to_sink[0], to_sink[1], n)
                    send_ns += thread_cpu_ns() - c0
                    wall_ns += now_ns() - w0
                    sent += got
                    sink_got += _empty(sink, sink_rx)
                m = int(i_counts[t])
                if m:
                    source.send_batch(in_buf, in_off, to_server[0], to_server[1], m)
                    w0, c0 = now_ns(), thread_cpu_ns()
                    received += _empty(server, rx)
                    recv_ns += thread_cpu_ns() - c0
                    wall_ns += now_ns() - w0
            if rep:
                runs.append({"send_ns": send_ns, "recv_ns": recv_ns, "wall_ns": wall_ns,
                             "sent": sent, "received": received, "sink_received": sink_got})
        probe_io = server.io
        drops = [server.kernel_drops(), sink.kernel_drops()]
    finally:
        for ep in (server, sink, source):
            ep.close()
    client_ticks = ticks * shape.players
    totals = sorted(r["send_ns"] + r["recv_ns"] for r in runs)
    median = totals[len(totals) // 2]
    walls = sorted(r["wall_ns"] for r in runs)
    sends = sorted(r["send_ns"] for r in runs)
    recvs = sorted(r["recv_ns"] for r in runs)
    n_sent = max(1, runs[0]["sent"])
    n_recv = max(1, runs[0]["received"])
    return {
        "kernel_floor_us_per_client_tick": round(median / 1e3 / client_ticks, 4),
        # the same by the wall clock: above the CPU figure when other tasks took the CPU
        "wall_floor_us_per_client_tick": round(walls[len(walls) // 2] / 1e3 / client_ticks, 4),
        "send_us_per_datagram": round(sends[len(sends) // 2] / 1e3 / n_sent, 4),
        "recv_us_per_datagram": round(recvs[len(recvs) // 2] / 1e3 / n_recv, 4),
        "sample_ticks": ticks,
        "repeats": repeats,
        "snapshots_per_tick": round(s_tick, 2),
        "inputs_per_tick": round(i_tick, 2),
        "snapshot_bytes_mean": round(float(sizes.mean()), 2) if len(sizes) else 0.0,
        "input_bytes": shape.input_bytes,
        "sent": runs[0]["sent"], "expected_sent": int(s_counts.sum()),
        "received": runs[0]["received"], "expected_received": int(i_counts.sum()),
        "lost": int(sum(r["sent"] - r["sink_received"] + int(i_counts.sum()) - r["received"]
                        for r in runs)),
        "kernel_drops": drops,
        "io": probe_io,
        "runs_cpu_us": [round((r["send_ns"] + r["recv_ns"]) / 1e3, 1) for r in runs],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Time batched send+recv of a tick's datagrams.")
    parser.add_argument("--players", type=int, default=1000)
    parser.add_argument("--snapshot-every", type=int, default=1)
    parser.add_argument("--snapshot-bytes", type=int, default=160)
    parser.add_argument("--input-bytes", type=int, default=DEFAULT_INPUT_BYTES)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--io", default="auto", choices=("auto", "batched", "portable"))
    args = parser.parse_args()
    ticks = 100
    shape = ProbeShape(players=args.players, ticks=ticks,
                       snapshots=args.players * ticks // args.snapshot_every,
                       inputs=args.players * ticks, snapshot_hist=[[args.snapshot_bytes, 1]],
                       input_bytes=args.input_bytes)
    print(json.dumps({"shape": asdict(shape), **run_probe(shape, args.repeats, args.io)}))


if __name__ == "__main__":
    main()
