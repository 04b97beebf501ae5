"""Test vectors for docs/PROTOCOL.md, built by the real code paths so they cannot drift.

Client packets come out of net.client.ClientProtocol (fixed names and salts); server packets
come out of net.server.ServerProtocol driving a small sim.world.World (fixed seed, fixed
session-id nonce source `random.Random(NONCE_SEED)`), with time stepped by hand and a few
positions written straight into the world arrays so that the numbers are easy to read.
Every packet a peer makes is also handed to the other peer, and what happened (drops,
events) is recorded, so tests/test_protocol_vectors.py can check the round trips.

    python -m tests.protocol_vectors            # print the "Test vectors" section (Markdown)
    python -m tests.protocol_vectors --write    # replace that section in docs/PROTOCOL.md

The field tables and the msgpack listings read the bytes at the offsets docs/PROTOCOL.md
gives (literal numbers, not net.wire's structs), so they also check the document's layout.
"""

from __future__ import annotations

import json
import random
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import msgpack
import numpy as np

from net import drops as D
from net.address import Address
from net.client import ClientProtocol
from net.limits import NetLimits
from net.server import ServerProtocol
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
DELTA_RULES = replace(RULES, max_players=7)
DELTA_LIMITS = NetLimits(leaderboard_every=0.1)  # "lb" in every second snapshot


@dataclass(frozen=True)
class Peer:
    name: str
    salt: int
    address: Address


ALICE = Peer("alice", 0x0123456789ABCDEF, ("192.0.2.1", 40001))
BOB = Peer("bob", 0xB0B0B0B0B0B0B0B1, ("192.0.2.2", 40002))
CAROL = Peer("carol", 0xCA401CA401CA4011, ("192.0.2.3", 40003))
FRANK = Peer("frank", 0xF2A4C0000000F2A4, ("192.0.2.6", 40006))  # an old version 1 client
DAVE = Peer("dave", 0xDA7EDA7EDA7EDA7F, ("192.0.2.4", 40004))
ERIN = Peer("erin", 0xE214E214E214E215, ("192.0.2.5", 40005))
GINA = Peer("gina", 0x6146A6146A6146A7, ("192.0.2.7", 40007))
HENRY = Peer("henry", 0x4E2A4E2A4E2A4E2B, ("192.0.2.8", 40008))
IVY = Peer("ivy", 0x1B71B71B71B71B73, ("192.0.2.9", 40009))
JACK = Peer("jack", 0x7ACC7ACC7ACC7ACD, ("192.0.2.10", 40010))
KATE = Peer("kate", 0x4A7E4A7E4A7E4A7F, ("192.0.2.11", 40011))
LIAM = Peer("liam", 0x11A311A311A311A3, ("192.0.2.12", 40012))
MIA = Peer("mia", 0x31A031A031A031A1, ("192.0.2.13", 40013))

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
ALICE_LOST = range(50, 60)  # alice's snapshots of these ticks are lost on the way
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


def far_spot(t: int) -> tuple[float, float]:
    """Where treasures that should stay out of the way are put: along y = 64."""
    return (64.0 + 128.0 * t, 64.0)


# ---- results ---------------------------------------------------------------------------

@dataclass
class Outcome:
    """What the receiving peer made of a packet when the generator delivered it."""

    drops: dict[str, int]
    accepted: dict[int, int] = field(default_factory=dict)  # server: by packet type
    events: list = field(default_factory=list)


@dataclass
class Vector:
    key: str
    title: str
    direction: str  # "client to server" / "server to client"
    data: bytes
    inputs: list[str]
    outcome: Outcome | None = None
    after: list[str] = field(default_factory=list)  # lines after the decoded payload

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

class Harness:
    """One ServerProtocol + World, its clients, and time stepped by hand."""

    def __init__(self, rules: GameRules, limits: NetLimits = LIMITS) -> None:
        self.world = new_world(rules, TICK_RATE)
        self.server = ServerProtocol(self.world, limits, TICK_RATE, random.Random(NONCE_SEED))
        self.clients: dict[Address, ClientProtocol] = {}
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

    def connect(self, peer: Peer) -> tuple[bytes, bytes, Outcome, Outcome]:
        """peer connects now: (request, reply, server outcome, client outcome)."""
        client = ClientProtocol(name=peer.name, salt=peer.salt)
        request = client.connect(self.now_s)
        at_server = self.to_server(request, peer.address)
        (reply, addr), = self.replies()
        assert addr == peer.address
        at_client = self.to_client(reply, client)
        self.clients[peer.address] = client
        return request, reply, at_server, at_client

    def poll_all(self) -> None:
        for addr, client in self.clients.items():
            out, _ = client.poll(self.now_s)
            for data in out:
                self.to_server(data, addr)

    def tick(self, lose: tuple[str, ...] = ()) -> None:
        """Step the world, encode, deliver every snapshot to its client (except to the
        clients named in `lose`: those snapshots are lost on the way)."""
        self.world.step()
        self.server.encode()
        for data, addr in self.server.snapshots():
            data = bytes(data)
            client = self.clients[addr]
            if client.name in lose:
                continue
            self.last_snapshot[client.name] = (data, self.to_client(data, client))

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


def generate() -> Generated:
    """Run both scenarios and return every vector (deterministic: same bytes every run)."""
    vectors: list[Vector] = []
    rules_text = ("`GameRules(world_width=1024.0, world_height=1024.0, max_players={p}, "
                  "treasure_count=8, dig_time=0.25, hunt_duration=2.0, seed=7)` at "
                  "`tick_rate=20.0` (so dig_ticks = 5, hunt_ticks = 40), `NetLimits()` "
                  f"defaults, nonces from `random.Random({NONCE_SEED})`")

    # ---- the hunt server: alice, bob, carol ------------------------------------------
    hunt = Harness(RULES)
    world = hunt.world
    place_treasures(world, HUNT0_TREASURES)
    request, accept, req_outcome, acc_outcome = hunt.connect(ALICE)
    vectors.append(Vector(
        "connect_request", "CONNECT_REQUEST", "client to server", request,
        [f'`ClientProtocol(name="{ALICE.name}", salt=0x{ALICE.salt:016x}).connect(now=0.0)`',
         "the same bytes are resent every 0.25 s until an answer comes"],
        req_outcome))
    vectors.append(Vector(
        "connect_accept", "CONNECT_ACCEPT", "server to client", accept,
        [f"server: {rules_text.format(p=4)}",
         f"the CONNECT_REQUEST vector arrives from {ALICE.address[0]}:{ALICE.address[1]} at "
         "now = 0, world tick 0, every slot free: slot 0, nonce = "
         f"`random.Random({NONCE_SEED}).randrange(1, 65536)`"],
        acc_outcome))
    for peer in (BOB, CAROL):
        hunt.connect(peer)
    for slot, at in enumerate((ALICE_AT, BOB_AT, CAROL_AT)):
        place(world, slot, at)

    frank = ClientProtocol(name=FRANK.name, salt=FRANK.salt)
    bad = bytearray(frank.connect(0.0))
    bad[2] = 1  # an old client of protocol version 1
    hunt.to_server(bytes(bad), FRANK.address)
    (deny_version, _), = hunt.replies()
    vectors.append(Vector(
        "connect_deny_version", "CONNECT_DENY (wrong version)", "server to client",
        deny_version,
        ["the hunt server (as for CONNECT_ACCEPT) receives a 256-byte CONNECT_REQUEST whose "
         f"version byte (offset 2) is 1, as an old version 1 client sends it: "
         f"`ClientProtocol(name=\"{FRANK.name}\", salt=0x{FRANK.salt:016x}).connect(0.0)` "
         "with byte 2 set to 0x01",
         "the request counts one `bad_version` drop and is answered; the deny's own version "
         "byte is the server's (2)"],
        hunt.to_client(deny_version, frank)))  # frank's client is CONNECTING with that salt

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
        hunt.tick(lose=(ALICE.name,) if tick in ALICE_LOST else ())
    full, full_outcome = hunt.last_snapshot[ALICE.name]

    def input_text(seq: int) -> str:
        tick = sorted(ALICE_INPUTS)[seq - 1]
        mx, my, dig = ALICE_INPUTS[tick]
        return f"`input({mx}, {my}, {dig}, now={tick / TICK_RATE:g})` before tick {tick}"

    vectors.append(Vector(
        "input_1", "INPUT (1 record)", "client to server", sent[1][0],
        ["alice's client right after the CONNECT_ACCEPT vector, no snapshot seen yet: "
         + input_text(1), "her first packet of the session (sequence 1), input seq 1"],
        sent[1][1]))
    vectors.append(Vector(
        "input_3", "INPUT (3 records)", "client to server", sent[3][0],
        ["alice's client, third input: " + input_text(3) + ", after "
         + input_text(1) + ", " + input_text(2) + " and one KEEPALIVE (the next vector); "
         "the newest snapshot it has seen is tick 43",
         "records newest first: input seqs 3, 2, 1"],
        sent[3][1]))
    assert keepalive is not None
    vectors.append(Vector(
        "keepalive", "KEEPALIVE", "client to server", keepalive[0],
        ["alice's client, `poll(now=1.25)`: nothing sent since the input at 0.25 s, "
         "so the 1 s keepalive interval has passed; sequence 3 (after two INPUTs)"],
        keepalive[1]))
    vectors.append(Vector(
        "snapshot_full", "SNAPSHOT (full: players with velocities, treasures, ev, hr)",
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
         "the way, so her input 5 acks tick 49, which has left the server's 8-snapshot ring "
         "(it holds ticks 52..59): the snapshot is full (no \"b\")",
         "treasure values come from the world's seeded RNG",
         "\"p\" lists carol before bob and \"tr\" treasure 2 before 3: the server lists "
         "entities in the order of its grid (cell row, cell column, then id), not by distance",
         "\"ev\" holds the claim of tick 48 (the one of tick 4 is out of the 40-tick window); "
         "\"hr\" because hunt 0 ended at tick 40, fewer than 100 ticks ago; no \"lb\", "
         "although this is alice's 61st snapshot (60 % 20 == 0), because \"hr\" is present"],
        full_outcome))
    quit_packet = alice.disconnect()
    vectors.append(Vector(
        "disconnect_client", "DISCONNECT (client quits)", "client to server", quit_packet,
        [f"alice's client after the snapshot of tick {LAST_TICK}: `disconnect()`; "
         "reason 1 (client quit), sequence one past her last packet"],
        hunt.to_server(quit_packet, ALICE.address)))

    # ---- the solo server: dave alone, erin turned away -------------------------------
    solo = Harness(SOLO_RULES)
    place_treasures(solo.world, {})
    solo.connect(DAVE)
    place(solo.world, 0, DAVE_AT)
    erin = ClientProtocol(name=ERIN.name, salt=ERIN.salt)
    erin_request = erin.connect(0.0)
    solo.to_server(erin_request, ERIN.address)
    (deny_full, _), = solo.replies()
    vectors.append(Vector(
        "connect_deny_full", "CONNECT_DENY (server full)", "server to client", deny_full,
        [f"server: {rules_text.format(p=1)}; dave (slot 0) is connected",
         f"erin's request: `ClientProtocol(name=\"{ERIN.name}\", "
         f"salt=0x{ERIN.salt:016x}).connect(0.0)` (256 bytes) from "
         f"{ERIN.address[0]}:{ERIN.address[1]}"],
        solo.to_client(deny_full, erin)))
    solo.tick()
    solo.tick()
    dave = solo.clients[DAVE.address]
    minimal, minimal_outcome = solo.last_snapshot[DAVE.name]
    vectors.append(Vector(
        "snapshot_minimal", "SNAPSHOT (minimal)", "server to client", minimal,
        ["the solo server (as for CONNECT_DENY, server full): dave, slot 0, put at "
         "(256, 768), every treasure along y = 64 (none within the 96-unit reveal radius)",
         "dave's snapshot of tick 1 (his second: sequence 2); no other player, no treasure "
         "in view, no claim yet, no hunt over yet, and (1 + 0) % 20 != 0 so no \"lb\""],
        minimal_outcome))
    solo.server.shutdown()
    (bye, addr), = solo.replies()
    assert addr == DAVE.address
    vectors.append(Vector(
        "disconnect_server", "DISCONNECT (server shutting down)", "server to client", bye,
        ["the solo server after the minimal SNAPSHOT: `shutdown()`; reason 2 (server "
         "shutdown), sequence one past dave's last snapshot (3)"],
        solo.to_client(bye, dave)))
    erin2 = ClientProtocol(name=ERIN.name, salt=ERIN.salt)
    solo.to_server(erin2.connect(0.0), ERIN.address)
    (deny_down, _), = solo.replies()
    vectors.append(Vector(
        "connect_deny_shutdown", "CONNECT_DENY (shutting down)", "server to client",
        deny_down,
        ["the solo server after `shutdown()` receives erin's request (the same 256 bytes "
         "as for the server-full deny)"],
        solo.to_client(deny_down, erin2)))

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
         "exit radius (563.2)"],
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

    order = ("connect_request", "connect_accept", "connect_deny_full", "connect_deny_version",
             "connect_deny_shutdown", "input_1", "input_3", "keepalive", "disconnect_client",
             "disconnect_server", "snapshot_minimal", "snapshot_full", "snapshot_baseline",
             "snapshot_delta")
    by_key = {v.key: v for v in vectors}
    infos = {ALICE.name: alice.info, DAVE.name: dave.info, GINA.name: gina.info}
    return Generated([by_key[k] for k in order], by_key, infos,
                     {"hunt": hunt.world, "solo": solo.world, "delta": dsv.world},
                     {GINA.name: dict(gina.held)})


# ---- reading bytes at the documented offsets --------------------------------------------

TYPE_NAMES = {1: "CONNECT_REQUEST", 2: "CONNECT_ACCEPT", 3: "CONNECT_DENY", 4: "INPUT",
              5: "SNAPSHOT", 6: "KEEPALIVE", 7: "DISCONNECT"}
DENY_REASONS = {1: "server full", 2: "wrong version", 3: "server shutting down"}
DISCONNECT_REASONS = {1: "client quit", 2: "server shutdown", 3: "timed out", 4: "kicked"}


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


def body_rows(data: bytes) -> list[tuple[int, int, str, str]]:
    """(offset, size, field, value) for the body of a fixed-layout packet."""
    ptype = data[3]
    if ptype == 1:
        n = data[24]
        return [(16, 8, "client salt", f"0x{u(data, 16, 8):016x}"),
                (24, 1, "name length", str(n)),
                (25, 32, "name", json.dumps(data[25:25 + n].decode("utf-8"))
                 + (f" + {32 - n} zero bytes" if n < 32 else "")),
                (57, 199, "padding", "199 zero bytes")]
    if ptype == 2:
        return [(16, 8, "client salt", f"0x{u(data, 16, 8):016x}"),
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
    if ptype == 3:
        return [(16, 8, "client salt", f"0x{u(data, 16, 8):016x}"),
                (24, 1, "reason", f"{data[24]} ({DENY_REASONS.get(data[24], '?')})")]
    if ptype == 4:
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
        return rows
    if ptype == 7:
        return [(16, 1, "reason", f"{data[16]} ({DISCONNECT_REASONS.get(data[16], '?')})")]
    return []


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


def hexdump(data: bytes) -> list[str]:
    lines = [f"{0:04x}  {dump_line(data[:16])}   header"]
    for at in range(16, len(data), 16):
        line = f"{at:04x}  {dump_line(data[at:at + 16])}"
        lines.append(f"{line:<54}   body" if at == 16 else line)
    return lines


def render_vector(n: int, v: Vector) -> list[str]:
    out = [f"### 14.{n} {v.title}", "",
           f"{v.direction.capitalize()}, {len(v.data)} bytes. Produced by:", ""]
    out += [f"- {line}" for line in v.inputs]
    out += ["", "| offset | size | field | value |", "|---:|---:|---|---|"]
    rows = header_rows(v.data) + body_rows(v.data)
    out += [f"| {at} | {size} | {name} | {value} |" for at, size, name, value in rows]
    out += ["", "```text"] + hexdump(v.data) + ["```"]
    if v.data[3] == 5:
        payload = v.data[16:]
        listing = msgpack_listing(payload)
        width = max(len(h) for h, _ in listing) + 2
        out += ["", f"Payload, {len(payload)} bytes of msgpack:", "", "```text"]
        out += [f"{h:<{width}}{c}".rstrip() for h, c in listing] + ["```"]
        decoded = msgpack.unpackb(payload, raw=False)
        out += ["", "Decoded: `" + json.dumps(decoded, separators=(", ", ": ")) + "`"]
    for line in v.after:
        out += ["", line]
    out += ["", "Contiguous:", "", "```hex", v.hex, "```", ""]
    return out


def render(gen: Generated) -> str:
    """The generated part of docs/PROTOCOL.md section 14, between the markers."""
    out = [BEGIN, ""]
    for n, v in enumerate(gen.vectors, start=1):
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
