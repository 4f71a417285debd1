"""A deployment with OAuth for end-to-end tests: fake provider + fake Anthropic + real Kestrel."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fake_oauth import FakeOAuth

from support.stack import Stack, running_stack


@contextmanager
def oauth_stack(workdir: Path, *, accounts: tuple[str, ...] = (), lifetimes: tuple[int, ...] = (),
                refresh_delay: float = 0.0) -> Iterator[tuple[Stack, FakeOAuth]]:
    with FakeOAuth(lifetimes=lifetimes, refresh_delay=refresh_delay) as oauth, \
            running_stack(workdir, accounts=accounts, env=oauth.env()) as stack:
        yield stack, oauth


def connect(stack: Stack, oauth: FakeOAuth, name: str = "sub") -> dict[str, Any]:
    """The paste flow through the admin API, as the dashboard or `accounts login` runs it."""
    with stack.admin() as admin:
        started = admin.post("/admin/oauth/start", json={"name": name})
        assert started.status_code == 200, started.text
        pasted = oauth.approve(started.json()["authorize_url"])
        response = admin.post("/admin/oauth/exchange",
                              json={"state": started.json()["state"], "code": pasted})
        assert response.status_code in (200, 201), response.text
        account: dict[str, Any] = response.json()
    stack.accounts[name] = account["id"]
    return account


def secrets_of(oauth: FakeOAuth) -> list[str]:
    """Every token the provider issued, and recognisable pieces of them."""
    tokens = [t for t in oauth.access_tokens]
    tokens += [t.replace("oat01", "ort01").replace("ACCESSSECRET", "REFRESHSECRET")
               for t in oauth.access_tokens]
    return tokens + [t[13:30] for t in tokens]
