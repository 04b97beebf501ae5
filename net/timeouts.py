"""Session timeouts: which connected sessions have been silent too long."""

from __future__ import annotations

import numpy as np

from net.sessions import CONNECTED, S_LAST_HEARD, S_STATE
from sim.jit import kernel


@kernel
def expired_sessions(sessions: np.ndarray, now: int, timeout_ns: int, out: np.ndarray) -> int:
    """Write the slots of CONNECTED sessions last heard more than timeout_ns before `now`
    into out (int32[P]), in slot order; return how many. sessions: int64[10, P]."""
    n = 0
    for s in range(sessions.shape[1]):
        if sessions[S_STATE, s] == CONNECTED and now - sessions[S_LAST_HEARD, s] > timeout_ns:
            out[n] = s
            n += 1
    return n
