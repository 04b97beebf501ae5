"""Session slots, laid out like the world: one int64 table, row = field, column = slot.

Session slot i drives player slot i. A session id is slot | nonce << 16 (nonce 1..65535,
random), so a receiver finds the slot without a lookup table and a stale or guessed id
fails the equality check.
"""

from __future__ import annotations

import numpy as np

# int64[SESSION_ROWS, max_players]
# S_C2S_K0/K1 and S_S2C_K0/K1: the session's SipHash key words (the u64s' bits) for
# client-to-server and server-to-client tags; S_RX_TAT: the per-session packet-rate bucket
# (net.ratelimit, GCRA); S_CLIENT_ID: the connect token's client id (u64 bits);
# S_RTT: smoothed round-trip time in ns (net.rtt; 0 until the first sample).
(S_STATE, S_ID, S_IP, S_PORT, S_LAST_RX_SEQ, S_TX_SEQ, S_LAST_HEARD, S_SALT,
 S_SNAPSHOT_ACK, S_JOINED, S_C2S_K0, S_C2S_K1, S_S2C_K0, S_S2C_K1, S_RX_TAT,
 S_CLIENT_ID, S_RTT) = range(17)
SESSION_ROWS = 17
REPLAY_WORDS = 4  # 256-bit replay window per session: int64[P, REPLAY_WORDS]

# AWAY: the session timed out; its player waits in the world for the reconnect grace
# (net.limits reconnect_grace) and no packet is accepted for the session any more.
FREE, CONNECTED, AWAY = 0, 1, 2


def new_session_table(max_players: int) -> np.ndarray:
    """int64[SESSION_ROWS, max_players], every slot FREE."""
    return np.zeros((SESSION_ROWS, max_players), np.int64)


def new_replay_table(max_players: int) -> np.ndarray:
    """int64[max_players, REPLAY_WORDS]: each session's replay bitmap (net.replay)."""
    return np.zeros((max_players, REPLAY_WORDS), np.int64)


def session_id(slot: int, nonce: int) -> int:
    """The u32 session id of `slot` (0..65535) with `nonce` (1..65535)."""
    return (nonce << 16) | slot


def slot_of(sid: int) -> int:
    return sid & 0xFFFF
