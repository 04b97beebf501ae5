"""Challenge cookies (protocol v3): what the server would have stored about a handshake,
sealed with ChaCha20-Poly1305 under a key only it knows, so it stores nothing until the
client proves its address by echoing the cookie back.

Layout in docs/PROTOCOL.md ("Challenge cookie"): nonce 12 (u64 LE counter, 4 zero bytes)
| ciphertext 128 | Poly1305 tag 16 = 156 bytes. Expiry is judged by the caller.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from net.wire import MAX_NAME_BYTES

COOKIE_KEY_BYTES = 32
COOKIE_BYTES = 156
COOKIE_PLAIN_BYTES = 128
NONCE_BYTES = 12
AD = b"xmarks cookie"
U64_MAX = 2**64 - 1

# client id, salt, ip u32, port u16, 2 zero, issued ms, expire, c2s, s2c, token id,
# name length, name, 7 zero = 128.
PLAIN = struct.Struct("<QQIH2xQQ16s16s16sB32s7x")
NONCE = struct.Struct("<Q4x")

assert PLAIN.size == COOKIE_PLAIN_BYTES and NONCE.size == NONCE_BYTES
assert NONCE_BYTES + COOKIE_PLAIN_BYTES + 16 == COOKIE_BYTES


@dataclass(frozen=True)
class Cookie:
    """One pending handshake. ip is the IPv4 as an integer (net.address.ip_to_int)."""

    client_id: int  # u64
    salt: int  # u64, the client's salt of this attempt
    ip: int  # u32
    port: int  # u16
    issued_ms: int  # server unix time in milliseconds, u64
    expire: int  # the token's expiry, unix s, u64
    c2s_key: bytes  # 16 bytes
    s2c_key: bytes  # 16 bytes
    token_id: bytes  # 16 bytes: the Poly1305 tag of the sealed private token
    name: str  # at most 32 UTF-8 bytes


class CookieJar:
    """Seals and opens challenge cookies under one key (random per server start).

    Nonces count up from 1, so none repeats under a key as long as the jar lives (the
    key does not outlive it unless passed in, and then the counter must not restart).
    """

    def __init__(self, key: bytes | None = None) -> None:
        key = os.urandom(COOKIE_KEY_BYTES) if key is None else key
        if not isinstance(key, (bytes, bytearray)) or len(key) != COOKIE_KEY_BYTES:
            raise ValueError(f"a cookie key is {COOKIE_KEY_BYTES} bytes")
        self._aead = ChaCha20Poly1305(bytes(key))
        self._counter = 0

    @property
    def sealed_count(self) -> int:
        """Cookies sealed so far (the last nonce's counter)."""
        return self._counter

    def seal(self, cookie: Cookie) -> bytes:
        """The 156-byte cookie. ValueError if a field is out of range (a server bug)."""
        try:
            name = cookie.name.encode("utf-8")
        except (AttributeError, UnicodeEncodeError):
            raise ValueError(f"cookie name must be UTF-8 text, got {cookie.name!r}") from None
        if len(name) > MAX_NAME_BYTES:
            raise ValueError(f"cookie name is {len(name)} bytes, at most {MAX_NAME_BYTES}")
        for what in ("c2s_key", "s2c_key", "token_id"):
            if len(getattr(cookie, what)) != 16:
                raise ValueError(f"cookie {what} must be 16 bytes")
        try:
            plain = PLAIN.pack(cookie.client_id, cookie.salt, cookie.ip, cookie.port,
                               cookie.issued_ms, cookie.expire, cookie.c2s_key,
                               cookie.s2c_key, cookie.token_id, len(name), name)
        except struct.error as exc:
            raise ValueError(f"cookie field out of range: {exc}") from None
        if self._counter >= U64_MAX:  # a repeated nonce would leak the key stream
            raise OverflowError("cookie nonce counter exhausted; make a new CookieJar")
        self._counter += 1
        nonce = NONCE.pack(self._counter)
        return nonce + self._aead.encrypt(nonce, plain, AD)

    def open(self, blob: bytes) -> Cookie | None:
        """The cookie, or None if `blob` is not one this jar sealed (never raises on
        bytes-like input of any length)."""
        if len(blob) != COOKIE_BYTES:
            return None
        nonce = blob[:NONCE_BYTES]
        try:
            plain = self._aead.decrypt(nonce, blob[NONCE_BYTES:], AD)
        except InvalidTag:
            return None
        (client_id, salt, ip, port, issued_ms, expire, c2s, s2c, token_id, name_len,
         name) = PLAIN.unpack(plain)
        if name_len > MAX_NAME_BYTES:
            return None
        try:
            text = name[:name_len].decode("utf-8")
        except UnicodeDecodeError:
            return None
        return Cookie(client_id, salt, ip, port, issued_ms, expire, c2s, s2c, token_id, text)
