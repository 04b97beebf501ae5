"""The 256-sequence replay window against a plain-Python reference (a set and a maximum)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from net.replay import WINDOW, replay_fresh, replay_mark

U32_MAX = 2**32 - 1


class RefWindow:
    """Every accepted sequence remembered; fresh = new, non-zero and not too old."""

    def __init__(self) -> None:
        self.accepted: set[int] = set()
        self.greatest = 0

    def fresh(self, seq: int) -> bool:
        return seq >= 1 and seq not in self.accepted and (
            seq > self.greatest or self.greatest - seq < WINDOW)

    def mark(self, seq: int) -> None:
        self.accepted.add(seq)
        self.greatest = max(self.greatest, seq)

    def bits(self) -> np.ndarray:
        """The bitmap the kernel must hold: seqs in (G - 256, G] that were accepted."""
        out = np.zeros(4, np.int64)
        for s in range(max(1, self.greatest - WINDOW + 1), self.greatest + 1):
            if s in self.accepted:
                b = s % WINDOW
                out[b >> 6] |= np.int64(1) << np.int64(b & 63)
        return out


def run(seqs: list[int]) -> None:
    """Feed seqs as a receiver does (check, then mark if fresh); compare at every step."""
    ref = RefWindow()
    bits = np.zeros(4, np.int64)
    greatest = 0
    for seq in seqs:
        ok = replay_fresh(bits, greatest, seq)
        assert ok == ref.fresh(seq), (seq, greatest)
        if ok:
            greatest = replay_mark(bits, greatest, seq)
            ref.mark(seq)
        assert greatest == ref.greatest
        assert np.array_equal(bits, ref.bits()), seq


def walk(start: int, steps: list[int]) -> list[int]:
    out, s = [], start
    for d in steps:
        s = min(U32_MAX, max(0, s + d))
        out.append(s)
    return out


@settings(max_examples=300, deadline=None)
@given(st.integers(0, U32_MAX),
       st.lists(st.integers(-300, 300), max_size=200))
def test_random_walks(start: int, steps: list[int]) -> None:
    run(walk(start, steps))


jumps = st.one_of(st.integers(-3, 3), st.sampled_from([-257, -256, -255, 255, 256, 257]),
                  st.integers(-600, 600))


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 1000), st.lists(jumps, max_size=150))
def test_adversarial_walks(start: int, steps: list[int]) -> None:
    run(walk(start, steps))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([0, 1, 2, 63, 64, 127, 128, 255, 256, 257, 511, 512,
                                 U32_MAX - 256, U32_MAX - 255, U32_MAX - 1, U32_MAX]),
                max_size=60))
def test_special_values(seqs: list[int]) -> None:
    run(seqs)


def test_edges_by_hand() -> None:
    bits = np.zeros(4, np.int64)
    assert not replay_fresh(bits, 0, 0)  # seq 0 never
    g = replay_mark(bits, 0, 1000)
    assert not replay_fresh(bits, g, 1000)  # duplicate
    assert replay_fresh(bits, g, 1000 - 255)  # oldest the window still holds
    assert not replay_fresh(bits, g, 1000 - 256)  # one older: stale
    g = replay_mark(bits, g, 1000 - 255)
    assert not replay_fresh(bits, g, 1000 - 255)
    g2 = replay_mark(bits, g, 1000 + 256)  # jump of exactly 256: the whole window clears
    assert g2 == 1256
    assert np.array_equal(bits, [0, 0, 0, 1 << (1256 % 256 - 192)])  # only seq 1256 left
    assert not replay_fresh(bits, g2, 1000)
    assert replay_fresh(bits, g2, 1001)
    # every bit position, including the sign bit of each word (s % 64 == 63)
    for s in (63, 127, 191, 255):
        bits = np.zeros(4, np.int64)
        g = replay_mark(bits, 0, s)
        assert not replay_fresh(bits, g, s)
        g = replay_mark(bits, g, s + 1)
        assert not replay_fresh(bits, g, s) and not replay_fresh(bits, g, s + 1)


def test_u32_max() -> None:
    bits = np.zeros(4, np.int64)
    g = replay_mark(bits, 0, U32_MAX)
    assert g == U32_MAX
    assert not replay_fresh(bits, g, U32_MAX)
    assert replay_fresh(bits, g, U32_MAX - 1)
    assert not replay_fresh(bits, g, 1)


def test_mark_ignores_what_fresh_rejects() -> None:
    bits = np.zeros(4, np.int64)
    g = replay_mark(bits, 0, 600)
    before = bits.copy()
    assert replay_mark(bits, g, 600 - 256) == g  # too old: would alias seq 600's bit position
    assert replay_mark(bits, g, 0) == g
    assert np.array_equal(bits, before)
