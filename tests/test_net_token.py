"""Connect tokens (net/token.py): layouts byte by byte, round trips, tamper evidence, and
the fuzz invariant: peer bytes open to a token or to None, never to an exception."""

from __future__ import annotations

import base64
import hashlib
import struct

import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from hypothesis import given, settings
from hypothesis import strategies as st

from net.token import (MAX_TOKEN_SERVERS, PUBLIC_TOKEN_BYTES, SEALED_TOKEN_BYTES,
                       SESSION_KEY_BYTES, TOKEN_KEY_BYTES, ConnectToken, PrivateToken,
                       TokenError, TokenOpener, issue_token, open_token)
from net.wire import VERSION

KEY = bytes(range(32))
SERVERS = (("127.0.0.1", 7777), ("10.0.0.2", 40000))
NOW = 1_700_000_000


def vector_token() -> ConnectToken:
    """The documented test vector: every input fixed."""
    return issue_token(KEY, 0x0123456789ABCDEF, SERVERS, "hunter", NOW, 300,
                       nonce=bytes(range(100, 112)), c2s_key=bytes(range(16)),
                       s2c_key=bytes(range(16, 32)))


@pytest.fixture(scope="module")
def tok() -> ConnectToken:
    return issue_token(KEY, 42, SERVERS, "ada", NOW, 300)


def split_fields(fields: bytes) -> tuple[int, bytes, bytes]:
    return struct.unpack("<Q", fields[:8])[0], fields[8:20], fields[20:]


def flips(data: bytes):
    for i in range(len(data) * 8):
        out = bytearray(data)
        out[i // 8] ^= 1 << (i % 8)
        yield bytes(out)


# ---- constants and layout -----------------------------------------------------------

def test_constants():
    assert (TOKEN_KEY_BYTES, SESSION_KEY_BYTES, PUBLIC_TOKEN_BYTES, SEALED_TOKEN_BYTES,
            MAX_TOKEN_SERVERS) == (32, 16, 272, 144, 8)


def test_vector_is_fixed():
    """Fixed inputs, fixed bytes: a change here is a wire change (the document's own
    vectors come from tests/protocol_vectors.py)."""
    assert VERSION == 4  # the version is in the associated data
    data = vector_token().to_bytes()
    assert len(data) == 272
    assert hashlib.sha256(data).hexdigest() == \
        "793abe63bb7d97fd1e29f9f9e9ddcfb3f3350d8f73eb345423009fdc57ad0429"
    assert vector_token().token_id.hex() == "803782977cb6aa07a0fe8082166610d8"


def test_vector_layout_by_hand():
    """Public and private layouts rebuilt from the spec tables, not from net.token's structs."""
    t = vector_token()
    addresses = (bytes([1, 0, 0, 127]) + (7777).to_bytes(2, "little")
                 + bytes([2, 0, 0, 10]) + (40000).to_bytes(2, "little") + bytes(36))
    client = (0x0123456789ABCDEF).to_bytes(8, "little")
    public = (b"XMTOKEN3" + NOW.to_bytes(8, "little") + (NOW + 300).to_bytes(8, "little")
              + bytes(range(100, 112)) + t.sealed + client + bytes(range(32)) + b"\x02"
              + addresses + bytes(3))
    assert t.to_bytes() == public
    ad = b"xmarks token" + (0x4D58).to_bytes(2, "little") + bytes([4]) \
        + (NOW + 300).to_bytes(8, "little")
    assert len(ad) == 23
    plain = ChaCha20Poly1305(KEY).decrypt(bytes(range(100, 112)), t.sealed, ad)
    assert plain == (client + bytes(range(32)) + b"\x02" + addresses + b"\x06"
                     + b"hunter" + bytes(26) + bytes(6))
    assert t.request_fields() == (NOW + 300).to_bytes(8, "little") + t.nonce + t.sealed


# ---- round trips --------------------------------------------------------------------

def test_issue_then_open_gives_the_same_fields(tok):
    assert len(tok.request_fields()) == 164
    opened = open_token(KEY, *split_fields(tok.request_fields()))
    assert opened == PrivateToken(42, tok.c2s_key, tok.s2c_key, SERVERS, "ada",
                                  tok.sealed[-16:], NOW + 300)
    assert opened.token_id == tok.token_id
    assert TokenOpener(KEY).open_fields(tok.request_fields()) == opened


def test_bytes_and_text_round_trip(tok):
    assert ConnectToken.from_bytes(tok.to_bytes()) == tok
    text = tok.to_text()
    assert len(text) == 363 and "=" not in text and "\n" not in text
    assert ConnectToken.from_text(text) == tok
    assert ConnectToken.from_text(f"  {text}==\n") == tok  # padding and whitespace tolerated


def test_random_nonces_and_keys_differ():
    a, b = (issue_token(KEY, 1, SERVERS, "", NOW, 60) for _ in range(2))
    assert len({a.nonce, b.nonce}) == 2 and len({a.c2s_key, b.c2s_key, a.s2c_key}) == 3


@pytest.mark.parametrize("name", ["", "x" * 32, "é" * 16, "宝" * 10, "🗺" * 8])
def test_names_up_to_32_utf8_bytes(name):
    t = issue_token(KEY, 1, SERVERS[:1], name, NOW, 60)
    assert open_token(KEY, t.expire, t.nonce, t.sealed).name == name


def test_eight_servers_and_extremes():
    servers = tuple((f"192.0.2.{i}", 65535 - i) for i in range(8))
    t = issue_token(KEY, 2**64 - 1, servers, "", 0, 2**64 - 1)
    assert ConnectToken.from_bytes(t.to_bytes()) == t
    p = open_token(KEY, t.expire, t.nonce, t.sealed)
    assert p.servers == servers and p.client_id == 2**64 - 1 and p.expire == 2**64 - 1


# ---- tamper evidence ----------------------------------------------------------------

def test_every_bit_flip_fails(tok):
    opener = TokenOpener(KEY)
    assert opener.open(tok.expire, tok.nonce, tok.sealed) is not None
    for sealed in flips(tok.sealed):
        assert opener.open(tok.expire, tok.nonce, sealed) is None
    for nonce in flips(tok.nonce):
        assert opener.open(tok.expire, nonce, tok.sealed) is None
    for bit in range(64):  # the expiry is authenticated: it cannot be extended
        assert opener.open(tok.expire ^ (1 << bit), tok.nonce, tok.sealed) is None


def test_wrong_key_fails(tok):
    assert open_token(bytes(32), tok.expire, tok.nonce, tok.sealed) is None
    other = bytearray(KEY)
    other[31] ^= 1
    assert open_token(bytes(other), tok.expire, tok.nonce, tok.sealed) is None


def test_other_version_fails(tok, monkeypatch):
    """A token sealed for another protocol version does not open (version is in the AD)."""
    import net.token
    monkeypatch.setattr(net.token, "VERSION", VERSION + 1)
    assert open_token(KEY, tok.expire, tok.nonce, tok.sealed) is None


def _seal_raw(plain: bytes, expire: int = NOW) -> tuple[int, bytes, bytes]:
    """Seal arbitrary plaintext as the server would: authentic but maybe malformed."""
    nonce = bytes(12)
    ad = b"xmarks token" + struct.pack("<HBQ", 0x4D58, VERSION, expire)
    return expire, nonce, ChaCha20Poly1305(KEY).encrypt(nonce, plain, ad)


def _plain(count=1, name_len=0, name=b"", port=7777) -> bytes:
    addresses = b"".join(struct.pack("<IH", 0x7F000001, port) for _ in range(min(count, 8)))
    return (struct.pack("<Q", 1) + bytes(32) + bytes([count]) + addresses.ljust(48, b"\0")
            + bytes([name_len]) + name.ljust(32, b"\0") + bytes(6))


@pytest.mark.parametrize("plain", [
    _plain(count=0), _plain(count=9), _plain(count=255), _plain(name_len=33),
    _plain(name_len=2, name=b"\xff\xfe"), _plain(name_len=1, name=b"\xc3"),
    _plain(port=0),
], ids=["count0", "count9", "count255", "name33", "bad-utf8", "cut-utf8", "port0"])
def test_authentic_but_malformed_plaintext_is_none(plain):
    assert len(plain) == 128
    assert open_token(KEY, *_seal_raw(plain)) is None


def test_well_formed_raw_plaintext_opens():
    assert open_token(KEY, *_seal_raw(_plain(name_len=3, name=b"bob"))).name == "bob"


@pytest.mark.parametrize("expire,nonce,sealed", [
    (NOW, bytes(11), bytes(144)), (NOW, bytes(12), bytes(143)), (NOW, b"", b""),
    (-1, bytes(12), bytes(144)), (2**64, bytes(12), bytes(144)), (1.5, bytes(12), bytes(144)),
])
def test_wrong_lengths_and_ranges_are_none(expire, nonce, sealed):
    assert open_token(KEY, expire, nonce, sealed) is None


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=-2**70, max_value=2**70), st.binary(min_size=12, max_size=12),
       st.binary(min_size=144, max_size=144))
def test_random_bytes_never_raise(expire, nonce, sealed):
    assert TokenOpener(KEY).open(expire, nonce, sealed) is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_public_bytes_raise_only_token_error(data):
    try:
        ConnectToken.from_bytes(data)
    except TokenError as exc:
        assert "\n" not in str(exc)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400) | st.text(alphabet="ABCxyz019-_=", max_size=400))
def test_random_text_raises_only_token_error(text):
    try:
        ConnectToken.from_text(text)
    except TokenError as exc:
        assert "\n" not in str(exc)


# ---- malformed public tokens and bad inputs ------------------------------------------

def _patched(tok: ConnectToken, at: int, value: bytes) -> bytes:
    data = bytearray(tok.to_bytes())
    data[at:at + len(value)] = value
    return bytes(data)


@pytest.mark.parametrize("mutate,words", [
    (lambda t: t.to_bytes()[:-1], "272 bytes"),
    (lambda t: t.to_bytes() + b"\0", "272 bytes"),
    (lambda t: _patched(t, 0, b"XMTOKEN2"), "magic"),
    (lambda t: _patched(t, 269, b"\1"), "padding"),
    (lambda t: _patched(t, 220, b"\0"), "server list"),
    (lambda t: _patched(t, 220, b"\x09"), "server list"),
    (lambda t: _patched(t, 221 + 4, b"\0\0"), "server list"),  # port 0
    (lambda t: _patched(t, 221 + 12, b"\1"), "server list"),  # a non-zero unused entry
    (lambda t: _patched(t, 16, t.create.to_bytes(8, "little")), "expires"),
    (lambda t: "not bytes", "bytes"),
])
def test_from_bytes_errors(tok, mutate, words):
    with pytest.raises(TokenError, match=words) as info:
        ConnectToken.from_bytes(mutate(tok))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("text,words", [
    ("", "272 bytes"), ("!!!!", "base64url"), ("ab+/", "base64url"), ("a b", "base64url"),
    ("abcde", "base64url"), ("QUJD", "272 bytes"),
])
def test_from_text_errors(text, words):
    with pytest.raises(TokenError, match=words):
        ConnectToken.from_text(text)


def test_from_text_rejects_standard_base64(tok):
    std = base64.b64encode(tok.to_bytes()).decode()
    if "+" in std or "/" in std:
        with pytest.raises(TokenError, match="base64url"):
            ConnectToken.from_text(std)


@pytest.mark.parametrize("kwargs,words", [
    (dict(key=bytes(31)), "token key must be 32 bytes"),
    (dict(client_id=-1), "client id"),
    (dict(client_id=2**64), "client id"),
    (dict(client_id=True), "client id"),
    (dict(servers=[]), "1..8 servers"),
    (dict(servers=[("127.0.0.1", 1)] * 9), "1..8 servers"),
    (dict(servers=[("localhost", 7777)]), "IPv4"),
    (dict(servers=[("::1", 7777)]), "IPv4"),
    (dict(servers=[("127.0.0.1", 0)]), "port"),
    (dict(servers=[("127.0.0.1", 65536)]), "port"),
    (dict(servers=[("127.0.0.1",)]), "pairs"),
    (dict(name="x" * 33), "33 UTF-8 bytes"),
    (dict(name="é" * 17), "34 UTF-8 bytes"),
    (dict(name="\ud800"), "surrogate"),
    (dict(lifetime=0), "lifetime"),
    (dict(lifetime=1.5), "lifetime"),
    (dict(now=2**64 - 1, lifetime=1), "u64"),
    (dict(nonce=bytes(11)), "nonce"),
    (dict(c2s_key=bytes(32)), "c2s key"),
    (dict(s2c_key=b""), "s2c key"),
])
def test_issue_token_errors(kwargs, words):
    args = dict(key=KEY, client_id=1, servers=SERVERS, name="", now=NOW, lifetime=60)
    args.update(kwargs)
    with pytest.raises(TokenError, match=words) as info:
        issue_token(**args)
    assert "\n" not in str(info.value)


def test_token_error_is_a_value_error():
    assert issubclass(TokenError, ValueError)
    with pytest.raises(TokenError):
        TokenOpener(bytes(16))
