"""The admin key check, with a per-address limit on failures against brute force.

The failures are counted in the database, so every process sharing it enforces one limit.
"""

from __future__ import annotations

import hmac

from kestrel.domain import AuthenticationError, RateLimited
from kestrel.store.admin_failures import AdminFailureStore

# More than this many wrong keys from one address inside the window locks that address out
# until the oldest failure leaves the window (the "10 failures a minute").
MAX_FAILURES = 10
FAILURE_WINDOW_SECONDS = 60.0


class AdminGuard:
    def __init__(self, admin_key: str, failures: AdminFailureStore) -> None:
        self._key = admin_key.encode()
        self._failures = failures

    async def check(self, presented: str | None, address: str, now: float) -> None:
        """Pass, or raise `AuthenticationError` (401) / `RateLimited` (429, with retry-after)."""
        recent = await self._failures.since(address, now - FAILURE_WINDOW_SECONDS)
        if len(recent) >= MAX_FAILURES:
            # Locked out even with the right key: otherwise the lock-out tells a guesser
            # nothing, yet a correct guess would still get through.
            retry_after = recent[-MAX_FAILURES] + FAILURE_WINDOW_SECONDS - now
            raise RateLimited("too many failed admin logins from this address",
                              retry_after=retry_after)
        # compare_digest on bytes runs in time independent of where the inputs differ.
        if presented is not None and hmac.compare_digest(presented.encode(), self._key):
            return
        await self._failures.record(address, now, forget_before=now - FAILURE_WINDOW_SECONDS)
        if presented is None:
            raise AuthenticationError("missing X-Admin-Key header")
        raise AuthenticationError("invalid admin key")
