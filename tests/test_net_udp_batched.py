"""net/udp.py's batched path (recvmmsg/sendmmsg kernels in net/mmsg.py) against its portable
path: the same datagrams give the same batches, the same sends deliver the same bytes, and
errors are counted, never raised. Real sockets over 127.0.0.1 only; no timing assertions
(waits have deadlines so a lost datagram fails the test instead of hanging it).
"""

from __future__ import annotations

import ctypes
import socket
import sys
import time

import numpy as np
import pytest

from net.batch import SLOT_BYTES, DatagramBatch
from net.udp import UdpEndpoint
from net.wire import MAX_DATAGRAM

LINUX = sys.platform.startswith("linux")
needs_linux = pytest.mark.skipif(not LINUX, reason="recvmmsg/sendmmsg are Linux-only")
MODES = [pytest.param("batched", marks=needs_linux), "portable"]
LOCALHOST = 0x7F000001
IP_RECVERR = 11  # Linux; the socket module does not export it


# ---- helpers ------------------------------------------------------------------------------

def closed_port() -> int:
    """A 127.0.0.1 UDP port nobody listens on (bound once, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def drain_rows(endpoint: UdpEndpoint, batch: DatagramBatch, expected: int,
               deadline_s: float = 5.0) -> tuple[list[int], list[tuple[bytes, int, int, int]]]:
    """Drain until `expected` datagrams came (or the deadline): (count per non-empty drain,
    rows as (bytes received, length, ip, port)), in order."""
    counts, rows = [], []
    deadline = time.monotonic() + deadline_s
    while len(rows) < expected and time.monotonic() < deadline:
        n = endpoint.drain(batch)
        assert n == batch.count <= batch.capacity
        if n == 0:
            time.sleep(0.001)
            continue
        counts.append(n)
        for i in range(n):
            stored = min(int(batch.length[i]), SLOT_BYTES)
            rows.append((bytes(batch.data[i, :stored]), int(batch.length[i]),
                         int(batch.ip[i]), int(batch.port[i])))
    return counts, rows


def expected_row(payload: bytes, sender_port: int) -> tuple[bytes, int, int, int]:
    """What drain_rows() must see for `payload`: a cut or slot-filling one is oversize
    (and drain_rows keeps the first length bytes of a row, as a decoder would look)."""
    length = len(payload) if len(payload) < SLOT_BYTES else MAX_DATAGRAM + 1
    return payload[:length], length, LOCALHOST, sender_port


def pack(datagrams: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """(buf uint8[:], off int32[n+1]) holding the datagrams back to back."""
    off = np.zeros(len(datagrams) + 1, np.int32)
    off[1:] = np.cumsum([len(d) for d in datagrams])
    buf = np.frombuffer(b"".join(datagrams), np.uint8).copy()
    return buf, off


def receive_all(endpoint: UdpEndpoint, expected: int, deadline_s: float = 5.0) -> list:
    out = []
    deadline = time.monotonic() + deadline_s
    while len(out) < expected and time.monotonic() < deadline:
        got = endpoint.recv_all()
        if not got:
            time.sleep(0.001)
        out += got
    return out


@pytest.fixture
def endpoints():
    """Make endpoints with make(io=..., **kw); all are closed after the test."""
    made = []

    def make(io: str = "portable", **kw) -> UdpEndpoint:
        endpoint = UdpEndpoint("127.0.0.1", 0, io=io, **kw)
        made.append(endpoint)
        return endpoint
    yield make
    for endpoint in made:
        endpoint.close()


# ---- struct layouts -------------------------------------------------------------------------

class IoVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class MsgHdr(ctypes.Structure):
    _fields_ = [("msg_name", ctypes.c_void_p), ("msg_namelen", ctypes.c_uint32),
                ("msg_iov", ctypes.POINTER(IoVec)), ("msg_iovlen", ctypes.c_size_t),
                ("msg_control", ctypes.c_void_p), ("msg_controllen", ctypes.c_size_t),
                ("msg_flags", ctypes.c_int)]


class MMsgHdr(ctypes.Structure):
    _fields_ = [("msg_hdr", MsgHdr), ("msg_len", ctypes.c_uint)]


class SockAddrIn(ctypes.Structure):
    _fields_ = [("sin_family", ctypes.c_ushort), ("sin_port", ctypes.c_uint16),
                ("sin_addr", ctypes.c_uint32), ("sin_zero", ctypes.c_ubyte * 8)]


@needs_linux
def test_struct_layouts_match_ctypes():
    from net import mmsg
    got = mmsg.layout()
    want = dict(
        MSG_NAME=MsgHdr.msg_name.offset, MSG_NAMELEN=MsgHdr.msg_namelen.offset,
        MSG_IOV=MsgHdr.msg_iov.offset, MSG_IOVLEN=MsgHdr.msg_iovlen.offset,
        MSG_CONTROL=MsgHdr.msg_control.offset, MSG_CONTROLLEN=MsgHdr.msg_controllen.offset,
        MSG_FLAGS=MsgHdr.msg_flags.offset, MSGHDR_SIZE=ctypes.sizeof(MsgHdr),
        MSG_LEN=MMsgHdr.msg_len.offset, MMSGHDR_SIZE=ctypes.sizeof(MMsgHdr),
        IOV_BASE=IoVec.iov_base.offset, IOV_LEN=IoVec.iov_len.offset,
        IOVEC_SIZE=ctypes.sizeof(IoVec), SIN_FAMILY=SockAddrIn.sin_family.offset,
        SIN_PORT=SockAddrIn.sin_port.offset, SIN_ADDR=SockAddrIn.sin_addr.offset,
        SOCKADDR_IN_SIZE=ctypes.sizeof(SockAddrIn))
    assert got == want
    assert (got["MSGHDR_SIZE"], got["MMSGHDR_SIZE"]) == (56, 64)  # PERF-NOTES, x86-64


# ---- io modes and socket options --------------------------------------------------------------

def test_io_mode_is_checked(endpoints, monkeypatch):
    with pytest.raises(ValueError):
        UdpEndpoint(io="fast")
    assert endpoints("portable").batched is False
    auto = endpoints("auto")
    assert auto.batched is LINUX and auto.io == ("batched" if LINUX else "portable")
    monkeypatch.setattr(sys, "platform", "darwin")
    with pytest.raises(ValueError, match="Linux"):
        UdpEndpoint(io="batched")
    assert endpoints("auto").batched is False


@needs_linux
def test_batched_mode_is_batched(endpoints):
    assert endpoints("batched").batched is True


def test_socket_buffers_are_sized_and_reported(endpoints):
    target = 1 << 20
    endpoint = endpoints("portable", rcvbuf=target, sndbuf=target // 2)
    sock = endpoint.sock
    assert endpoint.rcvbuf_bytes == sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    assert endpoint.sndbuf_bytes == sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
    if LINUX:  # the kernel grants at least the target up to its cap (more as root: *FORCE)
        with open("/proc/sys/net/core/rmem_max") as f:
            rmem_max = int(f.read())
        with open("/proc/sys/net/core/wmem_max") as f:
            wmem_max = int(f.read())
        assert endpoint.rcvbuf_bytes >= min(target, rmem_max)
        assert endpoint.sndbuf_bytes >= min(target // 2, wmem_max)
    for bad in (0, -1, "4MiB"):
        with pytest.raises(ValueError):
            UdpEndpoint(rcvbuf=bad)


@needs_linux
def test_kernel_drops_counts_this_sockets_overflow(endpoints):
    receiver = endpoints("portable", rcvbuf=2048)  # the kernel's minimum: a few datagrams
    other = endpoints("portable")
    sender = endpoints("portable")
    assert receiver.kernel_drops() == 0 == other.kernel_drops()
    payload = b"d" * 1000
    for _ in range(200):
        sender.send(payload, receiver.address)
    deadline = time.monotonic() + 5
    while receiver.kernel_drops() == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    drops = receiver.kernel_drops()
    assert 0 < drops <= 200
    assert other.kernel_drops() == 0  # another socket's row, not a host-wide sum
    receiver.close()
    assert receiver.kernel_drops() == -1


# ---- receive: batched == portable ---------------------------------------------------------

def mixed_payloads() -> list[bytes]:
    rng = np.random.default_rng(5)
    sizes = [0, 1, 16, 1200, 1201, 1535, 1536, 1537, 1600, 4000, 200, 0, 1199]
    sizes += [int(s) for s in rng.integers(0, 1700, 40)]
    return [bytes(rng.integers(0, 256, s, dtype=np.uint8)) for s in sizes]


@needs_linux
def test_drain_fills_the_same_batches_in_both_modes(endpoints):
    batched, portable = endpoints("batched"), endpoints("portable")
    senders = [endpoints("portable"), endpoints("portable")]
    payloads = mixed_payloads()
    expected = []
    for k, payload in enumerate(payloads):
        sender = senders[k % 2]
        for receiver in (batched, portable):
            assert sender.send(payload, receiver.address)
        expected.append(expected_row(payload, sender.address[1]))

    results = {}
    for receiver in (batched, portable):
        batch = DatagramBatch.allocate(16)  # smaller than the burst: several drains
        results[receiver.io] = drain_rows(receiver, batch, len(payloads))
        assert receiver.drain(batch) == 0  # all read: an empty socket gives 0 at once
        assert receiver.recv_errors == 0
    assert results["batched"][1] == expected
    assert results["batched"] == results["portable"]


@needs_linux
@pytest.mark.parametrize("capacity", [1100, 2000])
def test_more_than_one_syscall_and_more_than_capacity(endpoints, capacity):
    """1500 datagrams: more than one recvmmsg (1024) and, at capacity 1100, more than one
    drain; what does not fit stays in the socket for the next drain."""
    batched, portable = endpoints("batched"), endpoints("portable")
    sender = endpoints("portable")
    count = 1500
    payloads = [i.to_bytes(4, "little") * 50 for i in range(count)]  # 200 B, numbered
    for receiver in (batched, portable):
        buf, off = pack(payloads)
        ip = np.full(count, LOCALHOST, np.int64)
        port = np.full(count, receiver.address[1], np.int64)
        assert sender.send_batch(buf, off, ip, port, count) == (count, 200 * count)
    time.sleep(0.1)  # slack for a loaded machine: loopback delivers within the send
    results = {}
    for receiver in (batched, portable):
        results[receiver.io] = drain_rows(receiver, DatagramBatch.allocate(capacity), count)
    counts, rows = results["batched"]
    assert [r[0] for r in rows] == payloads
    assert all(length == 200 and ip == LOCALHOST and p == sender.address[1]
               for _, length, ip, p in rows)
    assert counts == ([capacity, count - capacity] if capacity < count else [count])
    assert results["batched"] == results["portable"]


@pytest.mark.parametrize("io", MODES)
def test_draining_an_empty_socket_returns_zero(endpoints, io):
    endpoint = endpoints(io)
    batch = DatagramBatch.allocate(4)
    batch.count = 3
    assert endpoint.drain(batch) == 0 == batch.count
    assert endpoint.recv_errors == 0


@pytest.mark.parametrize("io", MODES)
def test_closed_endpoint_counts_instead_of_raising(endpoints, io):
    endpoint = endpoints(io)
    endpoint.close()
    assert endpoint.drain(DatagramBatch.allocate(4)) == 0
    assert endpoint.recv_errors == 1
    buf, off = pack([b"a", b"bb", b"ccc"])
    ip = np.full(3, LOCALHOST, np.int64)
    port = np.full(3, closed_port(), np.int64)
    assert endpoint.send_batch(buf, off, ip, port, 3) == (0, 0)
    assert endpoint.send_errors == 3


@needs_linux
@pytest.mark.parametrize("io", MODES)
def test_late_icmp_refusal_is_counted_and_the_data_still_read(endpoints, io):
    """With IP_RECVERR an ICMP port-unreachable is reported by the next receive call
    (ECONNREFUSED) while datagrams wait behind it: count it, retry, read them all."""
    receiver, sender = endpoints(io), endpoints("portable")
    receiver.sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
    assert receiver.send(b"knock", ("127.0.0.1", closed_port()))
    time.sleep(0.05)  # slack: let the ICMP error come back before the data
    for k in range(3):
        assert sender.send(bytes([k]) * 10, receiver.address)
    counts, rows = drain_rows(receiver, DatagramBatch.allocate(8), 3)
    assert [r[0] for r in rows] == [bytes([k]) * 10 for k in range(3)]
    assert receiver.recv_errors == 1


# ---- send: batched == portable -----------------------------------------------------------------

@needs_linux
def test_send_batch_delivers_the_same_bytes_in_both_modes(endpoints):
    receivers = [endpoints("portable") for _ in range(3)]
    senders = {io: endpoints(io) for io in ("batched", "portable")}
    rng = np.random.default_rng(11)
    count = 1100  # more than one sendmmsg call (1024)
    payloads = [bytes(rng.integers(0, 256, int(s), dtype=np.uint8))
                for s in rng.integers(0, 1200, count)]
    payloads[:3] = [b"", b"x" * 1200, b"y"]
    to = rng.integers(0, len(receivers), count)
    buf, off = pack(payloads)
    ip = np.full(count, LOCALHOST, np.int64)
    port = np.array([receivers[k].address[1] for k in to], np.int64)

    got = {}
    for io, sender in senders.items():
        assert sender.send_batch(buf, off, ip, port, count) == (count, len(buf))
        assert sender.send_errors == 0
        per_receiver = []
        for k, receiver in enumerate(receivers):
            want = [p for p, dest in zip(payloads, to) if dest == k]
            arrived = receive_all(receiver, len(want))
            assert [data for data, _ in arrived] == want
            assert {addr for _, addr in arrived} <= {sender.address}
            per_receiver.append([data for data, _ in arrived])
        got[io] = per_receiver
    assert got["batched"] == got["portable"]


@pytest.mark.parametrize("io", MODES)
def test_send_errors_are_counted_and_the_rest_still_arrive(endpoints, io):
    """Refused datagrams in the middle of a batch: port 0 (EINVAL), the broadcast address
    without SO_BROADCAST (EACCES, refused locally, nothing leaves the host), a datagram too
    big for UDP (EMSGSIZE), and entries whose offsets or address cannot be valid."""
    sender, receiver = endpoints(io), endpoints("portable")
    good = receiver.address[1]
    rows = [  # (payload, ip, port, should arrive)
        (b"first", LOCALHOST, good, True),
        (b"to port zero", LOCALHOST, 0, False),
        (b"second", LOCALHOST, good, True),
        (b"broadcast", 0xFFFFFFFF, good, False),
        (b"z" * 70_000, LOCALHOST, good, False),
        (b"third", LOCALHOST, good, True),
        (b"port too big", LOCALHOST, 70_000, False),
        (b"negative ip", -1, good, False),
        (b"fourth", LOCALHOST, good, True),
    ]
    buf, off = pack([r[0] for r in rows])
    ip = np.array([r[1] for r in rows], np.int64)
    port = np.array([r[2] for r in rows], np.int64)
    # one more datagram whose end lies before its start: malformed offsets, skipped
    off = np.append(off, off[-1] - 3).astype(np.int32)
    ip = np.append(ip, LOCALHOST)
    port = np.append(port, good)
    n = len(rows) + 1
    wanted = [r[0] for r in rows if r[3]]
    assert sender.send_batch(buf, off, ip, port, n) == (len(wanted), sum(map(len, wanted)))
    assert sender.send_errors == n - len(wanted)
    assert [data for data, _ in receive_all(receiver, len(wanted))] == wanted


@needs_linux
def test_send_to_a_closed_port_is_not_an_error_for_the_others(endpoints):
    """Without IP_RECVERR an unconnected socket never hears of the ICMP refusal: the batch
    counts as sent, and the datagrams for a live receiver arrive."""
    for io in ("batched", "portable"):
        sender, receiver = endpoints(io), endpoints("portable")
        dead = closed_port()
        payloads = [b"a", b"b", b"c", b"d"]
        buf, off = pack(payloads)
        ip = np.full(4, LOCALHOST, np.int64)
        port = np.array([dead, receiver.address[1], dead, receiver.address[1]], np.int64)
        assert sender.send_batch(buf, off, ip, port, 4) == (4, 4)
        assert [d for d, _ in receive_all(receiver, 2)] == [b"b", b"d"]
        assert sender.drain(DatagramBatch.allocate(4)) == 0


def test_send_batch_checks_array_types(endpoints):
    endpoint = endpoints("portable")
    buf, off = pack([b"a", b"b"])
    ip = np.full(2, LOCALHOST, np.int64)
    port = np.full(2, 9, np.int64)
    assert endpoint.send_batch(buf, off, ip, port, 0) == (0, 0)
    with pytest.raises(ValueError):
        endpoint.send_batch(buf, off.astype(np.int64), ip, port, 2)
    with pytest.raises(ValueError):
        endpoint.send_batch(buf, off[:2], ip, port, 2)  # needs n + 1 offsets


# ---- the kernels directly (the bot horde calls them with its own arrays) -----------------

@needs_linux
def test_kernels_work_with_one_header_of_scratch(endpoints):
    from net import mmsg
    receiver, sender = endpoints("portable"), endpoints("portable")
    hdrs, iovs, names = mmsg.scratch(1)  # one message per syscall: the chunk loop runs
    payloads = [bytes([k]) * (k + 1) for k in range(5)]
    buf, off = pack(payloads)
    ip = np.full(5, LOCALHOST, np.int64)
    port = np.full(5, receiver.address[1], np.int64)
    assert mmsg.send_batch(sender.fileno(), buf, off, ip, port, 5, hdrs, iovs, names) == (
        5, 15, 0)
    time.sleep(0.05)  # slack for a loaded machine
    batch = DatagramBatch.allocate(8)
    got, rows = 0, []
    deadline = time.monotonic() + 5
    while got < 5 and time.monotonic() < deadline:
        count, err, retried = mmsg.recv_batch(receiver.fileno(), batch.data, batch.length,
                                              batch.ip, batch.port, 8, hdrs, iovs, names)
        assert err == 0 and retried == 0
        rows += [bytes(batch.data[i, :batch.length[i]]) for i in range(count)]
        got += count
    assert rows == payloads
    assert list(batch.port[:5]) == [sender.address[1]] * 5


@pytest.mark.parametrize("io", MODES)
def test_a_cut_datagram_keeps_the_first_slot_of_its_bytes(endpoints, io):
    receiver, sender = endpoints(io), endpoints("portable")
    payload = bytes(range(256)) * 8  # 2048 B: cut at the slot
    assert sender.send(payload, receiver.address)
    batch = DatagramBatch.allocate(2)
    counts, rows = drain_rows(receiver, batch, 1)
    assert rows[0][1] == MAX_DATAGRAM + 1
    assert bytes(batch.data[0]) == payload[:SLOT_BYTES]


def test_waiting_for_room_returns_on_a_writable_socket_and_survives_a_bad_fd():
    """The full-buffer path waits with poll(2): at once when there is room, never raising."""
    mmsg = pytest.importorskip("net.mmsg")
    endpoint = UdpEndpoint("127.0.0.1", 0, io="portable")
    try:
        mmsg.wait_writable(endpoint.fileno(), 1000)  # writable: returns without the timeout
        mmsg.wait_writable(-1, 1)  # a closed or bad fd: poll reports it, nothing raises
    finally:
        endpoint.close()
