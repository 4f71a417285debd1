"""Which accounts a request tries, in which order. Pure: the clock is an argument.

Order: the conversation's pinned account first (prompt-cache hits), then by priority (higher
first), then by rotation: `balanced` takes the least recently chosen account (spreads load),
`fill-first` keeps taking the same one (lowest id) until it cools down.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Mapping, Sequence

from kestrel.domain import Account, AccountStatus

# How long a conversation stays on its account after its last request: Anthropic's prompt
# cache lives 5 minutes (1 hour with the extended TTL), so an hour covers both.
AFFINITY_TTL_SECONDS = 3600.0
# Bounds memory however many conversations pass through; the least recently seen are dropped.
AFFINITY_MAX_CONVERSATIONS = 100_000


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

    def key(account: Account) -> tuple[int, int, float, int]:
        recency = last_chosen.get(account.id, float("-inf"))
        tiebreak = recency if rotation is Rotation.BALANCED else 0.0
        return (0 if account.id == pinned else 1, -account.priority, tiebreak, account.id)

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
