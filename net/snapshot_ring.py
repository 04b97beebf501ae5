"""What each client was sent: a ring of its last R snapshots' entity lists (Quake 3 style).

A delta snapshot is encoded against the newest snapshot the client acknowledged, so the
server must remember, per client, the entity lists exactly as the client rebuilt them.
Entries hold only what deltas need (ids and the client-side entity states), in uint16 to
keep 10,000 clients x 8 snapshots near 36 MB; numpy's zeroed pages cost RSS only once
touched, so a small server pays for what it uses.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from sim.jit import kernel, prefetch

# Player entity fields in a ring entry: id, qx, qy, vx + V_BIAS, vy + V_BIAS.
E_ID, E_QX, E_QY, E_VX, E_VY = range(5)
PLAYER_FIELDS = 5
# Treasure entity fields: id, qx, qy, value.
E_VALUE = 3
TREASURE_FIELDS = 4
V_BIAS = 32768  # velocities are -32767..32767 quanta per tick, stored biased in a uint16
V_MAX = 32767

# Rows of SnapshotRing.marks: one stamp table per question asked about an entity id.
MARK_LAST, MARK_NOW, MARK_BASE = range(3)

# A client's own claims, resent in "my" until it acks a snapshot that carried them as
# confirmed (durable): SnapshotRing.own int64[P, OWN_CLAIMS, 4] of claim tick (-1: empty),
# treasure, value, and the tick of the first snapshot that said "confirmed" (-1: none yet).
OWN_CLAIMS = 4
OC_TICK, OC_TREASURE, OC_VALUE, OC_SENT = range(4)
# The last hunt's result, resent in "hr" until acked: SnapshotRing.result int64[P, 3] of
# the hunt id it is about, the tick of the first snapshot that carried it (-1: none yet),
# and whether the client has it (1) or never will (a client that joined too late).
R_HUNT, R_SENT, R_DONE = range(3)


class SnapshotRing(NamedTuple):
    """Per-client history of sent snapshots, plus scratch for the encoder.

    tick: int64[P, R] full tick of each entry; count: int64[P] snapshots stored so far in
    the session (entry k lives at k % R; entries count-R..count-1 are valid);
    n_players, n_treasures: int32[P, R]; players: uint16[P, R, CP, 5];
    treasures: uint16[P, R, CT, 4]; p_marks: int64[3, max_players] and t_marks:
    int64[3, treasure_count] stamp tables; stamp: int64[1] the last stamp handed out;
    own: int64[P, OWN_CLAIMS, 4] and result: int64[P, 3] (see OC_* and R_*).
    """

    tick: np.ndarray
    count: np.ndarray
    n_players: np.ndarray
    n_treasures: np.ndarray
    players: np.ndarray
    treasures: np.ndarray
    p_marks: np.ndarray
    t_marks: np.ndarray
    stamp: np.ndarray
    own: np.ndarray
    result: np.ndarray


def new_snapshot_ring(max_players: int, treasure_count: int, depth: int,
                      max_visible_players: int, max_visible_treasures: int) -> SnapshotRing:
    """An empty ring for `max_players` clients, `depth` snapshots each."""
    p, r = max_players, depth
    return SnapshotRing(
        tick=np.full((p, r), -1, np.int64),
        count=np.zeros(p, np.int64),
        n_players=np.zeros((p, r), np.int32),
        n_treasures=np.zeros((p, r), np.int32),
        players=np.zeros((p, r, max_visible_players, PLAYER_FIELDS), np.uint16),
        treasures=np.zeros((p, r, max_visible_treasures, TREASURE_FIELDS), np.uint16),
        p_marks=np.zeros((3, max_players), np.int64),
        t_marks=np.zeros((3, treasure_count), np.int64),
        stamp=np.zeros(1, np.int64),
        own=np.full((p, OWN_CLAIMS, 4), -1, np.int64),
        result=np.full((p, 3), -1, np.int64),
    )


def reset_client(ring: SnapshotRing, slot: int, keep_own: bool = False) -> None:
    """Forget everything sent to `slot` (a session opened or closed there). keep_own: the
    same player goes on in a new session (a client taking back its waiting player): its
    claims still in flight stay, so it learns whether they became durable."""
    ring.count[slot] = 0
    ring.tick[slot, :] = -1
    if not keep_own:
        ring.own[slot] = -1
    else:  # what was sent before went to the old session: send them afresh
        ring.own[slot, :, OC_SENT] = -1
    ring.result[slot] = -1


@kernel(inline=True)
def find_baseline(ring_tick: np.ndarray, ring_count: np.ndarray, slot: int, ack: int,
                  tick: int) -> int:
    """The ring index of this session's snapshot whose tick is `ack` (mod 2**32), or -1.

    Only entries written in the current session (the last R of ring_count[slot]) and older
    than `tick` count; ack 0 means "none" (a fresh client's first ack), so tick 0 is never
    a baseline.
    """
    if ack == 0:
        return -1
    depth = ring_tick.shape[1]
    n = ring_count[slot]
    first = n - depth if n > depth else 0
    for k in range(n - 1, first - 1, -1):
        r = k % depth
        t = ring_tick[slot, r]
        if t >= 0 and t < tick and (t & 0xFFFFFFFF) == ack:
            return r
    return -1


@kernel
def next_stamp(stamp: np.ndarray) -> int:
    """A stamp never handed out before: marks[row, id] == stamp means "marked just now",
    so no table is ever cleared."""
    stamp[0] += 1
    return stamp[0]


@kernel(inline=True)
def prefetch_entry(entries: np.ndarray, u: int, r: int) -> None:
    """Start loading ring entry (u, r) of entries (uint16[P, R, C, F], C-contiguous)."""
    size = entries.shape[2] * entries.shape[3]
    first = (u * entries.shape[1] + r) * size
    for k in range(0, size, 32):  # 32 uint16 to a 64-byte line
        prefetch(entries, first + k)
    prefetch(entries, first + size - 1)  # an entry need not start on a line


@kernel(inline=True)
def prefetch_client(ring_tick: np.ndarray, ring_count: np.ndarray, players: np.ndarray,
                    treasures: np.ndarray, u: int, ack: int, tick: int) -> None:
    """Start loading the ring entries the encoder will touch for client u (its last
    snapshot's, its baseline's and the one it writes next), a client or two ahead: they
    are scattered over tens of megabytes at 10,000 clients, and without this the
    per-client loop waits on the first read of each (measured in profiling/README.md)."""
    depth = ring_tick.shape[1]
    count = ring_count[u]
    nxt = count % depth
    prefetch_entry(players, u, nxt)
    prefetch_entry(treasures, u, nxt)
    if count == 0:
        return
    last = (count - 1) % depth
    prefetch_entry(players, u, last)
    prefetch_entry(treasures, u, last)
    base = find_baseline(ring_tick, ring_count, u, ack, tick)
    if base >= 0 and base != last:
        prefetch_entry(players, u, base)
        prefetch_entry(treasures, u, base)
