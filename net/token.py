"""Connect tokens (protocol v3): the public token a client holds and the private token
sealed inside it with ChaCha20-Poly1305 under the server's 32-byte token key.

Layouts are in docs/PROTOCOL.md ("Private connect token", "Public connect token"); all
integers little-endian. Nothing here reads a clock: `now` and `expire` are arguments, and
`open_token` does not judge expiry (the server compares `expire` with its own clock).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import random
import re
import socket
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from net.wire import MAX_NAME_BYTES, PROTOCOL_ID, VERSION

TOKEN_KEY_BYTES = 32
SESSION_KEY_BYTES = 16
NONCE_BYTES = 12
TAG_BYTES = 16  # the Poly1305 tag; it doubles as the token id
PRIVATE_TOKEN_BYTES = 128
SEALED_TOKEN_BYTES = PRIVATE_TOKEN_BYTES + TAG_BYTES  # 144
PUBLIC_TOKEN_BYTES = 272
MAX_TOKEN_SERVERS = 8
TOKEN_MAGIC = b"XMTOKEN3"
U64_MAX = 2**64 - 1

Servers = tuple[tuple[str, int], ...]

# Private token: client id, c2s, s2c, address count, 8 x (ip u32, port u16), name length,
# name, 6 zero bytes = 128.
PRIVATE = struct.Struct("<Q16s16sB48sB32s6x")
# Public token: magic, create, expire, nonce, sealed, client id, c2s, s2c, address count,
# addresses, 3 zero bytes = 272.
PUBLIC = struct.Struct("<8sQQ12s144sQ16s16sB48s3x")
ADDRESS = struct.Struct("<IH")
ADDRESSES_BYTES = ADDRESS.size * MAX_TOKEN_SERVERS  # 48
AD = struct.Struct("<12sHBQ")  # b"xmarks token", protocol id, version, expire = 23 bytes
AD_LABEL = b"xmarks token"
# What a CONNECT_REQUEST carries from offset 24: expire u64, nonce, sealed = 164 bytes.
REQUEST_FIELDS = struct.Struct("<Q12s144s")
REQUEST_FIELDS_BYTES = REQUEST_FIELDS.size
_TEXT = re.compile(r"[A-Za-z0-9_-]*={0,2}")

assert PRIVATE.size == PRIVATE_TOKEN_BYTES and PUBLIC.size == PUBLIC_TOKEN_BYTES
assert AD.size == 23 and REQUEST_FIELDS_BYTES == 164


class TokenError(ValueError):
    """A token, or what a token is to be made of, is malformed. One-line message."""


@dataclass(frozen=True)
class ConnectToken:
    """The public connect token (272 bytes) the token service hands a client.

    Times are whole unix seconds. `sealed` is opaque to the client: the private token
    (128 bytes) encrypted under the server's key, then its 16-byte Poly1305 tag.
    """

    client_id: int
    create: int
    expire: int
    nonce: bytes  # 12 bytes
    sealed: bytes  # 144 bytes
    c2s_key: bytes  # 16 bytes
    s2c_key: bytes  # 16 bytes
    servers: Servers  # 1..8 (dotted IPv4, port)

    def __post_init__(self) -> None:
        _check_u64("client id", self.client_id)
        _check_u64("create", self.create)
        _check_u64("expire", self.expire)
        if self.expire <= self.create:
            raise TokenError(f"token expires ({self.expire}) no later than it was "
                             f"created ({self.create})")
        _check_bytes("nonce", self.nonce, NONCE_BYTES)
        _check_bytes("sealed token", self.sealed, SEALED_TOKEN_BYTES)
        _check_bytes("c2s key", self.c2s_key, SESSION_KEY_BYTES)
        _check_bytes("s2c key", self.s2c_key, SESSION_KEY_BYTES)
        _pack_servers(self.servers)  # validates

    @property
    def token_id(self) -> bytes:
        """The 16-byte Poly1305 tag of the sealed token (the server's id for it)."""
        return self.sealed[-TAG_BYTES:]

    def to_bytes(self) -> bytes:
        """The 272-byte wire form."""
        count, addresses = _pack_servers(self.servers)
        return PUBLIC.pack(TOKEN_MAGIC, self.create, self.expire, self.nonce, self.sealed,
                           self.client_id, self.c2s_key, self.s2c_key, count, addresses)

    @classmethod
    def from_bytes(cls, data: bytes) -> ConnectToken:
        """Parse the 272-byte wire form; TokenError on any malformation."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TokenError(f"a token is bytes, got {type(data).__name__}")
        if len(data) != PUBLIC_TOKEN_BYTES:
            raise TokenError(f"a token is {PUBLIC_TOKEN_BYTES} bytes, got {len(data)}")
        (magic, create, expire, nonce, sealed, client_id, c2s, s2c, count,
         addresses) = PUBLIC.unpack(data)
        if magic != TOKEN_MAGIC:
            raise TokenError("not an xmarks v3 connect token (bad magic)")
        if bytes(data[PUBLIC_TOKEN_BYTES - 3:]) != b"\0\0\0":
            raise TokenError("token padding is not zero")
        servers = _unpack_servers(count, addresses)
        if servers is None:
            raise TokenError(f"token server list is malformed (count {count})")
        return cls(client_id, create, expire, nonce, sealed, c2s, s2c, servers)

    def to_text(self) -> str:
        """Base64url of the 272 bytes, without '=' padding (363 characters)."""
        return base64.urlsafe_b64encode(self.to_bytes()).rstrip(b"=").decode("ascii")

    @classmethod
    def from_text(cls, text: str) -> ConnectToken:
        """Parse `to_text`'s form (padding optional, surrounding whitespace ignored)."""
        if not isinstance(text, str):
            raise TokenError(f"a token's text form is a str, got {type(text).__name__}")
        text = text.strip()
        # Strict alphabet: urlsafe_b64decode would silently skip stray characters.
        if not _TEXT.fullmatch(text):
            raise TokenError("token text is not base64url")
        body = text.rstrip("=")
        try:
            data = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (binascii.Error, ValueError):
            raise TokenError("token text is not base64url") from None
        return cls.from_bytes(data)

    def request_fields(self) -> bytes:
        """The 164 bytes a CONNECT_REQUEST carries at offsets 24..188: expire u64 | nonce
        12 | sealed 144."""
        return REQUEST_FIELDS.pack(self.expire, self.nonce, self.sealed)


@dataclass(frozen=True)
class PrivateToken:
    """An opened private token: what the server learns from a CONNECT_REQUEST."""

    client_id: int
    c2s_key: bytes  # 16 bytes
    s2c_key: bytes  # 16 bytes
    servers: Servers
    name: str
    token_id: bytes  # 16 bytes: the Poly1305 tag, i.e. the last 16 bytes of sealed
    expire: int  # unix s, authenticated as associated data


def issue_token(key: bytes, client_id: int, servers, name: str, now: int, lifetime: int,
                nonce: bytes | None = None, c2s_key: bytes | None = None,
                s2c_key: bytes | None = None) -> ConnectToken:
    """Make a connect token for `client_id`, valid from `now` for `lifetime` seconds.

    `servers` is an iterable of (dotted IPv4, port), 1..8 of them. The nonce and both
    session keys are random unless given (tests and documented vectors fix them; a
    nonce must never repeat under one key). Raises TokenError on bad input.
    """
    _check_bytes("token key", key, TOKEN_KEY_BYTES)
    _check_u64("client id", client_id)
    _check_u64("now", now)
    if isinstance(lifetime, bool) or not isinstance(lifetime, int) or lifetime <= 0:
        raise TokenError(f"token lifetime must be a whole number of seconds > 0, got {lifetime!r}")
    expire = now + lifetime
    if expire > U64_MAX:
        raise TokenError(f"token expiry {expire} does not fit in a u64")
    try:
        servers = tuple((host, port) for host, port in servers)
    except (TypeError, ValueError):
        raise TokenError("servers must be (IPv4, port) pairs") from None
    count, addresses = _pack_servers(servers)
    if not isinstance(name, str):
        raise TokenError(f"name must be a str, got {type(name).__name__}")
    try:
        name_bytes = name.encode("utf-8")
    except UnicodeEncodeError:
        raise TokenError("name is not valid Unicode text (lone surrogate)") from None
    if len(name_bytes) > MAX_NAME_BYTES:
        raise TokenError(f"name is {len(name_bytes)} UTF-8 bytes, at most {MAX_NAME_BYTES}")
    nonce = os.urandom(NONCE_BYTES) if nonce is None else nonce
    c2s_key = os.urandom(SESSION_KEY_BYTES) if c2s_key is None else c2s_key
    s2c_key = os.urandom(SESSION_KEY_BYTES) if s2c_key is None else s2c_key
    _check_bytes("nonce", nonce, NONCE_BYTES)
    _check_bytes("c2s key", c2s_key, SESSION_KEY_BYTES)
    _check_bytes("s2c key", s2c_key, SESSION_KEY_BYTES)
    plain = PRIVATE.pack(client_id, c2s_key, s2c_key, count, addresses, len(name_bytes),
                         name_bytes)
    sealed = ChaCha20Poly1305(bytes(key)).encrypt(bytes(nonce), plain, _ad(expire))
    return ConnectToken(client_id, now, expire, bytes(nonce), sealed, bytes(c2s_key),
                        bytes(s2c_key), servers)


def issue_tokens(key: bytes, server: tuple[str, int], count: int, now: int, lifetime: int,
                 prefix: str = "h") -> list[ConnectToken]:
    """`count` tokens for `server` (bots are their own token service), named prefix + index,
    with distinct client ids drawn from the OS: never from a bot seed, since the ids of two
    runs or two bot processes must not collide on a server that allows one session each."""
    ids: set[int] = set()
    draw = random.SystemRandom()
    while len(ids) < count:
        ids.add(draw.getrandbits(63) | 1)
    return [issue_token(key, client_id, [server], f"{prefix}{b}", now, lifetime)
            for b, client_id in enumerate(ids)]


class TokenOpener:
    """Opens sealed private tokens under one server key (the cipher is built once)."""

    def __init__(self, key: bytes) -> None:
        _check_bytes("token key", key, TOKEN_KEY_BYTES)
        self._aead = ChaCha20Poly1305(bytes(key))

    def open(self, expire: int, nonce: bytes, sealed: bytes) -> PrivateToken | None:
        """The private token, or None if it does not authenticate or is malformed.

        Never raises on peer input: any int `expire` and any bytes-like nonce and sealed
        (wrong lengths give None). Does not compare `expire` with a clock.
        """
        if len(nonce) != NONCE_BYTES or len(sealed) != SEALED_TOKEN_BYTES:
            return None
        try:
            plain = self._aead.decrypt(nonce, sealed, _ad(expire))
        except (InvalidTag, struct.error):  # struct.error: expire is not a u64
            return None
        client_id, c2s, s2c, count, addresses, name_len, name = PRIVATE.unpack(plain)
        servers = _unpack_servers(count, addresses)
        if servers is None or name_len > MAX_NAME_BYTES:
            return None
        try:
            text = name[:name_len].decode("utf-8")
        except UnicodeDecodeError:
            return None
        return PrivateToken(client_id, c2s, s2c, servers, text, bytes(sealed[-TAG_BYTES:]),
                            expire)

    def open_fields(self, fields: bytes) -> PrivateToken | None:
        """`open` on the 164 bytes of `ConnectToken.request_fields` (request offset 24)."""
        if len(fields) != REQUEST_FIELDS_BYTES:
            return None
        return self.open(*REQUEST_FIELDS.unpack(fields))


def open_token(key: bytes, expire: int, nonce: bytes, sealed: bytes) -> PrivateToken | None:
    """One-off `TokenOpener(key).open(...)`; a server keeps a TokenOpener instead."""
    return TokenOpener(key).open(expire, nonce, sealed)


def _ad(expire: int) -> bytes:
    """Associated data: binds the token to this protocol, version and expiry."""
    return AD.pack(AD_LABEL, PROTOCOL_ID, VERSION, expire)


def _check_u64(what: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= U64_MAX:
        raise TokenError(f"{what} must be an integer in 0..2**64-1, got {value!r}")


def _check_bytes(what: str, value, size: int) -> None:
    if not isinstance(value, (bytes, bytearray, memoryview)) or len(value) != size:
        got = f"{len(value)} bytes" if isinstance(value, (bytes, bytearray, memoryview)) \
            else type(value).__name__
        raise TokenError(f"{what} must be {size} bytes, got {got}")


def _pack_servers(servers) -> tuple[int, bytes]:
    """(count, the 48-byte address block); TokenError unless 1..8 valid IPv4 endpoints."""
    if not isinstance(servers, tuple) or not 1 <= len(servers) <= MAX_TOKEN_SERVERS:
        n = len(servers) if isinstance(servers, tuple) else type(servers).__name__
        raise TokenError(f"a token names 1..{MAX_TOKEN_SERVERS} servers, got {n}")
    block = bytearray(ADDRESSES_BYTES)
    for i, entry in enumerate(servers):
        if not (isinstance(entry, tuple) and len(entry) == 2):
            raise TokenError(f"server {entry!r} is not an (IPv4, port) pair")
        host, port = entry
        try:
            ip = int(ipaddress.IPv4Address(host))
        except ValueError:
            raise TokenError(f"server {host!r} is not a dotted IPv4 address") from None
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise TokenError(f"server port must be in 1..65535, got {port!r}")
        ADDRESS.pack_into(block, i * ADDRESS.size, ip, port)
    return len(servers), bytes(block)


def _unpack_servers(count: int, block: bytes) -> Servers | None:
    """The `count` listed endpoints, or None if count is out of 1..8, a listed port is
    0 or an unused entry is not zero."""
    if not 1 <= count <= MAX_TOKEN_SERVERS:
        return None
    used = count * ADDRESS.size
    if block[used:].count(0) != ADDRESSES_BYTES - used:
        return None
    servers = []
    for i in range(count):
        ip, port = ADDRESS.unpack_from(block, i * ADDRESS.size)
        if port == 0:
            return None
        # inet_ntoa wants network order; the wire holds the integer little-endian.
        servers.append((socket.inet_ntoa(ip.to_bytes(4, "big")), port))
    return tuple(servers)
