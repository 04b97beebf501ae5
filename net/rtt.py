"""Round-trip time per session, from snapshot acks, with no Python per packet.

Every snapshot of a tick leaves in the same send, so the server keeps one send time per
tick (not per client) in a small ring. When a client's INPUT acks a snapshot tick it had
not acked before, the decode kernel looks that tick up and folds `now - sent` into the
session's smoothed RTT (S_RTT) with TCP's gain of 1/8 (RFC 6298). The sample includes
how long the ack waited for the client's next input and for the server's next drain: it
is the delay a player's action feels, not the bare network path.
"""

from __future__ import annotations

import numpy as np

from net.sessions import S_RTT
from sim.jit import kernel

#: Ticks whose send time is kept (a power of two, so a u32 ack finds its row): acks older
#: than this many ticks give no sample.
SENT_RING = 256
SENT_TICK, SENT_AT = 0, 1


def new_sent_ring() -> np.ndarray:
    """int64[2, SENT_RING]: row SENT_TICK the full tick (-1: none), row SENT_AT its send
    time (monotonic ns, the clock of `now` in receive_batch)."""
    ring = np.zeros((2, SENT_RING), np.int64)
    ring[SENT_TICK] = -1
    return ring


def note_sent(ring: np.ndarray, tick: int, now: int) -> None:
    """Remember that the snapshots of `tick` left at `now` (once per tick, from Python)."""
    r = tick & (SENT_RING - 1)
    ring[SENT_TICK, r] = tick
    ring[SENT_AT, r] = now


@kernel(inline=True)
def rtt_sample(sessions: np.ndarray, slot: int, ack: int, now: int,
               sent: np.ndarray) -> None:
    """Fold the round trip of the snapshot of tick `ack` (u32, acked at `now`) into
    sessions[S_RTT, slot]: srtt += (sample - srtt) / 8, the first sample taken whole.
    No sample when that tick's send time is no longer in `sent` (int64[2, SENT_RING])."""
    r = ack & (SENT_RING - 1)
    t = sent[SENT_TICK, r]
    if t < 0 or (t & 0xFFFFFFFF) != ack:
        return
    sample = now - sent[SENT_AT, r]
    if sample < 1:  # 0 means "no sample yet"
        sample = 1
    srtt = sessions[S_RTT, slot]
    if srtt == 0:
        sessions[S_RTT, slot] = sample
    else:
        sessions[S_RTT, slot] = srtt + (sample - srtt) // 8
