"""The server's whole configuration: each layer's settings, composed."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from net.admin_http import AdminSettings
from net.limits import NetLimits
from net.security import SecuritySettings
from sim.rules import GameRules
from store.settings import StoreSettings
from tick.rates import TickRates


@dataclass(frozen=True)
class ServerConfig:
    rules: GameRules = field(default_factory=GameRules)
    limits: NetLimits = field(default_factory=NetLimits)
    rates: TickRates = field(default_factory=TickRates)
    security: SecuritySettings = field(default_factory=SecuritySettings)
    admin: AdminSettings = field(default_factory=AdminSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    host: str = "127.0.0.1"
    port: int = 7777
    io: str = "auto"  # UDP path: "batched" (recvmmsg/sendmmsg, Linux), "portable", "auto"

    def validate(self) -> None:
        """Raise the layer's error (a ValueError) naming the first bad setting."""
        self.rules.validate()
        self.limits.validate()
        self.rates.validate()
        self.security.validate()
        self.admin.validate()
        self.store.validate()
        try:
            ipaddress.IPv4Address(self.host)
        except ValueError:
            raise ValueError(f"host must be an IPv4 address such as 127.0.0.1, got {self.host!r}") from None
        if not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise ValueError(f"port must be an integer in 0..65535, got {self.port!r}")
        if self.io not in ("auto", "batched", "portable"):
            raise ValueError(f"io must be auto, batched or portable, got {self.io!r}")
        if self.host == "0.0.0.0" and not self.security.public_address:
            raise ValueError("public_address must be set (IPV4:PORT clients reach) when host "
                             "is 0.0.0.0: connect tokens name the server's address")
