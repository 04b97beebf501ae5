"""Wire constants and the fixed packet header. docs/PROTOCOL.md is the normative text.

All integers on the wire are little-endian, except inside msgpack payloads, which follow
the msgpack specification (big-endian).
"""

from __future__ import annotations

import struct
from typing import NamedTuple

PROTOCOL_ID = 0x4D58  # the bytes "XM" on the wire
VERSION = 2  # 2: delta snapshots, velocities in snapshots

# Packet types. C->S: client to server; S->C: server to client.
CONNECT_REQUEST = 1  # C->S
CONNECT_ACCEPT = 2  # S->C
CONNECT_DENY = 3  # S->C
INPUT = 4  # C->S
SNAPSHOT = 5  # S->C
KEEPALIVE = 6  # C->S
DISCONNECT = 7  # both
TYPE_NAMES = {CONNECT_REQUEST: "connect_request", CONNECT_ACCEPT: "connect_accept",
              CONNECT_DENY: "connect_deny", INPUT: "input", SNAPSHOT: "snapshot",
              KEEPALIVE: "keepalive", DISCONNECT: "disconnect"}

# Header: protocol id u16, version u8, type u8, flags u8, reserved 3 bytes,
# session id u32, sequence u32.
HEADER = struct.Struct("<HBBB3xII")
HEADER_SIZE = HEADER.size  # 16

MAX_DATAGRAM = 1200  # no packet of this protocol is larger, either way
CONNECT_REQUEST_SIZE = 256  # padded, so no reply before a proven address outgrows it
MAX_NAME_BYTES = 32

# CONNECT_REQUEST body: client salt u64, name length u8, name 32 bytes, zero padding.
CONNECT_REQUEST_BODY = struct.Struct("<QB32s")
# CONNECT_ACCEPT body.
CONNECT_ACCEPT_BODY = struct.Struct("<QHHHHffffIII")
# CONNECT_DENY body: client salt u64, reason u8.
CONNECT_DENY_BODY = struct.Struct("<QB")
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
    return HEADER_SIZE + INPUT_PREFIX.size + count * INPUT_RECORD.size
