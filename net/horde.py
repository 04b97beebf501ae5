"""The bot horde's kernels: thousands of protocol clients as rows of arrays, no Python per bot.

Every bot is one row of `bots` (int64[N, BOT_COLS], columns B_*), plus its entry in a few
side arrays (next input time, heading, RNG state, the send times of its recent inputs, the
treasure lists of its recent snapshots, its prebuilt CONNECT_REQUEST and its challenge
cookie). The table is bot-major: a datagram touches one bot's fields (its session keys
among them), which then share a few cache lines; the one scan over every bot (for due
inputs, on every loop iteration) reads only `sched` (int64[N]), which stays compact for it.
Five kernels do all per-datagram and per-bot work; the driver (tick/horde.py) only reads
the clock, moves datagrams and calls them:

- `write_connects`: CONNECT_REQUESTs for new bots (the driver's ramp), copied from the
  bot's prebuilt request (its connect token's fields, built once in Python), and resends
  every `resend_ns` until an answer comes; once a bot is challenged, CHALLENGE_RESPONSEs
  (its cookie echoed, tagged) instead: one at once, then on the same resend timer;
- `receive_batch`: a drained DatagramBatch: the reference client's checks (net/client.py),
  in order, routing CHALLENGE/CONNECT_ACCEPT/CONNECT_DENY by salt and SNAPSHOT/DISCONNECT
  by session id, each datagram's tag checked with the bot's server-to-client key before
  it changes anything; a bounded msgpack reader (net/msgpack_in.py) for the SNAPSHOT
  payload (full and delta; it ends where the tag begins); the ack; claims; input->ack
  latency into a histogram;
- `write_inputs`: for every connected bot whose input time has come, a hunter's decision
  (net/hunter.py's strategy) and an INPUT packet (newest record first, 3 repeats), tagged;
- `expire_silent`: closes bots the server has been silent to for the session timeout;
- `write_disconnects`: one tagged DISCONNECT per connected bot at the end.

Tags (protocol v3: SipHash-2-4 of the packet before them, 8 bytes at its end) are computed
and checked here, inside these kernels (net/tag.py's inlined put_tag / tag_ok): a tag costs
the horde no Python. The key words are int64 columns of the bot's row (B_C2S_K0.. B_S2C_K1).

Routing without dictionaries: a bot's salt is (random 32 bits << 32) | (index + 1), so an
answer names its bot in its low 32 bits and the whole salt must still match; a session id's
low 16 bits are the server's slot, and `slot_bot` (int32[65536]) maps slot -> bot index.

What a bot keeps of its snapshots: its own state from "me", "a", the claims in "ev", and the
treasure list, rebuilt exactly for deltas ("tr" for a full snapshot; baseline minus "tx"
plus "tn" for a delta) in a ring of its last HELD_DEPTH lists; the target is the nearest
treasure of the newest list. Player lists ("p", "pm", "pv", "pr", "pn") are checked for
shape but not rebuilt: a bot does not look at other players. A delta against a tick the
bot no longer holds is dropped as `no_baseline`, like the reference client.

Nothing here reads a clock or a socket: `now` (monotonic ns) is an argument. Nothing raises
on peer data and nothing allocates per call: every malformed datagram is one drop counter.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from net import drops as D
from net.header import frame_drop, put_header
from net.siphash import key_words
from net.msgpack_in import (K_A, K_B, K_EV, K_H, K_HR, K_LB, K_ME, K_P, K_PM, K_PN, K_PR,
                            K_PV, K_T, K_TN, K_TR, K_TX, K_UNKNOWN, ROWS_ASCENDING,
                            ROWS_ENTITY, ROWS_INT, ROWS_TREASURE, ROWS_UINT, SKIP_DEPTH,
                            check_rows, read_array, read_int, read_key, skip_value)
from net.tag import put_tag, tag_ok
from net.token import ConnectToken
from net.wire import (BUTTON_DIG, CHALLENGE, CHALLENGE_RESPONSE, CHALLENGE_RESPONSE_SIZE,
                      CHALLENGE_SIZE, CONNECT_ACCEPT, CONNECT_ACCEPT_SIZE, CONNECT_DENY,
                      CONNECT_DENY_SIZE, CONNECT_REQUEST, CONNECT_REQUEST_BODY,
                      CONNECT_REQUEST_SIZE, COOKIE_AT, COOKIE_SIZE, DISCONNECT,
                      DISCONNECT_BODY, DISCONNECT_CLIENT_QUIT, DISCONNECT_SIZE, HEADER_SIZE,
                      INPUT, INPUT_PREFIX, INPUT_RECORD, MAX_INPUTS_PER_PACKET, SNAPSHOT,
                      TAG_SIZE, VERSION, pack_header)
from sim.jit import kernel
from sim.rng import next_below, next_u64, next_unit

# The byte readers (a u16, a u32) are kernel(inline=True), like net/msgpack_in.py's
# integer and header readers and for the reason measured there.

# ---- layout ------------------------------------------------------------------------------

# Bot states (column B_STATE). DENIED and CLOSED are final, as in the reference client.
# CONNECTING covers both halves of the handshake: B_CHALLENGED tells them apart.
IDLE, CONNECTING, CONNECTED, DENIED, CLOSED = range(5)
STATE_NAMES = ("idle", "connecting", "connected", "denied", "closed")

# int64[N, BOT_COLS]: one row per bot. Times are monotonic ns; 0 = never.
(B_STATE, B_SALT, B_SID, B_SLOT, B_TX_SEQ, B_RX_SEQ, B_INPUT_SEQ, B_ACK_TICK, B_HAVE_SNAP,
 B_SNAPS, B_SNAPS_MEASURED, B_FIRST_RX, B_LAST_RX, B_LAST_HEARD, B_REQ_FIRST, B_REQ_LAST,
 B_ACCEPTED_AT, B_CLOSED_AT, B_PHASED, B_QX, B_QY, B_SCORE, B_DIG, B_HEAT, B_HUNT,
 B_TARGET, B_TQX, B_TQY, B_LAST_HEAT, B_WANDER, B_HIST_XY, B_HIST_DIG, B_CLAIMS,
 B_CLAIM_TICK, B_LAT_ACKED, B_HELD_COUNT, B_ERROR, B_CHALLENGED, B_C2S_K0, B_C2S_K1,
 B_S2C_K0, B_S2C_K1) = range(42)
BOT_COLS = 42
# B_SALT holds the u64 salt's bits; B_TARGET is a treasure index or -1; B_PHASED is 1 once
# the bot's input phase is drawn; B_HIST_XY / B_HIST_DIG pack the last 4 inputs
# (16 bits each: move x byte | move y byte << 8, newest lowest; one dig bit each).
# B_CHALLENGED is 1 once a CHALLENGE came: the bot's cookie is in `cookies` and it sends
# CHALLENGE_RESPONSEs, no more requests. B_REQ_LAST = REQ_NOW: send at the next call.
# B_C2S_K0..B_S2C_K1: the SipHash key words (net.siphash.key_words) of the bot's token's
# client-to-server and server-to-client keys, set once from its connect token.

#: sched[b] when bot b has no input to send (not connected).
NEVER = np.iinfo(np.int64).max

# Error codes (column B_ERROR): why a bot stopped, if it did not quit on its own.
ERR_NONE, ERR_TIMED_OUT, ERR_CONNECT_TIMEOUT = 0, 1, 2
ERR_DENIED = 16  # + the CONNECT_DENY reason
ERR_DISCONNECTED = 32  # + the server's DISCONNECT reason

# float64[SRV_ROWS]: what CONNECT_ACCEPT says (the same for every bot of one server).
(SRV_KNOWN, SRV_TICK_RATE, SRV_SNAPSHOT_RATE, SRV_WIDTH, SRV_HEIGHT, SRV_DIG_RADIUS,
 SRV_REVEAL_RADIUS, SRV_DIG_TICKS, SRV_TIMEOUT_S) = range(9)
SRV_ROWS = 9

# int64[ST_ROWS]: counters over the whole horde.
(ST_STARTED, ST_CONNECTING, ST_REQUESTS, ST_ACCEPTS, ST_INPUTS, ST_LAG_SUM, ST_LAG_COUNT,
 ST_SKIPPED, ST_NEXT_DUE, ST_SNAPSHOTS, ST_FULL, ST_DELTA, ST_LAT_SUM, ST_LAT_COUNT,
 ST_LAT_MAX, ST_LAT_UNTIMED, ST_SERVER_CLOSED, ST_DISCONNECTS, ST_DENIED,
 ST_TIMED_OUT, ST_SNAPSHOT_BYTES, ST_CHALLENGES, ST_RESPONSES) = range(23)
ST_ROWS = 23
# ST_REQUESTS / ST_RESPONSES: CONNECT_REQUESTs / CHALLENGE_RESPONSEs written (resends too);
# ST_CHALLENGES: CHALLENGEs taken (a resent request may be challenged again).

#: B_REQ_LAST of a bot whose next request or response is due at once (just challenged).
REQ_NOW = -1

#: Send times kept per bot (by input seq mod this): an ack older than this many inputs
#: cannot be timed (counted in ST_LAT_UNTIMED).
SENT_RING = 64
#: Latency histogram: 10 us bins up to 1 s, 1 ms bins from 1 s to 60 s (an overloaded
#: server), then one overflow bin (bin LAT_BINS).
LAT_BIN_NS = 10_000
LAT_FINE_BINS = 100_000
LAT_COARSE_NS = 1_000_000
LAT_COARSE_BINS = 59_000
LAT_BINS = LAT_FINE_BINS + LAT_COARSE_BINS
_LAT_FINE_END = LAT_FINE_BINS * LAT_BIN_NS  # 1 s
#: Treasure lists a bot holds as delta baselines (the server keeps at most 64; the default
#: server ring is 8 and a bot acks with every input, so 16 leaves room).
HELD_DEPTH = 16
#: Most treasures one list may hold: net.limits caps max_visible_treasures at 32.
HELD_TREASURES = 32
# Fields parse_snapshot extracts: int64[OUT_ROWS]. *_AT: byte offset of an array's first
# element; *_N: its element count, -1 when the key is absent. O_B is -1 in a full snapshot.
(O_T, O_A, O_B, O_HUNT, O_LEFT, O_SLOT, O_QX, O_QY, O_SCORE, O_DIG, O_HEAT, O_TR_AT,
 O_TR_N, O_TX_AT, O_TX_N, O_TN_AT, O_TN_N, O_EV_AT, O_EV_N) = range(19)
OUT_ROWS = 19

_ACCEPT_SIZE = CONNECT_ACCEPT_SIZE  # 68, tagged
_DENY_SIZE = CONNECT_DENY_SIZE  # 33, tagged (the 25-byte untagged form is bad_length)
_DISCONNECT_SIZE = DISCONNECT_SIZE  # 25, tagged
_DISCONNECT_BODY_END = HEADER_SIZE + DISCONNECT_BODY.size  # 17: where its tag starts
_INPUT_HEAD = HEADER_SIZE + INPUT_PREFIX.size  # 21
_RECORD = INPUT_RECORD.size  # 8
#: CONNECT_REQUEST: the token's fields (expire, nonce, sealed token) at offset 24.
TOKEN_FIELDS_AT = HEADER_SIZE + 8
TOKEN_FIELDS_SIZE = CONNECT_REQUEST_BODY.size - 8  # 164
#: CHALLENGE_RESPONSE: header, salt, cookie, zeros, then the tag at 248.
_RESPONSE_TAG_AT = CHALLENGE_RESPONSE_SIZE - TAG_SIZE
#: Room one bot's INPUT takes in the send buffer (61 bytes with 4 records and the tag).
INPUT_ROOM = 64
_U32 = 0xFFFFFFFF
_TWO_PI = 2.0 * math.pi
_EDGE_MARGIN = 32.0  # world units: a wandering bot turns back this close to an edge


# ---- bytes -------------------------------------------------------------------------------

@kernel(inline=True)
def get_u16(row: np.ndarray, at: int) -> int:
    """Little-endian u16 at byte `at` of row (uint8[:])."""
    return np.int64(row[at]) | (np.int64(row[at + 1]) << 8)


@kernel(inline=True)
def get_u32(row: np.ndarray, at: int) -> int:
    """Little-endian u32 at byte `at`."""
    return (np.int64(row[at]) | (np.int64(row[at + 1]) << 8) | (np.int64(row[at + 2]) << 16)
            | (np.int64(row[at + 3]) << 24))


@kernel(inline=True)
def get_u64_bits(row: np.ndarray, at: int) -> int:
    """Little-endian u64 at byte `at`, as the int64 with the same bits."""
    return get_u32(row, at) | (get_u32(row, at + 4) << 32)


@kernel
def get_f32(row: np.ndarray, at: int) -> float:
    """Little-endian IEEE 754 binary32 at byte `at`, exactly, as a float64."""
    bits = get_u32(row, at)
    sign = -1.0 if bits >> 31 else 1.0
    exp = (bits >> 23) & 0xFF
    mant = bits & 0x7FFFFF
    if exp == 0xFF:
        return np.nan if mant else sign * np.inf
    if exp == 0:
        return sign * math.ldexp(float(mant), -149)
    return sign * math.ldexp(float(mant | 0x800000), exp - 150)


@kernel(inline=True)
def put_u32(buf: np.ndarray, at: int, v: int) -> None:
    """Write the low 32 bits of v, little-endian, at byte `at`."""
    for k in range(4):
        buf[at + k] = (v >> (8 * k)) & 0xFF


# ---- snapshots ---------------------------------------------------------------------------

@kernel
def parse_snapshot(row: np.ndarray, n: int, stack: np.ndarray, out: np.ndarray) -> bool:
    """Check a SNAPSHOT's payload (row[HEADER_SIZE:n]) and extract what a bot uses into
    out (int64[OUT_ROWS], rows O_*). True if valid. The payload must be:

    - exactly one msgpack map (any map form) and nothing after it, its keys msgpack
      strings; each known key at most once; the value of an unknown key any msgpack value
      but bin or ext, non-empty containers nested at most SKIP_DEPTH deep;
    - "t", "a", "b": integers in 0..2**32-1; "h": [2 ints >= 0]; "me": [6 ints >= 0];
    - "p", "pn": ints in rows of 5 (id >= 0, qx, qy in 0..65535, vx, vy any);
      "pm": ints in rows of 3; "pv": ints in rows of 5; "pr", "tx": strictly ascending
      ints >= 0; "tr", "tn": rows of 4 (id, qx, qy in 0..65535, value >= 0);
      "ev": ints >= 0 in rows of 4; "lb": ints >= 0 in rows of 2; "hr": one int, then
      ints >= 0 in rows of 2 ("int" is any msgpack integer that fits an int64);
    - "t", "a", "h", "me" present; without "b" (a full snapshot) "p" and "tr" too.

    Whether a delta's baseline is held, and its "tx" indices fit it, is for the caller.
    """
    pos = np.int64(HEADER_SIZE)
    end = np.int64(n)
    if pos >= end:
        return False
    c = np.int64(row[pos])
    if 0x80 <= c <= 0x8F:
        pairs = c & 0xF
        pos += 1
    elif c == 0xDE or c == 0xDF:
        size = 2 if c == 0xDE else 4
        if pos + 1 + size > end:
            return False
        pairs = np.int64(0)
        for k in range(size):
            pairs = (pairs << 8) | np.int64(row[pos + 1 + k])
        pos += 1 + size
    else:
        return False
    for k in range(OUT_ROWS):
        out[k] = -1
    seen = np.int64(0)
    for _ in range(pairs):
        code, pos = read_key(row, pos, end)
        if pos < 0:
            return False
        if code != K_UNKNOWN:
            bit = np.int64(1) << code
            if seen & bit:
                return False
            seen |= bit
        if code == K_T or code == K_A or code == K_B:
            v, pos = read_int(row, pos, end)
            if pos < 0 or v < 0 or v > _U32:
                return False
            out[O_T if code == K_T else (O_A if code == K_A else O_B)] = v
        elif code == K_H or code == K_ME:
            count, pos = read_array(row, pos, end)
            want = 2 if code == K_H else 6
            if pos < 0 or count != want:
                return False
            first = O_HUNT if code == K_H else O_SLOT
            for j in range(want):
                v, pos = read_int(row, pos, end)
                if pos < 0 or v < 0:
                    return False
                out[first + j] = v
        elif code >= K_P and code <= K_LB:  # the flat integer arrays: one (inlined) reader
            if code == K_P or code == K_PN:
                kind, group = ROWS_ENTITY, 5
            elif code == K_PM:
                kind, group = ROWS_INT, 3
            elif code == K_PV:
                kind, group = ROWS_INT, 5
            elif code == K_PR or code == K_TX:
                kind, group = ROWS_ASCENDING, 1
            elif code == K_TR or code == K_TN:
                kind, group = ROWS_TREASURE, 4
            elif code == K_EV:
                kind, group = ROWS_UINT, 4
            else:  # K_LB
                kind, group = ROWS_UINT, 2
            pos, at, count = check_rows(row, pos, end, kind, group)
            if code == K_TR or code == K_TN or code == K_TX or code == K_EV:
                where = (O_TR_AT if code == K_TR else O_TN_AT if code == K_TN
                         else O_TX_AT if code == K_TX else O_EV_AT)
                out[where] = at
                out[where + 1] = count  # O_*_N follows O_*_AT
        elif code == K_HR:
            count, pos = read_array(row, pos, end)
            if pos < 0 or count < 1 or (count - 1) % 2 != 0:
                return False
            _v, pos = read_int(row, pos, end)
            for _j in range(count - 1):
                if pos < 0:
                    return False
                v, pos = read_int(row, pos, end)
                if v < 0:
                    return False
        else:
            pos = skip_value(row, pos, end, stack)
        if pos < 0:
            return False
    if pos != end:
        return False
    need = ((np.int64(1) << K_T) | (np.int64(1) << K_A) | (np.int64(1) << K_H)
            | (np.int64(1) << K_ME))
    if seen & need != need:
        return False
    full = (np.int64(1) << K_P) | (np.int64(1) << K_TR)
    if not (seen & (np.int64(1) << K_B)) and seen & full != full:
        return False
    return True


@kernel
def read_ints(row: np.ndarray, pos: int, count: int, vals: np.ndarray) -> None:
    """vals[:count] = the `count` integers from byte `pos` (an array parse_snapshot checked)."""
    end = row.shape[0]
    for j in range(count):
        v, pos = read_int(row, pos, end)
        vals[j] = v


@kernel(inline=True)
def read_treasures(row: np.ndarray, pos: int, end: int, count: int, lists: np.ndarray,
                   m: int) -> int:
    """Read `count` [id, qx, qy, value] groups from row at pos into lists[m:, :3] (the
    value is skipped: a bot does not use it); return m + count. parse_snapshot has
    checked the groups, so nothing here can fail."""
    for j in range(count):
        for f in range(3):
            v, pos = read_int(row, pos, end)
            lists[m + j, f] = v
        _value, pos = read_int(row, pos, end)
    return m + count


@kernel
def rebuild_treasures(row: np.ndarray, out: np.ndarray, base: np.ndarray, n_base: int,
                      lists: np.ndarray) -> int:
    """The treasure list after this snapshot, into lists (int64[HELD_TREASURES, 3]: id,
    qx, qy); return its length, or -1 if it is malformed (a "tx" index >= n_base, more
    than HELD_TREASURES treasures). A full snapshot's list is "tr"; a delta's is `base`
    (uint16[>= n_base, 3], the baseline's list) minus the "tx" entries, then "tn".
    `out` is parse_snapshot's output for this row."""
    end = row.shape[0]
    m = 0
    if out[O_B] < 0:
        count = out[O_TR_N] // 4
        if count > HELD_TREASURES:
            return -1
        return read_treasures(row, out[O_TR_AT], end, count, lists, 0)
    # the baseline minus "tx" (indices strictly ascending: parse_snapshot checked)
    tx_left = out[O_TX_N] if out[O_TX_N] > 0 else 0
    tx_pos = out[O_TX_AT]
    nxt = np.int64(-1)
    if tx_left > 0:
        nxt, tx_pos = read_int(row, tx_pos, end)
        tx_left -= 1
    for i in range(n_base):
        if i == nxt:
            nxt = np.int64(-1)
            if tx_left > 0:
                nxt, tx_pos = read_int(row, tx_pos, end)
                tx_left -= 1
            continue
        lists[m, 0] = base[i, 0]
        lists[m, 1] = base[i, 1]
        lists[m, 2] = base[i, 2]
        m += 1
    if nxt >= 0:  # an index the baseline does not have
        return -1
    count = out[O_TN_N] // 4 if out[O_TN_N] > 0 else 0
    if m + count > HELD_TREASURES:
        return -1
    return read_treasures(row, out[O_TN_AT], end, count, lists, m)


@kernel
def nearest_treasure(lists: np.ndarray, count: int, qx: int, qy: int, sx: float,
                     sy: float) -> int:
    """Index in lists[:count] (id, qx, qy rows) of the treasure nearest to (qx, qy), by
    world distance (sx, sy: world units per quantum); the first on ties; -1 if none."""
    best = -1
    best_d2 = 0.0
    for j in range(count):
        dx = float(lists[j, 1] - qx) * sx
        dy = float(lists[j, 2] - qy) * sy
        d2 = dx * dx + dy * dy
        if best < 0 or d2 < best_d2:
            best = j
            best_d2 = d2
    return best


# ---- receiving ---------------------------------------------------------------------------

@kernel
def record_latency(ns: int, hist: np.ndarray, stats: np.ndarray) -> None:
    """One input->ack sample (ns) into hist (int64[LAT_BINS + 1]: fine bins, coarse bins,
    overflow) and its sum, count and max into stats."""
    if ns < 0:
        ns = 0
    if ns < _LAT_FINE_END:
        k = ns // LAT_BIN_NS
    else:
        k = LAT_FINE_BINS + (ns - _LAT_FINE_END) // LAT_COARSE_NS
        if k > LAT_BINS:
            k = LAT_BINS
    hist[k] += 1
    stats[ST_LAT_SUM] += ns
    stats[ST_LAT_COUNT] += 1
    if ns > stats[ST_LAT_MAX]:
        stats[ST_LAT_MAX] = ns


@kernel(inline=True)
def salt_bot(row: np.ndarray, bots: np.ndarray) -> int:
    """The bot a CHALLENGE / CONNECT_ACCEPT / CONNECT_DENY answers (the salt at byte 16
    names it in its low 32 bits and must match whole), or -1."""
    salt = get_u64_bits(row, HEADER_SIZE)
    b = (salt & _U32) - 1
    if b < 0 or b >= bots.shape[0] or bots[b, B_SALT] != salt:
        return -1
    return b


@kernel(inline=True)
def s2c_ok(row: np.ndarray, n: int, bots: np.ndarray, b: int) -> bool:
    """True if the datagram row[0:n] ends with its tag under bot b's server-to-client key."""
    return tag_ok(row, n, bots[b, B_S2C_K0], bots[b, B_S2C_K1])


@kernel
def _on_accept(row: np.ndarray, bots: np.ndarray, sched: np.ndarray, slot_bot: np.ndarray,
               srv: np.ndarray, stats: np.ndarray, drops: np.ndarray, now: int) -> None:
    """A CONNECT_ACCEPT of the right size (68 bytes): the reference client's checks."""
    b = salt_bot(row, bots)
    if b < 0:
        drops[D.UNKNOWN_SESSION] += 1
        return
    state = bots[b, B_STATE]
    if state != CONNECTING and state != CONNECTED:
        drops[D.UNKNOWN_SESSION] += 1
        return
    if not s2c_ok(row, _ACCEPT_SIZE, bots, b):
        drops[D.BAD_TAG] += 1
        return
    if state == CONNECTED:  # a second answer to a resent response
        drops[D.DUPLICATE_CONNECT] += 1
        return
    sid = get_u32(row, 8)
    slot = sid & 0xFFFF  # what SNAPSHOTs are routed by (the body's slot equals it)
    bots[b, B_STATE] = CONNECTED
    bots[b, B_SID] = sid
    bots[b, B_SLOT] = slot
    bots[b, B_RX_SEQ] = 0
    bots[b, B_ACCEPTED_AT] = now
    bots[b, B_LAST_HEARD] = now
    sched[b] = now  # write_inputs draws the bot's phase at its first turn
    slot_bot[slot] = b
    stats[ST_CONNECTING] -= 1
    stats[ST_ACCEPTS] += 1
    at = HEADER_SIZE + 8
    srv[SRV_TICK_RATE] = get_u16(row, at + 2)
    srv[SRV_SNAPSHOT_RATE] = get_u16(row, at + 4)
    srv[SRV_WIDTH] = get_f32(row, at + 8)
    srv[SRV_HEIGHT] = get_f32(row, at + 12)
    srv[SRV_DIG_RADIUS] = get_f32(row, at + 16)
    srv[SRV_REVEAL_RADIUS] = get_f32(row, at + 20)
    srv[SRV_DIG_TICKS] = get_u32(row, at + 24)
    srv[SRV_TIMEOUT_S] = get_u32(row, at + 32) / 1000.0
    srv[SRV_KNOWN] = 1.0


@kernel
def _on_deny(row: np.ndarray, bots: np.ndarray, stats: np.ndarray, drops: np.ndarray,
             now: int) -> None:
    """A CONNECT_DENY of the right size (33 bytes, tagged)."""
    b = salt_bot(row, bots)
    if b < 0 or bots[b, B_STATE] != CONNECTING:
        drops[D.UNKNOWN_SESSION] += 1
        return
    if not s2c_ok(row, _DENY_SIZE, bots, b):
        drops[D.BAD_TAG] += 1
        return
    bots[b, B_STATE] = DENIED
    bots[b, B_ERROR] = ERR_DENIED + row[HEADER_SIZE + 8]
    bots[b, B_CLOSED_AT] = now
    stats[ST_CONNECTING] -= 1
    stats[ST_DENIED] += 1


@kernel
def _on_challenge(row: np.ndarray, bots: np.ndarray, cookies: np.ndarray, stats: np.ndarray,
                  drops: np.ndarray) -> None:
    """A CHALLENGE of the right size (188 bytes): keep its cookie (cookies: uint8[N, 156])
    and make the bot's CHALLENGE_RESPONSE due at once; from then on the bot resends the
    response, not its request. A later challenge (to a resent request) replaces the
    cookie, as in the reference client."""
    b = salt_bot(row, bots)
    if b < 0 or bots[b, B_STATE] != CONNECTING:
        drops[D.UNKNOWN_SESSION] += 1
        return
    if not s2c_ok(row, CHALLENGE_SIZE, bots, b):
        drops[D.BAD_TAG] += 1
        return
    for k in range(COOKIE_SIZE):
        cookies[b, k] = row[COOKIE_AT + k]
    bots[b, B_CHALLENGED] = 1
    bots[b, B_REQ_LAST] = REQ_NOW
    stats[ST_CHALLENGES] += 1


@kernel
def _on_snapshot(row: np.ndarray, n: int, b: int, seq: int, bots: np.ndarray,
                 srv: np.ndarray, sent: np.ndarray, held_tick: np.ndarray,
                 held_n: np.ndarray, held: np.ndarray, hist: np.ndarray, stats: np.ndarray,
                 drops: np.ndarray, stack: np.ndarray, out: np.ndarray, lists: np.ndarray,
                 now: int, measure_from: int) -> None:
    """A SNAPSHOT whose tag checked out: row is the datagram without its tag (uint8[n - 8]),
    n the datagram's size."""
    if not parse_snapshot(row, row.shape[0], stack, out):
        drops[D.BAD_PAYLOAD] += 1
        return
    depth = held_tick.shape[1]
    base = -1
    if out[O_B] >= 0:
        for k in range(depth):
            if held_tick[b, k] == out[O_B]:
                base = k
                break
        if base < 0:
            drops[D.NO_BASELINE] += 1
            return
        m = rebuild_treasures(row, out, held[b, base], held_n[b, base], lists)
    else:
        m = rebuild_treasures(row, out, held[b, 0], 0, lists)
    if m < 0:
        drops[D.BAD_PAYLOAD] += 1
        return
    # accepted (section 10, check 11a): from here on the datagram changes the bot
    t = out[O_T]
    k = bots[b, B_HELD_COUNT] % depth
    held_tick[b, k] = t
    held_n[b, k] = m
    for j in range(m):
        held[b, k, j, 0] = lists[j, 0]
        held[b, k, j, 1] = lists[j, 1]
        held[b, k, j, 2] = lists[j, 2]
    bots[b, B_HELD_COUNT] += 1
    bots[b, B_RX_SEQ] = seq
    bots[b, B_LAST_HEARD] = now
    bots[b, B_ACK_TICK] = t  # the newest held (sequences, so ticks, only grow)
    bots[b, B_HAVE_SNAP] = 1
    bots[b, B_SNAPS] += 1
    if bots[b, B_FIRST_RX] == 0:
        bots[b, B_FIRST_RX] = now
    bots[b, B_LAST_RX] = now
    if now >= measure_from:
        bots[b, B_SNAPS_MEASURED] += 1
    stats[ST_SNAPSHOTS] += 1
    stats[ST_SNAPSHOT_BYTES] += n
    stats[ST_DELTA if base >= 0 else ST_FULL] += 1
    bots[b, B_QX] = out[O_QX]
    bots[b, B_QY] = out[O_QY]
    bots[b, B_SCORE] = out[O_SCORE]
    bots[b, B_DIG] = out[O_DIG]
    bots[b, B_HEAT] = out[O_HEAT]
    bots[b, B_HUNT] = out[O_HUNT]
    # claims: count each of this bot's claims once (ev repeats them, newest first)
    if out[O_EV_N] > 0:
        end = row.shape[0]
        pos = out[O_EV_AT]
        newest = bots[b, B_CLAIM_TICK]
        for _j in range(out[O_EV_N] // 4):
            tick, pos = read_int(row, pos, end)
            slot, pos = read_int(row, pos, end)
            _treasure, pos = read_int(row, pos, end)
            _value, pos = read_int(row, pos, end)
            if slot == bots[b, B_SLOT] and tick > bots[b, B_CLAIM_TICK]:
                bots[b, B_CLAIMS] += 1
                if tick > newest:
                    newest = tick
        bots[b, B_CLAIM_TICK] = newest
    # target: the nearest treasure of the list this snapshot leaves the bot with
    sx = srv[SRV_WIDTH] / 65536.0
    sy = srv[SRV_HEIGHT] / 65536.0
    j = nearest_treasure(lists, m, out[O_QX], out[O_QY], sx, sy)
    if j >= 0:
        bots[b, B_TARGET] = lists[j, 0]
        bots[b, B_TQX] = lists[j, 1]
        bots[b, B_TQY] = lists[j, 2]
    else:
        bots[b, B_TARGET] = -1
    # input->ack latency: every input seq newly covered by "a", timed once
    a = out[O_A]
    if a > bots[b, B_INPUT_SEQ]:
        a = bots[b, B_INPUT_SEQ]  # an ack of inputs never sent: time only the real ones
    lo = bots[b, B_LAT_ACKED]
    if a > lo:
        first = lo + 1
        ring = sent.shape[1]
        if a - first >= ring:  # older than the ring: no send time left
            stats[ST_LAT_UNTIMED] += a - ring + 1 - first
            first = a - ring + 1
        for s in range(first, a + 1):
            sent_at = sent[b, s % ring]
            if sent_at >= measure_from:
                record_latency(now - sent_at, hist, stats)
            else:
                stats[ST_LAT_UNTIMED] += 1
        bots[b, B_LAT_ACKED] = a


@kernel
def receive_batch(data: np.ndarray, length: np.ndarray, ip: np.ndarray, port: np.ndarray,
                  count: int, server_ip: int, server_port: int, now: int, measure_from: int,
                  bots: np.ndarray, sched: np.ndarray, slot_bot: np.ndarray, srv: np.ndarray,
                  sent: np.ndarray, held_tick: np.ndarray, held_n: np.ndarray,
                  held: np.ndarray, hist: np.ndarray, stats: np.ndarray, drops: np.ndarray,
                  scratch: np.ndarray, lists: np.ndarray, cookies: np.ndarray) -> None:
    """Check and apply datagrams 0..count-1 of a drained batch, received by `now` (ns).

    data: uint8[C, SLOT_BYTES]; length: int32[C]; ip, port: int64[C] (net.batch);
    bots: int64[N, BOT_COLS]; sched: int64[N] next input time (NEVER: none); slot_bot:
    int32[65536] (-1: no bot); srv: float64[SRV_ROWS];
    sent: int64[N, SENT_RING] send time of input seq s at s % SENT_RING; held_tick:
    int64[N, HELD_DEPTH] (-1: empty); held_n: int64[N, HELD_DEPTH]; held:
    uint16[N, HELD_DEPTH, HELD_TREASURES, 3]; hist: int64[LAT_BINS + 1]; stats:
    int64[ST_ROWS]; drops: int64[len(net.drops.REASONS)]; scratch: int64[>= OUT_ROWS +
    SKIP_DEPTH + 1]; lists: int64[HELD_TREASURES, 3] scratch; cookies: uint8[N, 156] each
    bot's challenge cookie. Latency samples count only for inputs sent at or after
    `measure_from`.

    The checks are the reference client's (net/client.py ClientProtocol.receive), first
    failure counted under its reason, plus one before them all: a datagram not from the
    server's address is `wrong_address` (a connected socket would not even deliver it).
    Tags (s2c key of the bot the datagram is routed to) are checked after the size and the
    routing, before anything changes: a bad one is `bad_tag`.
    """
    out = scratch[:OUT_ROWS]
    stack = scratch[OUT_ROWS:]
    n_bots = bots.shape[0]
    for i in range(count):
        n = np.int64(length[i])
        row = data[i]
        if ip[i] != server_ip or port[i] != server_port:
            drops[D.WRONG_ADDRESS] += 1
            continue
        why = frame_drop(row, n)
        if why >= 0:
            drops[why] += 1
            continue
        if row[2] != VERSION:
            drops[D.BAD_VERSION] += 1
            continue
        if row[4] != 0 or row[5] != 0 or row[6] != 0 or row[7] != 0:
            drops[D.BAD_FLAGS] += 1
            continue
        ptype = row[3]
        if ptype == CHALLENGE:
            if n != CHALLENGE_SIZE:
                drops[D.BAD_LENGTH] += 1
            else:
                _on_challenge(row, bots, cookies, stats, drops)
            continue
        if ptype == CONNECT_ACCEPT:
            if n != _ACCEPT_SIZE:
                drops[D.BAD_LENGTH] += 1
            else:
                _on_accept(row, bots, sched, slot_bot, srv, stats, drops, now)
            continue
        if ptype == CONNECT_DENY:
            if n != _DENY_SIZE:
                drops[D.BAD_LENGTH] += 1
            else:
                _on_deny(row, bots, stats, drops, now)
            continue
        if ptype != SNAPSHOT and ptype != DISCONNECT:
            drops[D.BAD_TYPE] += 1
            continue
        sid = get_u32(row, 8)
        b = np.int64(slot_bot[sid & 0xFFFF])
        if b < 0 or b >= n_bots or bots[b, B_STATE] != CONNECTED or bots[b, B_SID] != sid:
            drops[D.UNKNOWN_SESSION] += 1
            continue
        seq = get_u32(row, 12)
        if seq <= bots[b, B_RX_SEQ]:
            drops[D.STALE_SEQUENCE] += 1
            continue
        if ptype == DISCONNECT:
            bad_size = n != _DISCONNECT_SIZE
        else:
            bad_size = n < HEADER_SIZE + TAG_SIZE  # a tag, and something before it
        if bad_size:
            drops[D.BAD_LENGTH] += 1
            continue
        if not s2c_ok(row, n, bots, b):
            drops[D.BAD_TAG] += 1
            continue
        if ptype == DISCONNECT:
            bots[b, B_STATE] = CLOSED
            bots[b, B_ERROR] = ERR_DISCONNECTED + row[HEADER_SIZE]
            bots[b, B_CLOSED_AT] = now
            sched[b] = NEVER
            slot_bot[sid & 0xFFFF] = -1
            stats[ST_SERVER_CLOSED] += 1
            continue
        _on_snapshot(row[:n - TAG_SIZE], n, b, seq, bots, srv, sent, held_tick, held_n,
                     held, hist, stats, drops, stack, out, lists, now, measure_from)


# ---- sending -----------------------------------------------------------------------------

@kernel(inline=True)
def put_request(buf: np.ndarray, at: int, requests: np.ndarray, b: int) -> int:
    """Bot b's CONNECT_REQUEST (256 bytes, untagged), copied from requests (uint8[N, 256],
    built from its connect token by HordeState); return the end position."""
    for k in range(CONNECT_REQUEST_SIZE):
        buf[at + k] = requests[b, k]
    return at + CONNECT_REQUEST_SIZE


@kernel(inline=True)
def put_response(buf: np.ndarray, at: int, bots: np.ndarray, cookies: np.ndarray,
                 b: int) -> int:
    """Bot b's CHALLENGE_RESPONSE (256 bytes): header (session id 0, sequence 0), salt at
    16, its cookie (cookies: uint8[N, 156]) at 24, zeros, the tag (c2s key) at 248; return
    the end position."""
    put_header(buf, at, CHALLENGE_RESPONSE, 0, 0)
    salt = bots[b, B_SALT]
    put_u32(buf, at + HEADER_SIZE, salt & _U32)
    put_u32(buf, at + HEADER_SIZE + 4, (salt >> 32) & _U32)
    for k in range(COOKIE_SIZE):
        buf[at + COOKIE_AT + k] = cookies[b, k]
    for k in range(COOKIE_AT + COOKIE_SIZE, _RESPONSE_TAG_AT):
        buf[at + k] = 0
    return put_tag(buf, at, _RESPONSE_TAG_AT, bots[b, B_C2S_K0], bots[b, B_C2S_K1])


@kernel
def write_connects(bots: np.ndarray, requests: np.ndarray, cookies: np.ndarray,
                   stats: np.ndarray, now: int, allowance: int, resend_ns: int,
                   timeout_ns: int, buf: np.ndarray, off: np.ndarray) -> int:
    """CONNECT_REQUESTs and CHALLENGE_RESPONSEs due now (256 bytes each), into buf
    (uint8[C * 256]) with off (int32[C + 1]); return how many (at most C). requests:
    uint8[N, 256] each bot's prebuilt request; cookies: uint8[N, 156].

    First the connecting bots' (re)sends: a challenged bot's response, else its request,
    when its last one is `resend_ns` old or it was just challenged (REQ_NOW); a bot asking
    for longer than `timeout_ns`, if > 0, gives up: closed, ERR_CONNECT_TIMEOUT. Then the
    requests of up to `allowance` bots that never asked, in index order."""
    cap = off.shape[0] - 1
    n_out = 0
    off[0] = 0
    started = stats[ST_STARTED]
    if stats[ST_CONNECTING] > 0:
        for b in range(started):
            if bots[b, B_STATE] != CONNECTING:
                continue
            if timeout_ns > 0 and now - bots[b, B_REQ_FIRST] > timeout_ns:
                bots[b, B_STATE] = CLOSED
                bots[b, B_ERROR] = ERR_CONNECT_TIMEOUT
                bots[b, B_CLOSED_AT] = now
                stats[ST_CONNECTING] -= 1
                continue
            last = bots[b, B_REQ_LAST]
            if (last != REQ_NOW and now - last < resend_ns) or n_out >= cap:
                continue
            if bots[b, B_CHALLENGED]:
                off[n_out + 1] = put_response(buf, off[n_out], bots, cookies, b)
                stats[ST_RESPONSES] += 1
            else:
                off[n_out + 1] = put_request(buf, off[n_out], requests, b)
                stats[ST_REQUESTS] += 1
            bots[b, B_REQ_LAST] = now
            n_out += 1
    while allowance > 0 and started < bots.shape[0] and n_out < cap:
        b = started
        bots[b, B_STATE] = CONNECTING
        bots[b, B_REQ_FIRST] = now
        bots[b, B_REQ_LAST] = now
        off[n_out + 1] = put_request(buf, off[n_out], requests, b)
        n_out += 1
        started += 1
        allowance -= 1
        stats[ST_CONNECTING] += 1
        stats[ST_REQUESTS] += 1
    stats[ST_STARTED] = started
    return n_out


@kernel
def decide(b: int, bots: np.ndarray, heading: np.ndarray, rng: np.ndarray,
           srv: np.ndarray) -> tuple:
    """(move x, move y, dig) for bot b's next input: net/hunter.py's strategy. With a
    target treasure: walk to it, dig within half the dig radius (or, edging closer,
    within 0.9 of it). Without: wander (new random heading every 20-80 inputs while the
    heat is 0), turn away by a random amount when the heat drops, turn back at edges.
    rng: uint64[N] (SplitMix64 states); heading: float64[N] radians."""
    if bots[b, B_HAVE_SNAP] == 0:
        return 0, 0, False  # nothing known yet: stand still
    sx = srv[SRV_WIDTH] / 65536.0
    sy = srv[SRV_HEIGHT] / 65536.0
    if bots[b, B_TARGET] >= 0:
        dx = float(bots[b, B_TQX] - bots[b, B_QX]) * sx
        dy = float(bots[b, B_TQY] - bots[b, B_QY]) * sy
        dist = math.sqrt(dx * dx + dy * dy)
        radius = srv[SRV_DIG_RADIUS]
        if dist <= radius * 0.5:
            return 0, 0, True
        if dist <= radius * 0.9:
            return int(40.0 * dx / dist), int(40.0 * dy / dist), True
        return int(127.0 * dx / dist), int(127.0 * dy / dist), False
    state = rng[b:b + 1]
    heat = bots[b, B_HEAT]
    if heat == 0:
        bots[b, B_WANDER] -= 1
        if bots[b, B_WANDER] <= 0:
            heading[b] = next_unit(state) * _TWO_PI
            bots[b, B_WANDER] = 20 + next_below(state, 61)
    elif heat < bots[b, B_LAST_HEAT]:  # colder: turn away, by a random amount
        side = 1.0 if next_below(state, 2) == 1 else -1.0
        heading[b] += side * (0.6 + 1.6 * next_unit(state))
    bots[b, B_LAST_HEAT] = heat
    cx = math.cos(heading[b])
    cy = math.sin(heading[b])
    x = bots[b, B_QX] * sx
    y = bots[b, B_QY] * sy
    if (x < _EDGE_MARGIN and cx < 0) or (x > srv[SRV_WIDTH] - _EDGE_MARGIN and cx > 0):
        cx = -cx
    if (y < _EDGE_MARGIN and cy < 0) or (y > srv[SRV_HEIGHT] - _EDGE_MARGIN and cy > 0):
        cy = -cy
    heading[b] = math.atan2(cy, cx)
    return int(127.0 * cx), int(127.0 * cy), False


@kernel
def put_input(buf: np.ndarray, at: int, bots: np.ndarray, b: int) -> int:
    """Bot b's INPUT with its newest input and up to 3 earlier ones, newest first, then
    the tag (c2s key): 21 + 8 * count + 8 bytes; return the end position. B_TX_SEQ /
    B_INPUT_SEQ / history already advanced."""
    seq = bots[b, B_INPUT_SEQ]
    count = seq if seq < MAX_INPUTS_PER_PACKET else MAX_INPUTS_PER_PACKET
    put_header(buf, at, INPUT, bots[b, B_SID], bots[b, B_TX_SEQ])
    put_u32(buf, at + HEADER_SIZE, bots[b, B_ACK_TICK])
    buf[at + HEADER_SIZE + 4] = count
    xy = bots[b, B_HIST_XY]
    dig = bots[b, B_HIST_DIG]
    pos = at + _INPUT_HEAD
    for k in range(count):
        put_u32(buf, pos, seq - k)
        buf[pos + 4] = (xy >> (16 * k)) & 0xFF
        buf[pos + 5] = (xy >> (16 * k + 8)) & 0xFF
        buf[pos + 6] = BUTTON_DIG if (dig >> k) & 1 else 0
        buf[pos + 7] = 0
        pos += _RECORD
    return put_tag(buf, at, pos - at, bots[b, B_C2S_K0], bots[b, B_C2S_K1])


@kernel
def write_inputs(bots: np.ndarray, sched: np.ndarray, heading: np.ndarray, rng: np.ndarray,
                 srv: np.ndarray, sent: np.ndarray, stats: np.ndarray, now: int, period: int,
                 buf: np.ndarray, off: np.ndarray) -> int:
    """One INPUT for every connected bot whose input time (sched[b]) has come, into buf
    (uint8[C * INPUT_ROOM]) with off (int32[C + 1]); return how many (at most C).

    Each bot sends every `period` ns from its own random phase, drawn at its first turn
    after the accept. An input is sent late when the driver is: the lateness is summed into
    ST_LAG_SUM; input times missed entirely (more than a period late) are skipped, counted
    in ST_SKIPPED, never sent in a burst. The send time (`now`) goes to
    sent[b, seq % SENT_RING]. stats[ST_NEXT_DUE] gets the earliest input time to come."""
    cap = off.shape[0] - 1
    n_out = 0
    off[0] = 0
    if period < 1:
        period = 1
    next_due = NEVER
    ring = sent.shape[1]
    for b in range(sched.shape[0]):
        due = sched[b]
        if due > now:
            if due < next_due:
                next_due = due
            continue
        if n_out >= cap:  # no room left: the rest go in the next call
            next_due = now
            break
        if bots[b, B_PHASED] == 0:  # the first turn: spread bots over the period
            bots[b, B_PHASED] = 1
            due = now + next_below(rng[b:b + 1], period)
            sched[b] = due
            if due < next_due:
                next_due = due
            continue
        late = now - due
        missed = late // period
        stats[ST_LAG_SUM] += late
        stats[ST_LAG_COUNT] += 1
        stats[ST_SKIPPED] += missed
        nxt = due + (missed + 1) * period
        sched[b] = nxt
        if nxt < next_due:
            next_due = nxt
        mx, my, dig = decide(b, bots, heading, rng, srv)
        bots[b, B_INPUT_SEQ] += 1
        bots[b, B_TX_SEQ] += 1
        bots[b, B_HIST_XY] = ((bots[b, B_HIST_XY] & 0xFFFFFFFFFFFF) << 16) | (
            (mx & 0xFF) | ((my & 0xFF) << 8))
        bots[b, B_HIST_DIG] = ((bots[b, B_HIST_DIG] << 1) | (1 if dig else 0)) & 0xF
        sent[b, bots[b, B_INPUT_SEQ] % ring] = now
        off[n_out + 1] = put_input(buf, off[n_out], bots, b)
        n_out += 1
    stats[ST_INPUTS] += n_out
    stats[ST_NEXT_DUE] = next_due
    return n_out


@kernel
def expire_silent(bots: np.ndarray, sched: np.ndarray, slot_bot: np.ndarray, srv: np.ndarray,
                  stats: np.ndarray, now: int) -> int:
    """Close every connected bot that heard nothing accepted for longer than the session
    timeout (docs/PROTOCOL.md 11.1): ERR_TIMED_OUT. Return how many. (Called a few times a
    second, not per datagram: a timeout is seconds long.)"""
    timeout_ns = np.int64(srv[SRV_TIMEOUT_S] * 1e9)
    closed = 0
    if timeout_ns <= 0:
        return 0
    for b in range(bots.shape[0]):
        if bots[b, B_STATE] == CONNECTED and now - bots[b, B_LAST_HEARD] > timeout_ns:
            bots[b, B_STATE] = CLOSED
            bots[b, B_ERROR] = ERR_TIMED_OUT
            bots[b, B_CLOSED_AT] = now
            sched[b] = NEVER
            slot_bot[bots[b, B_SLOT]] = -1
            closed += 1
    stats[ST_TIMED_OUT] += closed
    return closed


@kernel
def write_disconnects(bots: np.ndarray, sched: np.ndarray, slot_bot: np.ndarray,
                      stats: np.ndarray, now: int, buf: np.ndarray, off: np.ndarray) -> int:
    """A DISCONNECT (reason client quit, tagged: 25 bytes) for every connected bot, which
    is then closed (no error: it quit); connecting bots just stop. buf: uint8[>= N * 25];
    off: int32[N + 1]. Return how many were written."""
    n_out = 0
    off[0] = 0
    for b in range(bots.shape[0]):
        state = bots[b, B_STATE]
        if state == CONNECTING:
            bots[b, B_STATE] = CLOSED
            bots[b, B_CLOSED_AT] = now
            stats[ST_CONNECTING] -= 1
            continue
        if state != CONNECTED:
            continue
        bots[b, B_TX_SEQ] += 1
        at = off[n_out]
        put_header(buf, at, DISCONNECT, bots[b, B_SID], bots[b, B_TX_SEQ])
        buf[at + HEADER_SIZE] = DISCONNECT_CLIENT_QUIT
        off[n_out + 1] = put_tag(buf, at, _DISCONNECT_BODY_END, bots[b, B_C2S_K0],
                                 bots[b, B_C2S_K1])
        n_out += 1
        bots[b, B_STATE] = CLOSED
        bots[b, B_CLOSED_AT] = now
        sched[b] = NEVER
        slot_bot[bots[b, B_SLOT]] = -1
    stats[ST_DISCONNECTS] += n_out
    return n_out


@kernel
def init_bots(bots: np.ndarray, sched: np.ndarray, heading: np.ndarray, rng: np.ndarray,
              seed_state: np.ndarray, held_tick: np.ndarray) -> None:
    """Fresh bots: each gets its own SplitMix64 state drawn from seed_state (uint64[1]),
    a salt (random high 32 bits, index + 1 in the low 32) and a random heading."""
    for b in range(bots.shape[0]):
        for c in range(bots.shape[1]):
            bots[b, c] = 0
        rng[b] = next_u64(seed_state)
        state = rng[b:b + 1]
        high = np.int64(next_u64(state) >> np.uint64(32))
        bots[b, B_SALT] = (high << 32) | (b + 1)
        heading[b] = next_unit(state) * _TWO_PI
        sched[b] = NEVER
        bots[b, B_TARGET] = -1
        bots[b, B_CLAIM_TICK] = -1
        bots[b, B_HUNT] = -1
        for k in range(held_tick.shape[1]):
            held_tick[b, k] = -1


# ---- the horde's arrays, and what they say -------------------------------------------------

class HordeState:
    """Every array of a horde of bots, one per connect token (net.token.ConnectToken),
    allocated once (shapes in the kernels' docstrings), and the kernels as methods. `seed`
    fixes every random choice: salts, headings, input phases, wandering (the tokens fix the
    keys, so the tags). Time is an argument (monotonic ns)."""

    def __init__(self, tokens: Sequence[ConnectToken], seed: int = 0,
                 held_depth: int = HELD_DEPTH) -> None:
        count = len(tokens)
        if not 1 <= count <= 65535:  # a server's slots at most
            raise ValueError(f"a horde needs 1..65535 connect tokens, got {count}")
        if not (isinstance(seed, int) and 0 <= seed < 2**64):
            raise ValueError(f"seed must be an integer in 0..2**64-1, got {seed!r}")
        if not (isinstance(held_depth, int) and 1 <= held_depth <= 64):
            raise ValueError(f"held_depth must be an integer in 1..64, got {held_depth!r}")
        self.count = count
        self.tokens = tuple(tokens)  # bot b's connect token (its keys: tests, reports)
        self.bots = np.zeros((count, BOT_COLS), np.int64)
        self.sched = np.full(count, NEVER, np.int64)
        self.heading = np.zeros(count, np.float64)
        self.rng = np.zeros(count, np.uint64)
        self.slot_bot = np.full(65536, -1, np.int32)
        self.srv = np.zeros(SRV_ROWS, np.float64)
        self.sent = np.zeros((count, SENT_RING), np.int64)
        self.held_tick = np.full((count, held_depth), -1, np.int64)
        self.held_n = np.zeros((count, held_depth), np.int64)
        self.held = np.zeros((count, held_depth, HELD_TREASURES, 3), np.uint16)
        self.hist = np.zeros(LAT_BINS + 1, np.int64)
        self.stats = np.zeros(ST_ROWS, np.int64)
        self.drops = D.new_drop_counters()
        self.scratch = np.zeros(OUT_ROWS + SKIP_DEPTH + 1, np.int64)
        self.lists = np.zeros((HELD_TREASURES, 3), np.int64)
        self.cookies = np.zeros((count, COOKIE_SIZE), np.uint8)
        init_bots(self.bots, self.sched, self.heading, self.rng, np.array([seed], np.uint64),
                  self.held_tick)
        self.requests = build_requests(self.bots[:, B_SALT], tokens)
        for b, token in enumerate(tokens):
            self.bots[b, B_C2S_K0], self.bots[b, B_C2S_K1] = key_words(token.c2s_key)
            self.bots[b, B_S2C_K0], self.bots[b, B_S2C_K1] = key_words(token.s2c_key)

    def receive(self, batch, count: int, server_ip: int, server_port: int, now: int,
                measure_from: int = 0) -> None:
        """receive_batch over rows 0..count-1 of a net.batch.DatagramBatch."""
        receive_batch(batch.data, batch.length, batch.ip, batch.port, count, server_ip,
                      server_port, now, measure_from, self.bots, self.sched, self.slot_bot,
                      self.srv, self.sent, self.held_tick, self.held_n, self.held, self.hist,
                      self.stats, self.drops, self.scratch, self.lists, self.cookies)

    def connects(self, now: int, allowance: int, resend_ns: int, timeout_ns: int,
                 buf: np.ndarray, off: np.ndarray) -> int:
        """write_connects: requests and challenge responses into buf/off; return how many."""
        return write_connects(self.bots, self.requests, self.cookies, self.stats, now,
                              allowance, resend_ns, timeout_ns, buf, off)

    def inputs(self, now: int, period: int, buf: np.ndarray, off: np.ndarray) -> int:
        """write_inputs: due INPUTs into buf/off; return how many."""
        return write_inputs(self.bots, self.sched, self.heading, self.rng, self.srv,
                            self.sent, self.stats, now, period, buf, off)

    def expire(self, now: int) -> int:
        """expire_silent: close bots the server has been silent to; return how many."""
        return expire_silent(self.bots, self.sched, self.slot_bot, self.srv, self.stats, now)

    def disconnects(self, now: int, buf: np.ndarray, off: np.ndarray) -> int:
        """write_disconnects: one DISCONNECT per connected bot; return how many."""
        return write_disconnects(self.bots, self.sched, self.slot_bot, self.stats, now, buf,
                                 off)

    def column(self, field: int) -> np.ndarray:
        """bots[:, field]: one field (B_*) of every bot (a view)."""
        return self.bots[:, field]

    def error_reasons(self) -> dict[str, int]:
        """{reason: bots} for every bot that stopped with an error."""
        from collections import Counter
        names = {ERR_TIMED_OUT: "timed out", ERR_CONNECT_TIMEOUT: "connect timed out"}
        deny = {1: "server full", 2: "wrong version", 3: "shutting down"}
        leave = {1: "client quit", 2: "server shutdown", 3: "timed out", 4: "kicked"}
        counts: Counter = Counter()
        for code in self.bots[:, B_ERROR][self.bots[:, B_ERROR] != 0].tolist():
            if code >= ERR_DISCONNECTED:
                r = code - ERR_DISCONNECTED
                counts[f"disconnected ({leave.get(r, r)})"] += 1
            elif code >= ERR_DENIED:
                r = code - ERR_DENIED
                counts[f"denied ({deny.get(r, r)})"] += 1
            else:
                counts[names.get(code, str(code))] += 1
        return dict(counts)


def build_requests(salts: np.ndarray, tokens: Sequence[ConnectToken]) -> np.ndarray:
    """uint8[N, 256]: each bot's CONNECT_REQUEST: header (type 1, session id 0, sequence
    0), its salt (salts: int64[N], the u64's bits) at 16, its token's request fields
    (expire, nonce, sealed private token: 164 bytes) at 24, zero padding. Built once: a
    request never changes between resends (the salt names one attempt)."""
    count = len(tokens)
    out = np.zeros((count, CONNECT_REQUEST_SIZE), np.uint8)
    out[:, :HEADER_SIZE] = np.frombuffer(pack_header(CONNECT_REQUEST, 0, 0), np.uint8)
    out[:, HEADER_SIZE:TOKEN_FIELDS_AT] = (
        np.ascontiguousarray(salts, dtype="<i8").view(np.uint8).reshape(count, 8))
    fields = b"".join(token.request_fields() for token in tokens)
    if len(fields) != count * TOKEN_FIELDS_SIZE:
        raise ValueError(f"a connect token's request fields are {TOKEN_FIELDS_SIZE} bytes")
    out[:, TOKEN_FIELDS_AT:TOKEN_FIELDS_AT + TOKEN_FIELDS_SIZE] = (
        np.frombuffer(fields, np.uint8).reshape(count, TOKEN_FIELDS_SIZE))
    return out


def bin_middle_ns(k: int) -> float:
    """The middle of latency bin k (ns); the overflow bin has none (inf)."""
    if k < LAT_FINE_BINS:
        return (k + 0.5) * LAT_BIN_NS
    if k < LAT_BINS:
        return _LAT_FINE_END + (k - LAT_FINE_BINS + 0.5) * LAT_COARSE_NS
    return math.inf


def latency_summary(hist: np.ndarray, stats: np.ndarray) -> dict[str, float]:
    """{mean, p50, p99, max, count} of the input->ack histogram, in ms. Percentiles are
    nearest-rank (numpy's 'inverted_cdf'), reported at their bin's middle (never above the
    max): within 5 us of the exact sample below 1 s, within 0.5 ms up to 60 s, and the max
    itself beyond. mean and max are exact."""
    count = int(stats[ST_LAT_COUNT])
    if count == 0:
        return dict(mean=0.0, p50=0.0, p99=0.0, max=0.0, count=0)
    top = int(stats[ST_LAT_MAX])
    cum = np.cumsum(hist)

    def pct(q: float) -> float:
        rank = max(1, math.ceil(q * count))
        k = int(np.searchsorted(cum, rank))
        return min(bin_middle_ns(k), top) / 1e6

    return dict(mean=round(int(stats[ST_LAT_SUM]) / count / 1e6, 3), p50=round(pct(0.50), 3),
                p99=round(pct(0.99), 3), max=round(top / 1e6, 3), count=count)


def warm_up() -> None:
    """Compile (or load from cache) every kernel with the real dtypes, on 2 bots with
    throwaway tokens. numba compiles a kernel whole, every branch, for its argument types:
    one call each compiles the challenge, response and tag paths too; the datagrams below
    (a CHALLENGE, one with a bad tag, an ACCEPT) only walk those paths once as well."""
    from net.batch import DatagramBatch
    from net.tag import sign
    from net.token import issue_token
    tokens = [issue_token(bytes(32), b + 1, [("127.0.0.1", 1)], "warmup", 1000, 60)
              for b in range(2)]
    h = HordeState(tokens, seed=1)
    buf = np.zeros(2 * CONNECT_REQUEST_SIZE, np.uint8)
    off = np.zeros(3, np.int32)
    h.connects(1, 2, 1, 0, buf, off)
    salt = (int(h.bots[0, B_SALT]) & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "little")
    challenge = sign(pack_header(CHALLENGE, 0, 0) + salt + bytes(COOKIE_SIZE),
                     tokens[0].s2c_key)
    accept = sign(pack_header(CONNECT_ACCEPT, 1 << 16, 0) + salt
                  + bytes(CONNECT_ACCEPT_SIZE - TAG_SIZE - HEADER_SIZE - 8), tokens[0].s2c_key)
    batch = DatagramBatch.allocate(3)
    for data in (challenge, challenge[:-1] + bytes([challenge[-1] ^ 1]), accept):
        batch.put(data, 0, 0)
    h.receive(batch, 1, 0, 0, 1, 0)
    h.connects(2, 0, 1, 0, buf, off)
    h.receive(batch, 3, 0, 0, 2, 0)
    h.inputs(3, 1000, np.zeros(2 * INPUT_ROOM, np.uint8), off)
    h.expire(3)
    h.disconnects(3, np.zeros(2 * INPUT_ROOM, np.uint8), off)
