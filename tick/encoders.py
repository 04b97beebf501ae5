"""Snapshot encoding on several threads: part 0 on the tick thread, part c on worker c.

The encode kernels release the GIL (sim.jit: nogil), so the parts of one tick run at the
same time on as many cores. Each part has its own scratch and writes its own rows
(net.server.ServerProtocol.encode_part); the merge makes one run of datagrams in slot
order, byte for byte what a single part writes. Workers are started once and wait on an
event between ticks: a tick costs a few lock operations, never a thread start.
"""

from __future__ import annotations

import threading

from net.server import ServerProtocol


class EncodeCrew:
    """Runs `protocol`'s encode parts 1.. on worker threads while the caller runs part 0."""

    def __init__(self, protocol: ServerProtocol) -> None:
        self.protocol = protocol
        self._stopping = False
        self._failure: BaseException | None = None
        self._go = [threading.Event() for _ in range(protocol.encode_parts - 1)]
        self._done = [threading.Event() for _ in range(protocol.encode_parts - 1)]
        self._workers = [threading.Thread(target=self._work, args=(c,), daemon=True,
                                          name=f"xmarks-encode-{c}")
                         for c in range(1, protocol.encode_parts)]
        for worker in self._workers:
            worker.start()

    def encode(self) -> int:
        """This tick's snapshots, as ServerProtocol.encode(); return the count."""
        proto = self.protocol
        if not self._workers:
            return proto.encode()
        proto.encode_prepare()
        for go in self._go:
            go.set()
        try:
            proto.encode_part(0)
        finally:  # the workers are done with this tick's buffers before anything else
            for done in self._done:
                done.wait()
                done.clear()
        if self._failure is not None:  # a bug in a kernel: fail the tick as a serial one would
            failure, self._failure = self._failure, None
            raise failure
        return proto.encode_merge()

    def close(self) -> None:
        """Stop the workers (between ticks)."""
        self._stopping = True
        for go in self._go:
            go.set()
        for worker in self._workers:
            worker.join(timeout=5)

    def _work(self, c: int) -> None:
        go, done = self._go[c - 1], self._done[c - 1]
        while True:
            go.wait()
            go.clear()
            if self._stopping:
                return
            try:
                self.protocol.encode_part(c)
            except BaseException as exc:  # noqa: BLE001 - handed to the tick thread
                self._failure = exc
            done.set()
