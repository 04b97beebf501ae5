"""A batch of received datagrams in preallocated arrays: what drain fills and decode reads."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from net.wire import MAX_DATAGRAM

#: Room per datagram: larger than any valid packet, so an oversize one is seen and counted.
SLOT_BYTES = 1536


@dataclass
class DatagramBatch:
    """Datagrams 0..count-1 of one drain. data: uint8[N, SLOT_BYTES]; length: int32[N]
    (bytes received; > MAX_DATAGRAM means oversize); ip: int64[N] IPv4 as an integer
    (host order); port: int64[N]."""

    data: np.ndarray
    length: np.ndarray
    ip: np.ndarray
    port: np.ndarray
    count: int = 0

    @classmethod
    def allocate(cls, capacity: int) -> "DatagramBatch":
        return cls(np.zeros((capacity, SLOT_BYTES), np.uint8), np.zeros(capacity, np.int32),
                   np.zeros(capacity, np.int64), np.zeros(capacity, np.int64))

    def row_views(self) -> list[memoryview]:
        """One writable memoryview per datagram slot, made once (receive-into targets)."""
        if getattr(self, "_rows", None) is None:
            self._rows = [memoryview(self.data[i]) for i in range(self.capacity)]
        return self._rows

    @property
    def capacity(self) -> int:
        return self.length.shape[0]

    def put(self, payload: bytes, ip: int, port: int) -> bool:
        """Append one datagram (tests and the portable path); False if the batch is full."""
        i = self.count
        if i >= self.capacity:
            return False
        n = min(len(payload), SLOT_BYTES)
        self.data[i, :n] = np.frombuffer(payload[:n], np.uint8)
        self.length[i] = len(payload) if len(payload) <= MAX_DATAGRAM else max(n, MAX_DATAGRAM + 1)
        self.ip[i] = ip
        self.port[i] = port
        self.count = i + 1
        return True
