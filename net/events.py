"""What the protocol core reports to its driver: rare session events, as small records."""

from __future__ import annotations

from dataclasses import dataclass

from net.address import Address


@dataclass(frozen=True)
class PlayerJoined:
    slot: int
    session_id: int
    name: str
    address: Address


@dataclass(frozen=True)
class PlayerLeft:
    slot: int
    name: str
    reason: str  # "quit", "timed_out", "shutdown", "kicked"
