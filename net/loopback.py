"""Connect a ClientProtocol to a ServerProtocol in memory: request, challenge, response,
accept, with time standing still. For the warm-up, kernel profiling and tests."""

from __future__ import annotations

from net.address import Address
from net.client import ClientProtocol
from net.server import ServerProtocol


def connect_in_memory(server: ServerProtocol, client: ClientProtocol, addr: Address,
                      now_ns: int = 0) -> list:
    """Run the whole handshake at `now_ns` (client time: the same instant in seconds);
    return the client's events (a Connected on success, a Denied, or none if dropped).
    Replies the server queued for other addresses are put back in its queue."""
    now_s = now_ns / 1e9
    events: list = []
    out = [client.connect(now_s)]
    for _ in range(2):  # the request, then the response to the challenge
        for data in out:
            server.receive_datagram(data, addr, now_ns)
        others = []
        for data, to in server.datagrams_to_send():
            if to == addr:
                events += client.receive(data, now_s)
            else:
                others.append((data, to))
        server._replies[:0] = others
        out, polled = client.poll(now_s)
        events += polled
        if not out:
            break
    return events
