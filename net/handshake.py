"""The connect procedure's cryptography (docs/PROTOCOL.md 9.2): tokens in, cookies out.

A CONNECT_REQUEST carries a sealed connect token; a valid one is answered with a CHALLENGE
whose cookie (sealed with a key only this server holds) carries everything the session
needs: the token's client id, keys and name, and the address and time it was sent to.
Nothing is stored until the cookie comes back in a CHALLENGE_RESPONSE from that address,
tagged with the token's client-to-server key. Then the token is remembered as used by that
address, so a copy replayed from anywhere else is ignored. Sizes and rates were checked by
the decode kernel before any of this runs.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from net import drops as D
from net.cookie import Cookie, CookieJar
from net.token import PrivateToken, TokenOpener
from net.tag import sign, verify
from net.wire import (CHALLENGE, CONNECT_REQUEST_BODY, COOKIE_AT, COOKIE_SIZE, HEADER_SIZE,
                      pack_header)

#: Used tokens remembered (token id -> address); an entry is only added for a proven
#: address with a valid token, so spoofed traffic cannot fill it. Oldest go first.
USED_TOKENS_MAX = 65536


class Gatekeeper:
    """Checks requests and responses; holds the token key, the cookie jar, used tokens.

    key: the 32-byte token key; address: (IPv4 text, port) the server's tokens must name;
    challenge_ms: how long a cookie stays valid; cookie_key: fixed only in tests.
    """

    def __init__(self, key: bytes, address: tuple[str, int], challenge_ms: int,
                 cookie_key: bytes | None = None) -> None:
        self.opener = TokenOpener(key)
        self.jar = CookieJar(cookie_key)
        self.address = address
        self.challenge_ms = challenge_ms
        self.used: OrderedDict[bytes, tuple[int, int, int]] = OrderedDict()
        self.challenges = 0  # CHALLENGE packets sent
        # (client id, salt, ip, port) -> True for the attempt that opened a session which
        # never heard its client, now from another address (its NAT rebound before the
        # accept got through): its token may be used from there (ServerProtocol sets it)
        self.rebinding: Callable[[int, int, int, int], bool] | None = None

    def check_request(self, payload: bytes, ip: int, port: int,
                      unix_ms: int) -> tuple[int, PrivateToken | None]:
        """(drop reason, None) or (-1, the opened token) for a 256-byte CONNECT_REQUEST."""
        salt, expire, nonce, sealed = CONNECT_REQUEST_BODY.unpack_from(payload, HEADER_SIZE)
        if salt == 0:
            return D.BAD_PAYLOAD, None
        if expire * 1000 <= unix_ms:  # before the decryption: the cheap check first
            return D.TOKEN_EXPIRED, None
        token = self.opener.open(expire, nonce, sealed)
        if token is None:
            return D.BAD_TOKEN, None
        if self.address not in token.servers:
            return D.WRONG_SERVER, None
        if self.reused(token.token_id, ip, port, unix_ms) and not self._rebinding(
                token.client_id, salt, ip, port):
            return D.TOKEN_REUSED, None
        return -1, token

    def challenge(self, token: PrivateToken, salt: int, ip: int, port: int,
                  unix_ms: int) -> bytes:
        """The CHALLENGE (188 bytes) answering a valid request; no state is kept."""
        cookie = Cookie(client_id=token.client_id, salt=salt, ip=ip, port=port,
                        issued_ms=unix_ms, expire=token.expire, c2s_key=token.c2s_key,
                        s2c_key=token.s2c_key, token_id=token.token_id, name=token.name)
        self.challenges += 1
        packet = (pack_header(CHALLENGE, 0, 0) + salt.to_bytes(8, "little")
                  + self.jar.seal(cookie))
        return sign(packet, token.s2c_key)

    def check_response(self, payload: bytes, ip: int, port: int,
                       unix_ms: int) -> tuple[int, Cookie | None]:
        """(drop reason, None) or (-1, the cookie) for a 256-byte CHALLENGE_RESPONSE."""
        cookie = self.jar.open(payload[COOKIE_AT:COOKIE_AT + COOKIE_SIZE])
        if cookie is None or cookie.salt != int.from_bytes(payload[16:24], "little"):
            return D.BAD_CHALLENGE, None
        if cookie.ip != ip or cookie.port != port:
            return D.WRONG_ADDRESS, None
        if not cookie.issued_ms <= unix_ms <= cookie.issued_ms + self.challenge_ms:
            return D.CHALLENGE_EXPIRED, None
        if cookie.expire * 1000 <= unix_ms:
            return D.TOKEN_EXPIRED, None
        if not verify(payload, cookie.c2s_key):
            return D.BAD_TAG, None
        if self.reused(cookie.token_id, ip, port, unix_ms) and not self._rebinding(
                cookie.client_id, cookie.salt, ip, port):
            return D.TOKEN_REUSED, None
        return -1, cookie

    def _rebinding(self, client_id: int, salt: int, ip: int, port: int) -> bool:
        return self.rebinding is not None and self.rebinding(client_id, salt, ip, port)

    def reused(self, token_id: bytes, ip: int, port: int, unix_ms: int) -> bool:
        """True if this token opened a session from another address (and has not expired)."""
        seen = self.used.get(token_id)
        if seen is None:
            return False
        if seen[2] * 1000 <= unix_ms:  # expired tokens are refused anyway: forget it
            del self.used[token_id]
            return False
        return (seen[0], seen[1]) != (ip, port)

    def remember(self, token_id: bytes, ip: int, port: int, expire: int) -> None:
        """Mark a token used by (ip, port): it opened a session from that address."""
        self.used[token_id] = (ip, port, expire)
        self.used.move_to_end(token_id)
        while len(self.used) > USED_TOKENS_MAX:
            self.used.popitem(last=False)
