"""Why a datagram was dropped. Every drop increments exactly one counter, by reason."""

from __future__ import annotations

import numpy as np

# Reasons, in the order a receiver checks (docs/PROTOCOL.md, "Order of checks").
(TOO_SHORT, OVERSIZE, BAD_PROTOCOL, BAD_VERSION, BAD_FLAGS, BAD_TYPE, BAD_LENGTH,
 UNKNOWN_SESSION, WRONG_ADDRESS, STALE_SEQUENCE, BAD_PAYLOAD, DUPLICATE_CONNECT,
 SERVER_FULL, NO_BASELINE, REPLAYED, BAD_TAG, RATE_LIMITED, BAD_TOKEN, TOKEN_EXPIRED,
 WRONG_SERVER, TOKEN_REUSED, DUPLICATE_CLIENT, BAD_CHALLENGE, CHALLENGE_EXPIRED,
 ADDRESS_LIMIT, SHUTTING_DOWN, BANNED) = range(27)

REASONS = ("too_short", "oversize", "bad_protocol", "bad_version", "bad_flags", "bad_type",
           "bad_length", "unknown_session", "wrong_address", "stale_sequence", "bad_payload",
           "duplicate_connect", "server_full", "no_baseline", "replayed", "bad_tag",
           "rate_limited", "bad_token", "token_expired", "wrong_server", "token_reused",
           "duplicate_client", "bad_challenge", "challenge_expired", "address_limit",
           "shutting_down", "banned")


def new_drop_counters() -> np.ndarray:
    """int64[len(REASONS)], one counter per reason."""
    return np.zeros(len(REASONS), np.int64)


def drops_by_reason(counters: np.ndarray) -> dict[str, int]:
    """The non-zero counters as {reason: count}."""
    return {REASONS[i]: int(c) for i, c in enumerate(counters) if c}
