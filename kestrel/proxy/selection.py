"""Which accounts a request tries, in which order. Pure: the clock is an argument.

Order: by priority (higher first), then by rotation. `fill-first` keeps taking the same one
(lowest id) until it cools down, whatever its windows say, since using one account up before
the next is what it is for. `balanced` takes the account with the most subscription window
left and, among those:
- for a request of a known conversation, the account that rendezvous hashing of the
  conversation key ranks highest, so every request of the conversation goes to the same
  account (prompt-cache hits) while it is usable;
- for any other request, the least recently chosen (spreads load).

Why rendezvous hashing and not a table of which conversation went where: every process
sharing the database computes the same answer from what it already knows (the accounts and
their states, kept in step by the change feed), with no shared table to read or write per
request. When a conversation's account cools down, the conversation moves to its next-ranked
account, the same one in every process, and comes back when the first recovers. New
conversations spread evenly over equal accounts (as evenly as a good hash: 300 over 3 land
within a few percent of 100 each).

Window left is compared in bands of `HEADROOM_BAND` (see `kestrel/oauth/windows.py` for how it
is read): an account at 41 % and one at 44 % are equals and keep alternating, while one at 90 %
waits until the others have caught up. An account that never reported windows (an API key)
counts as having all of it.
"""

from __future__ import annotations

import enum
import functools
import hashlib
from collections.abc import Mapping, Sequence

from kestrel.domain import Account, UsageWindows
from kestrel.oauth.windows import headroom

# Utilization is only known after each answer, so a finer comparison would send every request
# of a burst to the same account; a tenth of a window is coarse enough to keep rotating.
HEADROOM_BAND = 0.1


class Rotation(enum.StrEnum):
    BALANCED = "balanced"
    FILL_FIRST = "fill-first"


def headroom_band(usage: UsageWindows | None, now: float) -> int:
    """The account's window left, in bands: equal bands are equals to balanced rotation."""
    left = headroom(usage, now)
    return int((1.0 if left is None else left) / HEADROOM_BAND + 1e-9)


# A conversation sends many requests; its accounts' ranks are worth keeping for the next one.
@functools.lru_cache(maxsize=4096)
def rendezvous_rank(conversation: str, account_id: int) -> int:
    """The account's rank for the conversation (higher first): a hash of both, the same in
    every process and on every machine."""
    # surrogatepass: a session id read from a client's JSON may hold a lone surrogate.
    key = f"{account_id}:{conversation}".encode("utf-8", "surrogatepass")
    digest = hashlib.blake2b(key, digest_size=8).digest()
    return int.from_bytes(digest, "big")


def attempt_order(
    accounts: Sequence[Account],
    *,
    now: float,
    rotation: Rotation,
    last_chosen: Mapping[int, float],
    conversation: str | None = None,
) -> list[Account]:
    """The usable accounts (status active at `now`) in the order they should be tried."""
    usable = [a for a in accounts if a.usable(now)]
    balanced = rotation is Rotation.BALANCED

    def key(account: Account) -> tuple[int, int, float, int]:
        if not balanced:
            return (-account.priority, 0, 0.0, account.id)
        if conversation is not None:
            spread = -float(rendezvous_rank(conversation, account.id))
        else:
            spread = last_chosen.get(account.id, float("-inf"))
        return (-account.priority, -headroom_band(account.usage_windows, now), spread,
                account.id)

    return sorted(usable, key=key)
