"""The only module that opens sockets: UDP endpoints for the server, the bots and tools.

Two I/O paths behind the same calls, drain() and send_batch(), with identical results:
- "batched" (Linux): recvmmsg/sendmmsg from the numba kernels in net/mmsg.py, one syscall
  per 1024 datagrams and no Python per datagram;
- "portable": one Python socket call per datagram.
send(), send_many() and recv_all() (clients, tools, replies) always take the portable path.
"""

from __future__ import annotations

import os
import selectors
import socket
import sys
import threading
from collections.abc import Iterable

import numpy as np

from net.address import Address
from net.batch import SLOT_BYTES, DatagramBatch
from net.wire import MAX_DATAGRAM
from sim.jit import bind

#: Socket buffer targets when the caller gives none (bytes; Linux doubles what it is given).
RCVBUF_BYTES = 4 * 1024 * 1024
SNDBUF_BYTES = 4 * 1024 * 1024

IO_MODES = ("auto", "batched", "portable")

# Linux values; the Python socket module does not export them. *FORCE ignores
# net.core.rmem_max/wmem_max but needs CAP_NET_ADMIN.
_SO_RCVBUFFORCE = 33
_SO_SNDBUFFORCE = 32
_PROC_NET_UDP = "/proc/net/udp"

_WOULD_BLOCK = (BlockingIOError, InterruptedError)
_PORT_MAX = 0xFFFF
_IPV4_MAX = 0xFFFFFFFF

_load_lock = threading.Lock()
_loaded: list = []  # [module or None, reason]: the kernels are loaded once per process


def _batched_kernels():
    """net.mmsg with its kernels compiled (or loaded from cache) and run once on tiny
    arrays with the real dtypes; raises ValueError saying why if they cannot be."""
    if not sys.platform.startswith("linux"):
        raise ValueError(f"io='batched' needs Linux recvmmsg/sendmmsg, not {sys.platform};"
                         " use 'portable'")
    with _load_lock:
        if not _loaded:
            try:
                from net import mmsg
                hdrs, iovs, names = mmsg.scratch(1)
                batch = DatagramBatch.allocate(1)
                # fd -1: each call fails at once with EBADF, after compiling for these types
                mmsg.recv_batch(-1, batch.data, batch.length, batch.ip, batch.port, 1,
                                hdrs, iovs, names)
                mmsg.send_batch(-1, np.zeros(1, np.uint8), np.zeros(2, np.int32),
                                np.zeros(1, np.int64), np.zeros(1, np.int64), 1,
                                hdrs, iovs, names)
                _loaded[:] = [mmsg, ""]
            except Exception as exc:  # any failure means: use the portable path
                _loaded[:] = [None, f"{type(exc).__name__}: {exc}"]
        module, reason = _loaded
    if module is None:
        raise ValueError(f"io='batched' is unavailable here ({reason}); use 'portable'")
    return module


def _resolve_io(io: str):
    """(batched?, net.mmsg or None) for an io mode."""
    if io not in IO_MODES:
        raise ValueError(f"io must be one of {IO_MODES}, not {io!r}")
    if io == "portable":
        return False, None
    if io == "batched":
        return True, _batched_kernels()
    try:
        return True, _batched_kernels()
    except ValueError:
        return False, None


def _set_buffer(sock: socket.socket, force: int, option: int, size: int) -> None:
    """Ask for `size` bytes: the privileged option first (beyond the sysctl cap), then the
    ordinary one (the kernel caps it at rmem_max/wmem_max; a smaller buffer still works)."""
    if sys.platform.startswith("linux"):
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, size)
            return
        except OSError:
            pass  # not privileged
    try:
        sock.setsockopt(socket.SOL_SOCKET, option, size)
    except OSError:
        pass


def _open(host: str, port: int, rcvbuf: int, sndbuf: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        _set_buffer(sock, _SO_RCVBUFFORCE, socket.SO_RCVBUF, rcvbuf)
        _set_buffer(sock, _SO_SNDBUFFORCE, socket.SO_SNDBUF, sndbuf)
        sock.bind((host, port))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _buffer_target(value: int | None, default: int, name: str) -> int:
    if value is None:
        return default
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive number of bytes, not {value!r}")
    return int(value)


def _check_send_arrays(buf: np.ndarray, off: np.ndarray, ip: np.ndarray, port: np.ndarray,
                       n: int) -> None:
    if not (isinstance(buf, np.ndarray) and buf.dtype == np.uint8 and buf.ndim == 1
            and buf.flags.c_contiguous):
        raise ValueError("send_batch: buf must be a C-contiguous uint8[:]")
    for name, arr, dtype, need in (("off", off, np.int32, n + 1), ("ip", ip, np.int64, n),
                                   ("port", port, np.int64, n)):
        if not isinstance(arr, np.ndarray) or arr.dtype != dtype or arr.ndim != 1:
            raise ValueError(f"send_batch: {name} must be {np.dtype(dtype).name}[:]")
        if arr.shape[0] < need:
            raise ValueError(f"send_batch: {name} has {arr.shape[0]} entries, needs {need}")


class UdpEndpoint:
    """A bound, non-blocking UDP socket with batch-friendly receive and send.

    io: "batched" (Linux recvmmsg/sendmmsg kernels; ValueError where unavailable),
    "portable" (one Python call per datagram) or "auto" (batched when available).
    rcvbuf / sndbuf: socket buffer targets in bytes (size them for one tick of the most
    players); the sizes the kernel granted are in rcvbuf_bytes / sndbuf_bytes.
    Errors caused by the network or a peer are counted in send_errors / recv_errors,
    never raised.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, io: str = "auto",
                 rcvbuf: int | None = None, sndbuf: int | None = None) -> None:
        rcv = _buffer_target(rcvbuf, RCVBUF_BYTES, "rcvbuf")
        snd = _buffer_target(sndbuf, SNDBUF_BYTES, "sndbuf")
        self.batched, self._mmsg = _resolve_io(io)
        self.sock = _open(host, port, rcv, snd)
        self.rcvbuf_bytes = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        self.sndbuf_bytes = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        self.send_errors = 0
        self.recv_errors = 0
        # Struct scratch for the kernels, grown on demand, kept: receive and send each have
        # their own, so a receiving thread and a sending thread never share one.
        self._rx_scratch: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._tx_scratch: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        # kernels bound to their argument types on first use (sim.jit.bind), and the
        # arrays last checked by send_batch: a tick's I/O then allocates next to nothing
        self._recv = self._send = None
        self._checked: tuple = ()

    @property
    def io(self) -> str:
        return "batched" if self.batched else "portable"

    @property
    def address(self) -> Address:
        return self.sock.getsockname()

    def fileno(self) -> int:
        return self.sock.fileno()

    # ---- receive ---------------------------------------------------------------------

    def drain(self, batch: DatagramBatch) -> int:
        """Receive what is waiting, up to the batch's capacity, into `batch`; return count.

        Fills data/length/ip/port rows 0..count-1 and batch.count. A datagram that filled
        its slot or was cut gets length MAX_DATAGRAM + 1 (oversize). What does not fit
        stays in the socket for the next drain.
        """
        if self.batched:
            return self._drain_batched(batch)
        return self._drain_portable(batch)

    def _drain_batched(self, batch: DatagramBatch) -> int:
        capacity = batch.capacity
        scratch = self._rx_scratch
        if scratch is None or scratch[0].size < self._mmsg.scratch_bytes(capacity):
            scratch = self._rx_scratch = self._mmsg.scratch(capacity)
        args = (self.sock.fileno(), batch.data, batch.length, batch.ip, batch.port, capacity,
                scratch[0], scratch[1], scratch[2])
        if self._recv is None:
            self._recv = bind(self._mmsg.recv_batch, *args)
        count, err, retried = self._recv(*args)
        self.recv_errors += retried + (err != 0)
        batch.count = count
        return count

    def _drain_portable(self, batch: DatagramBatch) -> int:
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

    # ---- send ------------------------------------------------------------------------

    def send_batch(self, buf: np.ndarray, off: np.ndarray, ip: np.ndarray, port: np.ndarray,
                   n: int) -> tuple[int, int]:
        """Send datagram j = buf[off[j]:off[j+1]] to (ip[j], port[j]) for j < n.

        buf: uint8[:] C-contiguous; off: int32[>= n+1]; ip: int64[>= n] IPv4 as an integer
        (host order); port: int64[>= n]. Returns (datagrams sent, bytes sent). A datagram
        that cannot be sent (bad offsets or address, refused by the kernel, buffer still
        full after bounded retries) is skipped and counted in send_errors; the others go.
        Raises ValueError only for wrong array types or sizes (a caller's bug).
        """
        n = int(n)
        if n <= 0:
            return 0, 0
        checked = self._checked
        if (len(checked) != 5 or checked[0] is not buf or checked[1] is not off
                or checked[2] is not ip or checked[3] is not port or checked[4] < n):
            _check_send_arrays(buf, off, ip, port, n)  # once per set of arrays, not per tick
            self._checked = (buf, off, ip, port, min(off.shape[0] - 1, ip.shape[0], port.shape[0]))
        if not self.batched:
            return self._send_batch_portable(buf, off, ip, port, n)
        scratch = self._tx_scratch
        if scratch is None or scratch[0].size < self._mmsg.scratch_bytes(n):
            scratch = self._tx_scratch = self._mmsg.scratch(n)
        args = (self.sock.fileno(), buf, off, ip, port, n, scratch[0], scratch[1], scratch[2])
        if self._send is None:
            self._send = bind(self._mmsg.send_batch, *args)
        sent, nbytes, errors = self._send(*args)
        self.send_errors += errors
        return sent, nbytes

    def _send_batch_portable(self, buf: np.ndarray, off: np.ndarray, ip: np.ndarray,
                             port: np.ndarray, n: int) -> tuple[int, int]:
        view = memoryview(buf)
        size = buf.shape[0]
        send = self.sock.sendto
        inet_ntoa = socket.inet_ntoa
        sent = nbytes = 0
        for a, b, host, p in zip(off[:n].tolist(), off[1:n + 1].tolist(), ip[:n].tolist(),
                                 port[:n].tolist()):
            if not (0 <= a <= b <= size and 0 <= p <= _PORT_MAX and 0 <= host <= _IPV4_MAX):
                self.send_errors += 1  # the same checks as the kernel's, so the same counts
                continue
            try:
                send(view[a:b], (inet_ntoa(host.to_bytes(4, "big")), p))
            except OSError:
                self.send_errors += 1
                continue
            sent += 1
            nbytes += b - a
        return sent, nbytes

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

    # ---- health ------------------------------------------------------------------------

    def kernel_drops(self) -> int:
        """Datagrams the kernel dropped for this socket (full receive buffer and the like):
        the 'drops' column of its /proc/net/udp row, found by socket inode and local port.
        -1 where that is unavailable (not Linux, closed socket, row not found)."""
        try:
            inode = os.fstat(self.sock.fileno()).st_ino
            local_port = self.sock.getsockname()[1]
            with open(_PROC_NET_UDP) as f:
                lines = f.read().splitlines()[1:]
        except (OSError, ValueError):
            return -1
        for line in lines:
            fields = line.split()
            # sl local rem st tx:rx tr:when retrnsmt uid timeout inode ref pointer drops
            if len(fields) < 13 or not fields[9].isdigit() or int(fields[9]) != inode:
                continue
            try:
                if int(fields[1].rsplit(":", 1)[1], 16) != local_port:
                    continue
                return int(fields[12])
            except (IndexError, ValueError):
                return -1
        return -1

    def close(self) -> None:
        self.sock.close()


class EndpointPoller:
    """Waits until some of many endpoints have datagrams waiting (the proxy's loop: one
    listening endpoint and one upstream endpoint per client). Remove an endpoint before
    closing it."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()

    def add(self, endpoint: UdpEndpoint) -> None:
        self._selector.register(endpoint.sock, selectors.EVENT_READ, endpoint)

    def remove(self, endpoint: UdpEndpoint) -> None:
        try:
            self._selector.unregister(endpoint.sock)
        except (KeyError, ValueError):  # never added, or already removed
            pass

    def wait(self, timeout_s: float) -> list[UdpEndpoint]:
        """The endpoints with a datagram waiting, after at most `timeout_s` seconds
        (at once if one already has); [] on timeout."""
        return [key.data for key, _ in self._selector.select(max(0.0, timeout_s))]

    def close(self) -> None:
        self._selector.close()
