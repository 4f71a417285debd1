"""What a client key may do, decided before anything reaches upstream. Pure: no I/O, the clock
passed in.

The messages name the control, its value and what to do, because Claude Code shows them to the
person at the keyboard as they are.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from datetime import UTC, datetime

from kestrel.domain import ApiKey, KeyRefused
from kestrel.proxy.client_address import parse_address, within


@functools.lru_cache(maxsize=256)  # a key's list is the same for every request it makes
def _allowed(patterns: tuple[str, ...]) -> re.Pattern[str]:
    """One regex for a key's model list: `*` matches any run of characters, all else itself."""
    alternatives = ("".join(".*" if part == "*" else re.escape(part)
                            for part in re.split(r"(\*)", pattern)) for pattern in patterns)
    return re.compile("|".join(f"(?:{alternative})" for alternative in alternatives))


def model_allowed(patterns: tuple[str, ...], model: str) -> bool:
    return _allowed(patterns).fullmatch(model) is not None


@functools.lru_cache(maxsize=256)
def _networks(cidrs: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network,
                                                ...]:
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def address_allowed(cidrs: tuple[str, ...], client: str | None) -> bool:
    address = parse_address(client) if client is not None else None
    return address is not None and within(address, _networks(cidrs))


def refusal(key: ApiKey, *, model: str | None, now: float,
            client: str | None = None) -> KeyRefused | None:
    """Why `key` may not make this request, or None. `model` is the one that would be sent
    upstream (after MODEL_ALIASES); a request naming none is left to the upstream's 400.
    `client` is the request's address (after TRUSTED_PROXIES)."""
    if key.expires_at is not None and now >= key.expires_at:
        when = datetime.fromtimestamp(key.expires_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return KeyRefused(f"this API key expired at {when}; ask the Kestrel operator for a new "
                          "one", reason="key_expired")
    if key.allowed_ips is not None and not address_allowed(key.allowed_ips, client):
        allowed = ", ".join(key.allowed_ips) if key.allowed_ips else "none"
        return KeyRefused(f"address {client or 'unknown'} is not allowed for this API key "
                          f"(allowed: {allowed})", reason="address_not_allowed")
    if key.models is not None and model is not None and not model_allowed(key.models, model):
        allowed = ", ".join(key.models) if key.models else "none"
        return KeyRefused(f"model {model!r} is not allowed for this API key (allowed: "
                          f"{allowed})", reason="model_not_allowed")
    return None
