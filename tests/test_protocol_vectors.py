"""docs/PROTOCOL.md's test vectors are the code's bytes, and they round-trip.

The vectors are built by tests/protocol_vectors.py through the real client and server. Here:
each one appears verbatim in the document (and the generated section is current); each
client-made packet is accepted by the server with no drop, each server-made packet is
accepted by the reference client; the handshake replayed on a fresh server gives the same
bytes; every layout reads back the scenario's inputs at the document's literal offsets;
the token, the cookie and every packet tag check out with an implementation written here
from the document's text alone (ChaCha20-Poly1305 from `cryptography`, SipHash-2-4 in
plain Python); each SNAPSHOT payload decodes with the standard msgpack library to the
structure of PROTOCOL.md section 7, and the delta vector, applied to the baseline vector by
the algorithm of section 7.6 (written again here), gives the lists the reference client
holds. The documented drop reasons, defaults and size bound are the code's.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import random
import re

import msgpack
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from net import drops as D
from net.client import (HELD_SNAPSHOTS, ClientProtocol, Connected, Denied, Disconnected,
                        Snapshot, parse_snapshot)
from net.events import PlayerAway, PlayerJoined, PlayerLeft, PlayerMoved
from net.handshake import USED_TOKENS_MAX
from net.limits import CLAIM_EVENTS_MAX, OWN_CLAIMS_MAX, NetLimits, worst_snapshot_size
from net.ratelimit import ADDRESS_TABLE_SIZE
from net.security import BURST_SECONDS, MIN_BURST, SecuritySettings
from net.token import ConnectToken
from net.wire import (CHALLENGE_SIZE, CONNECT_DENY_SIZE, CONNECT_REQUEST_SIZE, VERSION,
                      VERSION_DENY_SIZE)
from sim import schema as S
from sim.heat import heat_level
from sim.world import new_world
from tests import protocol_vectors as PV

CLIENT_MADE = ("connect_request", "challenge_response", "input_1", "input_3", "keepalive",
               "disconnect_client")
SNAPSHOTS = ("snapshot_minimal", "snapshot_full", "snapshot_baseline", "snapshot_delta")
DENIES = ("connect_deny_full", "connect_deny_shutdown", "connect_deny_address")
SERVER_MADE = ("challenge", "connect_accept") + DENIES + (
    "connect_deny_version", "disconnect_server") + SNAPSHOTS
PACKETS = CLIENT_MADE + SERVER_MADE
BLOBS = ("token_public", "token_private", "cookie", "siphash_paper", "siphash_tag")
SIZES = {"connect_request": 256, "challenge": 188, "challenge_response": 256,
         "connect_accept": 68, "connect_deny_full": 33, "connect_deny_shutdown": 33,
         "connect_deny_address": 33, "connect_deny_version": 25, "input_1": 37,
         "input_3": 53, "keepalive": 24, "disconnect_client": 25, "disconnect_server": 25,
         "token_public": 272, "token_private": 128, "cookie": 128}
TYPES = {"connect_request": 1, "connect_accept": 2, "connect_deny_full": 3,
         "connect_deny_version": 3, "connect_deny_shutdown": 3, "connect_deny_address": 3,
         "input_1": 4, "input_3": 4, "snapshot_minimal": 5, "snapshot_full": 5,
         "snapshot_baseline": 5, "snapshot_delta": 5, "keepalive": 6, "disconnect_client": 7,
         "disconnect_server": 7, "challenge": 8, "challenge_response": 9}
UNTAGGED = ("connect_request", "connect_deny_version")
# who made each tagged packet for whom: the peer whose token holds the key
PEER_OF = {"challenge_response": PV.ALICE, "input_1": PV.ALICE, "input_3": PV.ALICE,
           "keepalive": PV.ALICE, "disconnect_client": PV.ALICE, "challenge": PV.ALICE,
           "connect_accept": PV.ALICE, "connect_deny_full": PV.ERIN,
           "connect_deny_shutdown": PV.ERIN, "connect_deny_address": PV.OMAR,
           "disconnect_server": PV.DAVE, "snapshot_minimal": PV.DAVE,
           "snapshot_full": PV.ALICE, "snapshot_baseline": PV.GINA,
           "snapshot_delta": PV.GINA}
DENY_CASES = [("connect_deny_full", PV.ERIN, 1), ("connect_deny_shutdown", PV.ERIN, 3),
              ("connect_deny_address", PV.OMAR, 4)]


@pytest.fixture(scope="module")
def gen() -> PV.Generated:
    return PV.generate()


@pytest.fixture(scope="module")
def doc() -> str:
    return PV.DOC.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def prose(doc) -> str:
    """The document with every run of white space made one space (line breaks in prose)."""
    return " ".join(doc.split())


def q(v: float) -> int:
    """PROTOCOL.md 7.3 for the vectors' 1024-unit world."""
    return min(65535, max(0, math.floor(v * 65536 / 1024.0)))


def le(data: bytes, at: int, size: int) -> int:
    return int.from_bytes(data[at:at + size], "little")


def ip_u32(host: str) -> int:
    return int(ipaddress.IPv4Address(host))


def fresh_server(rules=PV.RULES, security=PV.SECURITY):
    return PV.new_server(new_world(rules, PV.TICK_RATE), PV.LIMITS, security)


# ---- the document carries the code's bytes ------------------------------------------------

def test_every_packet_type_and_case_has_a_vector(gen):
    assert [v.key for v in gen.vectors] == list(PV.ORDER)
    assert set(PV.ORDER) == set(PACKETS) | set(BLOBS)
    assert {gen.by_key[k].data[3] for k in PACKETS} == set(range(1, 10))
    reasons = {gen.by_key[k].data[24] for k in PACKETS if TYPES[k] == 3}
    assert reasons == {1, 2, 3, 4}


def test_generation_is_deterministic(gen):
    again = PV.generate()
    assert [(v.key, v.hex) for v in again.vectors] == [(v.key, v.hex) for v in gen.vectors]


@pytest.mark.parametrize("key", PV.ORDER)
def test_vector_appears_verbatim_in_the_document(gen, doc, key):
    hexstr = gen.by_key[key].hex
    assert hexstr == hexstr.lower()
    assert f"```hex\n{hexstr}\n```" in doc, (
        f"{key} is not in docs/PROTOCOL.md: run `python -m tests.protocol_vectors --write`")


def test_generated_section_is_current(gen, doc):
    assert doc.count(PV.BEGIN) == 1 and doc.count(PV.END) == 1
    assert PV.splice(doc, PV.render(gen)) == doc, (
        "docs/PROTOCOL.md section 14 is stale: run `python -m tests.protocol_vectors --write`")


def test_main_prints_the_section(gen, capsys):
    assert PV.main(["protocol_vectors"]) == 0
    assert capsys.readouterr().out == PV.render(gen) + "\n"


def test_section_numbers_in_the_prose_match_the_vectors(doc, prose):
    """The hand-written text names vectors by number; the generator numbers them."""
    for key, title in (("token_public", "Connect token"), ("token_private", "Private connect"),
                       ("connect_request", "CONNECT_REQUEST"), ("challenge", "CHALLENGE\n"),
                       ("cookie", "Challenge cookie"), ("snapshot_baseline", "SNAPSHOT (full, wi"),
                       ("snapshot_delta", "SNAPSHOT (delta"), ("siphash_paper", "SipHash-2-4: the p"),
                       ("siphash_tag", "SipHash-2-4: the t")):
        assert f"### {PV.ref(key)} {title}" in doc, key
    delta, base = PV.ref("snapshot_delta"), PV.ref("snapshot_baseline")
    assert f"the delta of {delta}, applied to the lists of {base}" in prose
    assert f"The snapshot of the test vector {delta}, applied to the lists of {base}" in prose
    assert f"the lists it holds after {base}, exactly the lists given under {delta}" in prose
    assert f"the SipHash values of {PV.ref('siphash_paper')} and {PV.ref('siphash_tag')}" \
        in prose
    assert f"CONNECT_REQUEST (from the token of {PV.ref('token_public')})" in prose
    assert f"CHALLENGE_RESPONSE (from the CHALLENGE of {PV.ref('challenge')})" in prose
    assert f"check its sealing against {PV.ref('token_private')}" in prose
    assert f"of the cookie ({PV.ref('cookie')})" in prose


def test_drop_reasons_table_matches_the_code(doc):
    appendix = doc[doc.index("## Appendix A"):doc.index("## Appendix B")]
    rows = re.findall(r"^\| (\d+) \| `([a-z_]+)` \| .+ \|$", appendix, re.M)
    assert [(int(i), name) for i, name in rows] == list(enumerate(D.REASONS))


def test_documented_snapshot_bound_matches_the_code(doc):
    limits = NetLimits()
    assert (limits.max_visible_players, limits.max_visible_treasures) == (32, 16)
    bound = worst_snapshot_size(limits.max_visible_players, limits.max_visible_treasures)
    assert bound == 1176
    assert f"bound(32, 16) = {bound} bytes" in doc
    assert "bound(P, T) = 456 + 17 * P + 11 * T" in doc
    for p, t in ((0, 0), (1, 0), (0, 1), (32, 16), (33, 16), (120, 32)):
        assert worst_snapshot_size(p, t) == 456 + 17 * p + 11 * t
    assert worst_snapshot_size(33, 16) <= 1200 < worst_snapshot_size(34, 16)
    assert "(so P ≤ 33 with T = 16)" in " ".join(doc.split())
    # the itemized sum of 7.5, term by term: the "ev" and "my" caps are the code's
    assert (CLAIM_EVENTS_MAX, OWN_CLAIMS_MAX) == (12, 4)
    ev, my = 3 + 3 + 12 * CLAIM_EVENTS_MAX, 3 + 3 + 10 * OWN_CLAIMS_MAX
    assert (ev, my) == (150, 46)
    assert ("(16 header + 8 tag + 1 map + 8 `t` + 8 `a` + 8 `b` + 14 `h` + 22 `me` + "
            "(24 + 17P) `pm` `pv` `pr` `pn` + (12 + 11T) `tx` `tn` + 150 `ev` + 46 `my` + "
            "139 `hr`)") in " ".join(doc.split())
    assert 16 + 8 + 1 + 8 + 8 + 8 + 14 + 22 + 24 + 12 + ev + my + 139 == 456


def test_documented_defaults_match_the_code(doc, prose):
    limits = NetLimits()
    assert "| max visible players / treasures | 32 / 16 |" in doc
    assert f"| snapshot ring | {limits.snapshot_ring} snapshots |" in doc
    assert f"| area-of-interest hysteresis | {limits.aoi_hysteresis:g} |" in doc
    assert f"| delta tolerance | {limits.delta_tolerance:g} units |" in doc
    assert f"| reconnect grace (`reconnect_grace`) | {limits.reconnect_grace:g} s |" in doc
    assert limits.reconnect_grace == 30.0 and "(default 30 s)" in prose
    assert f"hold the last {HELD_SNAPSHOTS} snapshots" in prose
    client = ClientProtocol(PV.ALICE.token(), salt=1)
    assert (client.resend_interval, client.connect_timeout, client.keepalive_interval) == (
        0.25, 5.0, 1.0)
    assert ("Timers (reference values): resend interval 0.25 s, connect timeout 5 s, "
            "keepalive interval 1 s") in prose
    assert ("(The server's cookies stay valid for `challenge_timeout`, 10 s by default: "
            "longer than a client's whole attempt.)") in prose
    assert client.connect_timeout < SecuritySettings().challenge_timeout


def test_documented_security_settings_match_the_code(doc, prose):
    s = SecuritySettings()
    expected = {
        "key_file": f"`{s.key_file}`",
        "public_address": '`""`',
        "connect_rate": f"{s.connect_rate:g} packets/s",
        "connect_rate_per_address": f"{s.connect_rate_per_address:g} packets/s",
        "packet_rate": f"{s.packet_rate:g} packets/s",
        "max_sessions_per_address": f"{s.max_sessions_per_address}",
        "challenge_timeout": f"{s.challenge_timeout:g} s",
        "move_after_silence": f"{s.move_after_silence:g} s",
    }
    assert set(expected) == {f.name for f in dataclasses.fields(SecuritySettings)}
    appendix = doc[doc.index("## Appendix B"):]
    for name, value in expected.items():
        assert f"| `{name}` | {value} |" in appendix, name
    assert (BURST_SECONDS, MIN_BURST) == (0.25, 8.0)
    assert "max(8, rate × 0.25)" in prose
    assert f"a table of {ADDRESS_TABLE_SIZE} entries" in prose
    assert f"for at most {USED_TOKENS_MAX} tokens" in prose


def test_documented_sizes_match_the_code(doc, prose):
    for row in ("| 1 | CONNECT_REQUEST | client to server | 256 | none |",
                "| 2 | CONNECT_ACCEPT | server to client | 68 | s2c |",
                "| 3 | CONNECT_DENY | server to client | 33 (25: the wrong-version answer) |",
                "| 4 | INPUT | client to server | 29 + 8 × n, n = 1..4 (37, 45, 53 or 61) | c2s |",
                "| 5 | SNAPSHOT | server to client | 16 + payload + 8, at most 1200 | s2c |",
                "| 6 | KEEPALIVE | client to server | 24 | c2s |",
                "| 7 | DISCONNECT | both | 25 | the sender's: c2s or s2c |",
                "| 8 | CHALLENGE | server to client | 188 | s2c |",
                "| 9 | CHALLENGE_RESPONSE | client to server | 256 | c2s |"):
        assert row in doc, row
    # amplification: every reply to an address not yet proven is at most the request
    assert VERSION == 4 and CONNECT_REQUEST_SIZE == 256
    assert (CHALLENGE_SIZE, CONNECT_DENY_SIZE, VERSION_DENY_SIZE) == (188, 33, 25)
    assert ("CHALLENGE (188 bytes), CONNECT_DENY (33 bytes) and the wrong-version "
            "CONNECT_DENY (25 bytes)") in prose


# ---- layout: the documented offsets read back the scenario's inputs ------------------------

@pytest.mark.parametrize("key", PACKETS)
def test_header(gen, key):
    data = gen.by_key[key].data
    assert data[0:2] == b"\x58\x4d" and data[2] == 4 and data[3] == TYPES[key]
    assert data[4:8] == bytes(4)
    assert len(data) == SIZES.get(key, len(data)) and len(data) <= 1200
    if TYPES[key] in (1, 3, 8, 9):
        assert le(data, 8, 4) == 0
    if TYPES[key] in (1, 2, 3, 8, 9):
        assert le(data, 12, 4) == 0


def test_public_token_layout(gen):
    data = gen.by_key["token_public"].data
    assert len(data) == 272 and data[0:8] == b"XMTOKEN3"
    assert le(data, 8, 8) == PV.UNIX_S and le(data, 16, 8) == PV.UNIX_S + PV.TOKEN_LIFETIME
    assert data[24:36] == PV.ALICE.nonce
    assert data[36:180] == gen.by_key["connect_request"].data[44:188]
    assert le(data, 180, 8) == PV.ALICE.client_id
    assert data[188:204] == PV.ALICE.c2s and data[204:220] == PV.ALICE.s2c
    assert data[220] == 2
    assert (le(data, 221, 4), le(data, 225, 2)) == (ip_u32("198.51.100.7"), 7777)
    assert (le(data, 227, 4), le(data, 231, 2)) == (ip_u32("203.0.113.5"), 7777)
    assert data[227:231] == bytes([5, 113, 0, 203])  # the integer little-endian
    assert data[233:272] == bytes(39)


def test_token_text_form(gen, doc):
    data = gen.by_key["token_public"].data
    text = ConnectToken.from_bytes(data).to_text()
    assert len(text) == 363 and "=" not in text
    assert f"```text\n{text}\n```" in doc
    assert ConnectToken.from_text(text).to_bytes() == data


def test_private_token_layout(gen):
    data = gen.by_key["token_private"].data
    public = gen.by_key["token_public"].data
    assert len(data) == 128
    assert data[0:8] == public[180:188]
    assert data[8:40] == public[188:220]
    assert data[40:89] == public[220:269]
    assert data[89] == 5 and data[90:95] == b"alice" and data[95:128] == bytes(33)


def test_connect_request_layout(gen):
    data = gen.by_key["connect_request"].data
    public = gen.by_key["token_public"].data
    assert le(data, 16, 8) == PV.ALICE.salt
    assert data[24:32] == public[16:24]
    assert data[32:44] == public[24:36]
    assert data[44:188] == public[36:180]
    assert data[188:256] == bytes(68)


def test_challenge_and_response_layout(gen):
    challenge = gen.by_key["challenge"].data
    response = gen.by_key["challenge_response"].data
    assert le(challenge, 16, 8) == PV.ALICE.salt
    assert challenge[24:36] == (1).to_bytes(8, "little") + bytes(4)  # the first cookie
    assert le(response, 16, 8) == PV.ALICE.salt
    assert response[24:180] == challenge[24:180]
    assert response[180:248] == bytes(68)


def test_cookie_layout(gen):
    data = gen.by_key["cookie"].data
    public = gen.by_key["token_public"].data
    assert le(data, 0, 8) == PV.ALICE.client_id and le(data, 8, 8) == PV.ALICE.salt
    assert le(data, 16, 4) == ip_u32(PV.ALICE.address[0])
    assert le(data, 20, 2) == PV.ALICE.address[1] and data[22:24] == bytes(2)
    assert le(data, 24, 8) == PV.UNIX_ORIGIN_MS  # issued at now = 0
    assert data[32:40] == public[16:24]
    assert data[40:72] == public[188:220]
    assert data[72:88] == public[164:180]  # the token id: the sealed token's Poly1305 tag
    assert data[88] == 5 and data[89:94] == b"alice" and data[94:128] == bytes(34)


def test_connect_accept_layout(gen):
    data = gen.by_key["connect_accept"].data
    sid = le(data, 8, 4)
    assert sid & 0xFFFF == 0 and 1 <= sid >> 16 <= 65535
    assert sid >> 16 == random.Random(PV.NONCE_SEED).randrange(1, 65536)
    assert le(data, 16, 8) == PV.ALICE.salt
    assert le(data, 24, 2) == 0 and le(data, 26, 2) == 20 and le(data, 28, 2) == 20
    assert le(data, 30, 2) == 0
    assert data[32:48] == bytes.fromhex("00008044" "00008044" "0000c041" "0000c042")  # f32
    assert le(data, 48, 4) == 5 and le(data, 52, 4) == 0 and le(data, 56, 4) == 5000


@pytest.mark.parametrize("key, peer, reason", DENY_CASES + [("connect_deny_version",
                                                             PV.FRANK, 2)])
def test_connect_deny_layout(gen, key, peer, reason):
    data = gen.by_key[key].data
    assert le(data, 16, 8) == peer.salt and data[24] == reason
    assert len(data) == (25 if reason == 2 else 33)


def test_input_layout(gen):
    sid = le(gen.by_key["connect_accept"].data, 8, 4)
    one = gen.by_key["input_1"].data
    assert le(one, 8, 4) == sid and le(one, 12, 4) == 1
    assert le(one, 16, 4) == 0 and one[20] == 1
    assert (le(one, 21, 4), one[25], one[26], one[27], one[28]) == (1, 13, 0xF9, 1, 0)
    three = gen.by_key["input_3"].data
    assert le(three, 12, 4) == 4 and le(three, 16, 4) == 39 and three[20] == 3
    ticks = sorted(PV.ALICE_INPUTS)
    for k in range(3):  # newest first
        at = 21 + 8 * k
        mx, my, dig = PV.ALICE_INPUTS[ticks[2 - k]]
        assert le(three, at, 4) == 3 - k
        assert int.from_bytes(three[at + 4:at + 5], "little", signed=True) == mx
        assert int.from_bytes(three[at + 5:at + 6], "little", signed=True) == my
        assert three[at + 6] == (1 if dig else 0) and three[at + 7] == 0


def test_keepalive_and_disconnect_layout(gen):
    sid = le(gen.by_key["connect_accept"].data, 8, 4)
    keepalive = gen.by_key["keepalive"].data
    assert le(keepalive, 8, 4) == sid and le(keepalive, 12, 4) == 3
    quit_ = gen.by_key["disconnect_client"].data
    assert le(quit_, 8, 4) == sid and le(quit_, 12, 4) == 7 and quit_[16] == 1
    bye = gen.by_key["disconnect_server"].data
    assert le(bye, 12, 4) == 3 and bye[16] == 2


# ---- the document's cryptography, implemented again from its text ---------------------------

M64 = (1 << 64) - 1


def siphash_by_the_document(key: bytes, message: bytes) -> int:
    """PROTOCOL.md 6.10 ("Keys and the tag"): SipHash-2-4, as a u64."""
    def rotl(x, b):
        return ((x << b) | (x >> (64 - b))) & M64

    def sipround(v):
        v[0] = (v[0] + v[1]) & M64
        v[1] = rotl(v[1], 13) ^ v[0]
        v[0] = rotl(v[0], 32)
        v[2] = (v[2] + v[3]) & M64
        v[3] = rotl(v[3], 16) ^ v[2]
        v[0] = (v[0] + v[3]) & M64
        v[3] = rotl(v[3], 21) ^ v[0]
        v[2] = (v[2] + v[1]) & M64
        v[1] = rotl(v[1], 17) ^ v[2]
        v[2] = rotl(v[2], 32)

    k0 = int.from_bytes(key[0:8], "little")
    k1 = int.from_bytes(key[8:16], "little")
    v = [k0 ^ 0x736F6D6570736575, k1 ^ 0x646F72616E646F6D,
         k0 ^ 0x6C7967656E657261, k1 ^ 0x7465646279746573]
    n = len(message)
    blocks = [message[i:i + 8] for i in range(0, n - n % 8, 8)]
    blocks.append(message[n - n % 8:] + bytes(7 - n % 8) + bytes([n % 256]))
    for block in blocks:
        m = int.from_bytes(block, "little")
        v[3] ^= m
        sipround(v)
        sipround(v)
        v[0] ^= m
    v[2] ^= 0xFF
    for _ in range(4):
        sipround(v)
    return v[0] ^ v[1] ^ v[2] ^ v[3]


def doc_hex(doc: str, label: str) -> bytes:
    """The hex value of the 14.1 row that starts with `label`."""
    m = re.search(r"^\| " + re.escape(label) + r".*\| `([0-9a-f]+)` \|$", doc, re.M)
    assert m, label
    return bytes.fromhex(m.group(1))


def test_siphash_paper_vector():
    assert siphash_by_the_document(bytes(range(16)), bytes(range(15))) == 0xA129CA6149BE45E5


@pytest.mark.parametrize("key", PACKETS)
def test_tags_check_out_by_the_document(gen, key):
    data = gen.by_key[key].data
    if key in UNTAGGED:
        return
    peer = PEER_OF[key]
    c2s = TYPES[key] in (4, 6, 9) or key == "disconnect_client"
    secret = peer.c2s if c2s else peer.s2c
    tag = siphash_by_the_document(secret, data[:-8]).to_bytes(8, "little")
    assert data[-8:] == tag
    other = peer.s2c if c2s else peer.c2s
    assert siphash_by_the_document(other, data[:-8]).to_bytes(8, "little") != tag


def test_siphash_tag_vector_is_the_input_tag(gen):
    one = gen.by_key["input_1"].data
    v = gen.by_key["siphash_tag"]
    assert v.data == one[:29] and v.sip_key == gen.by_key["token_public"].data[188:204]
    assert siphash_by_the_document(v.sip_key, v.data).to_bytes(8, "little") == one[29:37]


def token_ad_by_the_document(expire_bytes: bytes) -> bytes:
    return b"xmarks token" + b"\x58\x4d" + b"\x04" + expire_bytes


def test_token_opens_by_the_document(gen, doc):
    key = doc_hex(doc, "token key")
    assert key == PV.TOKEN_KEY
    public = gen.by_key["token_public"].data
    plain = gen.by_key["token_private"].data
    aead = ChaCha20Poly1305(key)
    assert aead.decrypt(public[24:36], public[36:180],
                        token_ad_by_the_document(public[16:24])) == plain
    request = gen.by_key["connect_request"].data  # what the server has: the same fields
    assert aead.decrypt(request[32:44], request[44:188],
                        token_ad_by_the_document(request[24:32])) == plain
    assert aead.encrypt(public[24:36], plain, token_ad_by_the_document(public[16:24])) == \
        public[36:180]
    with pytest.raises(InvalidTag):  # the version is authenticated: a v3 token's seal
        aead.decrypt(public[24:36], public[36:180],
                     b"xmarks token\x58\x4d\x03" + public[16:24])
    with pytest.raises(InvalidTag):  # and so is the expiry
        aead.decrypt(public[24:36], public[36:180],
                     token_ad_by_the_document((le(public, 16, 8) + 1).to_bytes(8, "little")))


def test_cookie_opens_by_the_document(gen, doc):
    key = doc_hex(doc, "cookie key")
    challenge = gen.by_key["challenge"].data
    plain = ChaCha20Poly1305(key).decrypt(challenge[24:36], challenge[36:180],
                                          b"xmarks cookie")
    assert plain == gen.by_key["cookie"].data


def test_peer_keys_are_documented(doc):
    for p in PV.PEERS:
        assert f"`{p.nonce.hex()}` | `{p.c2s.hex()}` | `{p.s2c.hex()}` |" in doc, p.name


# ---- round trips ---------------------------------------------------------------------------

@pytest.mark.parametrize("key", ("input_1", "input_3", "keepalive", "disconnect_client"))
def test_session_packets_are_accepted_by_the_server(gen, key):
    v = gen.by_key[key]
    assert v.outcome is not None
    assert v.outcome.drops == {}
    assert v.outcome.accepted == {TYPES[key]: 1}


def test_handshake_packets_are_answered_by_the_server(gen):
    request = gen.by_key["connect_request"].outcome
    assert request.drops == {} and request.events == []
    assert request.replies == [gen.by_key["challenge"].data]
    response = gen.by_key["challenge_response"].outcome
    assert response.drops == {}
    assert [type(e) for e in response.events] == [PlayerJoined]
    assert response.replies == [gen.by_key["connect_accept"].data]


def test_handshake_on_a_fresh_server_gives_the_vectors(gen):
    server = fresh_server()
    addr = PV.ALICE.address
    assert server.receive_datagram(gen.by_key["connect_request"].data, addr, 0) == []
    assert server.datagrams_to_send() == [(gen.by_key["challenge"].data, addr)]
    assert server.connected_count() == 0  # nothing kept before the address is proven
    events = server.receive_datagram(gen.by_key["challenge_response"].data, addr, 0)
    assert [type(e) for e in events] == [PlayerJoined]
    assert server.datagrams_to_send() == [(gen.by_key["connect_accept"].data, addr)]
    assert D.drops_by_reason(server.drops) == {}
    assert server.client_id(0) == PV.ALICE.client_id


def test_response_from_another_address_is_dropped(gen):
    server = fresh_server()
    server.receive_datagram(gen.by_key["connect_request"].data, PV.ALICE.address, 0)
    server.datagrams_to_send()
    server.receive_datagram(gen.by_key["challenge_response"].data, PV.BOB.address, 0)
    assert D.drops_by_reason(server.drops) == {"wrong_address": 1}
    assert server.datagrams_to_send() == [] and server.connected_count() == 0


def test_wrong_version_request_is_the_only_answered_drop(gen):
    server = fresh_server()
    request = PV.v2_request(PV.FRANK)
    server.receive_datagram(request, PV.FRANK.address, 0)
    assert D.drops_by_reason(server.drops) == {"bad_version": 1}
    assert server.datagrams_to_send() == [(gen.by_key["connect_deny_version"].data,
                                           PV.FRANK.address)]
    server.receive_datagram(request[:255], PV.FRANK.address, 0)  # not 256 bytes
    assert server.datagrams_to_send() == []


def test_client_disconnect_ends_the_session(gen):
    events = gen.by_key["disconnect_client"].outcome.events
    assert events == [PlayerLeft(0, PV.ALICE.name, "quit", PV.ALICE.address)]


@pytest.mark.parametrize("key", SERVER_MADE)
def test_server_packets_are_accepted_by_the_reference_client(gen, key):
    v = gen.by_key[key]
    assert v.outcome is not None
    if key == "connect_deny_version":  # only a client of another version could use it
        assert v.outcome.drops == {"bad_length": 1} and v.outcome.events == []
        return
    assert v.outcome.drops == {}
    if key == "challenge":  # answered by the next poll, no event
        assert v.outcome.events == []
        return
    (event,) = v.outcome.events
    expected = {"connect_accept": Connected, "connect_deny_full": Denied,
                "connect_deny_shutdown": Denied, "connect_deny_address": Denied,
                "disconnect_server": Disconnected, "snapshot_minimal": Snapshot,
                "snapshot_full": Snapshot, "snapshot_baseline": Snapshot,
                "snapshot_delta": Snapshot}[key]
    assert isinstance(event, expected)


def test_challenge_in_a_fresh_client_gives_the_response(gen):
    client = PV.ALICE.client()
    assert client.connect(0.0) == gen.by_key["connect_request"].data
    assert client.receive(gen.by_key["challenge"].data, 0.0) == []
    assert D.drops_by_reason(client.drops) == {}
    out, events = client.poll(0.0)
    assert out == [gen.by_key["challenge_response"].data] and events == []
    out, _ = client.poll(0.25)  # resent instead of the request
    assert out == [gen.by_key["challenge_response"].data]


def test_accept_parses_in_a_fresh_client(gen):
    data = gen.by_key["connect_accept"].data
    client = PV.ALICE.client()
    client.connect(0.0)
    (event,) = client.receive(data, 0.0)
    info = event.info
    assert (info.slot, info.session_id, info.tick_rate, info.snapshot_rate) == (
        0, le(data, 8, 4), 20, 20)
    assert (info.world_width, info.world_height, info.dig_radius, info.reveal_radius) == (
        1024.0, 1024.0, 24.0, 96.0)
    assert (info.dig_ticks, info.server_tick, info.session_timeout) == (5, 0, 5.0)
    assert info == gen.infos[PV.ALICE.name]


@pytest.mark.parametrize("key, peer, reason", DENY_CASES)
def test_deny_parses_in_a_fresh_client(gen, key, peer, reason):
    client = peer.client()
    client.connect(0.0)
    assert client.receive(gen.by_key[key].data, 0.0) == [Denied(reason)]
    assert client.state == "denied"


@pytest.mark.parametrize("key, peer, reason", DENY_CASES)
def test_deny_under_another_key_is_dropped(gen, key, peer, reason):
    """A deny is tagged with the s2c key of the token it answers: nobody who lacks it can
    turn a client away."""
    client = PV.Peer(peer.name + "x", peer.salt, peer.address, peer.client_id).client()
    client.connect(0.0)
    assert client.receive(gen.by_key[key].data, 0.0) == []
    assert D.drops_by_reason(client.drops) == {"bad_tag": 1}


def test_server_disconnect_closes_the_client(gen):
    assert gen.by_key["disconnect_server"].outcome.events == [Disconnected("server", 2)]


def test_a_flipped_bit_fails_the_tag(gen):
    server = fresh_server()
    addr = PV.ALICE.address
    server.receive_datagram(gen.by_key["connect_request"].data, addr, 0)
    server.datagrams_to_send()
    server.receive_datagram(gen.by_key["challenge_response"].data, addr, 0)
    server.datagrams_to_send()
    bad = bytearray(gen.by_key["input_1"].data)
    bad[25] ^= 0x01  # move x
    server.receive_datagram(bytes(bad), addr, 0)
    assert D.drops_by_reason(server.drops) == {"bad_tag": 1}
    server.receive_datagram(gen.by_key["input_1"].data, addr, 0)
    server.receive_datagram(gen.by_key["input_1"].data, addr, 0)  # a replay
    assert D.drops_by_reason(server.drops) == {"bad_tag": 1, "replayed": 1}


def keepalive_by_the_document(sid: int, seq: int, c2s: bytes) -> bytes:
    """A KEEPALIVE made from sections 4, 6.7 and 6.10 alone: header, then its tag."""
    head = (b"\x58\x4d\x04\x06" + bytes(4) + sid.to_bytes(4, "little")
            + seq.to_bytes(4, "little"))
    return head + siphash_by_the_document(c2s, head).to_bytes(8, "little")


def take_drops(server) -> dict[str, int]:
    """The server's drops since the last call."""
    got = D.drops_by_reason(server.drops)
    server.drops[:] = 0
    return got


def test_packets_from_another_address_go_through_the_documented_checks(gen):
    """PROTOCOL.md 9.1, checks 9 to 12, for session packets from another address or port:
    sequence and replay first, then the tag (a bad one counts as wrong_address), then a
    move only for a packet newer than any before, once the session's address has been
    silent for move_after_silence; snapshots follow the session."""
    server = fresh_server()
    home = PV.ALICE.address
    elsewhere = (home[0], home[1] + 1)  # the same host, another port: a NAT rebinding
    server.receive_datagram(gen.by_key["connect_request"].data, home, 0)
    server.receive_datagram(gen.by_key["challenge_response"].data, home, 0)
    server.datagrams_to_send()
    sid = le(gen.by_key["connect_accept"].data, 8, 4)
    one, keep, three = (gen.by_key[k].data for k in ("input_1", "keepalive", "input_3"))
    assert [le(x, 12, 4) for x in (one, keep, three)] == [1, 3, 4]  # sequences
    silence = int(SecuritySettings().move_after_silence * 1e9)
    assert silence == 250_000_000
    server.receive_datagram(keepalive_by_the_document(sid, 0, PV.ALICE.c2s), elsewhere, 0)
    assert take_drops(server) == {"stale_sequence": 1}  # check 9, from any address
    forged = bytearray(one)
    forged[-1] ^= 1
    server.receive_datagram(bytes(forged), elsewhere, silence)
    assert take_drops(server) == {"wrong_address": 1}  # check 11 from elsewhere
    server.receive_datagram(bytes(forged), home, silence)
    assert take_drops(server) == {"bad_tag": 1}  # check 11 from home
    # check 12: authentic and newer, but home was heard from (the session opened) at 0
    assert server.receive_datagram(one, elsewhere, silence - 1) == []
    assert take_drops(server) == {"wrong_address": 1}
    assert server.receive_datagram(one, home, silence) == [] and take_drops(server) == {}
    server.receive_datagram(one, elsewhere, silence + 1)
    assert take_drops(server) == {"replayed": 1}  # check 10 comes before the address
    # newer than any before, home silent for move_after_silence: the session moves
    assert server.receive_datagram(keep, elsewhere, 2 * silence) == [
        PlayerMoved(0, PV.ALICE.name, home, elsewhere)]
    assert take_drops(server) == {}
    server.world.step()
    server.encode()
    assert [to for _, to in server.snapshots()] == [elsewhere]
    # home is now the other address: refused while elsewhere talks, then it moves back
    server.receive_datagram(three, home, 3 * silence - 1)
    assert take_drops(server) == {"wrong_address": 1}
    assert server.receive_datagram(three, home, 3 * silence) == [
        PlayerMoved(0, PV.ALICE.name, elsewhere, home)]
    # a late packet (in the window, never seen) from elsewhere never moves it back
    late = keepalive_by_the_document(sid, 2, PV.ALICE.c2s)
    server.receive_datagram(late, elsewhere, 10 * silence)
    assert take_drops(server) == {"wrong_address": 1}
    assert server.receive_datagram(late, home, 10 * silence) == [] and take_drops(server) == {}
    assert server.accepted[6] == 2  # both KEEPALIVEs of sequences 3 and 2


def connect_now(server, peer: PV.Peer, addr, now: int) -> tuple[ClientProtocol, list]:
    """peer's whole handshake from addr at now (ns), as 9.2 says; (client, server events)."""
    client = peer.client()
    events = server.receive_datagram(client.connect(now / 1e9), addr, now)
    for reply, to in server.datagrams_to_send():
        assert to == addr
        client.receive(reply, now / 1e9)
    out, _ = client.poll(now / 1e9)
    for data in out:
        events += server.receive_datagram(data, addr, now)
    for reply, to in server.datagrams_to_send():
        assert to == addr
        client.receive(reply, now / 1e9)
    return client, events


def test_a_timed_out_player_waits_for_its_client_as_documented(gen):
    """PROTOCOL.md 9.2 (R5, R7, C9), 9.5, 11.1 and 11.2: a session that times out leaves its
    player waiting for reconnect_grace; the slot is kept (others are turned away as full,
    not the waiting client); the same client id takes it back, with a token only from the
    address and port the token first came from; the new session's inputs count from 1."""
    server = fresh_server(PV.SOLO_RULES)  # one slot
    home = PV.DAVE.address
    dave, events = connect_now(server, PV.DAVE, home, 0)
    assert dave.state == "connected" and [type(e) for e in events] == [PlayerJoined]
    server.world.pi[S.P_SCORE, 0] = 9
    server.world.pf[S.PX, 0] = 300.0
    timeout = int(PV.LIMITS.session_timeout * 1e9)
    grace = int(PV.LIMITS.reconnect_grace * 1e9)
    assert server.expire(timeout) == []
    assert server.expire(timeout + 1) == [PlayerAway(0, PV.DAVE.name, home)]
    ((bye, to),) = server.datagrams_to_send()
    assert to == home and bye[3] == 7 and bye[16] == 3  # DISCONNECT reason 3 (timed out)
    assert server.world.alive_count() == 1 and server.connected_count() == 0
    server.receive_datagram(dave.input(1, 0, False, 5.1), home, timeout + 2)
    assert take_drops(server) == {"unknown_session": 1}  # the session is over
    erin, _ = connect_now(server, PV.ERIN, PV.ERIN.address, timeout + 3)
    assert erin.state == "denied" and take_drops(server) == {"server_full": 1}
    # dave again, with the same token: from another port it is token_reused (R5)
    moved = (home[0], home[1] + 1)
    again, events = connect_now(server, PV.DAVE, moved, timeout + 4)
    assert again.state == "connecting" and events == []
    assert take_drops(server) == {"token_reused": 1}
    back, events = connect_now(server, PV.DAVE, home, timeout + 5)
    assert back.state == "connected" and back.info.slot == 0
    assert back.info.session_id != dave.info.session_id
    (joined,) = events
    assert isinstance(joined, PlayerJoined) and joined.resumed and joined.slot == 0
    assert int(server.world.pi[S.P_SCORE, 0]) == 9 and float(server.world.pf[S.PX, 0]) == 300.0
    first = back.input(-127, 0, True, 5.2)
    assert le(first, 12, 4) == 1 and le(first, 21, 4) == 1  # sequence and input seq 1
    assert server.receive_datagram(first, home, timeout + 6) == []
    assert take_drops(server) == {}
    assert int(server.world.pi[S.P_MOVE_X, 0]) == -127  # applied: the held seq was reset
    # times out again, and nobody comes back: the player leaves when the grace is over
    later = timeout + 6 + timeout + 1
    assert server.expire(later) == [PlayerAway(0, PV.DAVE.name, home)]
    server.datagrams_to_send()
    assert int(server.world.pi[S.P_MOVE_X, 0]) == 0  # it stands still while it waits
    end = timeout + 6 + timeout + grace
    assert server.expire(end) == []
    assert server.expire(end + 1) == [PlayerLeft(0, PV.DAVE.name, "timed_out", None)]
    assert server.world.alive_count() == 0 and server.datagrams_to_send() == []


# ---- SNAPSHOT payloads ---------------------------------------------------------------------

def payload(gen, key) -> dict:
    return msgpack.unpackb(gen.by_key[key].data[16:-8], raw=False)


FULL_ORDER = ["t", "a", "h", "me", "p", "tr", "ev", "my", "lb", "hr"]
DELTA_ORDER = ["t", "a", "b", "h", "me", "pm", "pv", "pr", "pn", "tx", "tn", "ev", "my", "lb",
               "hr"]
GROUPS = {"h": 2, "me": 6, "p": 5, "tr": 4, "ev": 4, "my": 4, "lb": 2, "pm": 3, "pv": 5,
          "pr": 1, "pn": 5, "tx": 1, "tn": 4}
SIGNED = {"p": (3, 4), "pm": (1, 2), "pv": (1, 2, 3, 4), "pn": (3, 4)}  # positions in a row


@pytest.mark.parametrize("key", SNAPSHOTS)
def test_snapshot_payload_is_plain_msgpack(gen, key):
    data = gen.by_key[key].data
    m = payload(gen, key)
    assert msgpack.packb(m) == data[16:-8]  # smallest forms, documented key order
    order = DELTA_ORDER if "b" in m else FULL_ORDER
    assert list(m) == [k for k in order if k in m]
    always = order[:5] if "b" in m else order[:6]  # t, a, (b,) h, me, (p, tr)
    assert list(m)[:len(always)] == always
    assert not ("lb" in m and "hr" in m)
    for k, value in m.items():
        items = value if isinstance(value, list) else [value]
        assert all(type(x) is int for x in items)
        g = GROUPS.get(k, 1)
        if k != "hr":
            assert len(items) % g == 0
        for i, x in enumerate(items):
            assert x >= 0 or i % g in SIGNED.get(k, ()), (k, i, x)
    assert len(m["h"]) == 2 and len(m["me"]) == 6
    if "hr" in m:
        assert len(m["hr"]) % 2 == 1
    if "my" in m:  # PROTOCOL.md 7.4: at most 4 rows, oldest first, confirmed 0 or 1
        rows = [tuple(m["my"][i:i + 4]) for i in range(0, len(m["my"]), 4)]
        assert 1 <= len(rows) <= OWN_CLAIMS_MAX
        assert [r[:2] for r in rows] == sorted(r[:2] for r in rows)
        assert all(r[3] in (0, 1) for r in rows)
    assert len(m.get("ev", [])) <= 4 * CLAIM_EVENTS_MAX
    assert 0x85 <= data[16] <= 0x8E  # a fixmap of 5 to 14 keys (7.1)
    assert len(PV.msgpack_listing(data[16:-8])) > 0  # the listing reads every byte


def test_minimal_snapshot_structure(gen):
    data = gen.by_key["snapshot_minimal"].data
    assert le(data, 12, 4) == 2
    m = payload(gen, "snapshot_minimal")
    world = gen.worlds["solo"]
    hunt_ticks = world.kr.hunt_ticks
    assert m == {"t": 1, "a": 0, "h": [0, hunt_ticks - 2],
                 "me": [0, q(PV.DAVE_AT[0]), q(PV.DAVE_AT[1]), 0, 0, m["me"][5]],
                 "p": [], "tr": []}
    nearest = min(math.dist(PV.DAVE_AT, PV.far_spot(t)) for t in range(8))
    assert m["me"][5] == heat_level(nearest ** 2, world.kr.heat_radius) > 0
    snap = parse_snapshot(data[:-8], 2, gen.infos[PV.DAVE.name])
    assert snap is not None and snap.leaderboard is None and snap.hunt_result is None
    assert (snap.x, snap.y) == PV.DAVE_AT


def test_full_snapshot_structure(gen):
    data = gen.by_key["snapshot_full"].data
    assert le(data, 12, 4) == PV.LAST_TICK + 1
    m = payload(gen, "snapshot_full")
    world = gen.worlds["hunt"]
    value = world.ti[S.T_VALUE]
    v1, v2, v3 = int(value[1]), int(value[2]), int(value[3])
    first_hunt_score = m["hr"][2]
    assert 1 <= first_hunt_score <= 5
    dig = 3 * 255 // 5  # 3 of 5 ticks into treasure 2 (PROTOCOL.md 12.6)
    heat = 1 + math.floor(255 * (768 - 8) / 768)  # treasure 2 is 8 units away (12.7)
    assert m == {
        "t": 60, "a": 5, "h": [1, 40 - (61 - 40)],
        "me": [0, q(512), q(512), v1, dig, heat],
        # carol 212 units away, then bob 28 units away walking west at 200 units/s:
        # grid order (carol's cell row 2 comes before bob's row 4), not distance order
        "p": [2, q(512), q(300), 0, 0, 1, q(540), q(512), -640, 0],
        "tr": [2, q(520), q(512), v2, 3, q(512), q(560), v3],  # 8 and 48 units away
        "ev": [48, 0, 1, v1],  # only the claim of tick 48 is in the 40-tick window
        # her own claims, oldest first: tick 4's durable (45 >= 4), tick 48's not yet
        "my": [4, 0, first_hunt_score, 1, 48, 1, v1, 0],
        "hr": [0, 0, first_hunt_score, 1, 0, 2, 0],  # and no "lb" beside it
    }
    assert PV.DURABLE[max(k for k in PV.DURABLE if k <= PV.LAST_TICK)] == 45
    assert -640 == math.floor(-200.0 * 65536 / 1024 / 20 + 0.5)  # PROTOCOL.md 7.3
    assert heat == heat_level(64.0, world.kr.heat_radius)
    snap = parse_snapshot(data[:-8], PV.LAST_TICK + 1, gen.infos[PV.ALICE.name])
    assert snap is not None and snap.baseline is None
    assert (snap.tick, snap.ack, snap.hunt_id, snap.ticks_left) == (60, 5, 1, 19)
    assert (snap.x, snap.y, snap.score, snap.dig_progress, snap.heat) == (512.0, 512.0, v1,
                                                                        dig, heat)
    assert snap.players == [(2, 512.0, 300.0, 0.0, 0.0), (1, 540.0, 512.0, -200.0, 0.0)]
    assert snap.treasures == [(2, 520.0, 512.0, v2), (3, 512.0, 560.0, v3)]
    assert snap.claims == [(48, 0, 1, v1)]
    assert snap.leaderboard is None
    assert snap.hunt_result == (0, [(0, first_hunt_score), (1, 0), (2, 0)])
    assert snap.own_claims == [(4, 0, first_hunt_score, 1), (48, 1, v1, 0)]
    # the reference client takes the confirmed one as final, and only that one
    (event,) = gen.by_key["snapshot_full"].outcome.events
    assert event.own_claims == snap.own_claims
    # alice's inputs 3, 4 and 5 acked tick 39 (her snapshots of ticks 40..59 were lost),
    # which had left the 8-snapshot ring: a full snapshot, and "hr" (first carried by the
    # snapshot of tick 40) and "my" (confirmed from tick 50 on) not yet acknowledged
    assert le(gen.by_key["input_3"].data, 16, 4) == PV.ALICE_LOST.start - 1 == 39


def test_baseline_snapshot_structure(gen):
    data = gen.by_key["snapshot_baseline"].data
    assert le(data, 12, 4) == PV.GINA_ACKS
    m = payload(gen, "snapshot_baseline")
    value = gen.worlds["delta"].ti[S.T_VALUE]
    assert m == {
        "t": 2, "a": 0, "h": [0, 37], "me": [0, q(512), q(512), 0, 0, m["me"][5]],
        # grid order: jack's and liam's cell (row 3), then henry's, ivy's and mia's cells
        # of row 4; mia clamped at the edge, her velocity kept
        "p": [3, q(512), q(448), 0, 0, 5, q(542), q(400), 640, 0, 1, q(448), q(542), 0, 640,
              2, q(606), q(512), 640, 0, 6, 65535, q(512), 640, 0],
        "tr": [0, q(512), q(560), int(value[0]), 1, q(540), q(512), int(value[1])],
        "lb": [0, 0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0],
    }


def rebuild_by_the_document(base_doc: dict, doc: dict) -> tuple[list, list]:
    """PROTOCOL.md 7.6, written again from the text: the lists after a delta."""
    p, tr = base_doc["p"], base_doc["tr"]
    players = [p[i:i + 5] for i in range(0, len(p), 5)]
    treasures = [tr[i:i + 4] for i in range(0, len(tr), 4)]
    dt = (doc["t"] - doc["b"]) % 2**32
    rows = [[j, min(65535, max(0, qx + vx * dt)), min(65535, max(0, qy + vy * dt)), vx, vy]
            for j, qx, qy, vx, vy in players]
    pm, pv = doc.get("pm", []), doc.get("pv", [])
    for i in range(0, len(pm), 3):
        rows[pm[i]][1] += pm[i + 1]
        rows[pm[i]][2] += pm[i + 2]
    for i in range(0, len(pv), 5):
        rows[pv[i]][1] += pv[i + 1]
        rows[pv[i]][2] += pv[i + 2]
        rows[pv[i]][3:5] = pv[i + 3:i + 5]
    gone = set(doc.get("pr", []))
    rows = [r for i, r in enumerate(rows) if i not in gone]
    pn = doc.get("pn", [])
    rows += [pn[i:i + 5] for i in range(0, len(pn), 5)]
    t_gone = set(doc.get("tx", []))
    kept = [t for i, t in enumerate(treasures) if i not in t_gone]
    tn = doc.get("tn", [])
    return rows, kept + [tn[i:i + 4] for i in range(0, len(tn), 4)]


def test_delta_snapshot_structure(gen):
    data = gen.by_key["snapshot_delta"].data
    assert le(data, 12, 4) == PV.DELTA_TICK + 1
    m = payload(gen, "snapshot_delta")
    value = gen.worlds["delta"].ti[S.T_VALUE]
    assert m == {
        "t": 6, "a": 1, "b": 2, "h": [0, 33], "me": [0, q(512), q(512), 0, 0, m["me"][5]],
        "pm": [2, 192, 0],  # henry: predicted (448, 582), he is at (451, 582)
        "pv": [3, -1920, -1920, 0, -640],  # ivy: predicted (646, 512), she is at (616, 482)
        "pr": [0],  # jack
        "pn": [4, q(512), q(600), 0, 0],  # kate
        "tx": [1],  # treasure 1
        "tn": [2, q(480), q(512), int(value[2])],
        "lb": [0, 0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0],
    }  # no entry for liam (index 1) and mia (4): extrapolated, mia clamped at 65535
    players, treasures = rebuild_by_the_document(payload(gen, "snapshot_baseline"), m)
    held = gen.held[PV.GINA.name][PV.DELTA_TICK]
    assert [list(p) for p in held.players] == players == [
        [5, q(582), q(400), 640, 0], [1, q(451), q(582), 0, 640], [2, q(616), q(482), 0, -640],
        [6, 65535, q(512), 640, 0], [4, q(512), q(600), 0, 0]]
    assert [list(t) for t in held.treasures] == treasures
    snap = gen.by_key["snapshot_delta"].outcome.events[0]
    assert snap.baseline == 2 and snap.players[1] == (1, 451.0, 582.0, 0.0, 200.0)
    # a client that does not hold tick 2 cannot use it
    from net.client import decode_snapshot
    assert decode_snapshot(data[:-8], 7, gen.infos[PV.GINA.name], {}) == (
        None, None, "no_baseline")
