"""The server side of the protocol, sans-IO: datagrams and `now` in; events and datagrams out.

No socket and no clock here: the tick hands in each batch with the time it was drained,
and takes back the snapshot buffer and the few control replies to send. Per-datagram work
runs in kernels (net.decode, net.snapshot); Python touches only the rare packets that open
or close a session.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator

import numpy as np

from net import drops as D
from net.address import Address, int_to_ip, ip_to_int
from net.batch import DatagramBatch
from net.cookie import Cookie
from net.decode import (CTRL_BAD_VERSION, CTRL_CONNECT, CTRL_DISCONNECT, CTRL_RESPONSE,
                        LOOPBACK_NET, decode_batch)
from net.events import PlayerJoined, PlayerLeft
from net.handshake import Gatekeeper
from net.limits import NetLimits
from net.ratelimit import new_address_table
from net.security import SecuritySettings
from net.sessions import (CONNECTED, FREE, S_C2S_K0, S_C2S_K1, S_CLIENT_ID, S_ID, S_IP,
                          S_LAST_HEARD, S_LAST_RX_SEQ, S_PORT, S_S2C_K0, S_S2C_K1, S_SALT,
                          S_SNAPSHOT_ACK, S_STATE, S_TX_SEQ, S_JOINED, new_replay_table,
                          new_session_table, session_id)
from net.siphash import key_words
from net.snapshot import SnapshotCaps, count_sizes, encode_snapshots, new_encode_scratch
from net.snapshot_ring import new_snapshot_ring, reset_client
from net.tag import sign
from net.timeouts import expired_sessions
from net.wire import (CONNECT_ACCEPT, CONNECT_ACCEPT_BODY, CONNECT_DENY, CONNECT_DENY_BODY,
                      DENY_ADDRESS_LIMIT, DENY_SERVER_FULL, DENY_SHUTTING_DOWN, DENY_VERSION,
                      DISCONNECT, DISCONNECT_BODY, DISCONNECT_SERVER_SHUTDOWN,
                      DISCONNECT_TIMED_OUT, DISCONNECT_KICKED, HEADER_SIZE, MAX_DATAGRAM,
                      pack_header)
from sim.jit import bind
from sim.rules import seconds_to_ticks
from sim.world import World

_LEAVE_REASONS = {DISCONNECT_TIMED_OUT: "timed_out", DISCONNECT_SERVER_SHUTDOWN: "shutdown",
                  DISCONNECT_KICKED: "kicked"}


class ServerProtocol:
    """Sessions of one world. Session slot i is player slot i of `world`.

    Parameters
    ----------
    world: the World whose players the sessions drive.
    limits: NetLimits (validated here).
    tick_rate: simulation ticks per second (for windows given in seconds).
    rng: source of session-id nonces; pass a seeded random.Random in tests.
    snapshot_every: ticks between two snapshots to one client (clients are spread evenly
    over those ticks).
    key: the 32-byte token key (net.keys) shared with the token service.
    address: (IPv4 text, port) the connect tokens must name (the served or public address).
    security: rate and session limits (validated here).
    unix_origin_ms: unix time in ms at now = 0, for token expiry and cookie ages (the tick
    passes its clock's offset; tests pass a fixed value).
    cookie_key: the challenge cookie key; random unless fixed (tests, doc vectors).
    """

    def __init__(self, world: World, limits: NetLimits, tick_rate: float,
                 rng: random.Random | None = None, snapshot_every: int = 1, *,
                 key: bytes, address: Address,
                 security: SecuritySettings = SecuritySettings(),
                 unix_origin_ms: int = 0, cookie_key: bytes | None = None) -> None:
        limits.validate()
        security.validate()
        self.world = world
        self.limits = limits
        self.tick_rate = tick_rate
        self.capacity = world.rules.max_players
        self.sessions = new_session_table(self.capacity)
        self.replay = new_replay_table(self.capacity)
        self.drops = D.new_drop_counters()
        self.accepted = np.zeros(16, np.int64)  # by packet type
        self.names: list[str] = [""] * self.capacity
        self.addresses: list[Address | None] = [None] * self.capacity
        self.security = security
        self.gate = Gatekeeper(key, address, int(security.challenge_timeout * 1000), cookie_key)
        self.unix_origin_ms = unix_origin_ms
        self._s2c: list[bytes] = [b""] * self.capacity  # server-to-client keys, for replies
        self._by_client: dict[int, int] = {}  # client id -> slot of its open session
        self._per_ip: dict[int, int] = {}  # IPv4 -> open sessions from it
        self.guard = security.guard()
        self._addr_ip, self._addr_tat = new_address_table()
        self._all_tat = np.zeros(1, np.int64)
        self._free = list(range(self.capacity))  # a heap: the lowest free slot is reused first
        self._rng = rng or random.SystemRandom()
        self._replies: list[tuple[bytes, Address]] = []
        self._answered: set[int] = set()  # slots sent an accept while handling this batch
        self.accepting = True
        self.timeout_ns = int(limits.session_timeout * 1e9)
        # kernels bound to this protocol's arrays on first use (sim.jit.bind: no per-call
        # typing, so a tick allocates next to nothing in Python)
        self._decode = self._expire = self._encode = self._count_sizes = None
        # preallocated per-tick buffers
        batch = limits.batch_size(self.capacity)
        self._ctrl_index = np.zeros(batch, np.int32)
        self._ctrl_kind = np.zeros(batch, np.int32)
        self._expired = np.zeros(self.capacity, np.int32)
        self._one = DatagramBatch.allocate(1)
        self.out = np.zeros(self.capacity * MAX_DATAGRAM + 4096, np.uint8)
        self.out_off = np.zeros(self.capacity + 1, np.int32)
        self.out_slot = np.zeros(self.capacity, np.int32)
        self.out_ip = np.zeros(self.capacity, np.int64)
        self.out_port = np.zeros(self.capacity, np.int64)
        self.out_count = 0
        # sizes of every snapshot encoded (bytes -> count), for reports: one kernel call a tick
        self.snapshot_sizes = np.zeros(MAX_DATAGRAM + 1, np.int64)
        self.snapshot_every = snapshot_every
        self.snapshot_rate = tick_rate / snapshot_every
        self.ring = new_snapshot_ring(self.capacity, world.rules.treasure_count,
                                      limits.snapshot_ring, limits.max_visible_players,
                                      limits.max_visible_treasures)
        self._scratch = new_encode_scratch(limits.max_visible_players,
                                           limits.max_visible_treasures, self.capacity,
                                           world.rules.treasure_count)
        rules = world.rules
        self.caps = SnapshotCaps(
            max_players=limits.max_visible_players,
            max_treasures=limits.max_visible_treasures,
            claim_window_ticks=seconds_to_ticks(limits.claim_event_window, tick_rate),
            leaderboard_every_snapshots=seconds_to_ticks(limits.leaderboard_every,
                                                         self.snapshot_rate),
            result_window_ticks=seconds_to_ticks(limits.hunt_result_window, tick_rate),
            snapshot_every=snapshot_every,
            exit_scale=1.0 + limits.aoi_hysteresis,
            tolerance_x=int(limits.delta_tolerance * 65536 / rules.world_width),
            tolerance_y=int(limits.delta_tolerance * 65536 / rules.world_height),
        )

    # ---- receiving ------------------------------------------------------------------

    def receive_batch(self, batch: DatagramBatch, now: int) -> list:
        """Decode every datagram of `batch` received by time `now` (ns); return events."""
        if batch.capacity > self._ctrl_index.shape[0]:  # a bigger batch than planned: grow once
            self._ctrl_index = np.zeros(batch.capacity, np.int32)
            self._ctrl_kind = np.zeros(batch.capacity, np.int32)
        count = batch.count
        args = (batch.data, batch.length, batch.ip, batch.port, count, self.sessions,
                self.replay, self.world.pi, now, self.guard, self._addr_ip, self._addr_tat,
                self._all_tat, self.drops, self.accepted, self._ctrl_index, self._ctrl_kind)
        if self._decode is None:
            self._decode = bind(decode_batch, *args)
        n_ctrl = self._decode(*args)
        events: list = []
        self._answered.clear()
        unix_ms = self.unix_origin_ms + now // 1_000_000
        for k in range(n_ctrl):
            i = int(self._ctrl_index[k])
            kind = int(self._ctrl_kind[k])
            payload = bytes(batch.data[i, :batch.length[i]])
            ip, port = int(batch.ip[i]), int(batch.port[i])
            addr = (int_to_ip(ip), port)
            if kind == CTRL_CONNECT:
                self._on_request(payload, ip, port, addr, unix_ms)
            elif kind == CTRL_RESPONSE:
                self._on_response(payload, ip, port, addr, now, unix_ms, events)
            elif kind == CTRL_BAD_VERSION:
                salt = int.from_bytes(payload[HEADER_SIZE:HEADER_SIZE + 8], "little")
                self._replies.append((pack_header(CONNECT_DENY, 0, 0)
                                      + CONNECT_DENY_BODY.pack(salt, DENY_VERSION), addr))
            elif kind == CTRL_DISCONNECT:
                sid = int.from_bytes(payload[8:12], "little")
                slot = sid & 0xFFFF
                # a second DISCONNECT in the same batch passed decode before the first closed
                if self.sessions[S_STATE, slot] == CONNECTED and self.sessions[S_ID, slot] == sid:
                    events.append(self._close(slot, "quit", notify=False))
                else:  # decode counted it accepted: it is a drop after all, counted once
                    self.accepted[DISCONNECT] -= 1
                    self.drops[D.UNKNOWN_SESSION] += 1
        return events

    def receive_datagram(self, data: bytes, addr: Address, now: int) -> list:
        """Decode one datagram (tests, tools): the same path as a batch of one."""
        self._one.count = 0
        self._one.put(data, ip_to_int(addr[0]), addr[1])
        return self.receive_batch(self._one, now)

    def _on_request(self, payload: bytes, ip: int, port: int, addr: Address,
                    unix_ms: int) -> None:
        """9.2 steps 1-6: a valid token from an address not yet proven gets a CHALLENGE."""
        why, token = self.gate.check_request(payload, ip, port, unix_ms)
        if why >= 0:
            self.drops[why] += 1
            return
        salt = int.from_bytes(payload[HEADER_SIZE:HEADER_SIZE + 8], "little")
        if token.client_id in self._by_client:
            # a late resend from the session's own attempt, or a second connection with the
            # same client id: neither gets an answer (a lost accept is resent on responses)
            slot = self._by_client[token.client_id]
            same = self._same_attempt(slot, ip, port, salt)
            self.drops[D.DUPLICATE_CONNECT if same else D.DUPLICATE_CLIENT] += 1
            return
        if self._refused(token.s2c_key, salt, ip, addr):
            return
        self._replies.append((self.gate.challenge(token, salt, ip, port, unix_ms), addr))

    def _on_response(self, payload: bytes, ip: int, port: int, addr: Address, now: int,
                     unix_ms: int, events: list) -> None:
        """9.2 steps 7-10: the cookie came back from its address: open the session."""
        why, cookie = self.gate.check_response(payload, ip, port, unix_ms)
        if why >= 0:
            self.drops[why] += 1
            return
        known = self._by_client.get(cookie.client_id)
        if known is not None:
            if self._same_attempt(known, ip, port, cookie.salt):  # the accept was lost
                self.drops[D.DUPLICATE_CONNECT] += 1
                if known not in self._answered:  # one accept per batch: resends pile up
                    self._answered.add(known)
                    self._accept(known, cookie.salt, addr)
            else:
                self.drops[D.DUPLICATE_CLIENT] += 1
            return
        if self._refused(cookie.s2c_key, cookie.salt, ip, addr):
            return
        events.append(self._open(cookie, ip, port, addr, now))

    def _same_attempt(self, slot: int, ip: int, port: int, salt: int) -> bool:
        s = self.sessions
        return (int(s[S_IP, slot]) == ip and int(s[S_PORT, slot]) == port
                and int(s[S_SALT, slot]) & (2**64 - 1) == salt)

    def _refused(self, s2c_key: bytes, salt: int, ip: int, addr: Address) -> bool:
        """Deny (tagged, 33 bytes: never more than the 256 received) when shutting down,
        full, or over the address's session limit; True if denied."""
        if not self.accepting:
            self.drops[D.SHUTTING_DOWN] += 1
            reason = DENY_SHUTTING_DOWN
        elif not self._free:
            self.drops[D.SERVER_FULL] += 1
            reason = DENY_SERVER_FULL
        elif (0 < self.security.max_sessions_per_address <= self._per_ip.get(ip, 0)
              and ip >> 24 != LOOPBACK_NET):  # the host's own bots: as net.decode
            self.drops[D.ADDRESS_LIMIT] += 1
            reason = DENY_ADDRESS_LIMIT
        else:
            return False
        packet = pack_header(CONNECT_DENY, 0, 0) + CONNECT_DENY_BODY.pack(salt, reason)
        self._replies.append((sign(packet, s2c_key), addr))
        return True

    def _open(self, cookie: Cookie, ip: int, port: int, addr: Address, now: int) -> PlayerJoined:
        slot = heapq.heappop(self._free)
        sid = session_id(slot, self._rng.randrange(1, 65536))
        s = self.sessions
        s[:, slot] = 0
        self.replay[slot] = 0
        s[S_STATE, slot] = CONNECTED
        s[S_ID, slot] = sid
        s[S_IP, slot] = ip
        s[S_PORT, slot] = port
        s[S_LAST_HEARD, slot] = now
        s[S_JOINED, slot] = now
        s[S_SALT, slot] = _bits(cookie.salt)
        s[S_CLIENT_ID, slot] = _bits(cookie.client_id)
        s[S_C2S_K0, slot], s[S_C2S_K1, slot] = key_words(cookie.c2s_key)
        s[S_S2C_K0, slot], s[S_S2C_K1, slot] = key_words(cookie.s2c_key)
        self._s2c[slot] = cookie.s2c_key
        reset_client(self.ring, slot)
        self.names[slot] = cookie.name or f"player-{slot}"
        self.addresses[slot] = addr
        self._by_client[cookie.client_id] = slot
        self._per_ip[ip] = self._per_ip.get(ip, 0) + 1
        self.gate.remember(cookie.token_id, ip, port, cookie.expire)
        self.world.join(slot)
        self._answered.add(slot)
        self._accept(slot, cookie.salt, addr)
        return PlayerJoined(slot, sid, self.names[slot], addr)

    def _accept(self, slot: int, salt: int, addr: Address) -> None:
        rules, kr = self.world.rules, self.world.kr
        body = CONNECT_ACCEPT_BODY.pack(
            salt, slot, int(round(self.tick_rate)), int(round(self.snapshot_rate)), 0,
            rules.world_width, rules.world_height, rules.dig_radius, rules.reveal_radius,
            kr.dig_ticks, self.world.tick & 0xFFFFFFFF, int(self.limits.session_timeout * 1000))
        packet = pack_header(CONNECT_ACCEPT, int(self.sessions[S_ID, slot]), 0) + body
        self._replies.append((sign(packet, self._s2c[slot]), addr))

    def _close(self, slot: int, reason: str, notify: bool, code: int = 0) -> PlayerLeft:
        s = self.sessions
        if notify and self.addresses[slot] is not None:
            seq = int(s[S_TX_SEQ, slot]) + 1
            packet = pack_header(DISCONNECT, int(s[S_ID, slot]), seq) + DISCONNECT_BODY.pack(code)
            self._replies.append((sign(packet, self._s2c[slot]), self.addresses[slot]))
        ip = int(s[S_IP, slot])
        self._by_client.pop(int(s[S_CLIENT_ID, slot]) & (2**64 - 1), None)
        left = self._per_ip.pop(ip, 1) - 1
        if left:
            self._per_ip[ip] = left
        self._s2c[slot] = b""
        self.replay[slot] = 0
        s[:, slot] = 0
        s[S_STATE, slot] = FREE
        reset_client(self.ring, slot)
        self.world.leave(slot)
        name = self.names[slot]
        self.names[slot] = ""
        self.addresses[slot] = None
        heapq.heappush(self._free, slot)
        return PlayerLeft(slot, name, reason)

    # ---- time -----------------------------------------------------------------------

    def expire(self, now: int) -> list:
        """Close sessions silent for longer than the session timeout; return PlayerLeft events."""
        args = (self.sessions, now, self.timeout_ns, self._expired)
        if self._expire is None:
            self._expire = bind(expired_sessions, *args)
        n = self._expire(*args)
        return [self._close(int(self._expired[k]), "timed_out", notify=True,
                            code=DISCONNECT_TIMED_OUT) for k in range(n)]

    def kick(self, slot: int) -> PlayerLeft | None:
        """Close one session by slot, telling the client."""
        if self.sessions[S_STATE, slot] != CONNECTED:
            return None
        return self._close(slot, "kicked", notify=True, code=DISCONNECT_KICKED)

    def shutdown(self) -> list:
        """Stop accepting, tell every client, free every slot; return PlayerLeft events."""
        self.accepting = False
        slots = np.flatnonzero(self.sessions[S_STATE] == CONNECTED)
        return [self._close(int(slot), "shutdown", notify=True,
                            code=DISCONNECT_SERVER_SHUTDOWN) for slot in slots]

    # ---- sending --------------------------------------------------------------------

    def encode(self) -> int:
        """Write this tick's snapshots into self.out (call after world.step()); return count."""
        w = self.world
        args = (self.sessions, w.pf, w.pi, w.tf, w.ti, w.p_starts, w.p_items, w.t_starts,
                w.t_items, w.clock, w.claim_ring, w.board, w.final_board, w.kr, self.caps,
                self.ring, self._scratch, self.out, self.out_off, self.out_slot, self.out_ip,
                self.out_port)
        if self._encode is None:
            self._encode = bind(encode_snapshots, *args)
            self._count_sizes = bind(count_sizes, self.out_off, 0, self.snapshot_sizes)
        self.out_count = n = self._encode(*args)
        self._count_sizes(self.out_off, n, self.snapshot_sizes)
        return n

    def snapshots(self) -> Iterator[tuple[memoryview, Address]]:
        """(datagram, address) for each snapshot of the last encode()."""
        view = memoryview(self.out)
        off, slots, addrs = self.out_off, self.out_slot, self.addresses
        for j in range(self.out_count):
            yield view[off[j]:off[j + 1]], addrs[slots[j]]

    def datagrams_to_send(self) -> list[tuple[bytes, Address]]:
        """Control replies (challenge, accept, deny, disconnect) queued since the last call."""
        replies, self._replies = self._replies, []
        return replies

    # ---- inspection -----------------------------------------------------------------

    def connected_count(self) -> int:
        return int(np.count_nonzero(self.sessions[S_STATE] == CONNECTED))

    def client_id(self, slot: int) -> int:
        """The connect token's client id of the session in `slot`."""
        return int(self.sessions[S_CLIENT_ID, slot]) & (2**64 - 1)

    def snapshot_ack(self, slot: int) -> int:
        """Newest snapshot tick the client in `slot` acknowledged (its delta baseline)."""
        return int(self.sessions[S_SNAPSHOT_ACK, slot])

    def last_rx_sequence(self, slot: int) -> int:
        return int(self.sessions[S_LAST_RX_SEQ, slot])


def _bits(u64: int) -> int:
    """A u64 as the int64 with the same bits (the session table is int64)."""
    return u64 - (1 << 64) if u64 >= 1 << 63 else u64
