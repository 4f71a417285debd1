"""Which proxy, if any, a request to an upstream leaves through. Pure: the environment is passed
in as a mapping.

Two sources, the account's own `proxy_url` first: an operator who gives each account its own
exit address means it for every request of that account. Otherwise the environment, read as
curl and httpx read it: `https_proxy` / `HTTPS_PROXY` for https origins, `http_proxy` /
`HTTP_PROXY` for http ones, `all_proxy` / `ALL_PROXY` for both, the lower-case name winning when
both are set, and `no_proxy` / `NO_PROXY` naming the hosts reached directly.

At the top of the package because the settings read the environment's proxies, the OAuth token
client passes an account's proxy along, and the transport connects through them.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

SCHEMES = ("http", "https", "socks5", "socks5h")
DEFAULT_PORTS = {"http": 80, "https": 443, "socks5": 1080, "socks5h": 1080}
# The httpx request extension that carries an account's own proxy to the transport (the OAuth
# token client's requests for that account).
PROXY_EXTENSION = "kestrel.proxy"


@dataclass(frozen=True)
class Proxy:
    """A proxy to connect through. Its user and password never appear in `repr`, `label` or
    `masked`; they take part in equality, so two logins on one proxy never share a connection."""

    scheme: str
    host: str
    port: int
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        """What logs and metrics name it by: scheme, host and port."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def masked(self) -> str:
        """The URL as an operator may see it: the user, never the password."""
        if self.username is None:
            return self.label
        scheme, _, rest = self.label.partition("://")
        return f"{scheme}://{self.username}:…@{rest}" if self.password else \
            f"{scheme}://{self.username}@{rest}"

    @property
    def is_socks(self) -> bool:
        return self.scheme in ("socks5", "socks5h")

    def authorization(self) -> bytes | None:
        """`Proxy-Authorization` for an HTTP proxy (Basic), if it has a user."""
        if self.username is None:
            return None
        token = f"{self.username}:{self.password or ''}".encode()
        return b"Basic " + base64.b64encode(token)


def parse_proxy(url: str) -> Proxy:
    """A proxy URL (`socks5h://user:password@host:1080`; without a scheme, `http://`). Raises
    ValueError with a message that never quotes the URL: it may hold a password."""
    text = url.strip()
    if "://" not in text:
        text = "http://" + text  # as curl reads `proxy.corp:3128`
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ValueError("is not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ValueError(f"must start with {', '.join(s + '://' for s in SCHEMES)}")
    if not parts.hostname:
        raise ValueError("has no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("must be scheme://[user:password@]host[:port], nothing after")
    username = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    return Proxy(scheme, parts.hostname, port or DEFAULT_PORTS[scheme], username, password)


@dataclass(frozen=True)
class EnvProxies:
    """The proxies the environment names (see the module docstring)."""

    http: Proxy | None = None
    https: Proxy | None = None
    everything: Proxy | None = None
    no_proxy: tuple[str, ...] = ()

    def for_origin(self, scheme: str, host: str) -> Proxy | None:
        """The proxy for an origin, None to connect directly."""
        chosen = (self.https if scheme == "https" else self.http) or self.everything
        if chosen is None or bypassed(self.no_proxy, host):
            return None
        return chosen


def env_proxies(environ: Mapping[str, str]) -> tuple[EnvProxies, list[str]]:
    """The environment's proxies, and one problem per variable that does not parse."""
    problems: list[str] = []

    def proxy(name: str) -> Proxy | None:
        for variable in (name.lower(), name.upper()):
            value = environ.get(variable, "").strip()
            if value:
                try:
                    return parse_proxy(value)
                except ValueError as exc:
                    problems.append(f"{variable}: the proxy URL {exc}")
                    return None
        return None

    no_proxy = environ.get("no_proxy", "").strip() or environ.get("NO_PROXY", "").strip()
    entries = tuple(entry for entry in (part.strip().lower() for part in
                                        no_proxy.replace(" ", ",").split(",")) if entry)
    return EnvProxies(http=proxy("http_proxy"), https=proxy("https_proxy"),
                      everything=proxy("all_proxy"), no_proxy=entries), problems


def bypassed(entries: tuple[str, ...], host: str) -> bool:
    """`host` is reached directly: `*`, the host itself, a domain it is in (`example.com` and
    `.example.com` both cover `api.example.com`), an address, or a network (CIDR) holding the
    address. As curl does, names are not resolved to check them against addresses."""
    host = host.lower().strip("[]").rstrip(".")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for entry in entries:
        if entry == "*":
            return True
        if address is not None:
            try:
                if address in ipaddress.ip_network(entry.strip("[]"), strict=False):
                    return True
            except ValueError:
                pass
            continue
        domain = entry.lstrip(".").rstrip(".")
        if domain and (host == domain or host.endswith("." + domain)):
            return True
    return False
