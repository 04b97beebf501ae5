"""The per-session 256-sequence replay window (docs/PROTOCOL.md, "Replay window").

State per session: the greatest accepted sequence G (int64, 0 = none yet) and a 256-bit
bitmap `bits: int64[4]` (a row of an int64[P, 4] array) where bit s % 256 set means
sequence s was accepted, for s in (G - 256, G]. Sequences are u32 values held in int64.
Check with replay_fresh before the tag, mark with replay_mark only once the packet passed
every check, so a forged packet cannot burn a sequence number.
"""

from __future__ import annotations

import numpy as np

from sim.jit import kernel

WINDOW = 256


@kernel(inline=True)
def replay_fresh(bits: np.ndarray, greatest: int, seq: int) -> bool:
    """True if seq (u32 in int64) may be accepted: seq >= 1 and either newer than greatest,
    or within the 256 below it and not yet seen. bits: int64[4]."""
    if seq < 1:
        return False
    if seq > greatest:
        return True
    if greatest - seq >= WINDOW:
        return False
    s = seq & (WINDOW - 1)
    return (bits[s >> 6] & (np.int64(1) << (s & 63))) == 0


@kernel(inline=True)
def replay_mark(bits: np.ndarray, greatest: int, seq: int) -> int:
    """Record seq as accepted in bits (int64[4], updated) and return the new greatest.

    Meant for a seq replay_fresh accepted; a seq it rejects for being 0 or older than the
    window is ignored (its bit belongs to a newer sequence)."""
    if seq < 1 or greatest - seq >= WINDOW:
        return greatest
    if seq > greatest:
        gap = seq - greatest
        if gap >= WINDOW:
            for w in range(4):
                bits[w] = 0
        else:
            # the bits of greatest+1..seq last held sequences 256 older: forget them
            for s in range(greatest + 1, seq + 1):
                b = s & (WINDOW - 1)
                bits[b >> 6] &= ~(np.int64(1) << (b & 63))
        greatest = seq
    b = seq & (WINDOW - 1)
    bits[b >> 6] |= np.int64(1) << (b & 63)
    return greatest
