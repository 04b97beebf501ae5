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
from net.bans import BanList
from net.batch import DatagramBatch
from net.cookie import Cookie
from net.decode import (CTRL_BAD_VERSION, CTRL_CONNECT, CTRL_DISCONNECT, CTRL_MOVED,
                        CTRL_RESPONSE,
                        LOOPBACK_NET, decode_batch)
from net.events import PlayerAway, PlayerJoined, PlayerLeft, PlayerMoved
from net.handshake import Gatekeeper
from net.limits import NetLimits
from net.ratelimit import new_address_table
from net.rtt import new_sent_ring, note_sent
from net.security import SecuritySettings
from net.sessions import (AWAY, CONNECTED, FREE, S_C2S_K0, S_C2S_K1, S_CLIENT_ID, S_ID, S_IP,
                          S_LAST_HEARD, S_LAST_RX_SEQ, S_PORT, S_RTT, S_S2C_K0, S_S2C_K1,
                          S_SALT, S_SNAPSHOT_ACK, S_STATE, S_TX_SEQ, S_JOINED, new_replay_table,
                          new_session_table, session_id)
from net.siphash import key_words
from net.snapshot import (SnapshotCaps, count_sizes, encode_range, encode_snapshots, merge_parts,
                          new_encode_scratch, prepare_snapshots, split_sessions)
from net.snapshot_ring import new_snapshot_ring, reset_client
from net.tag import sign
from net.timeouts import expired_sessions
from net.wire import (CONNECT_ACCEPT, CONNECT_ACCEPT_BODY, CONNECT_DENY, CONNECT_DENY_BODY,
                      DENY_ADDRESS_LIMIT, DENY_SERVER_FULL, DENY_SHUTTING_DOWN, DENY_VERSION,
                      DISCONNECT, DISCONNECT_BODY, DISCONNECT_SERVER_SHUTDOWN,
                      DISCONNECT_TIMED_OUT, DISCONNECT_KICKED, HEADER_SIZE, MAX_DATAGRAM,
                      pack_header)
from sim.jit import bind
from sim.schema import P_DIG, P_GEN, P_INPUT_SEQ, P_MOVE_X, P_MOVE_Y
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
        self.gate.rebinding = self._rebinding
        self.unix_origin_ms = unix_origin_ms
        self._s2c: list[bytes] = [b""] * self.capacity  # server-to-client keys, for replies
        self._by_client: dict[int, int] = {}  # client id -> slot of its open session
        # client id -> slot of its player waiting for it (AWAY), and a heap of (deadline ns,
        # slot, session id) for when each wait ends
        self._away: dict[int, int] = {}
        self._away_ends: list[tuple[int, int, int]] = []
        self.grace_ns = int(limits.reconnect_grace * 1e9)
        self.moves = 0  # sessions that changed address
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
        self.bans = BanList()  # checked on handshake packets only (docs/PROTOCOL.md 9.2)
        self.sent = new_sent_ring()  # send time of each recent tick's snapshots (net.rtt)
        self._encoded_tick = -1  # the tick of the last encode
        # kernels bound to this protocol's arrays on first use (sim.jit.bind: no per-call
        # typing, so a tick allocates next to nothing in Python)
        self._decode = self._expire = self._count_sizes = None
        # preallocated per-tick buffers
        batch = limits.batch_size(self.capacity)
        # at most two control entries a datagram: a session packet that moves its session
        # (MOVED) and is a DISCONNECT; the kernel writes them without bounds checks
        self._ctrl_index = np.zeros(2 * batch, np.int32)
        self._ctrl_kind = np.zeros(2 * batch, np.int32)
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
        # encoding in parts (net.snapshot.encode_range): each part has its own scratch and
        # stamp tables, shares the tick's prepared positions, and writes its own rows and
        # its own region of self.out; parts 1.. are appended to part 0 by merge_parts
        parts = self.encode_parts = limits.encode_threads
        first = new_encode_scratch(limits.max_visible_players, limits.max_visible_treasures,
                                   self.capacity, world.rules.treasure_count)
        self._scratches = [first] + [
            new_encode_scratch(limits.max_visible_players, limits.max_visible_treasures, 1, 1)
            ._replace(p_xy=first.p_xy, t_xy=first.t_xy, pq=first.pq, tq=first.tq)
            for _ in range(parts - 1)]
        self._scratch = first
        self._rings = [self.ring] + [
            self.ring._replace(p_marks=np.zeros_like(self.ring.p_marks),
                               t_marks=np.zeros_like(self.ring.t_marks),
                               stamp=np.zeros_like(self.ring.stamp)) for _ in range(parts - 1)]
        self._split = np.zeros(parts + 1, np.int64)
        self._part_n = np.zeros(parts, np.int64)
        self._part_off = np.zeros((parts, self.capacity + 1), np.int32)
        self._part_slot = np.zeros((parts, self.capacity), np.int32)
        self._part_ip = np.zeros((parts, self.capacity), np.int64)
        self._part_port = np.zeros((parts, self.capacity), np.int64)
        self._encode_parts: list = [None] * parts
        self._prepare = self._split_sessions = self._merge = self._encode_whole = None
        # the newest tick whose claims are durable (the tick sets it from the ledger): a
        # client's own claims up to it are confirmed in its snapshots. Without a ledger,
        # a claim is as final as it will ever be at once.
        self.durable = np.full(1, 2**62, np.int64)
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
        if 2 * batch.capacity > self._ctrl_index.shape[0]:  # a bigger batch than planned
            self._ctrl_index = np.zeros(2 * batch.capacity, np.int32)
            self._ctrl_kind = np.zeros(2 * batch.capacity, np.int32)
        count = batch.count
        args = (batch.data, batch.length, batch.ip, batch.port, count, self.sessions,
                self.replay, self.world.pi, now, self.guard, self._addr_ip, self._addr_tat,
                self._all_tat, self.drops, self.accepted, self._ctrl_index, self._ctrl_kind,
                self.sent)
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
                self._on_request(payload, ip, port, addr, now, unix_ms)
            elif kind == CTRL_RESPONSE:
                self._on_response(payload, ip, port, addr, now, unix_ms, events)
            elif kind == CTRL_BAD_VERSION:
                salt = int.from_bytes(payload[HEADER_SIZE:HEADER_SIZE + 8], "little")
                self._replies.append((pack_header(CONNECT_DENY, 0, 0)
                                      + CONNECT_DENY_BODY.pack(salt, DENY_VERSION), addr))
            elif kind == CTRL_MOVED:
                sid = int.from_bytes(payload[8:12], "little")
                slot = sid & 0xFFFF
                # the same batch may have closed the session already (a DISCONNECT first)
                if self.sessions[S_STATE, slot] != CONNECTED or self.sessions[S_ID, slot] != sid:
                    continue
                old = self.addresses[slot]
                if old is not None:
                    self._count_address(ip_to_int(old[0]), -1)
                self._count_address(ip, +1)
                self.addresses[slot] = addr
                self.moves += 1
                events.append(PlayerMoved(slot, self.names[slot], old or addr, addr))
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

    def _on_request(self, payload: bytes, ip: int, port: int, addr: Address, now: int,
                    unix_ms: int) -> None:
        """9.2 steps 1-6: a valid token from an address not yet proven gets a CHALLENGE."""
        if self.bans.address_banned(ip, now):  # R0: before any cryptography
            self.drops[D.BANNED] += 1
            return
        why, token = self.gate.check_request(payload, ip, port, unix_ms)
        if why >= 0:
            self.drops[why] += 1
            return
        if self.bans.client_banned(token.client_id, now):  # R5a
            self.drops[D.BANNED] += 1
            return
        salt = int.from_bytes(payload[HEADER_SIZE:HEADER_SIZE + 8], "little")
        if token.client_id in self._by_client:
            # a late resend from the session's own attempt, or a second connection with the
            # same client id: neither gets an answer (a lost accept is resent on responses);
            # but the session's own attempt from a new port (its NAT rebound before the
            # accept got through) gets a challenge there, to move the session with
            slot = self._by_client[token.client_id]
            if not self._rebound_attempt(slot, ip, port, salt):
                same = self._same_attempt(slot, ip, port, salt)
                self.drops[D.DUPLICATE_CONNECT if same else D.DUPLICATE_CLIENT] += 1
                return
        if self._refused(token.s2c_key, salt, ip, addr, token.client_id):
            return
        self._replies.append((self.gate.challenge(token, salt, ip, port, unix_ms), addr))

    def _on_response(self, payload: bytes, ip: int, port: int, addr: Address, now: int,
                     unix_ms: int, events: list) -> None:
        """9.2 steps 7-10: the cookie came back from its address: open the session."""
        if self.bans.address_banned(ip, now):  # C0: before any cryptography
            self.drops[D.BANNED] += 1
            return
        why, cookie = self.gate.check_response(payload, ip, port, unix_ms)
        if why >= 0:
            self.drops[why] += 1
            return
        if self.bans.client_banned(cookie.client_id, now):  # C6a
            self.drops[D.BANNED] += 1
            return
        known = self._by_client.get(cookie.client_id)
        if known is not None and self._rebound_attempt(known, ip, port, cookie.salt):
            # the attempt that opened the session, from where its client is now: the
            # session moves there (the cookie proves the address) and the accept is resent
            self._count_address(ip_to_int(self.addresses[known][0]), -1)
            self._count_address(ip, +1)
            self.sessions[S_IP, known] = ip
            self.sessions[S_PORT, known] = port
            old, self.addresses[known] = self.addresses[known], addr
            self.gate.remember(cookie.token_id, ip, port, cookie.expire)
            self.moves += 1
            events.append(PlayerMoved(known, self.names[known], old, addr))
        if known is not None:
            if self._same_attempt(known, ip, port, cookie.salt):  # the accept was lost
                self.drops[D.DUPLICATE_CONNECT] += 1
                if known not in self._answered:  # one accept per batch: resends pile up
                    self._answered.add(known)
                    self._accept(known, cookie.salt, addr)
            else:
                self.drops[D.DUPLICATE_CLIENT] += 1
            return
        if self._refused(cookie.s2c_key, cookie.salt, ip, addr, cookie.client_id):
            return
        events.append(self._open(cookie, ip, port, addr, now))

    def _count_address(self, ip: int, delta: int) -> None:
        left = self._per_ip.get(ip, 0) + delta
        if left > 0:
            self._per_ip[ip] = left
        else:
            self._per_ip.pop(ip, None)

    def _rebinding(self, client_id: int, salt: int, ip: int, port: int) -> bool:
        slot = self._by_client.get(client_id)
        return slot is not None and self._rebound_attempt(slot, ip, port, salt)

    def _rebound_attempt(self, slot: int, ip: int, port: int, salt: int) -> bool:
        """The connect attempt (salt) that opened `slot`'s session, from another address,
        before the session heard any packet of its own: the client never got its accept
        and its address changed meanwhile."""
        s = self.sessions
        return (int(s[S_SALT, slot]) & (2**64 - 1) == salt and int(s[S_LAST_RX_SEQ, slot]) == 0
                and (int(s[S_IP, slot]), int(s[S_PORT, slot])) != (ip, port))

    def _same_attempt(self, slot: int, ip: int, port: int, salt: int) -> bool:
        s = self.sessions
        return (int(s[S_IP, slot]) == ip and int(s[S_PORT, slot]) == port
                and int(s[S_SALT, slot]) & (2**64 - 1) == salt)

    def _refused(self, s2c_key: bytes, salt: int, ip: int, addr: Address,
                 client_id: int) -> bool:
        """Deny (tagged, 33 bytes: never more than the 256 received) when shutting down,
        full, or over the address's session limit; True if denied."""
        if not self.accepting:
            self.drops[D.SHUTTING_DOWN] += 1
            reason = DENY_SHUTTING_DOWN
        elif (not self._free and client_id not in self._away  # a returning one has a slot,
              and client_id not in self._by_client):  # and so has a rebound attempt
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
        slot = self._away.pop(cookie.client_id, None)
        resumed = slot is not None  # the player waited for this client: take it back
        if not resumed:
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
        reset_client(self.ring, slot, keep_own=resumed)
        self.names[slot] = cookie.name or f"player-{slot}"
        self.addresses[slot] = addr
        self._by_client[cookie.client_id] = slot
        self._per_ip[ip] = self._per_ip.get(ip, 0) + 1
        self.gate.remember(cookie.token_id, ip, port, cookie.expire)
        if resumed:  # same player, new session: its inputs count from 1 again
            self.world.pi[P_INPUT_SEQ, slot] = 0
        else:
            self.world.join(slot)
        self._answered.add(slot)
        self._accept(slot, cookie.salt, addr)
        return PlayerJoined(slot, sid, self.names[slot], addr, cookie.client_id,
                            int(self.world.pi[P_GEN, slot]), resumed)

    def _accept(self, slot: int, salt: int, addr: Address) -> None:
        rules, kr = self.world.rules, self.world.kr
        body = CONNECT_ACCEPT_BODY.pack(
            salt, slot, int(round(self.tick_rate)), int(round(self.snapshot_rate)), 0,
            rules.world_width, rules.world_height, rules.dig_radius, rules.reveal_radius,
            kr.dig_ticks, self.world.tick & 0xFFFFFFFF, int(self.limits.session_timeout * 1000))
        packet = pack_header(CONNECT_ACCEPT, int(self.sessions[S_ID, slot]), 0) + body
        self._replies.append((sign(packet, self._s2c[slot]), addr))

    def _close(self, slot: int, reason: str, notify: bool, code: int = 0,
               away: bool = False) -> PlayerLeft | PlayerAway:
        """End the session in `slot`. away: keep its player in the world, standing still,
        for the reconnect grace (the slot stays taken, state AWAY); else the player leaves
        and the slot is free."""
        s = self.sessions
        if notify and self.addresses[slot] is not None:
            seq = int(s[S_TX_SEQ, slot]) + 1
            packet = pack_header(DISCONNECT, int(s[S_ID, slot]), seq) + DISCONNECT_BODY.pack(code)
            self._replies.append((sign(packet, self._s2c[slot]), self.addresses[slot]))
        client_id = int(s[S_CLIENT_ID, slot]) & (2**64 - 1)
        address = self.addresses[slot]
        name = self.names[slot]
        if s[S_STATE, slot] == CONNECTED:
            self._by_client.pop(client_id, None)
            # the books count the address Python knows (the kernel may have moved S_IP in
            # this batch already; the move is then applied, or skipped, after this)
            self._count_address(ip_to_int(address[0]) if address else int(s[S_IP, slot]), -1)
        elif self._away.get(client_id) == slot:
            del self._away[client_id]
        self._s2c[slot] = b""
        self.replay[slot] = 0
        reset_client(self.ring, slot, keep_own=away)
        self.addresses[slot] = None
        if away:
            sid = int(s[S_ID, slot])
            s[S_STATE, slot] = AWAY
            self._away[client_id] = slot
            heapq.heappush(self._away_ends, (int(s[S_LAST_HEARD, slot]) + self.timeout_ns
                                             + self.grace_ns, slot, sid))
            pi = self.world.pi  # it stands still until its client comes back
            pi[P_MOVE_X, slot] = pi[P_MOVE_Y, slot] = pi[P_DIG, slot] = 0
            return PlayerAway(slot, name, address)
        s[:, slot] = 0
        s[S_STATE, slot] = FREE
        self.world.leave(slot)
        self.names[slot] = ""
        heapq.heappush(self._free, slot)
        return PlayerLeft(slot, name, reason, address)

    # ---- time -----------------------------------------------------------------------

    def expire(self, now: int) -> list:
        """Sessions silent for longer than the session timeout end: their players wait
        (PlayerAway) for the reconnect grace, or leave at once without one (PlayerLeft);
        waiting players whose grace ran out leave (PlayerLeft). Returns those events."""
        args = (self.sessions, now, self.timeout_ns, self._expired)
        if self._expire is None:
            self._expire = bind(expired_sessions, *args)
        n = self._expire(*args)
        away = self.grace_ns > 0
        events = [self._close(int(self._expired[k]), "timed_out", notify=True,
                              code=DISCONNECT_TIMED_OUT, away=away) for k in range(n)]
        ends = self._away_ends
        while ends and ends[0][0] < now:  # players whose client never came back
            _, slot, sid = heapq.heappop(ends)
            if self.sessions[S_STATE, slot] == AWAY and self.sessions[S_ID, slot] == sid:
                events.append(self._close(slot, "timed_out", notify=False))
        return events

    def kick(self, slot: int) -> PlayerLeft | None:
        """Close one session by slot, telling the client (a player waiting for its client
        leaves as well)."""
        state = self.sessions[S_STATE, slot]
        if state == AWAY:
            return self._close(slot, "kicked", notify=False)
        if state != CONNECTED:
            return None
        return self._close(slot, "kicked", notify=True, code=DISCONNECT_KICKED)

    def slot_of_client(self, client_id: int) -> int | None:
        """The slot of connect-token client id `client_id`'s player: of its open session,
        or waiting for it (AWAY); None if neither."""
        slot = self._by_client.get(client_id)
        return self._away.get(client_id) if slot is None else slot

    def slots_of_address(self, ip: int) -> list[int]:
        """Slots of the open sessions from IPv4 `ip` (a u32), any port, ascending."""
        if ip not in self._per_ip:
            return []
        s = self.sessions
        return [int(k) for k in np.flatnonzero((s[S_STATE] == CONNECTED) & (s[S_IP] == ip))]

    def shutdown(self) -> list:
        """Stop accepting, tell every client, free every slot; return PlayerLeft events."""
        self.accepting = False
        state = self.sessions[S_STATE]
        slots = np.flatnonzero((state == CONNECTED) | (state == AWAY))
        return [self._close(int(slot), "shutdown", notify=True,
                            code=DISCONNECT_SERVER_SHUTDOWN) for slot in slots]

    # ---- sending --------------------------------------------------------------------

    def encode(self) -> int:
        """Write this tick's snapshots into self.out (call after world.step()); return count.

        The parts run one after another here; tick.encoders runs them on threads through
        encode_prepare / encode_part / encode_merge, with the same bytes as the result. One
        part is one kernel call (net.snapshot.encode_snapshots): each call unboxes its
        tuples of arrays again, a few Python allocations apiece."""
        if self.encode_parts > 1:
            self.encode_prepare()
            for c in range(self.encode_parts):
                self.encode_part(c)
            return self.encode_merge()
        w = self.world
        args = (self.sessions, w.pf, w.pi, w.tf, w.ti, w.p_starts, w.p_items, w.t_starts,
                w.t_items, w.clock, w.claim_ring, w.board, w.final_board, w.kr, self.caps,
                self.ring, self._scratch, w.events, self.durable, self.out, self.out_off,
                self.out_slot, self.out_ip, self.out_port)
        if self._encode_whole is None:
            self._encode_whole = bind(encode_snapshots, *args)
            self._count_sizes = bind(count_sizes, self.out_off, 0, self.snapshot_sizes)
        self.out_count = n = self._encode_whole(*args)
        self._count_sizes(self.out_off, n, self.snapshot_sizes)
        self._encoded_tick = w.tick - 1  # the tick the snapshots describe (net.rtt)
        return n

    def encode_prepare(self) -> None:
        """Before the parts: quantize and gather the world once, and split the slots."""
        w = self.world
        args = (w.pf, w.tf, w.ti, w.p_starts, w.p_items, w.t_starts, w.t_items, w.kr,
                self._scratch, self.sessions, w.pi, w.events, w.clock, self.ring.own)
        if self._prepare is None:
            self._prepare = bind(prepare_snapshots, *args)
            self._split_sessions = bind(split_sessions, self.sessions, self._split)
        self._prepare(*args)
        self._split_sessions(self.sessions, self._split)

    def encode_part(self, c: int) -> None:
        """Encode part c (0 <= c < encode_parts): the sessions of slots split[c]..split[c+1]-1.
        Parts may run concurrently, after encode_prepare and before encode_merge."""
        w = self.world
        lo, hi = int(self._split[c]), int(self._split[c + 1])
        if c == 0:
            rows = (self.out_off, self.out_slot, self.out_ip, self.out_port)
        else:
            rows = (self._part_off[c], self._part_slot[c], self._part_ip[c], self._part_port[c])
        args = (self.sessions, w.pf, w.pi, w.tf, w.ti, w.p_starts, w.p_items, w.t_starts,
                w.t_items, w.clock, w.claim_ring, w.board, w.final_board, w.kr, self.caps,
                self._rings[c], self._scratches[c], self.durable, lo, hi, lo * MAX_DATAGRAM,
                self.out, *rows)
        encode = self._encode_parts[c]
        if encode is None:
            encode = self._encode_parts[c] = bind(encode_range, *args)
        self._part_n[c] = encode(*args)

    def encode_merge(self) -> int:
        """After the parts: one run of snapshots in self.out / out_off / out_slot / out_ip /
        out_port, in slot order; return the count."""
        args = (self.out, self.out_off, self.out_slot, self.out_ip, self.out_port,
                int(self._part_n[0]), self._part_n, self._part_off, self._part_slot,
                self._part_ip, self._part_port)
        if self._merge is None:
            self._merge = bind(merge_parts, *args)
            self._count_sizes = bind(count_sizes, self.out_off, 0, self.snapshot_sizes)
        self.out_count = n = self._merge(*args)
        self._count_sizes(self.out_off, n, self.snapshot_sizes)
        self._encoded_tick = self.world.tick - 1  # the tick the snapshots describe
        return n

    def snapshots_sent(self, now: int) -> None:
        """The last encode's snapshots left at `now` (ns, the clock of receive_batch):
        acks of that tick then give round-trip samples (net.rtt). Once a tick."""
        if self._encoded_tick >= 0:
            note_sent(self.sent, self._encoded_tick, now)

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

    def rtt_ns(self, slot: int) -> int | None:
        """Smoothed round-trip time of the session in `slot` (ns), None before a sample."""
        rtt = int(self.sessions[S_RTT, slot])
        return rtt if rtt > 0 else None


def _bits(u64: int) -> int:
    """A u64 as the int64 with the same bits (the session table is int64)."""
    return u64 - (1 << 64) if u64 >= 1 << 63 else u64
