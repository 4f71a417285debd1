"""Tokens kept fresh end to end, and subscription windows read from upstream answers."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import httpx
from fake_oauth import INVALID_GRANT, rate_limited

from fake_upstream import ANY, error, success
from support.oauthkit import connect, oauth_stack, secrets_of
from support.stack import Stack, account_key, message_body


def post(stack: Stack, text: str = "hello") -> int:
    with stack.http() as client:
        return client.post("/v1/messages", json=message_body(text)).status_code


def bearer(stack: Stack, index: int = -1) -> str | None:
    value = stack.up.requests[index].header("authorization")
    return value.removeprefix("Bearer ") if value else None


def seconds_until(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() - time.time()


def test_a_due_token_is_refreshed_once_however_many_requests_wait(tmp_path: Path) -> None:
    # a one-minute token is inside the 5-minute lead: due at once; the provider takes its time
    with oauth_stack(tmp_path, lifetimes=(60,), refresh_delay=0.3) as (stack, oauth):
        connect(stack, oauth)
        # one client shared by 50 threads: every request is in flight at once
        with stack.http(limits=httpx.Limits(max_connections=50)) as client, \
                ThreadPoolExecutor(50) as pool:
            codes = list(pool.map(lambda n: client.post(
                "/v1/messages", json=message_body(f"request {n}")).status_code, range(50)))
        assert codes == [200] * 50
        assert len(oauth.refreshes()) == 1
        # refreshed before any request went out: the old token never reached Anthropic
        assert {r.credential for r in stack.up.requests} == {oauth.access_tokens[1]}
        assert post(stack, "later") == 200
        assert len(oauth.refreshes()) == 1  # the new hour-long token is not due


def test_a_401_refreshes_and_retries_once_on_the_same_account(tmp_path: Path) -> None:
    with oauth_stack(tmp_path, accounts=("key",)) as (stack, oauth):
        connect(stack, oauth)
        with stack.admin() as admin:  # make sure the OAuth account is tried first
            admin.put(f"/admin/accounts/{stack.accounts['sub']}", json={"priority": 5})
        stack.up.script(oauth.access_tokens[0], [error(
            401, "authentication_error", "OAuth token has expired.")])
        assert post(stack) == 200
        assert [bearer(stack, i) for i in range(2)] == oauth.access_tokens[:2]
        assert len(oauth.refreshes()) == 1
        account = stack.account("sub")
        assert (account["status"], account["consecutive_failures"]) == ("active", 0)
        # a 401 again right after a refresh is the account's fault: judged like any 401
        stack.up.script(ANY, [error(401, "authentication_error", "no")] * 2)
        assert post(stack, "new conversation") == 200
        assert stack.up.requests[-1].credential == account_key("key")
        assert stack.account("sub")["status"] == "invalid"
        assert len(oauth.refreshes()) == 2
        logs = "\n".join(stack.kestrel.lines)
        assert "OAuth tokens refreshed" in logs
        assert not any(secret in logs for secret in secrets_of(oauth))


def test_rotated_refresh_tokens_survive_a_restart(tmp_path: Path) -> None:
    with oauth_stack(tmp_path, lifetimes=(60,)) as (stack, oauth):
        connect(stack, oauth)
        assert post(stack) == 200  # refresh #1 rotates the refresh token
        stack.restart()
        # force refresh #2: only the rotated refresh token is still accepted by the provider
        stack.up.script(oauth.access_tokens[1], [error(401, "authentication_error", "expired")])
        assert post(stack, "after restart") == 200
        assert [r.status for r in oauth.refreshes()] == [200, 200]
        assert bearer(stack) == oauth.access_tokens[2]
        assert stack.account("sub")["status"] == "active"


def test_invalid_grant_marks_the_account_and_says_to_reconnect(tmp_path: Path) -> None:
    with oauth_stack(tmp_path, accounts=("key",), lifetimes=(60,)) as (stack, oauth):
        connect(stack, oauth)
        with stack.admin() as admin:
            admin.put(f"/admin/accounts/{stack.accounts['sub']}", json={"priority": 5})
        oauth.script_refresh([INVALID_GRANT])
        assert post(stack) == 200
        assert stack.up.requests[-1].credential == account_key("key")
        account = stack.account("sub")
        assert account["status"] == "invalid"
        assert "invalid_grant" in account["last_error"]
        assert "kestrel accounts login sub" in account["last_error"]
        assert post(stack, "again") == 200
        assert len(oauth.refreshes()) == 1  # an invalid account is not tried again
        # reconnecting brings it back
        connect(stack, oauth)
        assert stack.account("sub")["status"] == "active"
        assert not any(s in str(account) for s in secrets_of(oauth))


def test_other_refresh_failures_cool_the_account_without_marking_it(tmp_path: Path) -> None:
    # a one-second token counts as expired at once (a request needs it valid 10 s longer)
    with oauth_stack(tmp_path, accounts=("key",), lifetimes=(1,)) as (stack, oauth):
        connect(stack, oauth)
        with stack.admin() as admin:
            admin.put(f"/admin/accounts/{stack.accounts['sub']}", json={"priority": 5})
        oauth.script_refresh([rate_limited(40)])
        assert post(stack) == 200
        assert stack.up.requests[-1].credential == account_key("key")
        account = stack.account("sub")
        assert account["status"] == "cooldown"
        assert 35 <= seconds_until(account["cooldown_until"]) <= 41
        assert "token refresh failed" in account["last_error"]
        assert "429" in account["last_error"]
        assert post(stack, "again") == 200
        assert len(oauth.refreshes()) == 1  # the provider is left alone while it cools


def test_usage_windows_are_kept_and_a_rejected_window_cools_the_account(
        tmp_path: Path) -> None:
    with oauth_stack(tmp_path, accounts=("key",)) as (stack, oauth):
        connect(stack, oauth)
        with stack.admin() as admin:
            admin.put(f"/admin/accounts/{stack.accounts['sub']}", json={"priority": 5})
        now = int(time.time())
        stack.up.script(oauth.access_tokens[0], [success(headers={
            "anthropic-ratelimit-unified-status": "allowed",
            "anthropic-ratelimit-unified-reset": str(now + 3600),
            "anthropic-ratelimit-unified-representative-claim": "five_hour",
            "anthropic-ratelimit-unified-5h-utilization": "0.42",
            "anthropic-ratelimit-unified-5h-reset": str(now + 3600),
            "anthropic-ratelimit-unified-7d-utilization": "0.13",
            "anthropic-ratelimit-unified-7d-reset": str(now + 86400),
        }), error(429, "rate_limit_error", "usage limit reached", headers={
            "anthropic-ratelimit-unified-status": "rejected",
            "anthropic-ratelimit-unified-reset": str(now + 120),
            "anthropic-ratelimit-unified-5h-status": "rejected",
            "anthropic-ratelimit-unified-5h-utilization": "1.01",
            "anthropic-ratelimit-unified-5h-reset": str(now + 120),
            "anthropic-ratelimit-unified-7d-utilization": "0.2",
            "anthropic-ratelimit-unified-7d-reset": str(now + 5 * 86400),
        })])
        assert post(stack) == 200
        usage = stack.account("sub")["usage_windows"]
        assert (usage["status"], usage["representative_claim"]) == ("allowed", "five_hour")
        assert usage["windows"]["5h"]["utilization"] == 0.42
        assert usage["windows"]["7d"]["utilization"] == 0.13
        assert 3590 <= seconds_until(usage["windows"]["5h"]["reset_at"]) <= 3601

        assert post(stack, "second") == 200  # rejected on sub, served by key
        assert stack.up.requests[-1].credential == account_key("key")
        account = stack.account("sub")
        assert account["status"] == "cooldown"
        assert 110 <= seconds_until(account["cooldown_until"]) <= 121  # the 5h reset, not 7d
        assert account["usage_windows"]["status"] == "rejected"
