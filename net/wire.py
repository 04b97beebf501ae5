"""Wire constants and the fixed packet header. docs/PROTOCOL.md is the normative text.

All integers on the wire are little-endian, except inside msgpack payloads, which follow
the msgpack specification (big-endian).
"""

from __future__ import annotations

import struct
from typing import NamedTuple

PROTOCOL_ID = 0x4D58  # the bytes "XM" on the wire
# 4: reliable own claims and results, address moves, reconnect; 3: connect tokens,
# stateless challenge, tagged packets; 2: delta snapshots
VERSION = 4

# Packet types. C->S: client to server; S->C: server to client.
CONNECT_REQUEST = 1  # C->S
CONNECT_ACCEPT = 2  # S->C
CONNECT_DENY = 3  # S->C
INPUT = 4  # C->S
SNAPSHOT = 5  # S->C
KEEPALIVE = 6  # C->S
DISCONNECT = 7  # both
CHALLENGE = 8  # S->C
CHALLENGE_RESPONSE = 9  # C->S
TYPE_NAMES = {CONNECT_REQUEST: "connect_request", CONNECT_ACCEPT: "connect_accept",
              CONNECT_DENY: "connect_deny", INPUT: "input", SNAPSHOT: "snapshot",
              KEEPALIVE: "keepalive", DISCONNECT: "disconnect", CHALLENGE: "challenge",
              CHALLENGE_RESPONSE: "challenge_response"}

# Header: protocol id u16, version u8, type u8, flags u8, reserved 3 bytes,
# session id u32, sequence u32.
HEADER = struct.Struct("<HBBB3xII")
HEADER_SIZE = HEADER.size  # 16

MAX_DATAGRAM = 1200  # no packet of this protocol is larger, either way
TAG_SIZE = 8  # SipHash-2-4 of everything before it, ending every packet after the request
CONNECT_REQUEST_SIZE = 256  # padded, so no reply before a proven address outgrows it
MAX_NAME_BYTES = 32

# CONNECT_REQUEST body: client salt u64, token expire u64 (unix s), token nonce 12 bytes,
# sealed private token 144 bytes, zero padding to 256 (net.token).
CONNECT_REQUEST_BODY = struct.Struct("<QQ12s144s")
SEALED_TOKEN_AT = HEADER_SIZE + 28  # 44
# CHALLENGE: client salt u64, cookie 156 bytes (net.cookie), tag. 188 bytes.
# CHALLENGE_RESPONSE: the same salt and cookie, zero padding, tag at 248. 256 bytes.
COOKIE_AT = HEADER_SIZE + 8  # 24
COOKIE_SIZE = 156
CHALLENGE_SIZE = COOKIE_AT + COOKIE_SIZE + TAG_SIZE  # 188
CHALLENGE_RESPONSE_SIZE = CONNECT_REQUEST_SIZE  # 256: the accept is never bigger either
# CONNECT_ACCEPT body (then the tag): 68 bytes.
CONNECT_ACCEPT_BODY = struct.Struct("<QHHHHffffIII")
CONNECT_ACCEPT_SIZE = HEADER_SIZE + CONNECT_ACCEPT_BODY.size + TAG_SIZE
# CONNECT_DENY body: client salt u64, reason u8; then the tag (33 bytes). The answer to a
# request of another version is the one untagged DENY (25 bytes): no key is known for it.
CONNECT_DENY_BODY = struct.Struct("<QB")
CONNECT_DENY_SIZE = HEADER_SIZE + CONNECT_DENY_BODY.size + TAG_SIZE
VERSION_DENY_SIZE = HEADER_SIZE + CONNECT_DENY_BODY.size
# INPUT body: snapshot ack u32, count u8, then `count` input records, newest first.
INPUT_PREFIX = struct.Struct("<IB")
INPUT_RECORD = struct.Struct("<IbbBx")  # input seq u32, move x i8, move y i8, buttons u8
MAX_INPUTS_PER_PACKET = 4
BUTTON_DIG = 0x01
# DISCONNECT body: reason u8.
DISCONNECT_BODY = struct.Struct("<B")

DENY_SERVER_FULL = 1
DENY_VERSION = 2
DENY_SHUTTING_DOWN = 3
DENY_ADDRESS_LIMIT = 4  # too many sessions from this IPv4 address

DISCONNECT_CLIENT_QUIT = 1
DISCONNECT_SERVER_SHUTDOWN = 2
DISCONNECT_TIMED_OUT = 3
DISCONNECT_KICKED = 4


class Header(NamedTuple):
    protocol_id: int
    version: int
    type: int
    flags: int
    session_id: int
    sequence: int


def pack_header(ptype: int, session_id: int, sequence: int, version: int = VERSION) -> bytes:
    """The 16-byte header of a packet of type `ptype`."""
    return HEADER.pack(PROTOCOL_ID, version, ptype, 0, session_id, sequence)


def unpack_header(data: bytes) -> Header:
    """Parse the header of `data`; the caller has checked len(data) >= HEADER_SIZE."""
    return Header(*HEADER.unpack_from(data))


def input_packet_size(count: int) -> int:
    return HEADER_SIZE + INPUT_PREFIX.size + count * INPUT_RECORD.size + TAG_SIZE


KEEPALIVE_SIZE = HEADER_SIZE + TAG_SIZE  # 24
DISCONNECT_SIZE = HEADER_SIZE + DISCONNECT_BODY.size + TAG_SIZE  # 25
