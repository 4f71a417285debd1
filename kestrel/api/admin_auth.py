"""The admin key check, with a per-address limit on failures against brute force."""

from __future__ import annotations

import hmac
from collections import OrderedDict, deque

from kestrel.domain import AuthenticationError, RateLimited

# More than this many wrong keys from one address inside the window locks that address out
# until the oldest failure leaves the window (the "10 failures a minute").
MAX_FAILURES = 10
FAILURE_WINDOW_SECONDS = 60.0
# Bounds the memory an attacker spraying addresses can make us hold; the oldest are dropped.
MAX_TRACKED_ADDRESSES = 10_000


class AdminGuard:
    def __init__(self, admin_key: str) -> None:
        self._key = admin_key.encode()
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def check(self, presented: str | None, address: str, now: float) -> None:
        """Pass, or raise `AuthenticationError` (401) / `RateLimited` (429, with retry-after)."""
        recent = self._recent_failures(address, now)
        if recent is not None and len(recent) >= MAX_FAILURES:
            # Locked out even with the right key: otherwise the lock-out tells a guesser
            # nothing, yet a correct guess would still get through.
            retry_after = recent[0] + FAILURE_WINDOW_SECONDS - now
            raise RateLimited("too many failed admin logins from this address",
                              retry_after=retry_after)
        # compare_digest on bytes runs in time independent of where the inputs differ.
        if presented is not None and hmac.compare_digest(presented.encode(), self._key):
            return
        self._record_failure(address, now)
        if presented is None:
            raise AuthenticationError("missing X-Admin-Key header")
        raise AuthenticationError("invalid admin key")

    def _recent_failures(self, address: str, now: float) -> deque[float] | None:
        failures = self._failures.get(address)
        if failures is None:
            return None
        while failures and failures[0] <= now - FAILURE_WINDOW_SECONDS:
            failures.popleft()
        if not failures:
            del self._failures[address]
            return None
        return failures

    def _record_failure(self, address: str, now: float) -> None:
        failures = self._failures.setdefault(address, deque())
        failures.append(now)
        self._failures.move_to_end(address)
        while len(self._failures) > MAX_TRACKED_ADDRESSES:
            self._failures.popitem(last=False)
