"""Coverage-guided fuzzing of the protocol's parsers with atheris (libFuzzer for Python).

    python -m profiling.fuzz_atheris [libFuzzer options] [CORPUS_DIR ...]
    python -m profiling.fuzz_atheris --self-test [N]      # no atheris: N random inputs
    python -m profiling.fuzz_atheris --write-corpus DIR   # valid seeds, one file each

Not run in CI (tests/test_net_fuzz.py is the CI fuzzing, with hypothesis, and runs this
file's self-test). profiling/FUZZING.md says how to install atheris and run long sessions.

One fuzz input = a target byte (input[0] % len(TARGETS)) and that target's payload. Every
target checks the invariant of tests/test_net_fuzz.py: the parser returns a result or
counts exactly one drop, never raises, never answers with more bytes than it received,
and keeps its tables consistent. A violation raises AssertionError, which libFuzzer
reports as a crash with the input that caused it.

Coverage: atheris instruments the pure-Python modules of net/ (server, handshake, client,
token, cookie, ...). The numba kernels (net/decode.py, net/horde.py, net/msgpack_in.py,
...) are compiled, so libFuzzer sees no edges inside them: they are fuzzed blind, and the
horde reader's target also checks that bytes past the datagram's end never change its
answer (a read past the end would).
"""

from __future__ import annotations

import copy
import random
import struct
import sys

# atheris instruments the package `net` (include works per top-level package), except
# the modules that define numba kernels: numba cannot compile instrumented bytecode.
INSTRUMENTED_PACKAGE = "net"


def kernel_modules() -> list[str]:
    """The modules of net/ that define numba kernels (left uninstrumented)."""
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent / "net"
    return sorted(f"net.{p.stem}" for p in root.glob("*.py") if "@kernel" in p.read_text())


KEY = bytes(range(32))  # the rig's token key (the tests' NetKit.KEY)
SERVER_ADDRESS = ("192.0.2.1", 7777)
UNIX_S = 1_800_000_000
A = ("10.0.0.1", 4000)  # the live session
P = ("10.0.0.2", 4100)  # a client challenged, its response not yet sent
ADDRESSES = (A, P, ("10.0.0.1", 4001), ("203.0.113.9", 9))
STEP_NS = 60_000_000  # time between two inputs: the rate-limit buckets refill
RIG_INPUTS = 100  # a fresh rig after this many (6 s: within the challenge timeout)


def _load() -> dict:
    """Import the modules under test (called inside atheris.instrument_imports)."""
    import importlib
    names = ["net.server", "net.client", "net.token", "net.cookie", "net.loopback",
             "net.events", "net.drops", "net.sessions", "net.tag", "net.wire", "net.horde",
             "net.msgpack_in", "net.batch", "net.address", "net.limits", "net.security",
             "sim.world", "sim.rules", "numpy"]
    return {name: importlib.import_module(name) for name in names}


class Rig:
    """A small server with one live session (at A) and one client challenged (at P), the
    three client templates, and the counters of the invariant."""

    def __init__(self, m: dict) -> None:
        self.m = m
        rules = m["sim.rules"].GameRules(world_width=512.0, world_height=512.0, max_players=3,
                                         treasure_count=8, cell_size=64.0, seed=1)
        world = m["sim.world"].new_world(rules, 20.0)
        self.proto = m["net.server"].ServerProtocol(
            world, m["net.limits"].NetLimits(), 20.0, random.Random(1), key=KEY,
            address=SERVER_ADDRESS, security=m["net.security"].SecuritySettings(),
            unix_origin_ms=UNIX_S * 1000, cookie_key=bytes(32))
        self.client = self._client("fuzzed", 1, 0xF00D)
        m["net.loopback"].connect_in_memory(self.proto, self.client, A, 0)
        self.proto.world.step()
        self.proto.encode()
        for data, _ in self.proto.snapshots():
            self.client.receive(bytes(data), 0.01)
        self.pending = self._client("pending", 2, 0xBEEF)
        self.proto.receive_datagram(self.pending.connect(0.0), P, 0)
        for data, _ in self.proto.datagrams_to_send():
            self.pending.receive(data, 0.0)
        self.connecting = self._client("connecting", 3, 0xC0)
        self.connecting.connect(0.0)
        assert self.client.state == "connected" and self.pending._response is not None
        self.inputs = 0
        self.now = 0

    def _client(self, name: str, n: int, salt: int):
        token = self.m["net.token"].issue_token(
            KEY, 1000 + n, [SERVER_ADDRESS], name, UNIX_S, 3600, nonce=bytes([n]) * 12,
            c2s_key=bytes([n, 1]) * 8, s2c_key=bytes([n, 2]) * 8)
        return self.m["net.client"].ClientProtocol(token, salt=salt)

    def tick(self) -> int:
        self.inputs += 1
        self.now += STEP_NS
        return self.now

    def worn(self) -> bool:
        """True once the rig should be replaced: old, or its sessions changed."""
        p = self.proto
        return (self.inputs >= RIG_INPUTS or p.connected_count() != 1
                or p.client_id(0) != self.client.token.client_id)

    def check_tables(self) -> None:
        """tests/conftest.py NetKit.check_invariants, for the harness."""
        p = self.proto
        s = self.m["net.sessions"]
        connected = {int(i) for i in (p.sessions[s.S_STATE] == s.CONNECTED).nonzero()[0]}
        assert len(p._free) == len(set(p._free)) and set(p._free).isdisjoint(connected)
        assert len(p._free) + len(connected) == p.capacity
        assert set(p._by_client.values()) == connected == set(range(p.capacity)) - set(p._free)
        assert sum(p._per_ip.values()) == len(connected)
        assert p.world.alive_count() == len(connected)

    def counts(self) -> int:
        p = self.proto
        return int(p.drops.sum()) + int(p.accepted.sum()) + p.gate.challenges

    def feed_server(self, datagrams: list[tuple[bytes, tuple[str, int]]]) -> None:
        """One batch; each datagram is one drop, one accepted packet, one CHALLENGE or one
        session opened (less the known double count of a second DISCONNECT in a batch)."""
        m, p = self.m, self.proto
        batch = m["net.batch"].DatagramBatch.allocate(max(1, len(datagrams)))
        ip_to_int = m["net.address"].ip_to_int
        for data, addr in datagrams:
            batch.put(data, ip_to_int(addr[0]), addr[1])
        before = self.counts()
        disconnects = int(p.accepted[7])
        events = p.receive_batch(batch, self.tick())
        joined = sum(isinstance(e, m["net.events"].PlayerJoined) for e in events)
        quits = sum(isinstance(e, m["net.events"].PlayerLeft) for e in events)
        twice = int(p.accepted[7]) - disconnects - quits
        assert self.counts() - before + joined - twice == len(datagrams), "counted once"
        replies = p.datagrams_to_send()
        assert len(replies) <= len(datagrams)
        if len(datagrams) == 1:
            for reply, _ in replies:
                assert len(reply) <= len(datagrams[0][0]), "amplification"
        self.check_tables()

    def feed_client(self, client, data: bytes) -> None:
        drops = int(client.drops.sum())
        state = client.state
        events = client.receive(data, 0.5)
        counted = int(client.drops.sum()) - drops
        assert isinstance(events, list) and len(events) <= 1
        if counted + len(events) == 0:  # an authentic CHALLENGE, answered
            assert data[3] == 8 and self.m["net.tag"].verify(data, client.token.s2c_key)
        else:
            assert counted + len(events) == 1, "counted once"
        if not events:
            assert client.state == state


# ---- targets: each takes (rig, payload) ---------------------------------------------------

def t_server_raw(rig: Rig, data: bytes) -> None:
    """Any datagram, from one of four addresses (data[0])."""
    if data:
        rig.feed_server([(data[1:], ADDRESSES[data[0] % len(ADDRESSES)])])


def t_server_tagged(rig: Rig, data: bytes) -> None:
    """data[1:] tagged with the right key (the live session's c2s, or the pending client's
    for a CHALLENGE_RESPONSE): the fuzzer gets past the tag to what it protects."""
    if len(data) < 5:
        return
    key = (rig.pending if data[4] == 9 else rig.client).token.c2s_key
    packet = rig.m["net.tag"].sign(data[1:], key)
    rig.feed_server([(packet, ADDRESSES[data[0] % len(ADDRESSES)])])


def t_server_batch(rig: Rig, data: bytes) -> None:
    """Several datagrams in one batch: u8 address | u16 length | bytes, repeated."""
    out, at = [], 0
    while at + 3 <= len(data) and len(out) < 64:
        addr = ADDRESSES[data[at] % len(ADDRESSES)]
        n = int.from_bytes(data[at + 1:at + 3], "little") % 1400
        out.append((data[at + 3:at + 3 + n], addr))
        at += 3 + n
    rig.feed_server(out)


def t_client(rig: Rig, data: bytes) -> None:
    """data[0]: which client (connected, challenged, connecting) and whether data[1:] is
    tagged with its s2c key."""
    if not data:
        return
    who = (rig.client, rig.pending, rig.connecting)[data[0] % 3]
    client = copy.deepcopy(who)
    packet = data[1:]
    if data[0] & 0x80:
        packet = rig.m["net.tag"].sign(packet, client.token.s2c_key)
    rig.feed_client(client, packet)


def t_token_bytes(rig: Rig, data: bytes) -> None:
    token_mod = rig.m["net.token"]
    try:
        token = token_mod.ConnectToken.from_bytes(data)
    except token_mod.TokenError:
        return
    assert token.to_bytes() == data


def t_token_text(rig: Rig, data: bytes) -> None:
    token_mod = rig.m["net.token"]
    try:
        token = token_mod.ConnectToken.from_text(data.decode("utf-8", "surrogateescape"))
    except token_mod.TokenError:
        return
    assert token_mod.ConnectToken.from_text(token.to_text()) == token


def t_token_open(rig: Rig, data: bytes) -> None:
    """expire (i64 LE, so negatives too) | nonce 12 | sealed: the rest (any length)."""
    if len(data) < 20:
        return
    (expire,) = struct.unpack_from("<q", data)
    opened = rig.proto.gate.opener.open(expire, data[8:20], data[20:])
    assert opened is None or isinstance(opened, rig.m["net.token"].PrivateToken)
    rig.proto.gate.opener.open_fields(data)


def t_cookie(rig: Rig, data: bytes) -> None:
    opened = rig.proto.gate.jar.open(data)
    assert opened is None or isinstance(opened, rig.m["net.cookie"].Cookie)


def t_snapshot(rig: Rig, data: bytes) -> None:
    """decode_snapshot of header + data against what the live client holds."""
    client_mod = rig.m["net.client"]
    packet = rig.m["net.wire"].pack_header(5, 1, 1) + data
    snap, lists, why = client_mod.decode_snapshot(packet, 1, rig.client.info, rig.client.held)
    assert (snap is None) == (lists is None) == (why != "")
    assert why in ("", "bad_payload", "no_baseline")


def t_horde(rig: Rig, data: bytes) -> None:
    """net/horde.py parse_snapshot: the bytes after the datagram never change the answer."""
    np, H, M = rig.m["numpy"], rig.m["net.horde"], rig.m["net.msgpack_in"]
    packet = bytes(16) + data[:1184]
    stack = np.zeros(M.SKIP_DEPTH + 1, np.int64)
    answers = []
    for tail in (b"", bytes(64), b"\xff" * 64, b"\x91" * 64):
        row = np.frombuffer(packet + tail, np.uint8).copy()
        out = np.zeros(H.OUT_ROWS, np.int64)
        answers.append((bool(H.parse_snapshot(row, len(packet), stack, out)), out.tolist()))
    assert all(a == answers[0] for a in answers), "read past the end"


TARGETS = (t_server_raw, t_server_tagged, t_server_batch, t_client, t_token_bytes,
           t_token_text, t_token_open, t_cookie, t_snapshot, t_horde)


class Harness:
    def __init__(self, modules: dict) -> None:
        self.m = modules
        self.rig = Rig(modules)

    def one(self, data: bytes) -> None:
        """libFuzzer's TestOneInput."""
        if not data:
            return
        if self.rig.worn():
            self.rig = Rig(self.m)
        TARGETS[data[0] % len(TARGETS)](self.rig, bytes(data[1:]))

    def seeds(self) -> list[bytes]:
        """Valid inputs for every target (the start of a corpus)."""
        rig = Rig(self.m)
        m, c = self.m, rig.client
        wire, tag = m["net.wire"], m["net.tag"]
        sid, ckey, skey = c.info.session_id, c.token.c2s_key, c.token.s2c_key
        index = {t: bytes([i]) for i, t in enumerate(TARGETS)}
        inputs = [  # untagged: t_server_tagged adds the tag
            wire.pack_header(4, sid, 50) + wire.INPUT_PREFIX.pack(1, 1)
            + wire.INPUT_RECORD.pack(9, 1, -1, 1),
            wire.pack_header(6, sid, 51),
            wire.pack_header(7, sid, 52) + bytes([1]),
            rig.pending._response[:-8]]
        request = rig._client("seed", 9, 99).connect(0.0)
        rig.proto.world.step()
        rig.proto.encode()
        snaps = [bytes(d) for d, _ in rig.proto.snapshots()]
        bye = tag.sign(wire.pack_header(7, sid, 10**6) + bytes([2]), skey)
        out = [index[t_server_raw] + b"\x01" + request,
               index[t_server_raw] + b"\x01" + rig.pending._response,
               index[t_server_raw] + b"\x00" + tag.sign(inputs[1], ckey)]
        out += [index[t_server_tagged] + b"\x00" + p for p in inputs[:3]]
        out.append(index[t_server_tagged] + b"\x01" + inputs[3])
        out.append(index[t_server_batch] + b"".join(
            bytes([0]) + len(p).to_bytes(2, "little") + p
            for p in (tag.sign(inputs[0], ckey), tag.sign(inputs[2], ckey), request)))
        out += [index[t_client] + b"\x00" + s for s in snaps + [bye]]
        out += [index[t_client] + b"\x80" + s[:-8] for s in snaps]
        out.append(index[t_token_bytes] + c.token.to_bytes())
        out.append(index[t_token_text] + c.token.to_text().encode())
        out.append(index[t_token_open] + struct.pack("<q", c.token.expire) + c.token.nonce
                   + c.token.sealed)
        out.append(index[t_cookie] + rig.pending._response[24:180])
        out += [index[t_snapshot] + s[16:-8] for s in snaps]
        out += [index[t_horde] + s[16:-8] for s in snaps]
        return out


def self_test(iterations: int = 1000, seed: int = 0) -> int:
    """Run every target on `iterations` inputs made with plain `random` (valid seeds,
    mutated seeds, random bytes): what CI can run without atheris. Returns the count."""
    harness = Harness(_load())
    seeds = harness.seeds()
    for s in seeds:
        harness.one(s)
    rng = random.Random(seed)
    for i in range(iterations):
        base = bytearray(rng.choice(seeds))
        kind = i % 4
        if kind == 0:  # random payload for a target
            base = bytearray(base[:1] + rng.randbytes(rng.randrange(0, 400)))
        else:
            for _ in range(rng.randrange(1, 5)):
                op = rng.randrange(4)
                at = rng.randrange(1, max(2, len(base)))
                if op == 0 and len(base) > 1:
                    base[at % len(base)] ^= 1 << rng.randrange(8)
                elif op == 1 and len(base) > 1:
                    base[at % len(base)] = rng.randrange(256)
                elif op == 2:
                    del base[at:at + rng.randrange(1, 9)]
                else:
                    base[at:at] = rng.randbytes(rng.randrange(1, 9))
        harness.one(bytes(base))
    return iterations


def main(argv: list[str]) -> int:
    if "--self-test" in argv:
        at = argv.index("--self-test")
        n = int(argv[at + 1]) if len(argv) > at + 1 and argv[at + 1].isdigit() else 2000
        self_test(n)
        print(f"self-test: {n} inputs over {len(TARGETS)} targets, invariant held")
        return 0
    if "--write-corpus" in argv:
        from pathlib import Path
        where = Path(argv[argv.index("--write-corpus") + 1])
        where.mkdir(parents=True, exist_ok=True)
        seeds = Harness(_load()).seeds()
        for k, s in enumerate(seeds):
            (where / f"seed-{k:03d}").write_bytes(s)
        print(f"wrote {len(seeds)} seeds to {where}")
        return 0
    try:
        import atheris
    except ImportError:
        print("atheris is not installed: pip install atheris (profiling/FUZZING.md); "
              "--self-test runs the targets without it", file=sys.stderr)
        return 2
    with atheris.instrument_imports(include=[INSTRUMENTED_PACKAGE], exclude=kernel_modules()):
        modules = _load()
    harness = Harness(modules)
    atheris.Setup([sys.argv[0]] + argv, harness.one)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
