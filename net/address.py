"""IPv4 endpoints as the integers kernels compare, and back."""

from __future__ import annotations

import ipaddress

Address = tuple[str, int]


def ip_to_int(host: str) -> int:
    """Dotted IPv4 -> u32 (host order). Raises ValueError for anything else."""
    return int(ipaddress.IPv4Address(host))


def int_to_ip(value: int) -> str:
    return str(ipaddress.IPv4Address(value))


def parse_endpoint(text: str) -> Address:
    """'IPV4:PORT' (port 1..65535) -> (host, port); ValueError naming the text otherwise."""
    host, sep, port = text.rpartition(":")
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        host = ""
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not IPV4:PORT (e.g. 127.0.0.1:7777)")
    return host, int(port)
