"""Batched UDP receive and send: libc recvmmsg/sendmmsg called from numba kernels (Linux).

One kernel call moves up to a whole tick of datagrams with one syscall per 1024, without
the GIL and without one Python call per datagram (about 1.5x faster on receive and 1.7x
on send than the portable path: shared/PERF-NOTES.md). Only net/udp.py opens sockets; these
kernels only use a file descriptor they are given, so the bot horde may call them too.

libc is bound through numba.types.ExternalFunction, not ctypes pointers: kernels holding
ctypes pointers cannot be cached, these can. errno is read through __errno_location() in
the same kernel right after the call (ctypes.get_errno() never sees it).

The kernels never allocate: the caller owns the struct scratch (see `scratch`), and every
header is rewritten before each syscall (the kernel writes msg_namelen, msg_flags and
msg_len back, and the arrays passed may differ from call to call).

Struct layouts are those of x86-64 / aarch64 Linux (LP64); tests check them against
ctypes.Structure definitions.
"""

from __future__ import annotations

import errno as _errno
import socket as _socket

import numpy as np
from numba import types

from net.wire import MAX_DATAGRAM
from sim.jit import borrowed, kernel

# ---- struct layouts (bytes) -------------------------------------------------------------
# struct msghdr: 4 padding bytes after msg_namelen and after msg_flags.
MSG_NAME = 0  # void *
MSG_NAMELEN = 8  # socklen_t (u32)
MSG_IOV = 16  # struct iovec *
MSG_IOVLEN = 24  # size_t
MSG_CONTROL = 32  # void *
MSG_CONTROLLEN = 40  # size_t
MSG_FLAGS = 48  # int
MSGHDR_SIZE = 56
# struct mmsghdr: msghdr, then the kernel's count of bytes moved.
MSG_LEN = 56  # unsigned int
MMSGHDR_SIZE = 64
# struct iovec
IOV_BASE = 0  # void *
IOV_LEN = 8  # size_t
IOVEC_SIZE = 16
# struct sockaddr_in: family in host order; port and address in network order.
SIN_FAMILY = 0  # sa_family_t (u16)
SIN_PORT = 2  # in_port_t (u16, big-endian)
SIN_ADDR = 4  # struct in_addr (u32, big-endian)
SOCKADDR_IN_SIZE = 16

#: Most messages per syscall (the kernel's UIO_MAXIOV caps vlen at 1024).
MAX_VLEN = 1024
#: Receive: retries after a late ICMP error (ECONNREFUSED) or EINTR, per call.
RECV_RETRIES = 64
#: Send: retries in a row without progress after EAGAIN/ENOBUFS/EINTR before giving up
#: (each after waiting up to SEND_WAIT_MS for room: a full buffer stalls a tick <= 8 ms).
SEND_RETRIES = 8

_AF_INET = int(_socket.AF_INET)
_MSG_DONTWAIT = 0x40  # Linux values; socket.MSG_* differ on other platforms
_MSG_TRUNC = 0x20
_PORT_MAX = 0xFFFF
_IPV4_MAX = 0xFFFFFFFF
_OVERSIZE = MAX_DATAGRAM + 1  # what DatagramBatch.length holds for a cut or too-big datagram

_EAGAIN = _errno.EAGAIN
_EWOULDBLOCK = _errno.EWOULDBLOCK
_EINTR = _errno.EINTR
_ENOBUFS = _errno.ENOBUFS
_ECONNREFUSED = _errno.ECONNREFUSED
_EINVAL = _errno.EINVAL
_EBADF = _errno.EBADF
_ENOTSOCK = _errno.ENOTSOCK
_EFAULT = _errno.EFAULT

# Word indices into the scratch arrays (viewed as int64 / int32), derived from the layout.
_H64 = MMSGHDR_SIZE // 8
_H32 = MMSGHDR_SIZE // 4
_I64 = IOVEC_SIZE // 8

# Pointers are passed as intp: on LP64 a pointer and a 64-bit integer share one ABI class.
_recvmmsg = types.ExternalFunction(
    "recvmmsg", types.intc(types.intc, types.intp, types.uintc, types.intc, types.intp))
_sendmmsg = types.ExternalFunction(
    "sendmmsg", types.intc(types.intc, types.intp, types.uintc, types.intc))
_errno_location = types.ExternalFunction("__errno_location", types.CPointer(types.intc)())
_poll = types.ExternalFunction("poll", types.intc(types.intp, types.uintp, types.intc))
_POLLOUT = 0x004
#: How long one wait for room in a full send buffer may take (ms): a tick stalls at most
#: SEND_RETRIES times this before the rest of its datagrams are counted as send errors.
SEND_WAIT_MS = 1


def layout() -> dict[str, int]:
    """The struct sizes and field offsets (bytes) the kernels assume."""
    return dict(MSG_NAME=MSG_NAME, MSG_NAMELEN=MSG_NAMELEN, MSG_IOV=MSG_IOV,
                MSG_IOVLEN=MSG_IOVLEN, MSG_CONTROL=MSG_CONTROL,
                MSG_CONTROLLEN=MSG_CONTROLLEN, MSG_FLAGS=MSG_FLAGS, MSGHDR_SIZE=MSGHDR_SIZE,
                MSG_LEN=MSG_LEN, MMSGHDR_SIZE=MMSGHDR_SIZE, IOV_BASE=IOV_BASE, IOV_LEN=IOV_LEN,
                IOVEC_SIZE=IOVEC_SIZE, SIN_FAMILY=SIN_FAMILY, SIN_PORT=SIN_PORT,
                SIN_ADDR=SIN_ADDR, SOCKADDR_IN_SIZE=SOCKADDR_IN_SIZE)


def scratch_bytes(messages: int) -> int:
    """Size of the hdrs array `scratch(messages)` returns (to tell if one is big enough)."""
    return max(1, min(int(messages), MAX_VLEN)) * MMSGHDR_SIZE


def scratch(messages: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Struct scratch for `messages` headers per syscall (at most MAX_VLEN are used):
    hdrs uint8[m*64], iovs uint8[m*16], names uint8[m*16], m = min(messages, MAX_VLEN).
    Allocate once and pass to every call; one set per thread."""
    m = scratch_bytes(messages) // MMSGHDR_SIZE
    return (np.zeros(m * MMSGHDR_SIZE, np.uint8), np.zeros(m * IOVEC_SIZE, np.uint8),
            np.zeros(m * SOCKADDR_IN_SIZE, np.uint8))


@kernel
def _errno() -> int:
    return _errno_location()[0]


@kernel
def wait_writable(fd: int, timeout_ms: int) -> None:
    """Block until fd can take a datagram or timeout_ms passes (poll(2) for POLLOUT).
    Only on the rare full-buffer path: the one-entry pollfd is allocated here."""
    pfd = np.zeros(1, np.int64)  # struct pollfd {int fd; short events; short revents;}
    pfd[0] = (fd & 0xFFFFFFFF) | (_POLLOUT << 32)
    _poll(pfd.ctypes.data, 1, timeout_ms)


@kernel
def _set_header(h64: np.ndarray, h32: np.ndarray, j: int, name: int, iov: int) -> None:
    """Header j points at its own sockaddr and iovec; the kernel's outputs are zeroed."""
    h64[j * _H64 + MSG_NAME // 8] = name
    h32[j * _H32 + MSG_NAMELEN // 4] = SOCKADDR_IN_SIZE
    h32[j * _H32 + MSG_NAMELEN // 4 + 1] = 0
    h64[j * _H64 + MSG_IOV // 8] = iov
    h64[j * _H64 + MSG_IOVLEN // 8] = 1
    h64[j * _H64 + MSG_CONTROL // 8] = 0
    h64[j * _H64 + MSG_CONTROLLEN // 8] = 0
    h32[j * _H32 + MSG_FLAGS // 4] = 0
    h32[j * _H32 + MSG_FLAGS // 4 + 1] = 0
    h32[j * _H32 + MSG_LEN // 4] = 0
    h32[j * _H32 + MSG_LEN // 4 + 1] = 0


@kernel
def _capacity(hdrs: np.ndarray, iovs: np.ndarray, names: np.ndarray) -> int:
    """Messages per syscall the scratch has room for (0 if any array is too small)."""
    return min(hdrs.size // MMSGHDR_SIZE, iovs.size // IOVEC_SIZE,
               names.size // SOCKADDR_IN_SIZE, MAX_VLEN)


@kernel
def recv_batch(fd: int, data: np.ndarray, length: np.ndarray, ip: np.ndarray,
               port: np.ndarray, capacity: int, hdrs: np.ndarray, iovs: np.ndarray,
               names: np.ndarray) -> tuple[int, int, int]:
    """Receive what is waiting on non-blocking UDP socket `fd` into slots 0.. of a batch.

    data: uint8[N, SLOT] C-contiguous; length: int32[N] bytes received, MAX_DATAGRAM+1 if
    the datagram was cut (MSG_TRUNC) or filled its slot; ip: int64[N] sender IPv4 (host
    order); port: int64[N]. hdrs/iovs/names: uint8 scratch from `scratch` (C-contiguous).
    Calls recvmmsg (MSG_DONTWAIT, up to 1024 per call) until fewer than asked arrive, the
    socket is empty, or `capacity` (clamped to the arrays) is reached; the rest waits for
    the next call.

    Returns (count, errno, retried): errno is 0 unless an error ended the call early;
    retried counts late ICMP errors (ECONNREFUSED) and EINTRs that were retried.
    """
    cap = min(capacity, data.shape[0], length.size, ip.size, port.size)
    vmax = _capacity(hdrs, iovs, names)
    if cap <= 0 or vmax <= 0:
        return 0, 0, 0
    if data.strides[1] != 1:  # each slot must be one contiguous run of bytes
        return 0, _EINVAL, 0
    slot = data.shape[1]
    row = np.int64(data.strides[0])
    dbase = np.int64(data.ctypes.data)
    hbase = np.int64(hdrs.ctypes.data)
    ibase = np.int64(iovs.ctypes.data)
    nbase = np.int64(names.ctypes.data)
    # borrowed (sim.jit.borrowed): _set_header per datagram would count references
    h64 = borrowed(hdrs.view(np.int64))
    h32 = borrowed(hdrs.view(np.int32))
    i64 = borrowed(iovs.view(np.int64))
    names, length, ip, port = borrowed(names), borrowed(length), borrowed(ip), borrowed(port)
    total = 0
    err = 0
    retried = 0
    while total < cap:
        want = min(cap - total, vmax)
        for j in range(want):
            _set_header(h64, h32, j, nbase + j * SOCKADDR_IN_SIZE, ibase + j * IOVEC_SIZE)
            i64[j * _I64 + IOV_BASE // 8] = dbase + (total + j) * row
            i64[j * _I64 + IOV_LEN // 8] = slot
        got = _recvmmsg(fd, hbase, want, _MSG_DONTWAIT, 0)
        if got < 0:
            e = _errno()
            if e == _EAGAIN or e == _EWOULDBLOCK:
                break
            if (e == _ECONNREFUSED or e == _EINTR) and retried < RECV_RETRIES:
                retried += 1  # a late ICMP error is reported once; the data is still there
                continue
            err = e
            break
        for j in range(got):
            i = total + j
            n = h32[j * _H32 + MSG_LEN // 4]
            cut = (h32[j * _H32 + MSG_FLAGS // 4] & _MSG_TRUNC) != 0
            length[i] = _OVERSIZE if cut or n >= slot else n
            a = j * SOCKADDR_IN_SIZE
            port[i] = (np.int64(names[a + SIN_PORT]) << 8) | names[a + SIN_PORT + 1]
            ip[i] = ((np.int64(names[a + SIN_ADDR]) << 24)
                     | (np.int64(names[a + SIN_ADDR + 1]) << 16)
                     | (np.int64(names[a + SIN_ADDR + 2]) << 8) | names[a + SIN_ADDR + 3])
        total += got
        if got < want:
            break
    return total, err, retried


@kernel
def send_batch(fd: int, buf: np.ndarray, off: np.ndarray, ip: np.ndarray, port: np.ndarray,
               n: int, hdrs: np.ndarray, iovs: np.ndarray,
               names: np.ndarray) -> tuple[int, int, int]:
    """Send datagram j = buf[off[j]:off[j+1]] to (ip[j], port[j]) for j < n on UDP socket fd.

    buf: uint8[:] C-contiguous; off: int32[n+1]; ip: int64[n] IPv4 (host order);
    port: int64[n]; n is clamped to the arrays. hdrs/iovs/names: uint8 scratch from
    `scratch`. Calls sendmmsg (MSG_DONTWAIT, up to 1024 per call). A datagram the kernel
    refuses (EINVAL for port 0, EACCES, ENETUNREACH, EMSGSIZE, ...) or with bad offsets or
    address is skipped and counted; after EAGAIN/ENOBUFS it waits up to SEND_WAIT_MS for
    room (poll) and retries, up to SEND_RETRIES times in a row without progress, then
    counts the rest as errors. Never raises, never spins unbounded.

    Returns (sent, nbytes, errors); sent + errors == n.
    """
    n = min(n, off.size - 1, ip.size, port.size)
    if n <= 0:
        return 0, 0, 0
    vmax = _capacity(hdrs, iovs, names)
    if vmax <= 0:
        return 0, 0, n
    bbase = np.int64(buf.ctypes.data)
    hbase = np.int64(hdrs.ctypes.data)
    ibase = np.int64(iovs.ctypes.data)
    nbase = np.int64(names.ctypes.data)
    # borrowed (sim.jit.borrowed): _set_header per datagram would count references
    h64 = borrowed(hdrs.view(np.int64))
    h32 = borrowed(hdrs.view(np.int32))
    i64 = borrowed(iovs.view(np.int64))
    names, off, ip, port = borrowed(names), borrowed(off), borrowed(ip), borrowed(port)
    size = buf.size
    sent = 0
    nbytes = 0
    errors = 0
    stalls = 0
    i = 0
    while i < n:
        # Headers for the longest run of well-formed datagrams from i (bad ones end a run).
        want = 0
        while want < vmax and i + want < n:
            m = i + want
            a = np.int64(off[m])
            b = np.int64(off[m + 1])
            p = np.int64(port[m])
            q = np.int64(ip[m])
            if a < 0 or b < a or b > size or p < 0 or p > _PORT_MAX or q < 0 or q > _IPV4_MAX:
                break
            _set_header(h64, h32, want, nbase + want * SOCKADDR_IN_SIZE,
                        ibase + want * IOVEC_SIZE)
            i64[want * _I64 + IOV_BASE // 8] = bbase + a
            i64[want * _I64 + IOV_LEN // 8] = b - a
            s = want * SOCKADDR_IN_SIZE
            names[s + SIN_FAMILY] = _AF_INET & 0xFF  # host order (little-endian)
            names[s + SIN_FAMILY + 1] = _AF_INET >> 8
            names[s + SIN_PORT] = p >> 8
            names[s + SIN_PORT + 1] = p & 0xFF
            names[s + SIN_ADDR] = q >> 24
            names[s + SIN_ADDR + 1] = (q >> 16) & 0xFF
            names[s + SIN_ADDR + 2] = (q >> 8) & 0xFF
            names[s + SIN_ADDR + 3] = q & 0xFF
            for z in range(SIN_ADDR + 4, SOCKADDR_IN_SIZE):
                names[s + z] = 0
            want += 1
        if want == 0:  # datagram i is malformed (offsets or address): skip it
            errors += 1
            i += 1
            continue
        got = _sendmmsg(fd, hbase, want, _MSG_DONTWAIT)
        if got > 0:
            for j in range(got):
                nbytes += i64[j * _I64 + IOV_LEN // 8]
            sent += got
            i += got
            stalls = 0
            continue  # if got < want, the next call reports datagram i's error, if any
        e = _errno() if got < 0 else _EAGAIN
        if e == _EAGAIN or e == _EWOULDBLOCK or e == _ENOBUFS or e == _EINTR:
            stalls += 1
            if stalls > SEND_RETRIES:
                errors += n - i
                break
            if e != _EINTR:  # the buffer is full: wait (briefly) for the kernel to drain it
                wait_writable(fd, SEND_WAIT_MS)
            continue
        if e == _EBADF or e == _ENOTSOCK or e == _EFAULT:  # the socket itself is unusable
            errors += n - i
            break
        errors += 1  # this datagram was refused; the others may still go
        i += 1
        stalls = 0
    return sent, nbytes, errors
