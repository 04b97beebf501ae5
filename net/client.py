"""The client side of the protocol, sans-IO: the reference a native client can follow.

`ClientProtocol` takes datagrams with `now` (seconds, any monotonic origin) and returns
events; it produces the datagrams to send. It connects with a connect token from the
token service (net.token), answers the server's challenge, tags what it sends with the
token's client-to-server key and checks the server's tags. Used by the tests and the bots.
"""

from __future__ import annotations

import random
from collections import OrderedDict, deque
from dataclasses import dataclass, field

import msgpack

from net import drops as D
from net.tag import sign, verify
from net.token import ConnectToken
from net.wire import (BUTTON_DIG, CHALLENGE, CHALLENGE_RESPONSE, CHALLENGE_RESPONSE_SIZE,
                      CHALLENGE_SIZE, CONNECT_ACCEPT, CONNECT_ACCEPT_BODY, CONNECT_ACCEPT_SIZE,
                      CONNECT_DENY, CONNECT_DENY_BODY, CONNECT_DENY_SIZE, CONNECT_REQUEST,
                      CONNECT_REQUEST_SIZE, COOKIE_AT, COOKIE_SIZE, DISCONNECT,
                      DISCONNECT_BODY, DISCONNECT_CLIENT_QUIT, DISCONNECT_SIZE, HEADER_SIZE,
                      INPUT, INPUT_PREFIX, KEEPALIVE, INPUT_RECORD, MAX_DATAGRAM,
                      MAX_INPUTS_PER_PACKET, PROTOCOL_ID, SNAPSHOT, TAG_SIZE, VERSION,
                      pack_header, unpack_header)

#: Snapshots a client keeps as possible baselines: more than any server ring (64 at most).
HELD_SNAPSHOTS = 64
#: Every this-many-th resend of a CHALLENGE_RESPONSE is a CONNECT_REQUEST instead, asking
#: for a challenge to the client's current address (11.1).
RESPONSE_REFRESH = 4
#: Confirmed own claims a client remembers (the newest), for its player to see.
CONFIRMED_KEPT = 4096

DISCONNECTED, CONNECTING, CONNECTED, DENIED, CLOSED = ("disconnected", "connecting",
                                                       "connected", "denied", "closed")


@dataclass(frozen=True)
class ServerInfo:
    """What CONNECT_ACCEPT tells the client."""

    slot: int
    session_id: int
    tick_rate: int
    snapshot_rate: int
    world_width: float
    world_height: float
    dig_radius: float
    reveal_radius: float
    dig_ticks: int
    server_tick: int
    session_timeout: float  # seconds


@dataclass(frozen=True)
class Snapshot:
    """A decoded SNAPSHOT; positions back in world units."""

    sequence: int
    tick: int
    ack: int
    hunt_id: int
    ticks_left: int
    slot: int
    x: float
    y: float
    score: int
    dig_progress: int  # 0..255
    heat: int  # 0..255
    players: list[tuple[int, float, float, float, float]]  # id, x, y, vx, vy (units/s)
    treasures: list[tuple[int, float, float, int]]  # id, x, y, value
    claims: list[tuple[int, int, int, int]]  # tick, slot, treasure, value; newest first
    leaderboard: list[tuple[int, int]] | None  # slot, score
    hunt_result: tuple[int, list[tuple[int, int]]] | None
    baseline: int | None = None  # the tick this snapshot was a delta against, if any
    # this client's own claims still in flight: tick, treasure, value, confirmed (durable
    # in the server's ledger), oldest first
    own_claims: list[tuple[int, int, int, int]] = field(default_factory=list)


@dataclass(frozen=True)
class Connected:
    info: ServerInfo


@dataclass(frozen=True)
class Denied:
    reason: int


@dataclass(frozen=True)
class Disconnected:
    reason: str  # "server", "timed_out", "connect_timed_out"
    code: int = 0


@dataclass
class ClientProtocol:
    """One client session. `now` is in seconds on any monotonic clock.

    token: the connect token (its name is the player's name); salt: random per attempt.
    """

    token: ConnectToken
    salt: int = field(default_factory=lambda: random.SystemRandom().getrandbits(64) | 1)
    resend_interval: float = 0.25
    connect_timeout: float = 5.0
    keepalive_interval: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.salt < 1 << 64:
            raise ValueError(f"salt must be a non-zero u64, got {self.salt!r}")
        self._c2s = self.token.c2s_key
        self._s2c = self.token.s2c_key
        self.state = DISCONNECTED
        self.info: ServerInfo | None = None
        self.drops = D.new_drop_counters()
        self._response: bytes | None = None  # the CHALLENGE_RESPONSE, once challenged
        self._response_sent = 0  # times it was sent
        self._tx_seq = 0
        self._rx_seq = 0
        self._input_seq = 0
        self._recent: deque[bytes] = deque(maxlen=MAX_INPUTS_PER_PACKET)
        self._started = 0.0
        self._last_sent = 0.0
        self._last_heard = 0.0
        self.last_snapshot_tick = 0
        # own claims the server confirmed durable, (tick, treasure) -> value: a confirmed
        # claim is final (it survives a server crash); "my" repeats it until acked
        self.confirmed: OrderedDict[tuple[int, int], int] = OrderedDict()
        # entity lists of recent snapshots by tick: the baselines deltas refer to
        self.held: OrderedDict[int, Held] = OrderedDict()

    @property
    def input_seq(self) -> int:
        return self._input_seq

    # ---- sending --------------------------------------------------------------------

    def connect(self, now: float) -> bytes:
        """Start connecting; return the CONNECT_REQUEST to send (resend via poll())."""
        self.state = CONNECTING
        self._started = now
        return self._request(now)

    def _request(self, now: float) -> bytes:
        """The CONNECT_REQUEST, or once challenged the CHALLENGE_RESPONSE, to (re)send.

        Every RESPONSE_REFRESH-th resend of the response is a CONNECT_REQUEST instead: the
        challenge is bound to the address it was sent to, so if a NAT rebound the client's
        port (or the cookie expired) every further response is useless, and the request
        brings a challenge for where the client is now (it replaces the response)."""
        self._last_sent = now
        if self._response is not None:
            self._response_sent += 1
            if self._response_sent % RESPONSE_REFRESH:
                return self._response
        packet = (pack_header(CONNECT_REQUEST, 0, 0) + self.salt.to_bytes(8, "little")
                  + self.token.request_fields())
        return packet + bytes(CONNECT_REQUEST_SIZE - len(packet))

    def _next_header(self, ptype: int) -> bytes:
        self._tx_seq += 1
        return pack_header(ptype, self.info.session_id, self._tx_seq)

    def input(self, move_x: int, move_y: int, dig: bool, now: float) -> bytes | None:
        """The INPUT for this tick's intent (move axes -127..127); None unless connected.

        Each packet repeats up to 3 earlier inputs, newest first, so one lost datagram
        costs no input.
        """
        if self.state != CONNECTED:
            return None
        self._input_seq += 1
        mx = max(-127, min(127, int(move_x)))
        my = max(-127, min(127, int(move_y)))
        self._recent.appendleft(INPUT_RECORD.pack(self._input_seq, mx, my,
                                                  BUTTON_DIG if dig else 0))
        self._last_sent = now
        return sign(self._next_header(INPUT)
                    + INPUT_PREFIX.pack(self.last_snapshot_tick & 0xFFFFFFFF, len(self._recent))
                    + b"".join(self._recent), self._c2s)

    def disconnect(self) -> bytes | None:
        """The DISCONNECT to send (None unless connected); the session is closed."""
        if self.state != CONNECTED:
            return None
        self.state = CLOSED
        return sign(self._next_header(DISCONNECT) + DISCONNECT_BODY.pack(DISCONNECT_CLIENT_QUIT),
                    self._c2s)

    def poll(self, now: float) -> tuple[list[bytes], list]:
        """Timers: resend the request, send keepalives, notice silence. (datagrams, events)."""
        if self.state == CONNECTING:
            if now - self._started > self.connect_timeout:
                self.state = CLOSED
                return [], [Disconnected("connect_timed_out")]
            if now - self._last_sent >= self.resend_interval:
                return [self._request(now)], []
        elif self.state == CONNECTED:
            if now - self._last_heard > self.info.session_timeout:
                self.state = CLOSED
                return [], [Disconnected("timed_out")]
            if now - self._last_sent >= self.keepalive_interval:
                self._last_sent = now
                return [sign(self._next_header(KEEPALIVE), self._c2s)], []
        return [], []

    # ---- receiving ------------------------------------------------------------------

    def receive(self, data: bytes, now: float) -> list:
        """Check and apply one datagram from the server; return events (maybe none)."""
        n = len(data)
        if n < HEADER_SIZE:
            self.drops[D.TOO_SHORT] += 1
            return []
        if n > MAX_DATAGRAM:
            self.drops[D.OVERSIZE] += 1
            return []
        header = unpack_header(data)
        if header.protocol_id != PROTOCOL_ID:
            self.drops[D.BAD_PROTOCOL] += 1
            return []
        if header.version != VERSION:
            self.drops[D.BAD_VERSION] += 1
            return []
        if header.flags != 0 or data[5:8] != b"\0\0\0":
            self.drops[D.BAD_FLAGS] += 1
            return []
        if header.type == CONNECT_ACCEPT:
            return self._on_accept(data, header.session_id, now)
        if header.type == CONNECT_DENY:
            return self._on_deny(data)
        if header.type == CHALLENGE:
            return self._on_challenge(data, now)
        if header.type not in (SNAPSHOT, DISCONNECT):
            self.drops[D.BAD_TYPE] += 1
            return []
        if self.state != CONNECTED or header.session_id != self.info.session_id:
            self.drops[D.UNKNOWN_SESSION] += 1
            return []
        if header.sequence <= self._rx_seq:
            self.drops[D.STALE_SEQUENCE] += 1
            return []
        if n != DISCONNECT_SIZE if header.type == DISCONNECT else n < HEADER_SIZE + TAG_SIZE:
            self.drops[D.BAD_LENGTH] += 1
            return []
        if not verify(data, self._s2c):
            self.drops[D.BAD_TAG] += 1
            return []
        if header.type == DISCONNECT:
            self.state = CLOSED
            return [Disconnected("server", data[HEADER_SIZE])]
        snapshot, lists, why = decode_snapshot(data[:n - TAG_SIZE], header.sequence, self.info,
                                               self.held)
        if snapshot is None:
            self.drops[D.NO_BASELINE if why == "no_baseline" else D.BAD_PAYLOAD] += 1
            return []
        self._rx_seq = header.sequence
        self._last_heard = now
        self.held[snapshot.tick] = lists
        while len(self.held) > HELD_SNAPSHOTS:
            self.held.popitem(last=False)
        self.last_snapshot_tick = snapshot.tick  # the ack: newest held (sequences only grow)
        for tick, treasure, value, confirmed in snapshot.own_claims:
            if confirmed:
                self.confirmed[(tick, treasure)] = value
                while len(self.confirmed) > CONFIRMED_KEPT:  # a long session: the newest
                    self.confirmed.popitem(last=False)
        return [snapshot]

    def _on_accept(self, data: bytes, sid: int, now: float) -> list:
        if len(data) != CONNECT_ACCEPT_SIZE:
            self.drops[D.BAD_LENGTH] += 1
            return []
        (salt, slot, tick_rate, snapshot_rate, _reserved, width, height, dig_radius,
         reveal_radius, dig_ticks, server_tick, timeout_ms) = CONNECT_ACCEPT_BODY.unpack_from(
            data, HEADER_SIZE)
        if salt != self.salt or self.state not in (CONNECTING, CONNECTED):
            self.drops[D.UNKNOWN_SESSION] += 1
            return []
        if not verify(data, self._s2c):
            self.drops[D.BAD_TAG] += 1
            return []
        if self.state == CONNECTED:  # a second accept for a response we resent
            self.drops[D.DUPLICATE_CONNECT] += 1
            return []
        self.info = ServerInfo(slot, sid, tick_rate, snapshot_rate, width, height, dig_radius,
                               reveal_radius, dig_ticks, server_tick, timeout_ms / 1000.0)
        self.state = CONNECTED
        self._last_heard = now
        return [Connected(self.info)]

    def _on_deny(self, data: bytes) -> list:
        if len(data) != CONNECT_DENY_SIZE:  # the untagged 25-byte form is for other versions
            self.drops[D.BAD_LENGTH] += 1
            return []
        salt, reason = CONNECT_DENY_BODY.unpack_from(data, HEADER_SIZE)
        if salt != self.salt or self.state != CONNECTING:
            self.drops[D.UNKNOWN_SESSION] += 1
            return []
        if not verify(data, self._s2c):
            self.drops[D.BAD_TAG] += 1
            return []
        self.state = DENIED
        return [Denied(reason)]

    def _on_challenge(self, data: bytes, now: float) -> list:
        """Echo the cookie in a CHALLENGE_RESPONSE, sent now and resent until accepted."""
        if len(data) != CHALLENGE_SIZE:
            self.drops[D.BAD_LENGTH] += 1
            return []
        if int.from_bytes(data[16:24], "little") != self.salt or self.state != CONNECTING:
            self.drops[D.UNKNOWN_SESSION] += 1
            return []
        if not verify(data, self._s2c):
            self.drops[D.BAD_TAG] += 1
            return []
        body = (pack_header(CHALLENGE_RESPONSE, 0, 0) + self.salt.to_bytes(8, "little")
                + data[COOKIE_AT:COOKIE_AT + COOKIE_SIZE])
        body += bytes(CHALLENGE_RESPONSE_SIZE - TAG_SIZE - len(body))
        self._response = sign(body, self._c2s)
        self._response_sent = 0
        self._last_sent = now - self.resend_interval  # poll() sends it at once
        return []


def _ints(value: object, group: int, signed: bool = False) -> list[tuple[int, ...]] | None:
    """A flat msgpack array of ints (unsigned unless `signed`), grouped; None if it is
    anything else."""
    if not isinstance(value, list) or len(value) % group:
        return None
    if not all(type(v) is int and (signed or v >= 0) for v in value):
        return None
    return [tuple(value[i:i + group]) for i in range(0, len(value), group)]


def _uints(value: object, group: int) -> list[tuple[int, ...]] | None:
    return _ints(value, group)


def _u16(v: int) -> bool:
    return 0 <= v <= 0xFFFF


def _predict(q: int, v: int, dt: int) -> int:
    """docs/PROTOCOL.md 7.6: where a client extrapolates a coordinate."""
    return min(65535, max(0, q + v * dt))


@dataclass(frozen=True)
class Held:
    """The entity lists a client holds after one snapshot, in quanta (the baseline of later
    deltas). players: (id, qx, qy, vx, vy) rows; treasures: (id, qx, qy, value) rows."""

    tick: int
    players: tuple[tuple[int, int, int, int, int], ...]
    treasures: tuple[tuple[int, int, int, int], ...]


def _payload(data: bytes) -> dict | None:
    try:
        m = msgpack.unpackb(data[HEADER_SIZE:], raw=False, strict_map_key=True,
                            max_str_len=8, max_bin_len=0, max_ext_len=0, max_array_len=1024,
                            max_map_len=16)
    except (ValueError, msgpack.UnpackException):  # FormatError, StackError, ExtraData...
        return None
    return m if isinstance(m, dict) else None


def _indices(value: object, n: int) -> list[int] | None:
    """Strictly ascending baseline indices < n."""
    rows = _ints(value, 1)
    if rows is None:
        return None
    out = [r[0] for r in rows]
    if any(i >= n for i in out) or any(a >= b for a, b in zip(out, out[1:])):
        return None
    return out


def _rebuild(m: dict, tick: int, base: Held | None) -> Held | None:
    """The entity lists after this snapshot: m's full lists, or `base` with m's delta
    applied (docs/PROTOCOL.md 7.6). None if the lists are malformed."""
    if base is None:
        players = _ints(m.get("p"), 5, signed=True)
        treasures = _ints(m.get("tr"), 4)
        if players is None or treasures is None:
            return None
        if not all(p[0] >= 0 and _u16(p[1]) and _u16(p[2]) for p in players):
            return None
        if not all(_u16(t[1]) and _u16(t[2]) for t in treasures):
            return None
        return Held(tick, tuple(players), tuple(treasures))
    dt = (tick - base.tick) & 0xFFFFFFFF
    nb = len(base.players)
    moved = _ints(m.get("pm", []), 3, signed=True)
    turned = _ints(m.get("pv", []), 5, signed=True)
    removed = _indices(m.get("pr", []), nb)
    new = _ints(m.get("pn", []), 5, signed=True)
    t_removed = _indices(m.get("tx", []), len(base.treasures))
    t_new = _ints(m.get("tn", []), 4)
    if None in (moved, turned, removed, new, t_removed, t_new):
        return None
    rows = [[q[0], _predict(q[1], q[3], dt), _predict(q[2], q[4], dt), q[3], q[4]]
            for q in base.players]
    touched = set()
    for entry in moved + turned:
        i = entry[0]
        if not 0 <= i < nb or i in touched:
            return None
        touched.add(i)
        row = rows[i]
        row[1] += entry[1]
        row[2] += entry[2]
        if len(entry) == 5:
            row[3], row[4] = entry[3], entry[4]
        if not (_u16(row[1]) and _u16(row[2])):
            return None
    gone = set(removed)
    players = [tuple(r) for i, r in enumerate(rows) if i not in gone]
    if not all(p[0] >= 0 and _u16(p[1]) and _u16(p[2]) for p in new):
        return None
    players += new
    t_gone = set(t_removed)
    treasures = [t for i, t in enumerate(base.treasures) if i not in t_gone]
    if not all(_u16(t[1]) and _u16(t[2]) for t in t_new):
        return None
    treasures += t_new
    return Held(tick, tuple(players), tuple(treasures))


def decode_snapshot(data: bytes, sequence: int, info: ServerInfo,
                    held: dict[int, Held] | None = None) -> tuple[Snapshot | None, Held | None, str]:
    """Decode a SNAPSHOT datagram without its tag (header and tag already checked) against
    the lists `held` by tick. Returns (snapshot, its lists, "") or (None, None, why) with why "bad_payload" or
    "no_baseline" (a delta against a snapshot this client does not hold).

    msgpack decoding is bounded: no string, array or map can be larger than a valid
    snapshot's, and the payload is at most MAX_DATAGRAM bytes.
    """
    m = _payload(data)
    if m is None:
        return None, None, "bad_payload"
    hunt = _uints(m.get("h"), 2)
    me = _uints(m.get("me"), 6)
    claims = _uints(m.get("ev", []), 4)
    board = _uints(m["lb"], 2) if "lb" in m else []
    own = _uints(m.get("my", []), 4)
    result = m.get("hr", [0])
    tick, ack, b = m.get("t"), m.get("a"), m.get("b")
    if (type(tick) is not int or type(ack) is not int or hunt is None or len(hunt) != 1
            or me is None or len(me) != 1 or claims is None or board is None
            or own is None or not all(c[3] in (0, 1) for c in own)
            or not isinstance(result, list) or not result
            or not (b is None or type(b) is int)):
        return None, None, "bad_payload"
    result_rows = _uints(result[1:], 2)
    if result_rows is None or type(result[0]) is not int:
        return None, None, "bad_payload"
    base = None
    if b is not None:
        base = (held or {}).get(b)
        if base is None:
            return None, None, "no_baseline"
    lists = _rebuild(m, tick, base)
    if lists is None:
        return None, None, "bad_payload"
    sx = info.world_width / 65536.0
    sy = info.world_height / 65536.0
    vsx = sx * info.tick_rate  # quanta per tick -> units per second
    vsy = sy * info.tick_rate
    slot, qx, qy, score, dig, heat = me[0]
    snapshot = Snapshot(
        sequence=sequence, tick=tick, ack=ack, hunt_id=hunt[0][0], ticks_left=hunt[0][1],
        slot=slot, x=qx * sx, y=qy * sy, score=score, dig_progress=dig, heat=heat,
        players=[(p, px * sx, py * sy, vx * vsx, vy * vsy) for p, px, py, vx, vy in lists.players],
        treasures=[(t, tx * sx, ty * sy, v) for t, tx, ty, v in lists.treasures],
        claims=list(claims),
        leaderboard=list(board) if "lb" in m else None,
        hunt_result=(result[0], list(result_rows)) if "hr" in m else None,
        baseline=b,
        own_claims=list(own),
    )
    return snapshot, lists, ""


def parse_snapshot(data: bytes, sequence: int, info: ServerInfo,
                   held: dict[int, Held] | None = None) -> Snapshot | None:
    """decode_snapshot's snapshot alone (None when it is dropped, for either reason)."""
    return decode_snapshot(data, sequence, info, held)[0]
