"""Challenge cookies (net/cookie.py): round trip, layout, tamper evidence, unique nonces,
and the fuzz invariant (any bytes open to a cookie or to None, never to an exception)."""

from __future__ import annotations

import hashlib
import struct

import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from hypothesis import given, settings
from hypothesis import strategies as st

from net.cookie import COOKIE_BYTES, Cookie, CookieJar

JAR_KEY = bytes(range(64, 96))
COOKIE = Cookie(client_id=7, salt=0x1122334455667788, ip=0x7F000001, port=50000,
                issued_ms=1_700_000_000_123, expire=1_700_000_300, c2s_key=bytes(range(16)),
                s2c_key=bytes(range(16, 32)),
                token_id=bytes.fromhex("d1b6dcf2144a3d645fe1b31569005b2f"), name="hunter")


def flips(data: bytes):
    for i in range(len(data) * 8):
        out = bytearray(data)
        out[i // 8] ^= 1 << (i % 8)
        yield bytes(out)


def test_round_trip():
    jar = CookieJar()
    blob = jar.seal(COOKIE)
    assert len(blob) == COOKIE_BYTES == 156
    assert jar.open(blob) == COOKIE
    assert jar.open(bytearray(blob)) == COOKIE and jar.open(memoryview(blob)) == COOKIE


@pytest.mark.parametrize("name", ["", "x" * 32, "宝" * 10])
def test_names(name):
    jar = CookieJar()
    cookie = Cookie(**{**COOKIE.__dict__, "name": name})
    assert jar.open(jar.seal(cookie)) == cookie


def test_extremes():
    jar = CookieJar()
    top = Cookie(2**64 - 1, 2**64 - 1, 2**32 - 1, 65535, 2**64 - 1, 2**64 - 1,
                 b"\xff" * 16, b"\xff" * 16, b"\xff" * 16, "z" * 32)
    assert jar.open(jar.seal(top)) == top


def test_vector_and_layout_by_hand():
    """Fixed key and first counter: fixed bytes (a change here changes the cookie)."""
    blob = CookieJar(JAR_KEY).seal(COOKIE)
    assert blob[:12] == (1).to_bytes(8, "little") + bytes(4)
    assert hashlib.sha256(blob).hexdigest() == \
        "f710992c1332c1cb9254ba2edc95c9fcc99781df798b5f0e50f92cbfb704701e"
    plain = ChaCha20Poly1305(JAR_KEY).decrypt(blob[:12], blob[12:], b"xmarks cookie")
    assert plain == (struct.pack("<QQIH", 7, 0x1122334455667788, 0x7F000001, 50000) + bytes(2)
                     + struct.pack("<QQ", 1_700_000_000_123, 1_700_000_300)
                     + bytes(range(32)) + COOKIE.token_id + b"\x06" + b"hunter".ljust(32, b"\0")
                     + bytes(7))


def test_every_bit_flip_fails():
    jar = CookieJar()
    blob = jar.seal(COOKIE)
    for bad in flips(blob):
        assert jar.open(bad) is None


def test_other_jar_fails():
    blob = CookieJar().seal(COOKIE)
    assert CookieJar().open(blob) is None
    assert CookieJar(JAR_KEY).open(CookieJar(JAR_KEY[::-1]).seal(COOKIE)) is None


def test_nonces_count_up_and_never_repeat():
    jar = CookieJar()
    nonces = [jar.seal(COOKIE)[:12] for _ in range(1000)]
    assert len(set(nonces)) == 1000
    assert [struct.unpack("<Q4x", n)[0] for n in nonces] == list(range(1, 1001))
    assert jar.sealed_count == 1000


def test_same_cookie_seals_differently():
    jar = CookieJar()
    assert jar.seal(COOKIE) != jar.seal(COOKIE)


@pytest.mark.parametrize("change", [
    {"name": "x" * 33}, {"name": "\ud800"}, {"c2s_key": bytes(15)}, {"token_id": bytes(17)},
    {"client_id": -1}, {"salt": 2**64}, {"ip": 2**32}, {"port": 65536}, {"issued_ms": -5},
])
def test_seal_rejects_bad_fields(change):
    jar = CookieJar()
    with pytest.raises(ValueError):
        jar.seal(Cookie(**{**COOKIE.__dict__, **change}))
    assert jar.sealed_count == 0  # no nonce spent on a refused cookie


def test_bad_key():
    with pytest.raises(ValueError, match="32 bytes"):
        CookieJar(bytes(16))


def test_authentic_but_malformed_plaintext_is_none():
    """Only this jar's key can make these; still, a bad name never raises."""
    aead = ChaCha20Poly1305(JAR_KEY)
    jar = CookieJar(JAR_KEY)
    for name_len, name in ((33, b""), (2, b"\xff\xfe")):
        plain = bytes(88) + bytes([name_len]) + name.ljust(32, b"\0") + bytes(7)
        nonce = (99).to_bytes(8, "little") + bytes(4)
        assert jar.open(nonce + aead.encrypt(nonce, plain, b"xmarks cookie")) is None


@settings(max_examples=500, deadline=None)
@given(st.binary(min_size=156, max_size=156) | st.binary(max_size=400))
def test_random_bytes_never_raise(blob):
    assert CookieJar(JAR_KEY).open(blob) is None
