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
    client_id: int = 0  # the connect token's (u64): who the player is across sessions
    generation: int = 0  # the player's generation in the world (sim P_GEN) after joining
    resumed: bool = False  # a returning client took back its player (no world join)


@dataclass(frozen=True)
class PlayerLeft:
    slot: int
    name: str
    reason: str  # "quit", "timed_out", "shutdown", "kicked"
    address: Address | None = None  # where the session was, if it had one


@dataclass(frozen=True)
class PlayerAway:
    """A session timed out: its player stays in the world, standing still, for the
    reconnect grace; the same client id connecting again takes it back (PlayerJoined with
    resumed=True), else it leaves (PlayerLeft "timed_out")."""

    slot: int
    name: str
    address: Address | None = None


@dataclass(frozen=True)
class PlayerMoved:
    """A session's packets now come from a new address (NAT rebinding, a phone changing
    networks): accepted for an authenticated packet newer than any before it."""

    slot: int
    name: str
    old: Address
    new: Address
