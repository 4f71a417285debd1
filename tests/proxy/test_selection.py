"""Account ordering and conversations kept on one account, table by table."""

from __future__ import annotations

import random
import uuid
from collections import Counter

import pytest

from kestrel.domain import Account, AccountState
from kestrel.proxy.selection import Rotation, attempt_order, rendezvous_rank

from support.accounts import make_account

NOW = 1_000_000.0


def account(id_: int, **changes: object) -> Account:
    return make_account(id_, **changes)


def ids(accounts: list[Account]) -> list[int]:
    return [a.id for a in accounts]


def favourite(conversation: str, ids_: list[int]) -> int:
    """The account rendezvous hashing gives the conversation, computed here from its definition."""
    return max(ids_, key=lambda id_: rendezvous_rank(conversation, id_))


@pytest.mark.parametrize(
    ("accounts", "last_chosen", "rotation", "expected"),
    [
        # higher priority first, whatever the recency
        ([account(1), account(2, priority=5)], {2: NOW}, Rotation.BALANCED, [2, 1]),
        # among equals, balanced takes the least recently chosen; never chosen beats all
        ([account(1), account(2), account(3)], {1: NOW - 1, 2: NOW - 9}, Rotation.BALANCED,
         [3, 2, 1]),
        # fill-first keeps the same (lowest id) on top however recently used
        ([account(2), account(1)], {1: NOW, 2: NOW - 99}, Rotation.FILL_FIRST, [1, 2]),
        # cooling, disabled, invalid and exhausted accounts are left out
        ([account(1, cooldown_until=NOW + 1), account(2, enabled=False),
          account(3, state=AccountState.INVALID), account(4, state=AccountState.EXHAUSTED),
          account(5, cooldown_until=NOW - 1)], {}, Rotation.BALANCED, [5]),
        ([], {}, Rotation.BALANCED, []),
    ],
)
def test_attempt_order(accounts: list[Account], last_chosen: dict[int, float],
                       rotation: Rotation, expected: list[int]) -> None:
    assert ids(attempt_order(accounts, now=NOW, rotation=rotation,
                             last_chosen=last_chosen)) == expected


def test_a_conversation_keeps_its_account_whatever_the_recency() -> None:
    accounts = [account(i) for i in range(1, 4)]
    first = favourite("session:abc", [1, 2, 3])
    for last_chosen in ({}, {first: NOW}, {1: NOW, 2: NOW, 3: NOW - 50}):
        order = attempt_order(accounts, now=NOW, rotation=Rotation.BALANCED,
                              last_chosen=last_chosen, conversation="session:abc")
        assert order[0].id == first
        # the rest follow in the conversation's own ranking: a failover goes the same way
        # in every process
        assert ids(order) == sorted([1, 2, 3], key=lambda i: -rendezvous_rank("session:abc", i))


def test_a_conversation_moves_when_its_account_cools_and_comes_back_after() -> None:
    first = favourite("session:xyz", [1, 2, 3])
    cooling = [account(i, cooldown_until=NOW + 30 if i == first else None) for i in (1, 2, 3)]
    others = [i for i in (1, 2, 3) if i != first]
    moved = attempt_order(cooling, now=NOW, rotation=Rotation.BALANCED, last_chosen={},
                          conversation="session:xyz")
    assert moved[0].id == favourite("session:xyz", others)
    back = attempt_order(cooling, now=NOW + 31, rotation=Rotation.BALANCED, last_chosen={},
                         conversation="session:xyz")
    assert back[0].id == first


def test_priority_comes_before_a_conversations_favourite() -> None:
    low = favourite("session:p", [1, 2])
    high = 3 - low
    accounts = [account(low), account(high, priority=5)]
    assert attempt_order(accounts, now=NOW, rotation=Rotation.BALANCED, last_chosen={},
                         conversation="session:p")[0].id == high


def test_new_conversations_spread_evenly_over_equal_accounts() -> None:
    """The issue's bar, across processes too since every process ranks alike: 300 new
    conversations over 3 equal accounts, each account within 20 % of 100. A hash spreads
    like chance (a standard deviation of 8 here), so the bar holds for most sets of 300,
    not all: checked over 100 sets of random session ids, and on all 30,000 together."""
    accounts = [account(i) for i in (1, 2, 3)]
    rng = random.Random(13)
    within = 0
    total: Counter[int] = Counter()
    for _ in range(100):
        counts = Counter(
            attempt_order(accounts, now=NOW, rotation=Rotation.BALANCED, last_chosen={},
                          conversation=f"session:{uuid.UUID(int=rng.getrandbits(128))}")[0].id
            for _ in range(300))
        within += all(80 <= counts[i] <= 120 for i in (1, 2, 3))
        total += counts
    assert within >= 90, within
    assert all(9700 <= total[i] <= 10300 for i in (1, 2, 3)), total
