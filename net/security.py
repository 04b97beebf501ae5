"""Security settings: the token key, the address tokens must name, and abuse limits.

Rates are per second; 0 means "no limit". A bucket holds a quarter second of its rate, at
least 8 packets, so a burst of resends passes. The per-address limits do not apply to
loopback sources (127.0.0.0/8): those are the host's own bots and tools.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from net.address import parse_endpoint
from net.errors import LimitsError
from net.ratelimit import gcra_params

BURST_SECONDS = 0.25
MIN_BURST = 8.0


@dataclass(frozen=True)
class SecuritySettings:
    """The [security] table of the config."""

    key_file: str = "xmarks.key"  # the 32-byte token key shared with the token service
    public_address: str = ""  # IPV4:PORT connect tokens must name; "" = host:port served
    connect_rate: float = 20000.0  # handshake packets per second, all addresses together
    connect_rate_per_address: float = 20.0  # handshake packets per second from one IPv4
    packet_rate: float = 250.0  # packets per second one session may send
    max_sessions_per_address: int = 16  # open sessions from one IPv4 address; 0: no limit
    challenge_timeout: float = 10.0  # seconds a challenge cookie stays valid
    # a session moves to a new address only after its current one was silent this long:
    # a captured packet raced from elsewhere cannot pull a live session away
    move_after_silence: float = 0.25

    def validate(self) -> None:
        """Raise LimitsError naming the first bad field."""
        if not isinstance(self.key_file, str) or not self.key_file:
            raise LimitsError(f"key_file must be a file path, got {self.key_file!r}")
        if self.public_address:
            parse_address(self.public_address)
        for name in ("connect_rate", "connect_rate_per_address", "packet_rate"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise LimitsError(f"{name} must be a number >= 0 (0: no limit), got {value!r}")
        value = self.max_sessions_per_address
        if not (isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 65535):
            raise LimitsError(f"max_sessions_per_address must be an integer in 0..65535 "
                              f"(0: no limit), got {value!r}")
        value = self.move_after_silence
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or not math.isfinite(value) or not 0 <= value <= 3600):
            raise LimitsError(f"move_after_silence must be a number of seconds in 0..3600, "
                              f"got {value!r}")
        value = self.challenge_timeout
        if not (isinstance(value, (int, float)) and math.isfinite(value) and 0 < value <= 3600):
            raise LimitsError(f"challenge_timeout must be a number of seconds in (0, 3600], "
                              f"got {value!r}")

    def guard(self) -> np.ndarray:
        """int64[net.decode.GUARD_ROWS]: GCRA interval and tolerance (ns) per limit, then
        the silence (ns) before a session may move to another address."""
        out = []
        for rate in (self.connect_rate_per_address, self.connect_rate, self.packet_rate):
            out += gcra_params(rate, max(MIN_BURST, rate * BURST_SECONDS))
        out.append(int(self.move_after_silence * 1e9))
        return np.array(out, np.int64)


def parse_address(text: str) -> tuple[str, int]:
    """'IPV4:PORT' -> (ip, port); LimitsError naming public_address otherwise."""
    try:
        return parse_endpoint(text)
    except ValueError:
        raise LimitsError(f"public_address must be IPV4:PORT such as 203.0.113.5:7777, "
                          f"got {text!r}") from None
