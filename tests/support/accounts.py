"""An `Account` value for the pure tests, healthy unless told otherwise."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from kestrel.domain import Account, AccountState, AccountType


def make_account(id_: int, **changes: Any) -> Account:
    base = Account(id=id_, name=f"a{id_}", type=AccountType.API_KEY, base_url=None, priority=0,
                   enabled=True, state=AccountState.OK, cooldown_until=None,
                   consecutive_failures=0, last_error=None, last_used_at=None, created_at=0.0,
                   updated_at=0.0, credential_hint="sk-ant-…")
    return replace(base, **changes)
