"""What the v3 packet tag (SipHash-2-4) costs per packet, by packet size.

    python -m profiling.tag_cost [--batch 10000] [--repeats 31]

For each size S (bytes on the wire, the 8-byte tag included) a kernel tags a batch of
random S-byte packets in a loop (put_tag over bytes 0..S-8), and another verifies them
(tag_ok). Prints the median ns per packet over the repeats. Numbers are for comparing
runs on one machine, not absolutes.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from net.siphash import key_words
from net.tag import put_tag, tag_ok
from sim.jit import kernel

SIZES = (24, 33, 53, 68, 132, 256, 600, 1200)


@kernel
def tag_batch(data: np.ndarray, size: int, k0: int, k1: int) -> int:
    """Tag every row of data (uint8[N, size]) in place; return a checksum of the tags."""
    acc = 0
    for i in range(data.shape[0]):
        put_tag(data[i], 0, size - 8, k0, k1)
        acc += data[i, size - 1]
    return acc


@kernel
def verify_batch(data: np.ndarray, size: int, k0: int, k1: int) -> int:
    """How many rows of data (uint8[N, size]) carry a good tag."""
    ok = 0
    for i in range(data.shape[0]):
        if tag_ok(data[i], size, k0, k1):
            ok += 1
    return ok


def measure(size: int, batch: int, repeats: int, seed: int = 1) -> tuple[float, float]:
    """Median ns per packet to tag, and to verify, a batch of `size`-byte packets."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (batch, size), dtype=np.uint8)
    k0, k1 = key_words(rng.bytes(16))
    tag_batch(data[:1], size, k0, k1)  # compile (or load from cache) outside the timing
    verify_batch(data[:1], size, k0, k1)
    tag_ns, verify_ns = [], []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        tag_batch(data, size, k0, k1)
        t1 = time.perf_counter_ns()
        good = verify_batch(data, size, k0, k1)
        t2 = time.perf_counter_ns()
        assert good == batch
        tag_ns.append((t1 - t0) / batch)
        verify_ns.append((t2 - t1) / batch)
    return statistics.median(tag_ns), statistics.median(verify_ns)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=31)
    args = ap.parse_args(argv)
    print(f"{'bytes':>6} {'tag ns':>8} {'verify ns':>10} {'ns/byte':>8}")
    for size in SIZES:
        tag, verify = measure(size, args.batch, args.repeats)
        print(f"{size:>6} {tag:>8.1f} {verify:>10.1f} {tag / size:>8.2f}")


if __name__ == "__main__":
    main()
