"""IPv4 endpoints as the integers kernels compare, and back."""

from __future__ import annotations

import ipaddress

Address = tuple[str, int]


def ip_to_int(host: str) -> int:
    """Dotted IPv4 -> u32 (host order). Raises ValueError for anything else."""
    return int(ipaddress.IPv4Address(host))


def int_to_ip(value: int) -> str:
    return str(ipaddress.IPv4Address(value))
