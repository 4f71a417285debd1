"""Which address a request came from, when reverse proxies stand in front of Kestrel.

A peer listed in TRUSTED_PROXIES speaks for someone else: the address it says it received the
request from is the last entry it appended to `X-Forwarded-For`. Walking that list from the
right, every entry that is itself a trusted proxy is skipped; the first one that is not is the
client (nginx's `real_ip_recursive`). Anything earlier in the list was written by whoever sent
the request, and is never believed. A peer that is not trusted is the client, whatever it says.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_address(text: str) -> Address | None:
    """An address, IPv4-mapped IPv6 taken as the IPv4 it maps; None for anything else."""
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def within(address: Address, networks: Sequence[Network]) -> bool:
    return any(address.version == network.version and address in network
               for network in networks)


def client_address(peer: str, forwarded_for: str | None, trusted: Sequence[Network]) -> str:
    """The client's address: `peer` unless it is a trusted proxy (see above)."""
    if not trusted or forwarded_for is None:
        return peer
    current = parse_address(peer)
    if current is None or not within(current, trusted):
        return peer
    for entry in reversed(forwarded_for.split(",")):
        address = parse_address(entry)
        if address is None:
            break  # not an address: nothing to the left of it can be believed
        current = address
        if not within(address, trusted):
            break
    return str(current)
