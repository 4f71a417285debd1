"""Account ordering and conversation pins, table by table."""

from __future__ import annotations

import pytest

from kestrel.domain import Account, AccountState
from kestrel.proxy.selection import AffinityTable, Rotation, attempt_order

from support.accounts import make_account

NOW = 1_000_000.0


def account(id_: int, **changes: object) -> Account:
    return make_account(id_, **changes)


def ids(accounts: list[Account]) -> list[int]:
    return [a.id for a in accounts]


@pytest.mark.parametrize(
    ("accounts", "last_chosen", "rotation", "pinned", "expected"),
    [
        # higher priority first, whatever the recency
        ([account(1), account(2, priority=5)], {2: NOW}, Rotation.BALANCED, None, [2, 1]),
        # among equals, balanced takes the least recently chosen; never chosen beats all
        ([account(1), account(2), account(3)], {1: NOW - 1, 2: NOW - 9}, Rotation.BALANCED,
         None, [3, 2, 1]),
        # fill-first keeps the same (lowest id) on top however recently used
        ([account(2), account(1)], {1: NOW, 2: NOW - 99}, Rotation.FILL_FIRST, None, [1, 2]),
        # the pinned account goes first, even over a higher priority
        ([account(1, priority=9), account(2)], {}, Rotation.BALANCED, 2, [2, 1]),
        # a pin on an unusable account is ignored, the others still serve
        ([account(1, cooldown_until=NOW + 5), account(2)], {}, Rotation.BALANCED, 1, [2]),
        # cooling, disabled, invalid and exhausted accounts are left out
        ([account(1, cooldown_until=NOW + 1), account(2, enabled=False),
          account(3, state=AccountState.INVALID), account(4, state=AccountState.EXHAUSTED),
          account(5, cooldown_until=NOW - 1)], {}, Rotation.BALANCED, None, [5]),
        ([], {}, Rotation.BALANCED, None, []),
    ],
)
def test_attempt_order(accounts: list[Account], last_chosen: dict[int, float],
                       rotation: Rotation, pinned: int | None, expected: list[int]) -> None:
    assert ids(attempt_order(accounts, now=NOW, rotation=rotation, last_chosen=last_chosen,
                             pinned=pinned)) == expected


def test_balanced_rotation_spreads_new_conversations_evenly() -> None:
    accounts = [account(i) for i in range(1, 5)]
    chosen: dict[int, float] = {}
    counts = dict.fromkeys(range(1, 5), 0)
    for n in range(100):
        first = attempt_order(accounts, now=NOW + n, rotation=Rotation.BALANCED,
                              last_chosen=chosen)[0]
        chosen[first.id] = NOW + n
        counts[first.id] += 1
    assert counts == {1: 25, 2: 25, 3: 25, 4: 25}


def test_affinity_expires_and_is_bounded() -> None:
    table = AffinityTable(ttl=10, max_entries=2)
    table.pin("a", 1, NOW)
    assert table.get("a", NOW + 9.9) == 1
    assert table.get("a", NOW + 10) is None
    table.pin("a", 1, NOW)
    table.pin("b", 2, NOW)
    table.get("a", NOW)
    table.pin("c", 3, NOW)  # evicts the least recently pinned: "a" (get does not refresh)
    assert (table.get("a", NOW), table.get("b", NOW), table.get("c", NOW)) == (None, 2, 3)
    assert len(table) == 2
    table.pin("b", 4, NOW + 5)  # re-pinning moves the conversation and renews its time
    assert table.get("b", NOW + 14) == 4
