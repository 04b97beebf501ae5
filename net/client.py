"""The client side of the protocol, sans-IO: the reference a native client can follow.

`ClientProtocol` takes datagrams with `now` (seconds, any monotonic origin) and returns
events; it produces the datagrams to send. Used by the tests and the bots.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field

import msgpack

from net import drops as D
from net.wire import (BUTTON_DIG, CONNECT_ACCEPT, CONNECT_ACCEPT_BODY, CONNECT_DENY,
                      CONNECT_DENY_BODY, CONNECT_REQUEST, CONNECT_REQUEST_BODY,
                      CONNECT_REQUEST_SIZE, DISCONNECT, DISCONNECT_BODY, DISCONNECT_CLIENT_QUIT,
                      HEADER_SIZE, INPUT, INPUT_PREFIX, INPUT_RECORD, KEEPALIVE, MAX_DATAGRAM,
                      MAX_INPUTS_PER_PACKET, MAX_NAME_BYTES, PROTOCOL_ID, SNAPSHOT, VERSION,
                      pack_header, unpack_header)

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
    players: list[tuple[int, float, float]]
    treasures: list[tuple[int, float, float, int]]
    claims: list[tuple[int, int, int, int]]  # tick, slot, treasure, value; newest first
    leaderboard: list[tuple[int, int]] | None  # slot, score
    hunt_result: tuple[int, list[tuple[int, int]]] | None


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
    """One client session. `now` is in seconds on any monotonic clock."""

    name: str = "player"
    salt: int = field(default_factory=lambda: random.SystemRandom().getrandbits(64) | 1)
    resend_interval: float = 0.25
    connect_timeout: float = 5.0
    keepalive_interval: float = 1.0

    def __post_init__(self) -> None:
        encoded = self.name.encode("utf-8")
        if len(encoded) > MAX_NAME_BYTES:
            raise ValueError(f"name is {len(encoded)} bytes; at most {MAX_NAME_BYTES}")
        self._name = encoded
        self.state = DISCONNECTED
        self.info: ServerInfo | None = None
        self.drops = D.new_drop_counters()
        self._tx_seq = 0
        self._rx_seq = 0
        self._input_seq = 0
        self._recent: deque[bytes] = deque(maxlen=MAX_INPUTS_PER_PACKET)
        self._started = 0.0
        self._last_sent = 0.0
        self._last_heard = 0.0
        self.last_snapshot_tick = 0

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
        self._last_sent = now
        body = CONNECT_REQUEST_BODY.pack(self.salt, len(self._name), self._name)
        packet = pack_header(CONNECT_REQUEST, 0, 0) + body
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
        return (self._next_header(INPUT)
                + INPUT_PREFIX.pack(self.last_snapshot_tick & 0xFFFFFFFF, len(self._recent))
                + b"".join(self._recent))

    def disconnect(self) -> bytes | None:
        """The DISCONNECT to send (None unless connected); the session is closed."""
        if self.state != CONNECTED:
            return None
        self.state = CLOSED
        return self._next_header(DISCONNECT) + DISCONNECT_BODY.pack(DISCONNECT_CLIENT_QUIT)

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
                return [self._next_header(KEEPALIVE)], []
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
        if header.type not in (SNAPSHOT, DISCONNECT):
            self.drops[D.BAD_TYPE] += 1
            return []
        if self.state != CONNECTED or header.session_id != self.info.session_id:
            self.drops[D.UNKNOWN_SESSION] += 1
            return []
        if header.sequence <= self._rx_seq:
            self.drops[D.STALE_SEQUENCE] += 1
            return []
        if header.type == DISCONNECT:
            if n != HEADER_SIZE + DISCONNECT_BODY.size:
                self.drops[D.BAD_LENGTH] += 1
                return []
            self.state = CLOSED
            return [Disconnected("server", data[HEADER_SIZE])]
        snapshot = parse_snapshot(data, header.sequence, self.info)
        if snapshot is None:
            self.drops[D.BAD_PAYLOAD] += 1
            return []
        self._rx_seq = header.sequence
        self._last_heard = now
        self.last_snapshot_tick = max(self.last_snapshot_tick, snapshot.tick)
        return [snapshot]

    def _on_accept(self, data: bytes, sid: int, now: float) -> list:
        if len(data) != HEADER_SIZE + CONNECT_ACCEPT_BODY.size:
            self.drops[D.BAD_LENGTH] += 1
            return []
        (salt, slot, tick_rate, snapshot_rate, _reserved, width, height, dig_radius,
         reveal_radius, dig_ticks, server_tick, timeout_ms) = CONNECT_ACCEPT_BODY.unpack_from(
            data, HEADER_SIZE)
        if salt != self.salt or self.state not in (CONNECTING, CONNECTED):
            self.drops[D.UNKNOWN_SESSION] += 1
            return []
        if self.state == CONNECTED:  # a duplicate accept for a request we resent
            self.drops[D.DUPLICATE_CONNECT] += 1
            return []
        self.info = ServerInfo(slot, sid, tick_rate, snapshot_rate, width, height, dig_radius,
                               reveal_radius, dig_ticks, server_tick, timeout_ms / 1000.0)
        self.state = CONNECTED
        self._last_heard = now
        return [Connected(self.info)]

    def _on_deny(self, data: bytes) -> list:
        if len(data) != HEADER_SIZE + CONNECT_DENY_BODY.size:
            self.drops[D.BAD_LENGTH] += 1
            return []
        salt, reason = CONNECT_DENY_BODY.unpack_from(data, HEADER_SIZE)
        if salt != self.salt or self.state != CONNECTING:
            self.drops[D.UNKNOWN_SESSION] += 1
            return []
        self.state = DENIED
        return [Denied(reason)]


def _uints(value: object, group: int) -> list[tuple[int, ...]] | None:
    """A flat msgpack array of unsigned ints, grouped; None if it is anything else."""
    if not isinstance(value, list) or len(value) % group:
        return None
    if not all(type(v) is int and v >= 0 for v in value):
        return None
    return [tuple(value[i:i + group]) for i in range(0, len(value), group)]


def parse_snapshot(data: bytes, sequence: int, info: ServerInfo) -> Snapshot | None:
    """Decode a SNAPSHOT datagram (header already checked); None if malformed.

    msgpack decoding is bounded: no string, array or map can be larger than a valid
    snapshot's, and the payload is at most MAX_DATAGRAM bytes.
    """
    try:
        m = msgpack.unpackb(data[HEADER_SIZE:], raw=False, strict_map_key=True,
                            max_str_len=8, max_bin_len=0, max_ext_len=0, max_array_len=512,
                            max_map_len=16)
    except (ValueError, msgpack.UnpackException):  # FormatError, StackError, ExtraData...
        return None
    if not isinstance(m, dict):
        return None
    hunt = _uints(m.get("h"), 2)
    me = _uints(m.get("me"), 6)
    players = _uints(m.get("p"), 3)
    treasures = _uints(m.get("tr"), 4)
    claims = _uints(m.get("ev", []), 4)
    board = _uints(m["lb"], 2) if "lb" in m else []
    result = m.get("hr", [0])
    tick, ack = m.get("t"), m.get("a")
    if (type(tick) is not int or type(ack) is not int or hunt is None or len(hunt) != 1
            or me is None or len(me) != 1 or players is None or treasures is None
            or claims is None or board is None or not isinstance(result, list) or not result):
        return None
    result_rows = _uints(result[1:], 2)
    if result_rows is None or type(result[0]) is not int:
        return None
    sx = info.world_width / 65536.0
    sy = info.world_height / 65536.0
    slot, qx, qy, score, dig, heat = me[0]
    return Snapshot(
        sequence=sequence, tick=tick, ack=ack, hunt_id=hunt[0][0], ticks_left=hunt[0][1],
        slot=slot, x=qx * sx, y=qy * sy, score=score, dig_progress=dig, heat=heat,
        players=[(p, qx * sx, qy * sy) for p, qx, qy in players],
        treasures=[(t, qx * sx, qy * sy, v) for t, qx, qy, v in treasures],
        claims=list(claims),
        leaderboard=list(board) if "lb" in m else None,
        hunt_result=(result[0], list(result_rows)) if "hr" in m else None,
    )
