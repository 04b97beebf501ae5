"""Test vectors for docs/PROTOCOL.md, built by the real code paths so they cannot drift.

Connect tokens come out of net.token.issue_token under a fixed token key, with fixed nonces
and session keys (SHA-256 of fixed labels: every byte is reproducible, and every byte
value occurs); client packets come out of net.client.ClientProtocol holding those tokens
with fixed salts; server packets come out of net.server.ServerProtocol (fixed token key,
address, unix clock origin, cookie key, and session-id nonce source
`random.Random(NONCE_SEED)`) driving a small sim.world.World (fixed seed), with time
stepped by hand and a few positions written straight into the world arrays so that the
numbers are easy to read. Every connect runs the whole handshake (request, challenge,
response, accept). Every packet a peer makes is also handed to the other peer, and what
happened (drops, events) is recorded, so tests/test_protocol_vectors.py can check the round
trips.

    python -m tests.protocol_vectors            # print the "Test vectors" section (Markdown)
    python -m tests.protocol_vectors --write    # replace that section in docs/PROTOCOL.md

The field tables, the cookie and token plaintexts and the msgpack listings read the bytes at
the offsets docs/PROTOCOL.md gives (literal numbers, not net.wire's structs), so they also
check the document's layout. The SipHash traces are computed here by a plain-Python SipHash
that shares no code with net/.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import random
import struct
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import msgpack
import numpy as np
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from net import drops as D
from net.address import Address
from net.client import CONNECTING, ClientProtocol
from net.limits import NetLimits
from net.security import SecuritySettings
from net.server import ServerProtocol
from net.siphash import siphash24_ref
from net.token import ConnectToken, issue_token
from sim import schema as S
from sim.rules import GameRules
from sim.world import World, new_world

# ---- the fixed inputs ------------------------------------------------------------------

TICK_RATE = 20.0
PERIOD_NS = 50_000_000  # one tick at 20 Hz
NONCE_SEED = 2024  # random.Random(NONCE_SEED) is the server's session-id nonce source
RULES = GameRules(world_width=1024.0, world_height=1024.0, max_players=4, treasure_count=8,
                  dig_time=0.25, hunt_duration=2.0, seed=7)
SOLO_RULES = replace(RULES, max_players=1)
LIMITS = NetLimits()  # defaults: 32 players, 16 treasures, 5 s timeout, windows 2 s, 1 s, 5 s,
# a ring of 8 snapshots per client, hysteresis 0.1, delta tolerance 0.25 units
SECURITY = SecuritySettings()  # defaults: 16 sessions an address, 10 s challenges, rates
ONE_PER_ADDRESS = SecuritySettings(max_sessions_per_address=1)  # the address-limit server
DELTA_RULES = replace(RULES, max_players=7)
DELTA_LIMITS = NetLimits(leaderboard_every=0.1)  # "lb" in every second snapshot

UNIX_S = 1_800_000_000  # when the token service issued every token (unix s)
TOKEN_LIFETIME = 300  # seconds: every token expires at UNIX_S + 300
UNIX_ORIGIN_MS = UNIX_S * 1000 + 1500  # the servers' unix time (ms) at now = 0
SERVER_ADDRESS: Address = ("203.0.113.5", 7777)  # what the servers' tokens must name
OTHER_SERVER: Address = ("198.51.100.7", 7777)  # alice's token names it too, first


def derived(label: str, size: int) -> bytes:
    """The first `size` bytes of SHA-256(label): fixed, yet random-looking."""
    return hashlib.sha256(label.encode("ascii")).digest()[:size]


TOKEN_KEY = derived("xmarks test vectors: token key", 32)
COOKIE_KEY = derived("xmarks test vectors: cookie key", 32)


@dataclass(frozen=True)
class Peer:
    """A client: its name, salt, address, client id and the servers its token names.
    Its token nonce and session keys are derived from its name."""

    name: str
    salt: int
    address: Address
    client_id: int
    servers: tuple[Address, ...] = (SERVER_ADDRESS,)

    @property
    def nonce(self) -> bytes:
        return derived(f"{self.name} token nonce", 12)

    @property
    def c2s(self) -> bytes:
        return derived(f"{self.name} c2s key", 16)

    @property
    def s2c(self) -> bytes:
        return derived(f"{self.name} s2c key", 16)

    def token(self) -> ConnectToken:
        return issue_token(TOKEN_KEY, self.client_id, self.servers, self.name, UNIX_S,
                           TOKEN_LIFETIME, nonce=self.nonce, c2s_key=self.c2s,
                           s2c_key=self.s2c)

    def client(self) -> ClientProtocol:
        return ClientProtocol(self.token(), salt=self.salt)


ALICE = Peer("alice", 0x0123456789ABCDEF, ("192.0.2.1", 40001), 0xA11CE00000000001,
             (OTHER_SERVER, SERVER_ADDRESS))
BOB = Peer("bob", 0xB0B0B0B0B0B0B0B1, ("192.0.2.2", 40002), 0x102)
CAROL = Peer("carol", 0xCA401CA401CA4011, ("192.0.2.3", 40003), 0x103)
DAVE = Peer("dave", 0xDA7EDA7EDA7EDA7F, ("192.0.2.4", 40004), 0x104)
ERIN = Peer("erin", 0xE214E214E214E215, ("192.0.2.5", 40005), 0x105)
FRANK = Peer("frank", 0xF2A4C0000000F2A4, ("192.0.2.6", 40006), 0x106)  # an old v2 client
GINA = Peer("gina", 0x6146A6146A6146A7, ("192.0.2.7", 40007), 0x107)
HENRY = Peer("henry", 0x4E2A4E2A4E2A4E2B, ("192.0.2.8", 40008), 0x108)
IVY = Peer("ivy", 0x1B71B71B71B71B73, ("192.0.2.9", 40009), 0x109)
JACK = Peer("jack", 0x7ACC7ACC7ACC7ACD, ("192.0.2.10", 40010), 0x10A)
KATE = Peer("kate", 0x4A7E4A7E4A7E4A7F, ("192.0.2.11", 40011), 0x10B)
LIAM = Peer("liam", 0x11A311A311A311A3, ("192.0.2.12", 40012), 0x10C)
MIA = Peer("mia", 0x31A031A031A031A1, ("192.0.2.13", 40013), 0x10D)
NINA = Peer("nina", 0x919A919A919A919B, ("192.0.2.14", 40014), 0x10E)
OMAR = Peer("omar", 0x0BA20BA20BA20BA3, ("192.0.2.14", 40015), 0x10F)  # nina's IPv4
PEERS = (ALICE, BOB, CAROL, DAVE, ERIN, FRANK, GINA, HENRY, IVY, JACK, KATE, LIAM, MIA,
         NINA, OMAR)

# Where the generator puts things (world units). World 1024 x 1024, so q = 64 * coordinate.
ALICE_AT = (512.0, 512.0)
BOB_AT = (600.0, 512.0)
CAROL_AT = (512.0, 300.0)
DAVE_AT = (256.0, 768.0)
HUNT0_TREASURES = {0: (512.0, 512.0)}
HUNT1_TREASURES = {1: (512.0, 512.0), 2: (520.0, 512.0), 3: (512.0, 560.0)}

# Alice's inputs: tick -> (move x, move y, dig). Hunt 0 is ticks 0..39, hunt 1 ticks 40..79.
ALICE_INPUTS = {0: (13, -7, True), 5: (-127, 64, False), 44: (0, 0, True), 49: (0, 0, False),
                58: (0, 0, True)}
ALICE_TELEPORT_TICK = 44  # back to ALICE_AT before this tick runs (she walked away)
ALICE_LOST = range(40, 60)  # alice's snapshots of these ticks are lost on the way
# The hunt server's durable tick (ServerProtocol.durable), written by hand as a slow ledger
# would publish it: before tick k, the claims of ticks <= DURABLE[k] are durable. Alice's
# claim of tick 4 is confirmed from tick 50 on, her claim of tick 48 never (in the vectors)
DURABLE = {0: -1, 50: 45}
BOB_WALKS = 55  # bob's one input, before this tick: due west at full speed
LAST_TICK = 60  # the full snapshot describes this tick

# The delta server: gina watches henry, ivy, jack and kate. World 1024 x 1024, cell 128.
GINA_AT = (512.0, 512.0)
HENRY_AT = (448.0, 512.0)  # walks south (+y) at full speed: 10 units a tick
IVY_AT = (576.0, 512.0)  # walks east, then north from tick 4
JACK_AT = (512.0, 448.0)  # stands; put out of view before tick 5
KATE_AT = (100.0, 100.0)  # out of view; put in view before tick 5
LIAM_AT = (512.0, 400.0)  # walks east in a straight line: extrapolated exactly, never sent
MIA_AT = (1014.0, 512.0)  # walks east into the world's edge: stays at x = 1024 (clamped)
DELTA_TREASURES = {0: (512.0, 560.0), 1: (540.0, 512.0)}
GINA_ACKS = 3  # gina's one input, before this tick, acks her snapshot of tick 2
CHANGES_AT = 5  # before this tick: henry nudged, jack and kate moved, treasures 1 and 2 moved
DELTA_TICK = 6  # gina's snapshot of this tick is a delta against tick 2

# The documented order of the vectors; section 14.1 is the fixed inputs, so vector k of
# this tuple is section 14.(k + 2).
ORDER = ("token_public", "token_private", "connect_request", "challenge", "cookie",
         "challenge_response", "connect_accept", "connect_deny_full", "connect_deny_shutdown",
         "connect_deny_address", "connect_deny_version", "input_1", "input_3", "keepalive",
         "disconnect_client", "disconnect_server", "snapshot_minimal", "snapshot_full",
         "snapshot_baseline", "snapshot_delta", "siphash_paper", "siphash_tag")


def ref(key: str) -> str:
    """The section number of vector `key`, e.g. "14.4"."""
    return f"14.{ORDER.index(key) + 2}"


def far_spot(t: int) -> tuple[float, float]:
    """Where treasures that should stay out of the way are put: along y = 64."""
    return (64.0 + 128.0 * t, 64.0)


def token_ad(expire: int) -> bytes:
    """The associated data of a private token, written from the document: "xmarks token",
    protocol id u16, version u8, expire u64, little-endian (23 bytes)."""
    return b"xmarks token" + struct.pack("<HBQ", 0x4D58, 4, expire)


COOKIE_AD = b"xmarks cookie"


# ---- results ---------------------------------------------------------------------------

@dataclass
class Outcome:
    """What the receiving peer made of a packet when the generator delivered it."""

    drops: dict[str, int]
    accepted: dict[int, int] = field(default_factory=dict)  # server: by packet type
    events: list = field(default_factory=list)
    replies: list[bytes] = field(default_factory=list)  # server: what it answered


@dataclass
class Vector:
    key: str
    title: str
    direction: str  # "client to server" / "server to client" / "" (not a packet)
    data: bytes
    inputs: list[str]
    outcome: Outcome | None = None
    after: list[str] = field(default_factory=list)  # Markdown blocks after the table/dump
    kind: str = "packet"  # "packet", "token", "private", "cookie", "siphash"
    sip_key: bytes = b""  # siphash vectors: the 16-byte key

    @property
    def hex(self) -> str:
        return self.data.hex()


@dataclass
class Generated:
    vectors: list[Vector]
    by_key: dict[str, Vector]
    infos: dict[str, object]  # client name -> ServerInfo after its accept
    worlds: dict[str, World]
    held: dict[str, dict]  # client name -> the lists it holds, by tick


# ---- driving the code ------------------------------------------------------------------

def new_server(world: World, limits: NetLimits = LIMITS,
               security: SecuritySettings = SECURITY) -> ServerProtocol:
    """A server as every vector's: fixed token key, address, clock origin, cookie key."""
    return ServerProtocol(world, limits, TICK_RATE, random.Random(NONCE_SEED), key=TOKEN_KEY,
                          address=SERVER_ADDRESS, security=security,
                          unix_origin_ms=UNIX_ORIGIN_MS, cookie_key=COOKIE_KEY)


@dataclass
class Exchange:
    """One datagram a client sent, what the server made of it, and its answer (if any)."""

    sent: bytes
    at_server: Outcome
    reply: bytes | None = None
    at_client: Outcome | None = None


class Harness:
    """One ServerProtocol + World, its clients, and time stepped by hand."""

    def __init__(self, rules: GameRules, limits: NetLimits = LIMITS,
                 security: SecuritySettings = SECURITY) -> None:
        self.world = new_world(rules, TICK_RATE)
        self.server = new_server(self.world, limits, security)
        self.clients: dict[Address, ClientProtocol] = {}
        self.names: dict[Address, str] = {}
        self.last_snapshot: dict[str, tuple[bytes, Outcome]] = {}

    @property
    def now_ns(self) -> int:
        return self.world.tick * PERIOD_NS

    @property
    def now_s(self) -> float:
        return self.world.tick / TICK_RATE

    def to_server(self, data: bytes, addr: Address) -> Outcome:
        drops = self.server.drops.copy()
        accepted = self.server.accepted.copy()
        events = self.server.receive_datagram(data, addr, self.now_ns)
        return Outcome(D.drops_by_reason(self.server.drops - drops),
                       {t: int(n) for t, n in enumerate(self.server.accepted - accepted) if n},
                       events)

    def to_client(self, data: bytes, client: ClientProtocol) -> Outcome:
        drops = client.drops.copy()
        events = client.receive(bytes(data), self.now_s)
        return Outcome(D.drops_by_reason(client.drops - drops), events=events)

    def replies(self) -> list[tuple[bytes, Address]]:
        return self.server.datagrams_to_send()

    def exchange(self, data: bytes, addr: Address, client: ClientProtocol) -> Exchange:
        """Deliver `data` from `addr`; hand the server's one answer (if any) to `client`."""
        at_server = self.to_server(data, addr)
        replies = self.replies()
        at_server.replies = [r for r, _ in replies]
        if not replies:
            return Exchange(data, at_server)
        (reply, to), = replies
        assert to == addr
        return Exchange(data, at_server, reply, self.to_client(reply, client))

    def connect(self, peer: Peer) -> tuple[Exchange, Exchange | None]:
        """peer connects now: the request and its answer, then (if challenged) the response
        and its answer. A connected client joins the harness's clients."""
        client = peer.client()
        first = self.exchange(client.connect(self.now_s), peer.address, client)
        if client.state != CONNECTING:
            return first, None
        out, _ = client.poll(self.now_s)  # the CHALLENGE_RESPONSE, at once
        (response,) = out
        second = self.exchange(response, peer.address, client)
        assert client.state == "connected", (peer.name, second)
        self.clients[peer.address] = client
        self.names[peer.address] = peer.name
        return first, second

    def tick(self, lose: tuple[str, ...] = ()) -> None:
        """Step the world, encode, deliver every snapshot to its client (except to the
        clients named in `lose`: those snapshots are lost on the way)."""
        self.world.step()
        self.server.encode()
        for data, addr in self.server.snapshots():
            data = bytes(data)
            name = self.names[addr]
            if name in lose:
                continue
            self.last_snapshot[name] = (data, self.to_client(data, self.clients[addr]))

    def send_input(self, peer: Peer, move_x: int, move_y: int, dig: bool) -> bytes:
        """peer's client sends one INPUT now; return it."""
        data = self.clients[peer.address].input(move_x, move_y, dig, self.now_s)
        self.to_server(data, peer.address)
        return data


def place(world: World, slot: int, at: tuple[float, float]) -> None:
    world.pf[S.PX, slot], world.pf[S.PY, slot] = at


def place_treasures(world: World, spots: dict[int, tuple[float, float]]) -> None:
    for t in range(world.tf.shape[1]):
        world.tf[S.TX, t], world.tf[S.TY, t] = spots.get(t, far_spot(t))


def v2_request(peer: Peer) -> bytes:
    """A CONNECT_REQUEST as a version 2 client sends it: header (version 2, type 1), salt,
    name length, name, zero padding to 256 bytes."""
    name = peer.name.encode("utf-8")
    head = struct.pack("<HBBB3xII", 0x4D58, 2, 1, 0, 0, 0)
    return (head + peer.salt.to_bytes(8, "little") + bytes([len(name)]) + name).ljust(256, b"\0")


def open_private(token: bytes) -> bytes:
    """The 128-byte plaintext of a public token's sealed private token (offsets of 14.2)."""
    return ChaCha20Poly1305(TOKEN_KEY).decrypt(token[24:36], token[36:180],
                                               token_ad(u(token, 16, 8)))


def open_cookie(challenge: bytes) -> bytes:
    """The 128-byte plaintext of a CHALLENGE's cookie (only the server can do this)."""
    return ChaCha20Poly1305(COOKIE_KEY).decrypt(challenge[24:36], challenge[36:180],
                                                COOKIE_AD)


def generate() -> Generated:
    """Run every scenario and return every vector (deterministic: same bytes every run)."""
    vectors: list[Vector] = []
    rules_text = ("`GameRules(world_width=1024.0, world_height=1024.0, max_players={p}, "
                  "treasure_count=8, dig_time=0.25, hunt_duration=2.0, seed=7)` at "
                  "`tick_rate=20.0` (so dig_ticks = 5, hunt_ticks = 40), `NetLimits()` "
                  "defaults, `SecuritySettings()` defaults, and the fixed keys, address, "
                  "clock and nonce source of 14.1")

    # ---- the hunt server: alice, bob, carol ------------------------------------------
    hunt = Harness(RULES)
    world = hunt.world
    place_treasures(world, HUNT0_TREASURES)
    token = ALICE.token()
    first, second = hunt.connect(ALICE)
    servers = ", ".join(f'("{h}", {p})' for h, p in ALICE.servers)
    vectors.append(Vector(
        "token_public", "Connect token (public part, what the client holds)", "",
        token.to_bytes(),
        [f"`issue_token(TOKEN_KEY, 0x{ALICE.client_id:016x}, [{servers}], \"{ALICE.name}\", "
         f"now={UNIX_S}, lifetime={TOKEN_LIFETIME}, nonce=..., c2s_key=..., s2c_key=...)` "
         "with alice's nonce and keys of 14.1, then `.to_bytes()`",
         "alice's token names two servers; the vectors' servers are the second one"],
        after=["Text form (`ConnectToken.to_text()`: base64url of the 272 bytes, without "
               "`=` padding; what `xmarks token` prints):",
               "```text\n" + token.to_text() + "\n```"],
        kind="token"))
    plain = open_private(token.to_bytes())
    ad = token_ad(token.expire)
    vectors.append(Vector(
        "token_private", "Private connect token (plaintext) and its sealing", "", plain,
        ["the private token inside alice's token of " + ref("token_public")
         + ", as the token service seals it and the server opens it"],
        after=["Sealing (ChaCha20-Poly1305, RFC 8439, with a 12-byte nonce and a 16-byte "
               "tag):",
               "| input | bytes | value |\n|---|---:|---|\n"
               f"| key: the server's token key | 32 | `{TOKEN_KEY.hex()}` |\n"
               f"| nonce: the token nonce (public token offset 24, CONNECT_REQUEST offset 32)"
               f" | 12 | `{token.nonce.hex()}` |\n"
               f"| associated data: `\"xmarks token\"` (12 ASCII bytes), protocol id u16 "
               f"`58 4d`, version u8 `04`, expire u64 ({token.expire}) | 23 | `{ad.hex()}` |\n"
               "| plaintext | 128 | the bytes above |\n"
               "| output: 128 bytes of ciphertext, then the 16-byte Poly1305 tag (the token "
               "id) | 144 | below: public token offsets 36..179, CONNECT_REQUEST offsets "
               "44..187 |",
               "Output (the sealed private token):",
               "```hex\n" + token.sealed.hex() + "\n```"],
        kind="private"))
    assert ChaCha20Poly1305(TOKEN_KEY).encrypt(token.nonce, plain, ad) == token.sealed
    vectors.append(Vector(
        "connect_request", "CONNECT_REQUEST", "client to server", first.sent,
        [f"`ClientProtocol(token, salt=0x{ALICE.salt:016x}).connect(now=0.0)` with alice's "
         f"token of {ref('token_public')}",
         "the same bytes are resent every 0.25 s until a CHALLENGE (or a CONNECT_DENY) comes"],
        first.at_server))
    vectors.append(Vector(
        "challenge", "CHALLENGE", "server to client", first.reply,
        [f"server (the hunt server): {rules_text.format(p=4)}",
         f"the CONNECT_REQUEST of {ref('connect_request')} arrives from "
         f"{ALICE.address[0]}:{ALICE.address[1]} at now = 0 (unix time "
         f"{UNIX_ORIGIN_MS} ms): the token opens, has not expired and names "
         f"{SERVER_ADDRESS[0]}:{SERVER_ADDRESS[1]}; the server's first cookie (nonce counter "
         "1); tagged with alice's s2c key",
         f"the cookie is opaque to the client; its plaintext is {ref('cookie')}"],
        first.at_client))
    vectors.append(Vector(
        "cookie", "Challenge cookie (plaintext; only the server reads it)", "",
        open_cookie(first.reply),
        [f"the cookie of the CHALLENGE of {ref('challenge')}, opened with the server's "
         "cookie key of 14.1; a client never needs this: it copies the CHALLENGE's bytes "
         "24..179 into its CHALLENGE_RESPONSE unread"],
        after=["Sealing (ChaCha20-Poly1305, as for the private token):",
               "| input | bytes | value |\n|---|---:|---|\n"
               f"| key: the server's cookie key (fixed here; a server draws it at random when "
               f"it starts) | 32 | `{COOKIE_KEY.hex()}` |\n"
               f"| nonce: the cookie counter (1) as u64, then 4 zero bytes (CHALLENGE offset "
               f"24) | 12 | `{first.reply[24:36].hex()}` |\n"
               f"| associated data: `\"xmarks cookie\"` (13 ASCII bytes) | 13 | "
               f"`{COOKIE_AD.hex()}` |\n"
               "| plaintext | 128 | the bytes above |\n"
               "| output: 128 bytes of ciphertext, then the 16-byte Poly1305 tag | 144 | "
               "CHALLENGE offsets 36..179 |"],
        kind="cookie"))
    vectors.append(Vector(
        "challenge_response", "CHALLENGE_RESPONSE", "client to server", second.sent,
        [f"alice's client after the CHALLENGE of {ref('challenge')}: `poll(now=0.0)` "
         "returns it at once; it is resent every 0.25 s, instead of the request, until an "
         "answer comes"],
        second.at_server))
    vectors.append(Vector(
        "connect_accept", "CONNECT_ACCEPT", "server to client", second.reply,
        [f"the hunt server (as for {ref('challenge')}) receives the CHALLENGE_RESPONSE of "
         f"{ref('challenge_response')} from {ALICE.address[0]}:{ALICE.address[1]} at now = 0, "
         "world tick 0, every slot free: slot 0, nonce = "
         f"`random.Random({NONCE_SEED}).randrange(1, 65536)`; tagged with alice's s2c key"],
        second.at_client))
    for peer in (BOB, CAROL):
        hunt.connect(peer)
    for slot, at in enumerate((ALICE_AT, BOB_AT, CAROL_AT)):
        place(world, slot, at)

    frank = FRANK.client()
    frank.connect(0.0)
    old = hunt.exchange(v2_request(FRANK), FRANK.address, frank)
    vectors.append(Vector(
        "connect_deny_version", "CONNECT_DENY (wrong version: the untagged form)",
        "server to client", old.reply,
        ["the hunt server (as for CONNECT_ACCEPT) receives a 256-byte CONNECT_REQUEST of "
         f"version 2, as a version 2 client sends it, from {FRANK.address[0]}:"
         f"{FRANK.address[1]}: header (version 2, type 1), salt 0x{FRANK.salt:016x} at "
         f"offset 16, name length {len(FRANK.name)} at offset 24, \"{FRANK.name}\" at "
         "offset 25, zero padding",
         "the request counts one `bad_version` drop and is answered: bytes 16..23 of the "
         "request copied, no tag (no key is known); the deny's own version byte is the "
         "server's (4). A version 4 client never receives it (it sends no other version), "
         "and the reference client drops a 25-byte CONNECT_DENY as `bad_length`"],
        old.at_client))

    alice = hunt.clients[ALICE.address]
    sent: dict[int, tuple[bytes, Outcome]] = {}
    keepalive: tuple[bytes, Outcome] | None = None
    for tick in range(LAST_TICK + 1):
        assert world.tick == tick
        if tick == 41:  # hunt 1 started at tick 40 with every treasure buried afresh
            place_treasures(world, HUNT1_TREASURES)
        if tick == ALICE_TELEPORT_TICK:
            place(world, 0, ALICE_AT)
        for addr, client in hunt.clients.items():
            out, _ = client.poll(hunt.now_s)
            for data in out:
                outcome = hunt.to_server(data, addr)
                if client is alice and keepalive is None:
                    keepalive = (data, outcome)
        if tick in ALICE_INPUTS:
            mx, my, dig = ALICE_INPUTS[tick]
            data = alice.input(mx, my, dig, hunt.now_s)
            sent[alice.input_seq] = (data, hunt.to_server(data, ALICE.address))
        if tick == BOB_WALKS:
            hunt.send_input(BOB, -127, 0, False)
        if tick in DURABLE:
            hunt.server.durable[0] = DURABLE[tick]
        hunt.tick(lose=(ALICE.name,) if tick in ALICE_LOST else ())
    full, full_outcome = hunt.last_snapshot[ALICE.name]

    def input_text(seq: int) -> str:
        tick = sorted(ALICE_INPUTS)[seq - 1]
        mx, my, dig = ALICE_INPUTS[tick]
        return f"`input({mx}, {my}, {dig}, now={tick / TICK_RATE:g})` before tick {tick}"

    vectors.append(Vector(
        "input_1", "INPUT (1 record)", "client to server", sent[1][0],
        ["alice's client right after the CONNECT_ACCEPT vector, no snapshot seen yet: "
         + input_text(1), "her first packet of the session (sequence 1), input seq 1; "
         f"tagged with her c2s key (the computation: {ref('siphash_tag')})"],
        sent[1][1]))
    vectors.append(Vector(
        "input_3", "INPUT (3 records)", "client to server", sent[3][0],
        ["alice's client, third input: " + input_text(3) + ", after "
         + input_text(1) + ", " + input_text(2) + " and one KEEPALIVE (the next vector); "
         f"the newest snapshot it has seen is tick {ALICE_LOST.start - 1} (the later ones "
         f"are lost: {ref('snapshot_full')})",
         "records newest first: input seqs 3, 2, 1"],
        sent[3][1]))
    assert keepalive is not None
    vectors.append(Vector(
        "keepalive", "KEEPALIVE", "client to server", keepalive[0],
        ["alice's client, `poll(now=1.25)`: nothing sent since the input at 0.25 s, "
         "so the 1 s keepalive interval has passed; sequence 3 (after two INPUTs)"],
        keepalive[1]))
    vectors.append(Vector(
        "snapshot_full", "SNAPSHOT (full: players with velocities, treasures, ev, my, hr)",
        "server to client", full,
        [f"the hunt server after ticks 0..{LAST_TICK}, alice's snapshot of tick {LAST_TICK} "
         f"(one snapshot per tick since tick 0, so sequence {LAST_TICK + 1})",
         "slots: alice 0 at (512, 512), bob 1 at (600, 512), carol 2 at (512, 300) "
         "(positions written into the world); carol never moves; bob's one input, before "
         f"tick {BOB_WALKS}, is (-127, 0): due west at 200 units/s, so at tick {LAST_TICK} he is "
         "at (540, 512) with velocity (-640, 0) quanta per tick",
         "hunt 0 (ticks 0..39): treasure 0 at (512, 512); alice digs from tick 0 and claims "
         "it at tick 4; then walks away with input 2",
         "hunt 1 (from tick 40): treasures 1, 2, 3 at (512, 512), (520, 512), (512, 560), the "
         "rest along y = 64; alice is put back at (512, 512) before tick 44, digs ticks "
         "44..48 and claims treasure 1 at tick 48, stops (input 4), digs again from tick 58 "
         "(input 5): at tick 60 she is 3 of 5 ticks into treasure 2",
         f"alice's snapshots of ticks {ALICE_LOST.start}..{ALICE_LOST.stop - 1} are lost on "
         "the way, so her inputs 3, 4 and 5 (before ticks 44, 49 and 58) all ack tick "
         f"{ALICE_LOST.start - 1}, which has left the server's 8-snapshot ring (it holds "
         "ticks 52..59): the snapshot is full (no \"b\")",
         "the server's durable tick (`ServerProtocol.durable`, which a server's ledger "
         "publishes; written by hand here, as a slow ledger would): "
         + ", ".join(f"{d} from tick {k} on" for k, d in sorted(DURABLE.items()))
         + " (-1: nothing is durable yet)",
         "treasure values come from the world's seeded RNG",
         "\"p\" lists carol before bob and \"tr\" treasure 2 before 3: the server lists "
         "entities in the order of its grid (cell row, cell column, then id), not by distance",
         "\"ev\" holds the claim of tick 48 (the one of tick 4 is out of the 40-tick window)",
         "\"my\" holds both of alice's claims, oldest first: tick 4 (treasure 0) confirmed "
         "(durable since the server's snapshot of tick 50, which was lost: she has not acked "
         "a snapshot that carried it confirmed), tick 48 (treasure 1) not confirmed (48 > 45); "
         "her ack of tick 4 (input 2, before tick 5) did not end the first row, which was not "
         "confirmed then",
         "\"hr\" because hunt 0 ended at tick 40 and alice has acked no snapshot since the "
         "first that carried it (tick 40's); no \"lb\", although this is alice's 61st "
         "snapshot (60 % 20 == 0), because \"hr\" is present"],
        full_outcome))
    quit_packet = alice.disconnect()
    vectors.append(Vector(
        "disconnect_client", "DISCONNECT (client quits)", "client to server", quit_packet,
        [f"alice's client after the snapshot of tick {LAST_TICK}: `disconnect()`; "
         "reason 1 (client quit), sequence one past her last packet; tagged with her c2s "
         "key"],
        hunt.to_server(quit_packet, ALICE.address)))

    # ---- the solo server: dave alone, erin turned away -------------------------------
    solo = Harness(SOLO_RULES)
    place_treasures(solo.world, {})
    solo.connect(DAVE)
    place(solo.world, 0, DAVE_AT)
    erin = ERIN.client()
    full_deny = solo.exchange(erin.connect(0.0), ERIN.address, erin)
    vectors.append(Vector(
        "connect_deny_full", "CONNECT_DENY (server full)", "server to client",
        full_deny.reply,
        [f"the solo server: {rules_text.format(p=1)}; dave (slot 0) is connected",
         f"erin's CONNECT_REQUEST (`ClientProtocol(erin's token, salt=0x{ERIN.salt:016x})"
         f".connect(0.0)`, 256 bytes) from {ERIN.address[0]}:{ERIN.address[1]}: her token "
         "is valid, but no slot is free, so the request is answered at once, before any "
         "challenge; tagged with erin's s2c key (the key her token gave the server)"],
        full_deny.at_client))
    solo.tick()
    solo.tick()
    dave = solo.clients[DAVE.address]
    minimal, minimal_outcome = solo.last_snapshot[DAVE.name]
    vectors.append(Vector(
        "snapshot_minimal", "SNAPSHOT (minimal)", "server to client", minimal,
        ["the solo server (as for CONNECT_DENY, server full): dave, slot 0, put at "
         "(256, 768), every treasure along y = 64 (none within the 96-unit reveal radius)",
         "dave's snapshot of tick 1 (his second: sequence 2); no other player, no treasure "
         "in view, no claim yet, no hunt over yet, and (1 + 0) % 20 != 0 so no \"lb\"; "
         "tagged with dave's s2c key"],
        minimal_outcome))
    solo.server.shutdown()
    (bye, addr), = solo.replies()
    assert addr == DAVE.address
    vectors.append(Vector(
        "disconnect_server", "DISCONNECT (server shutting down)", "server to client", bye,
        ["the solo server after the minimal SNAPSHOT: `shutdown()`; reason 2 (server "
         "shutdown), sequence one past dave's last snapshot (3); tagged with dave's s2c key"],
        solo.to_client(bye, dave)))
    erin2 = ERIN.client()
    down = solo.exchange(erin2.connect(0.0), ERIN.address, erin2)
    vectors.append(Vector(
        "connect_deny_shutdown", "CONNECT_DENY (shutting down)", "server to client",
        down.reply,
        ["the solo server after `shutdown()` receives erin's request (the same 256 bytes "
         "as for the server-full deny)"],
        down.at_client))

    # ---- the address-limit server: nina, then omar from the same IPv4 address --------
    lim = Harness(RULES, security=ONE_PER_ADDRESS)
    lim.connect(NINA)
    omar = OMAR.client()
    over = lim.exchange(omar.connect(0.0), OMAR.address, omar)
    vectors.append(Vector(
        "connect_deny_address", "CONNECT_DENY (too many sessions from the address)",
        "server to client", over.reply,
        [f"the address-limit server: {rules_text.format(p=4)}, except "
         "`SecuritySettings(max_sessions_per_address=1)`",
         f"nina is connected from {NINA.address[0]}:{NINA.address[1]}; omar's "
         f"CONNECT_REQUEST (salt 0x{OMAR.salt:016x}) comes from {OMAR.address[0]}:"
         f"{OMAR.address[1]}, the same IPv4 address (another port): answered at once; "
         "tagged with omar's s2c key"],
        over.at_client))

    # ---- the delta server: gina watches henry, ivy, jack and kate ----------------------
    dsv = Harness(DELTA_RULES, DELTA_LIMITS)
    place_treasures(dsv.world, DELTA_TREASURES)
    for peer in (GINA, HENRY, IVY, JACK, KATE, LIAM, MIA):
        dsv.connect(peer)
    for slot, at in enumerate((GINA_AT, HENRY_AT, IVY_AT, JACK_AT, KATE_AT, LIAM_AT, MIA_AT)):
        place(dsv.world, slot, at)
    gina = dsv.clients[GINA.address]
    baseline = None
    for tick in range(DELTA_TICK + 1):
        if tick == 0:
            dsv.send_input(HENRY, 0, 127, False)
            dsv.send_input(IVY, 127, 0, False)
            dsv.send_input(LIAM, 127, 0, False)
            dsv.send_input(MIA, 127, 0, False)
        if tick == 4:
            dsv.send_input(IVY, 0, -127, False)
        if tick == GINA_ACKS:
            dsv.send_input(GINA, 0, 0, False)
        if tick == CHANGES_AT:
            w = dsv.world
            w.pf[S.PX, 1] += 3.0  # henry 3 units east of his line (192 quanta)
            place(w, 3, (1000.0, 1000.0))  # jack out of view
            place(w, 4, (512.0, 600.0))  # kate into view
            place_treasures(w, {0: DELTA_TREASURES[0], 2: (480.0, 512.0)})  # 1 leaves view
        dsv.tick()
        if tick == GINA_ACKS - 1:
            baseline = dsv.last_snapshot[GINA.name]
    delta, delta_outcome = dsv.last_snapshot[GINA.name]
    held = gina.held[DELTA_TICK]
    base_held = gina.held[GINA_ACKS - 1]
    rules_delta = rules_text.format(p=7).replace("`NetLimits()` defaults",
                                                 "`NetLimits(leaderboard_every=0.1)`")
    vectors.append(Vector(
        "snapshot_baseline", "SNAPSHOT (full, with velocities: the baseline of the delta)",
        "server to client", baseline[0],
        [f"the delta server: {rules_delta}; \"lb\" therefore in every second snapshot",
         "gina (slot 0), henry (1), ivy (2), jack (3), kate (4), liam (5) and mia (6) "
         "connect in that order at tick 0 and are put at (512, 512), (448, 512), (576, 512), "
         "(512, 448), (100, 100), (512, 400) and (1014, 512); treasures 0 and 1 at "
         "(512, 560) and (540, 512), the rest along y = 64",
         "before tick 0 henry inputs (0, 127): south at 200 units/s, 10 units (640 quanta) a "
         "tick; ivy, liam and mia input (127, 0): east, as fast; mia reaches the world's "
         "edge in tick 0 and stays at x = 1024 (65535), her velocity still 640",
         f"gina's snapshot of tick {GINA_ACKS - 1} (her third: sequence {GINA_ACKS}); she has "
         "sent no INPUT yet (ack 0), so it is full; kate is 582 units away, beyond even the "
         "exit radius (563.2); tagged with gina's s2c key"],
        baseline[1],
        after=["Lists the client holds after it (id, qx, qy, vx, vy / id, qx, qy, value): "
               "`" + json.dumps({"players": [list(p) for p in base_held.players],
                                 "treasures": [list(t) for t in base_held.treasures]}) + "`"]))
    vectors.append(Vector(
        "snapshot_delta", "SNAPSHOT (delta: pm, pv, pr, pn, tx, tn)", "server to client",
        delta,
        ["the delta server as for the previous vector; gina's one INPUT, before tick "
         f"{GINA_ACKS}, acks tick {GINA_ACKS - 1} (her newest snapshot), and she sends no "
         f"other: her snapshots of ticks {GINA_ACKS}..{DELTA_TICK} are deltas against tick "
         f"{GINA_ACKS - 1}",
         "before tick 4 ivy inputs (0, -127): north at full speed",
         f"before tick {CHANGES_AT} (written into the world): henry 3 units east of his "
         "line, to x = 451; jack to (1000, 1000), out of view; kate to (512, 600), in view; "
         "treasure 1 to (192, 64), out of view; treasure 2 to (480, 512), in view",
         f"gina's snapshot of tick {DELTA_TICK} (sequence {DELTA_TICK + 1}): dt = "
         f"{DELTA_TICK - GINA_ACKS + 1}; baseline players [jack, liam, henry, ivy, mia] (indices 0..4),"
         " treasures [0, 1]",
         "henry kept his velocity: \"pm\" corrects his extrapolated position by (192, 0); "
         "ivy turned: \"pv\" corrects hers by (-1920, -1920) and gives her new velocity "
         "(0, -640); jack left (\"pr\" index 0); kate is new (\"pn\"); treasure 1 "
         "(index 1) left (\"tx\"), treasure 2 is new (\"tn\"); treasure 0 is unchanged",
         "liam (index 1) and mia (index 4) get no entry: the client extrapolates them "
         "(liam exactly on his line; mia's 65535 + 640 * 4 clamps back to 65535, where she "
         "is), so a client that extrapolates only rows with an entry, or clamps after the "
         "correction instead of before it, holds different lists"],
        delta_outcome,
        after=["Lists the client holds after it (the baseline's lists with the delta applied, "
               "section 7.6): `" + json.dumps({"players": [list(p) for p in held.players],
                                               "treasures": [list(t) for t in held.treasures]})
               + "`"]))

    # ---- SipHash-2-4 ---------------------------------------------------------------------
    vectors.append(Vector(
        "siphash_paper", "SipHash-2-4: the paper's test vector", "", bytes(range(15)),
        ["Aumasson and Bernstein, \"SipHash: a fast short-input PRF\" (2012), Appendix A: "
         "key 00 01 .. 0f, message 00 01 .. 0e (15 bytes)"],
        kind="siphash", sip_key=bytes(range(16))))
    one = sent[1][0]
    vectors.append(Vector(
        "siphash_tag", "SipHash-2-4: the tag of a packet", "", one[:-8],
        [f"the tag of the INPUT of {ref('input_1')} ({len(one)} bytes): SipHash-2-4 of its "
         f"first {len(one) - 8} bytes under alice's c2s key (client to server), written "
         f"little-endian at offsets {len(one) - 8}..{len(one) - 1}"],
        kind="siphash", sip_key=ALICE.c2s))
    assert siphash24_ref(ALICE.c2s, one[:-8]).to_bytes(8, "little") == one[-8:]

    by_key = {v.key: v for v in vectors}
    assert set(by_key) == set(ORDER)
    infos = {ALICE.name: alice.info, DAVE.name: dave.info, GINA.name: gina.info}
    return Generated([by_key[k] for k in ORDER], by_key, infos,
                     {"hunt": hunt.world, "solo": solo.world, "delta": dsv.world},
                     {GINA.name: dict(gina.held)})


# ---- reading bytes at the documented offsets --------------------------------------------

TYPE_NAMES = {1: "CONNECT_REQUEST", 2: "CONNECT_ACCEPT", 3: "CONNECT_DENY", 4: "INPUT",
              5: "SNAPSHOT", 6: "KEEPALIVE", 7: "DISCONNECT", 8: "CHALLENGE",
              9: "CHALLENGE_RESPONSE"}
DENY_REASONS = {1: "server full", 2: "wrong version", 3: "server shutting down",
                4: "too many sessions from this address"}
DISCONNECT_REASONS = {1: "client quit", 2: "server shutdown", 3: "timed out", 4: "kicked"}
CLIENT_TYPES = (1, 4, 6, 9)  # the packet types only a client sends (7 goes both ways)


def u(data: bytes, at: int, size: int) -> int:
    return int.from_bytes(data[at:at + size], "little")


def i8(data: bytes, at: int) -> int:
    return int.from_bytes(data[at:at + 1], "little", signed=True)


def f32(data: bytes, at: int) -> float:
    return float(np.frombuffer(data[at:at + 4], "<f4")[0])


def spaced(data: bytes) -> str:
    return " ".join(f"{b:02x}" for b in data)


def dump_line(chunk: bytes) -> str:
    """16 bytes as hex, with a wider gap after the eighth."""
    return (spaced(chunk[:8]) + "  " + spaced(chunk[8:])).rstrip()


def session_text(sid: int) -> str:
    if sid == 0:
        return "0 (none)"
    return f"0x{sid:08x} (slot {sid & 0xFFFF}, nonce {sid >> 16})"


def zeros(data: bytes, at: int, size: int, what: str = "zero bytes") -> str:
    """The value text of a run of zero bytes (the generator refuses anything else)."""
    assert data[at:at + size] == bytes(size), (at, size)
    return f"{size} {what}"


def name_text(data: bytes, at: int, n: int) -> str:
    return (json.dumps(data[at:at + n].decode("utf-8"))
            + (f" + {32 - n} zero bytes" if n < 32 else ""))


def address_text(data: bytes, at: int) -> str:
    """A token's address entry: IPv4 u32 at `at`, port u16 at `at` + 4."""
    ip, port = u(data, at, 4), u(data, at + 4, 2)
    return f"{ipaddress.IPv4Address(ip)}:{port} (IPv4 u32 0x{ip:08x}, port u16 {port})"


def servers_rows(data: bytes, at: int) -> list[tuple[int, int, str, str]]:
    """The address count at `at` and the 48-byte address block after it."""
    count = data[at]
    rows = [(at, 1, "server address count", str(count))]
    for i in range(count):
        rows.append((at + 1 + 6 * i, 6, f"server {i}", address_text(data, at + 1 + 6 * i)))
    if count < 8:
        used = at + 1 + 6 * count
        rows.append((used, 48 - 6 * count, "unused server entries", zeros(data, used,
                                                                          48 - 6 * count)))
    return rows


def header_rows(data: bytes) -> list[tuple[int, int, str, str]]:
    return [
        (0, 2, "protocol id", f"0x{u(data, 0, 2):04x}"),
        (2, 1, "version", str(data[2])),
        (3, 1, "packet type", f"{data[3]} ({TYPE_NAMES.get(data[3], '?')})"),
        (4, 1, "flags", str(data[4])),
        (5, 3, "reserved", "0"),
        (8, 4, "session id", session_text(u(data, 8, 4))),
        (12, 4, "sequence", str(u(data, 12, 4))),
    ]


def tag_row(data: bytes, direction: str) -> tuple[int, int, str, str]:
    key = "c2s" if direction == "client to server" else "s2c"
    n = len(data)
    return (n - 8, 8, "tag", f"{spaced(data[n - 8:])}: SipHash-2-4 of bytes 0..{n - 9} "
            f"under the {key} key, little-endian")


def body_rows(data: bytes, direction: str) -> list[tuple[int, int, str, str]]:
    """(offset, size, field, value) for the body of a packet, its tag included."""
    ptype, n = data[3], len(data)
    rows: list[tuple[int, int, str, str]] = []
    if ptype == 1:
        rows = [(16, 8, "client salt", f"0x{u(data, 16, 8):016x}"),
                (24, 8, "token expire", f"{u(data, 24, 8)} (unix s)"),
                (32, 12, "token nonce", spaced(data[32:44])),
                (44, 144, "sealed private token",
                 "144 bytes: ciphertext 128, Poly1305 tag 16 (" + ref("token_private") + ")"),
                (188, 68, "padding", zeros(data, 188, 68))]
        return rows  # no tag
    if ptype == 2:
        rows = [(16, 8, "client salt", f"0x{u(data, 16, 8):016x}"),
                (24, 2, "slot", str(u(data, 24, 2))),
                (26, 2, "tick rate", f"{u(data, 26, 2)} Hz"),
                (28, 2, "snapshot rate", f"{u(data, 28, 2)} Hz"),
                (30, 2, "reserved", str(u(data, 30, 2))),
                (32, 4, "world width", f"{f32(data, 32):g}"),
                (36, 4, "world height", f"{f32(data, 36):g}"),
                (40, 4, "dig radius", f"{f32(data, 40):g}"),
                (44, 4, "reveal radius", f"{f32(data, 44):g}"),
                (48, 4, "dig ticks", str(u(data, 48, 4))),
                (52, 4, "server tick", str(u(data, 52, 4))),
                (56, 4, "session timeout", f"{u(data, 56, 4)} ms")]
    elif ptype == 3:
        rows = [(16, 8, "client salt", f"0x{u(data, 16, 8):016x}"),
                (24, 1, "reason", f"{data[24]} ({DENY_REASONS.get(data[24], '?')})")]
        if n == 25:
            return rows  # the untagged wrong-version deny
    elif ptype == 4:
        rows = [(16, 4, "snapshot ack (tick)", str(u(data, 16, 4))),
                (20, 1, "record count", str(data[20]))]
        for k in range(data[20]):
            at = 21 + 8 * k
            rows += [(at, 4, f"record {k}: input seq", str(u(data, at, 4))),
                     (at + 4, 1, f"record {k}: move x", str(i8(data, at + 4))),
                     (at + 5, 1, f"record {k}: move y", str(i8(data, at + 5))),
                     (at + 6, 1, f"record {k}: buttons",
                      f"0x{data[at + 6]:02x}" + (" (dig)" if data[at + 6] & 1 else "")),
                     (at + 7, 1, f"record {k}: padding", str(data[at + 7]))]
    elif ptype == 5:
        rows = [(16, n - 24, "payload", f"msgpack, {n - 24} bytes (below)")]
    elif ptype == 7:
        rows = [(16, 1, "reason", f"{data[16]} ({DISCONNECT_REASONS.get(data[16], '?')})")]
    elif ptype == 8:
        rows = [(16, 8, "client salt", f"0x{u(data, 16, 8):016x}"),
                (24, 12, "cookie: nonce", spaced(data[24:36])),
                (36, 128, "cookie: ciphertext", "128 bytes (" + ref("cookie") + ")"),
                (164, 16, "cookie: Poly1305 tag", spaced(data[164:180]))]
    elif ptype == 9:
        rows = [(16, 8, "client salt", f"0x{u(data, 16, 8):016x}"),
                (24, 156, "cookie", "156 bytes: the CHALLENGE's bytes 24..179, unchanged"),
                (180, 68, "padding", zeros(data, 180, 68))]
    return rows + [tag_row(data, direction)]


def token_rows(data: bytes) -> list[tuple[int, int, str, str]]:
    """The public connect token (272 bytes)."""
    return ([(0, 8, "magic", json.dumps(data[0:8].decode("ascii"))),
             (8, 8, "create", f"{u(data, 8, 8)} (unix s)"),
             (16, 8, "expire", f"{u(data, 16, 8)} (unix s)"),
             (24, 12, "token nonce", spaced(data[24:36])),
             (36, 144, "sealed private token", "144 bytes: ciphertext 128, Poly1305 tag 16 ("
              + ref("token_private") + ")"),
             (180, 8, "client id", f"0x{u(data, 180, 8):016x}"),
             (188, 16, "c2s key", spaced(data[188:204])),
             (204, 16, "s2c key", spaced(data[204:220]))]
            + servers_rows(data, 220)
            + [(269, 3, "padding", zeros(data, 269, 3))])


def private_rows(data: bytes) -> list[tuple[int, int, str, str]]:
    """The private connect token's plaintext (128 bytes)."""
    return ([(0, 8, "client id", f"0x{u(data, 0, 8):016x}"),
             (8, 16, "c2s key", spaced(data[8:24])),
             (24, 16, "s2c key", spaced(data[24:40]))]
            + servers_rows(data, 40)
            + [(89, 1, "name length", str(data[89])),
               (90, 32, "name", name_text(data, 90, data[89])),
               (122, 6, "padding", zeros(data, 122, 6))])


def cookie_rows(data: bytes) -> list[tuple[int, int, str, str]]:
    """The challenge cookie's plaintext (128 bytes)."""
    ip = u(data, 16, 4)
    return [(0, 8, "client id", f"0x{u(data, 0, 8):016x}"),
            (8, 8, "client salt", f"0x{u(data, 8, 8):016x}"),
            (16, 4, "client IPv4", f"{ipaddress.IPv4Address(ip)} (u32 0x{ip:08x})"),
            (20, 2, "client port", str(u(data, 20, 2))),
            (22, 2, "padding", zeros(data, 22, 2)),
            (24, 8, "issued at", f"{u(data, 24, 8)} (server's unix time, ms)"),
            (32, 8, "token expire", f"{u(data, 32, 8)} (unix s)"),
            (40, 16, "c2s key", spaced(data[40:56])),
            (56, 16, "s2c key", spaced(data[56:72])),
            (72, 16, "token id", spaced(data[72:88]) + " (the sealed token's Poly1305 tag)"),
            (88, 1, "name length", str(data[88])),
            (89, 32, "name", name_text(data, 89, data[88])),
            (121, 7, "padding", zeros(data, 121, 7))]


BLOB_ROWS = {"token": token_rows, "private": private_rows, "cookie": cookie_rows}


# ---- SipHash-2-4, traced -----------------------------------------------------------------

_M64 = (1 << 64) - 1


def siphash_trace(key: bytes, msg: bytes) -> dict:
    """SipHash-2-4 of msg under the 16-byte key, step by step (plain Python, from the
    paper): k0, k1, the initial state, each message word and the state after it, the state
    after finalization, and the tag (a u64)."""
    def rotl(x: int, b: int) -> int:
        return ((x << b) | (x >> (64 - b))) & _M64

    def sipround(v: list[int]) -> None:
        v[0] = (v[0] + v[1]) & _M64; v[1] = rotl(v[1], 13); v[1] ^= v[0]; v[0] = rotl(v[0], 32)
        v[2] = (v[2] + v[3]) & _M64; v[3] = rotl(v[3], 16); v[3] ^= v[2]
        v[0] = (v[0] + v[3]) & _M64; v[3] = rotl(v[3], 21); v[3] ^= v[0]
        v[2] = (v[2] + v[1]) & _M64; v[1] = rotl(v[1], 17); v[1] ^= v[2]; v[2] = rotl(v[2], 32)

    k0, k1 = u(key, 0, 8), u(key, 8, 8)
    v = [k0 ^ 0x736F6D6570736575, k1 ^ 0x646F72616E646F6D,
         k0 ^ 0x6C7967656E657261, k1 ^ 0x7465646279746573]
    start = tuple(v)
    n = len(msg)
    full = n - n % 8
    words = [u(msg, at, 8) for at in range(0, full, 8)]
    words.append(u(msg, full, n - full) | ((n & 0xFF) << 56))
    blocks = []
    for m in words:
        v[3] ^= m
        sipround(v)
        sipround(v)
        v[0] ^= m
        blocks.append((m, tuple(v)))
    v[2] ^= 0xFF
    for _ in range(4):
        sipround(v)
    return {"k0": k0, "k1": k1, "start": start, "blocks": blocks, "end": tuple(v),
            "tag": v[0] ^ v[1] ^ v[2] ^ v[3]}


def words_text(v: tuple[int, ...]) -> str:
    return ", ".join(f"`{w:016x}`" for w in v)


def render_siphash(n: int, v: Vector) -> list[str]:
    msg, key = v.data, v.sip_key
    t = siphash_trace(key, msg)
    assert t["tag"] == siphash24_ref(key, msg)
    out = [f"### 14.{n} {v.title}", "", "Produced by:", ""]
    out += [f"- {line}" for line in v.inputs]
    out += ["", "| step | value |", "|---|---|",
            f"| key (16 bytes) | `{spaced(key)}` |",
            f"| k0: key bytes 0..7 as a little-endian u64 | `{t['k0']:016x}` |",
            f"| k1: key bytes 8..15 as a little-endian u64 | `{t['k1']:016x}` |",
            f"| message | {len(msg)} bytes (below) |",
            f"| v0, v1, v2, v3 after initialization | {words_text(t['start'])} |"]
    nb = len(t["blocks"])
    for i, (m, state) in enumerate(t["blocks"]):
        if i < nb - 1:
            what = f"m{i}: message bytes {8 * i}..{8 * i + 7} as a little-endian u64"
        else:
            left = len(msg) - 8 * i
            span = f"bytes {8 * i}..{len(msg) - 1}" if left else "no bytes"
            what = (f"m{i} (last): message {span} little-endian, the length "
                    f"{len(msg)} mod 256 in the top byte")
        out += [f"| {what} | `{m:016x}` |",
                f"| v0, v1, v2, v3 after m{i} (2 rounds) | {words_text(state)} |"]
    out += [f"| v0, v1, v2, v3 after v2 ^= 0xff and 4 rounds | {words_text(t['end'])} |",
            f"| tag = v0 ^ v1 ^ v2 ^ v3 (u64) | `{t['tag']:016x}` |",
            f"| tag bytes (the u64 little-endian) | `{spaced(t['tag'].to_bytes(8, 'little'))}` |",
            "", "Message:", "", "```hex", v.hex, "```", ""]
    return out


# ---- a msgpack listing for the SNAPSHOT payload --------------------------------------------

GROUPS = {"h": (2, ("hunt", "ticks left")),
          "me": (6, ("slot", "x", "y", "score", "dig", "heat")),
          "p": (5, ("slot", "x", "y", "vx", "vy")),
          "tr": (4, ("treasure", "x", "y", "value")),
          "pm": (3, ("index", "dx", "dy")),
          "pv": (5, ("index", "dx", "dy", "vx", "vy")),
          "pr": (1, ("index",)),
          "pn": (5, ("slot", "x", "y", "vx", "vy")),
          "tx": (1, ("index",)),
          "tn": (4, ("treasure", "x", "y", "value")),
          "ev": (4, ("tick", "slot", "treasure", "value")),
          "my": (4, ("tick", "treasure", "value", "confirmed")),
          "lb": (2, ("slot", "score")),
          "hr": (2, ("slot", "score"))}


class _Reader:
    """The msgpack subset a SNAPSHOT uses, token by token (raises ValueError otherwise)."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def token(self) -> tuple[str, int | str, bytes]:
        d, p = self.data, self.pos
        b = d[p]
        if b <= 0x7F:
            kind, value, size = "uint", b, 1
        elif 0x80 <= b <= 0x8F:
            kind, value, size = "map", b & 0x0F, 1
        elif 0x90 <= b <= 0x9F:
            kind, value, size = "array", b & 0x0F, 1
        elif 0xA0 <= b <= 0xBF:
            n = b & 0x1F
            kind, value, size = "str", d[p + 1:p + 1 + n].decode("ascii"), 1 + n
        elif b in (0xCC, 0xCD, 0xCE, 0xCF):
            n = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}[b]
            kind, value, size = "uint", int.from_bytes(d[p + 1:p + 1 + n], "big"), 1 + n
        elif b >= 0xE0:
            kind, value, size = "int", b - 0x100, 1
        elif b in (0xD0, 0xD1, 0xD2, 0xD3):
            n = {0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8}[b]
            kind, value, size = "int", int.from_bytes(d[p + 1:p + 1 + n], "big", signed=True), 1 + n
        elif b == 0xDC:
            kind, value, size = "array", int.from_bytes(d[p + 1:p + 3], "big"), 3
        else:
            raise ValueError(f"msgpack byte 0x{b:02x} is not used by a SNAPSHOT")
        self.pos = p + size
        return kind, value, d[p:p + size]


def msgpack_listing(payload: bytes) -> list[tuple[str, str]]:
    """(hex, comment) lines that walk a SNAPSHOT payload."""
    r = _Reader(payload)
    lines: list[tuple[str, str]] = []
    kind, pairs, raw = r.token()
    assert kind == "map"
    lines.append((spaced(raw), f"map, {pairs} keys"))
    for _ in range(pairs):
        kind, key, raw = r.token()
        assert kind == "str"
        lines.append((spaced(raw), json.dumps(key)))
        kind, value, raw = r.token()
        if kind in ("uint", "int"):
            lines.append(("  " + spaced(raw), str(value)))
            continue
        assert kind == "array"
        n = int(value)
        group, names = GROUPS[key]
        lines.append(("  " + spaced(raw), f"array, {n} element{'' if n == 1 else 's'}"))
        left = n
        if key == "hr":
            _, hid, raw = r.token()
            lines.append(("    " + spaced(raw), f"hunt {hid}"))
            left -= 1
        while left > 0:
            parts, raws = [], []
            for name in names:
                _, v, raw = r.token()
                parts.append(f"{name} {v}")
                raws.append(raw)
            left -= group
            lines.append(("    " + spaced(b"".join(raws)), ", ".join(parts)))
    assert r.pos == len(payload)
    return lines


# ---- Markdown --------------------------------------------------------------------------

BEGIN = ("<!-- BEGIN GENERATED TEST VECTORS: `python -m tests.protocol_vectors --write`; "
         "do not edit by hand -->")
END = "<!-- END GENERATED TEST VECTORS -->"


def hexdump(data: bytes, packet: bool = True) -> list[str]:
    """16 bytes a line. A packet's lines name where the header, body and tag start."""
    n = len(data)
    tagged = packet and not (data[3] == 1 or (data[3] == 3 and n == 25))
    lines = []
    for at in range(0, n, 16):
        line = f"{at:04x}  {dump_line(data[at:at + 16])}"
        notes = []
        if packet and at == 0:
            notes.append("header")
        if packet and at == 16 and (not tagged or n - 8 > 16):
            notes.append("body")
        if tagged and at <= n - 8 < at + 16:
            notes.append(f"tag at {n - 8}")
        lines.append(f"{line:<54}   {', '.join(notes)}".rstrip() if notes else line)
    return lines


def table(rows: list[tuple[int, int, str, str]]) -> list[str]:
    """The field table; the rows must tile the bytes they describe, in order."""
    at = 0
    for offset, size, _, _ in rows:
        assert offset == at, (offset, at)
        at += size
    return (["| offset | size | field | value |", "|---:|---:|---|---|"]
            + [f"| {o} | {s} | {name} | {value} |" for o, s, name, value in rows])


def render_vector(n: int, v: Vector) -> list[str]:
    if v.kind == "siphash":
        return render_siphash(n, v)
    head = (f"{v.direction.capitalize()}, {len(v.data)} bytes" if v.kind == "packet"
            else f"{len(v.data)} bytes")
    out = [f"### 14.{n} {v.title}", "", f"{head}. Produced by:", ""]
    out += [f"- {line}" for line in v.inputs]
    if v.kind == "packet":
        rows = header_rows(v.data) + body_rows(v.data, v.direction)
    else:
        rows = BLOB_ROWS[v.kind](v.data)
    assert sum(size for _, size, _, _ in rows) == len(v.data)
    out += [""] + table(rows)
    out += ["", "```text"] + hexdump(v.data, v.kind == "packet") + ["```"]
    if v.kind == "packet" and v.data[3] == 5:
        payload = v.data[16:-8]
        listing = msgpack_listing(payload)
        width = max(len(h) for h, _ in listing) + 2
        out += ["", f"Payload (offsets 16..{len(v.data) - 9}), {len(payload)} bytes of msgpack:",
                "", "```text"]
        out += [f"{h:<{width}}{c}".rstrip() for h, c in listing] + ["```"]
        decoded = msgpack.unpackb(payload, raw=False)
        out += ["", "Decoded: `" + json.dumps(decoded, separators=(", ", ": ")) + "`"]
    for block in v.after:
        out += ["", block]
    out += ["", "Contiguous:", "", "```hex", v.hex, "```", ""]
    return out


def render_inputs() -> list[str]:
    """Section 14.1: every fixed input, so that every byte can be reproduced."""
    out = ["### 14.1 Keys, peers and clocks", "",
           "Every vector below is made from these inputs. Secret values are the first bytes "
           "of SHA-256 of the label given (only so that they are fixed; any bytes would do).",
           "", "| input | value |", "|---|---|",
           f"| token key (`SHA-256(\"xmarks test vectors: token key\")`, 32 bytes): the "
           f"servers' `key_file`, shared with the token service | `{TOKEN_KEY.hex()}` |",
           f"| cookie key (`SHA-256(\"xmarks test vectors: cookie key\")`, 32 bytes): fixed "
           f"for the vectors; a server draws its own at random when it starts | "
           f"`{COOKIE_KEY.hex()}` |",
           f"| the servers' address (what tokens must name) | "
           f"{SERVER_ADDRESS[0]}:{SERVER_ADDRESS[1]} |",
           f"| the servers' unix time at now = 0 (`unix_origin_ms`) | {UNIX_ORIGIN_MS} ms |",
           f"| server time | now = tick × {PERIOD_NS // 1_000_000} ms ({TICK_RATE:g} Hz); a "
           "client's now = the same instant in seconds |",
           f"| every token | issued at {UNIX_S} (unix s) for {TOKEN_LIFETIME} s: expire "
           f"{UNIX_S + TOKEN_LIFETIME}; names {SERVER_ADDRESS[0]}:{SERVER_ADDRESS[1]} only, "
           f"except alice's, which names {OTHER_SERVER[0]}:{OTHER_SERVER[1]} first |",
           f"| session-id nonces | `random.Random({NONCE_SEED})`, a fresh one per server |",
           "", "Peers (the token nonce is `SHA-256(\"<name> token nonce\")` (12 bytes), the "
           "keys `SHA-256(\"<name> c2s key\")` and `SHA-256(\"<name> s2c key\")` (16 bytes); "
           "the name is the token's name):", "",
           "| peer | address | client id | salt | token nonce | c2s key | s2c key |",
           "|---|---|---|---|---|---|---|"]
    for p in PEERS:
        out.append(f"| {p.name} | {p.address[0]}:{p.address[1]} | 0x{p.client_id:016x} | "
                   f"0x{p.salt:016x} | `{p.nonce.hex()}` | `{p.c2s.hex()}` | "
                   f"`{p.s2c.hex()}` |")
    return out + [""]


def render(gen: Generated) -> str:
    """The generated part of docs/PROTOCOL.md section 14, between the markers."""
    out = [BEGIN, ""] + render_inputs()
    for n, v in enumerate(gen.vectors, start=2):
        out += render_vector(n, v)
    out.append(END)
    return "\n".join(out)


DOC = Path(__file__).resolve().parent.parent / "docs" / "PROTOCOL.md"


def splice(doc_text: str, section: str) -> str:
    start = doc_text.index(BEGIN)
    end = doc_text.index(END) + len(END)
    return doc_text[:start] + section + doc_text[end:]


def main(argv: list[str]) -> int:
    section = render(generate())
    if argv[1:] == ["--write"]:
        DOC.write_text(splice(DOC.read_text(encoding="utf-8"), section), encoding="utf-8")
        print(f"wrote the test vectors into {DOC}", file=sys.stderr)
        return 0
    if argv[1:]:
        print("usage: python -m tests.protocol_vectors [--write]", file=sys.stderr)
        return 2
    print(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
