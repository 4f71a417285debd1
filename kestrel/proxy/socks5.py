"""The SOCKS5 client's side of the handshake as bytes (RFC 1928, with RFC 1929's user/password
sub-negotiation). Sans-I/O: the transport writes what these functions return and feeds back
what it reads; tested byte for byte.

Written here rather than taken from a library: Kestrel needs one command (CONNECT) and two
authentication methods, about sixty lines that the RFCs fix for good, and a dependency would
have to be pinned and carried in the one file for every platform.
"""

from __future__ import annotations

import ipaddress
import struct

VERSION = 5
NO_AUTH = 0x00
USER_PASSWORD = 0x02
NO_ACCEPTABLE = 0xFF
CONNECT = 0x01
IPV4, DOMAIN, IPV6 = 0x01, 0x03, 0x04

REPLIES = {
    1: "general SOCKS server failure",
    2: "connection not allowed by ruleset",
    3: "network unreachable",
    4: "host unreachable",
    5: "connection refused",
    6: "TTL expired",
    7: "command not supported",
    8: "address type not supported",
}


class SocksError(Exception):
    """The proxy refused or answered something that is not SOCKS5. `auth`: it refused the
    credentials (or wants some and none were given)."""

    def __init__(self, message: str, *, auth: bool = False) -> None:
        super().__init__(message)
        self.auth = auth


def greeting(with_password: bool) -> bytes:
    """The methods offered: user/password when there are credentials, else none needed."""
    return bytes([VERSION, 1, USER_PASSWORD if with_password else NO_AUTH])


def chosen_method(answer: bytes) -> int:
    """The method the proxy chose (2 bytes of answer)."""
    if len(answer) != 2 or answer[0] != VERSION:
        raise SocksError("the proxy did not answer as a SOCKS5 server")
    if answer[1] == NO_ACCEPTABLE:
        raise SocksError("the proxy accepts none of the offered authentication methods",
                         auth=True)
    if answer[1] not in (NO_AUTH, USER_PASSWORD):
        raise SocksError(f"the proxy chose an unknown authentication method ({answer[1]})")
    return answer[1]


def password_request(username: str, password: str) -> bytes:
    user, secret = username.encode(), password.encode()
    if not 0 < len(user) < 256 or len(secret) > 255:
        raise SocksError("a SOCKS5 user name and password are 1 to 255 bytes", auth=True)
    return bytes([1, len(user)]) + user + bytes([len(secret)]) + secret


def check_password_answer(answer: bytes) -> None:
    if len(answer) != 2 or answer[0] != 1:
        raise SocksError("the proxy answered the login with something else")
    if answer[1] != 0:
        raise SocksError("the proxy refused the user name and password", auth=True)


def connect_request(host: str, port: int, *, remote_dns: bool) -> bytes:
    """CONNECT to `host:port`: an address as it is; a name as a name when `remote_dns`
    (socks5h, the proxy resolves it), else the caller passes an address it resolved."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if not remote_dns:
            raise ValueError("socks5:// needs an address resolved here") from None
        name = host.encode("idna")
        if len(name) > 255:
            raise SocksError("the host name is too long for SOCKS5") from None
        target = bytes([DOMAIN, len(name)]) + name
    else:
        target = bytes([IPV4 if address.version == 4 else IPV6]) + address.packed
    return bytes([VERSION, CONNECT, 0]) + target + struct.pack(">H", port)


def reply_length(head: bytes) -> int:
    """How many bytes the whole reply has, from its first five (the address is variable)."""
    if len(head) != 5 or head[0] != VERSION:
        raise SocksError("the proxy did not answer the CONNECT as a SOCKS5 server")
    if head[1] != 0:
        raise SocksError(f"the proxy refused the connection: "
                         f"{REPLIES.get(head[1], f'error {head[1]}')}")
    kind = head[3]
    if kind == IPV4:
        return 4 + 4 + 2
    if kind == IPV6:
        return 4 + 16 + 2
    if kind == DOMAIN:
        return 4 + 1 + head[4] + 2
    raise SocksError(f"the proxy answered with an unknown address type ({kind})")
