"""Bans: client ids and IPv4 addresses refused at the door until their ban expires.

Checked by ServerProtocol on the rare handshake packets only (an address before any
cryptography, a client id once its token or cookie has opened), so a check is one dict
lookup, and none at all while nobody is banned. Times are monotonic ns passed in: this
module reads no clock. The list is bounded: when full, the ban that would expire first
makes room (counted in `evicted`), so an operator script gone wild cannot grow memory.
"""

from __future__ import annotations

from typing import NamedTuple

#: Bans kept at most (client ids and addresses together).
MAX_BANS = 4096
#: Characters of a ban's reason kept.
MAX_REASON = 200

CLIENT_ID, ADDRESS = "client_id", "address"


class Ban(NamedTuple):
    """kind: CLIENT_ID (value: the u64 client id) or ADDRESS (value: the IPv4 as a u32);
    until_ns: monotonic ns at which it lapses; reason: free text for operators."""

    kind: str
    value: int
    until_ns: int
    reason: str


class BanList:
    """Bans by client id and by IPv4 address, with expiry; at most `capacity` of them."""

    def __init__(self, capacity: int = MAX_BANS) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity!r}")
        self.capacity = capacity
        self._bans: dict[tuple[str, int], Ban] = {}
        self.evicted = 0  # bans pushed out early by a full list

    def __len__(self) -> int:
        return len(self._bans)

    def ban(self, kind: str, value: int, until_ns: int, reason: str = "",
            now: int | None = None) -> Ban:
        """Ban (kind, value) until `until_ns` (a new ban replaces an older one of the same
        key). When the list is full, lapsed bans go first (given `now`), then the one
        expiring soonest."""
        if kind not in (CLIENT_ID, ADDRESS):
            raise ValueError(f"kind must be {CLIENT_ID!r} or {ADDRESS!r}, got {kind!r}")
        key = (kind, int(value))
        if key not in self._bans and len(self._bans) >= self.capacity:
            if now is not None:
                self.purge(now)
            if len(self._bans) >= self.capacity:
                # O(capacity), on a ban only: never on the packet path
                first = min(self._bans, key=lambda k: (self._bans[k].until_ns, k))
                del self._bans[first]
                self.evicted += 1
        entry = Ban(kind, int(value), int(until_ns), reason[:MAX_REASON])
        self._bans[key] = entry
        return entry

    def unban(self, kind: str, value: int) -> bool:
        """Lift the ban of (kind, value); False if there was none."""
        return self._bans.pop((kind, int(value)), None) is not None

    def banned(self, kind: str, value: int, now: int) -> bool:
        """True if (kind, value) is banned at `now`; a lapsed ban is forgotten here."""
        if not self._bans:  # the common case: one truth test
            return False
        key = (kind, value)
        entry = self._bans.get(key)
        if entry is None:
            return False
        if entry.until_ns <= now:
            del self._bans[key]
            return False
        return True

    def client_banned(self, client_id: int, now: int) -> bool:
        return self.banned(CLIENT_ID, client_id, now)

    def address_banned(self, ip: int, now: int) -> bool:
        """ip: IPv4 as a u32 (net.address.ip_to_int)."""
        return self.banned(ADDRESS, ip, now)

    def purge(self, now: int) -> int:
        """Forget every ban lapsed at `now`; return how many."""
        lapsed = [k for k, b in self._bans.items() if b.until_ns <= now]
        for k in lapsed:
            del self._bans[k]
        return len(lapsed)

    def active(self, now: int) -> list[Ban]:
        """The bans in force at `now`, soonest to lapse first (lapsed ones are purged)."""
        self.purge(now)
        return sorted(self._bans.values(), key=lambda b: (b.until_ns, b.kind, b.value))
