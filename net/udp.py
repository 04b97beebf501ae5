"""The only module that opens sockets: UDP endpoints for the server, the bots and tools.

This is the portable path (one Python call per datagram). The scale issue adds batched
recvmmsg/sendmmsg from numba behind the same two calls, drain() and send_snapshots().
"""

from __future__ import annotations

import socket
from collections.abc import Iterable

from net.address import Address
from net.batch import SLOT_BYTES, DatagramBatch
from net.wire import MAX_DATAGRAM

RCVBUF_BYTES = 4 * 1024 * 1024
SNDBUF_BYTES = 4 * 1024 * 1024

_WOULD_BLOCK = (BlockingIOError, InterruptedError)


def _open(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for option, size in ((socket.SO_RCVBUF, RCVBUF_BYTES), (socket.SO_SNDBUF, SNDBUF_BYTES)):
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, size)
        except OSError:
            pass  # the kernel caps it at rmem_max/wmem_max; a smaller buffer still works
    sock.bind((host, port))
    sock.setblocking(False)
    return sock


class UdpEndpoint:
    """A bound, non-blocking UDP socket with batch-friendly receive and send."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sock = _open(host, port)
        self.send_errors = 0
        self.recv_errors = 0

    @property
    def address(self) -> Address:
        return self.sock.getsockname()

    def fileno(self) -> int:
        return self.sock.fileno()

    def drain(self, batch: DatagramBatch) -> int:
        """Receive what is waiting, up to the batch's capacity, into `batch`; return count."""
        rows = batch.row_views()
        recv = self.sock.recvfrom_into
        inet_aton = socket.inet_aton
        i = 0
        capacity = batch.capacity
        while i < capacity:
            try:
                n, addr = recv(rows[i], SLOT_BYTES)
            except _WOULD_BLOCK:
                break
            except ConnectionRefusedError:  # a late ICMP port-unreachable: one per call
                self.recv_errors += 1
                continue
            except OSError:  # anything else would repeat forever: stop this drain
                self.recv_errors += 1
                break
            # A datagram that fills the slot may have been cut: count it as oversize.
            batch.length[i] = n if n < SLOT_BYTES else MAX_DATAGRAM + 1
            batch.ip[i] = int.from_bytes(inet_aton(addr[0]), "big")
            batch.port[i] = addr[1]
            i += 1
        batch.count = i
        return i

    def recv_all(self, limit: int = 65536) -> list[tuple[bytes, Address]]:
        """Every waiting datagram as (bytes, address), up to `limit` (clients, tools)."""
        out = []
        while len(out) < limit:
            try:
                out.append(self.sock.recvfrom(SLOT_BYTES))
            except _WOULD_BLOCK:
                break
            except ConnectionRefusedError:
                self.recv_errors += 1
                continue
            except OSError:
                self.recv_errors += 1
                break
        return out

    def send(self, data: bytes | memoryview, addr: Address) -> bool:
        """Send one datagram; a full buffer or unreachable peer is counted, not raised."""
        try:
            self.sock.sendto(data, addr)
            return True
        except OSError:  # full buffer, unreachable peer: nothing a peer does may raise here
            self.send_errors += 1
            return False

    def send_many(self, datagrams: Iterable[tuple[bytes | memoryview, Address]]) -> tuple[int, int]:
        """Send each (datagram, address); return (datagrams sent, bytes sent)."""
        sent = nbytes = 0
        send = self.sock.sendto
        for data, addr in datagrams:
            try:
                send(data, addr)
            except OSError:
                self.send_errors += 1
                continue
            sent += 1
            nbytes += len(data)
        return sent, nbytes

    def close(self) -> None:
        self.sock.close()
