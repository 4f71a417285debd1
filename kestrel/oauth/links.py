"""Short-lived signed links to `/api/oauth/authorize`, for a browser that cannot send a header.

The dashboard holds the admin key but a link the operator clicks (or a new tab) cannot carry
`X-Admin-Key`. So the dashboard asks `POST /admin/oauth/link {name}` and gets
`/api/oauth/authorize?name=NAME&expires=EPOCH&sig=SIG`, where SIG is HMAC-SHA256 over the name
and the expiry. The link works for 2 minutes and only for that account name; it grants nothing
but starting a login, whose result still needs the operator to sign in at Anthropic.

The MAC key is derived from the admin key (HMAC with a fixed label), so the admin key itself is
never used for two purposes, and changing it voids every outstanding link. Pure: `now` is passed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import urlencode

LINK_TTL_SECONDS = 120.0
AUTHORIZE_PATH = "/api/oauth/authorize"
_LABEL = b"kestrel oauth authorize link v1"


def link_key(admin_key: str) -> bytes:
    return hmac.new(admin_key.encode(), _LABEL, hashlib.sha256).digest()


def _signature(key: bytes, name: str, expires: int) -> str:
    # The name is UTF-8 and the separator a byte no name may hold (names refuse control
    # characters), so no two (name, expiry) pairs sign the same message.
    message = name.encode() + b"\x00" + str(expires).encode()
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def signed_link(key: bytes, name: str, *, now: float) -> tuple[str, int]:
    """`(relative URL, expiry epoch)` of a link that starts the login of account `name`."""
    expires = int(now + LINK_TTL_SECONDS)
    query = urlencode({"name": name, "expires": expires,
                       "sig": _signature(key, name, expires)})
    return f"{AUTHORIZE_PATH}?{query}", expires


def link_valid(key: bytes, name: str, expires: str, sig: str, *, now: float) -> bool:
    """The signature matches (compared in constant time) and the link has not expired."""
    if not expires.isascii() or not expires.isdigit() or len(expires) > 12:
        return False
    if int(expires) <= now:
        return False
    return hmac.compare_digest(_signature(key, name, int(expires)).encode(), sig.encode())
