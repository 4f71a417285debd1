"""Which accounts a request tries, in which order. Pure: the clock is an argument.

Order: the conversation's pinned account first (prompt-cache hits), then by priority (higher
first), then by rotation: `balanced` takes the account with the most subscription window left
and, among those, the least recently chosen (spreads load); `fill-first` keeps taking the same
one (lowest id) until it cools down, whatever its windows say, since using one account up
before the next is what it is for.

Window left is compared in bands of `HEADROOM_BAND` (see `kestrel/oauth/windows.py` for how it
is read): an account at 41 % and one at 44 % are equals and keep alternating, while one at 90 %
waits until the others have caught up. An account that never reported windows (an API key)
counts as having all of it.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Mapping, Sequence

from kestrel.domain import Account, AccountStatus
from kestrel.oauth.windows import headroom

# How long a conversation stays on its account after its last request: Anthropic's prompt
# cache lives 5 minutes (1 hour with the extended TTL), so an hour covers both.
AFFINITY_TTL_SECONDS = 3600.0
# Bounds memory however many conversations pass through; the least recently seen are dropped.
AFFINITY_MAX_CONVERSATIONS = 100_000
# Utilization is only known after each answer, so a finer comparison would send every request
# of a burst to the same account; a tenth of a window is coarse enough to keep rotating.
HEADROOM_BAND = 0.1


class Rotation(enum.StrEnum):
    BALANCED = "balanced"
    FILL_FIRST = "fill-first"


def attempt_order(
    accounts: Sequence[Account],
    *,
    now: float,
    rotation: Rotation,
    last_chosen: Mapping[int, float],
    pinned: int | None = None,
) -> list[Account]:
    """The usable accounts (status active at `now`) in the order they should be tried."""
    usable = [a for a in accounts if a.status(now) is AccountStatus.ACTIVE]

    def key(account: Account) -> tuple[int, int, int, float, int]:
        if rotation is Rotation.BALANCED:
            left = headroom(account.usage_windows, now)
            band = int((1.0 if left is None else left) / HEADROOM_BAND + 1e-9)
            recency = last_chosen.get(account.id, float("-inf"))
        else:
            band, recency = 0, 0.0
        return (0 if account.id == pinned else 1, -account.priority, -band, recency, account.id)

    return sorted(usable, key=key)


class AffinityTable:
    """conversation key → the account that last served it, expiring after a quiet hour."""

    def __init__(self, ttl: float = AFFINITY_TTL_SECONDS,
                 max_entries: int = AFFINITY_MAX_CONVERSATIONS) -> None:
        self._ttl = ttl
        self._max = max_entries
        self._pins: OrderedDict[str, tuple[int, float]] = OrderedDict()

    def get(self, conversation: str, now: float) -> int | None:
        entry = self._pins.get(conversation)
        if entry is None:
            return None
        account_id, expires = entry
        if expires <= now:
            del self._pins[conversation]
            return None
        return account_id

    def pin(self, conversation: str, account_id: int, now: float) -> None:
        self._pins[conversation] = (account_id, now + self._ttl)
        self._pins.move_to_end(conversation)
        while len(self._pins) > self._max:
            self._pins.popitem(last=False)

    def __len__(self) -> int:
        return len(self._pins)
