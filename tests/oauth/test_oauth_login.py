"""Connecting a subscription account end to end: real Kestrel, fake provider, fake Anthropic."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
from fake_oauth import CALLBACK, CLIENT_ID, EMAIL, MANUAL_CALLBACK, ORGANIZATION

from support.oauthkit import connect, oauth_stack, secrets_of
from support.process import KestrelProcess
from support.stack import message_body


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def test_redirect_flow_connects_an_account_that_then_serves(tmp_path: Path) -> None:
    with oauth_stack(tmp_path) as (stack, oauth):
        with stack.admin() as admin:
            started = admin.get("/api/oauth/authorize", params={"name": "sub"})
        assert started.status_code == 302
        assert started.headers["cache-control"] == "no-store"
        location = started.headers["location"]
        assert location.startswith(f"{oauth.base_url}/oauth/authorize?")
        params = query_of(location)
        assert params.keys() == {"client_id", "response_type", "redirect_uri", "scope",
                                 "code_challenge", "code_challenge_method", "state"}
        assert (params["client_id"], params["response_type"], params["redirect_uri"],
                params["scope"], params["code_challenge_method"]) == (
            CLIENT_ID, "code", CALLBACK, "user:profile user:inference", "S256")
        assert len(params["code_challenge"]) == 43 and len(params["state"]) == 43

        back = oauth.approve(location)  # the provider sends the browser to the callback
        assert back.startswith(CALLBACK + "?")
        with stack.kestrel.client() as browser:
            page = browser.get("/api/oauth/callback", params=query_of(back))
            assert page.status_code == 200, page.text
            assert page.headers["content-type"] == "text/html; charset=utf-8"
            assert "script-src" not in page.headers["content-security-policy"]
            assert "connected" in page.text and EMAIL in page.text
            # the same callback again: the state is spent, nothing changes
            replay = browser.get("/api/oauth/callback", params=query_of(back))
            assert replay.status_code == 400 and "already used" in replay.text

        with stack.admin() as admin:
            (account,) = admin.get("/admin/accounts").json()["data"]
        assert (account["name"], account["type"], account["status"]) == ("sub", "oauth",
                                                                          "active")
        assert (account["email"], account["organization"]) == (EMAIL, ORGANIZATION)
        assert account["credential_hint"] == "sk-ant-…" + oauth.access_tokens[0][-4:]
        assert account["usage_windows"] is None

        with stack.http() as client:
            assert client.post("/v1/messages", json=message_body()).status_code == 200
        sent = stack.up.requests[-1]
        assert sent.header("authorization") == f"Bearer {oauth.access_tokens[0]}"
        assert "oauth-2025-04-20" in (sent.header("anthropic-beta") or "")
        assert sent.header("x-api-key") is None
        assert len(oauth.refreshes()) == 0  # a fresh hour-long token is not refreshed
        logs = "\n".join(stack.kestrel.lines)
        assert not any(secret in logs for secret in secrets_of(oauth))


def test_paste_flow_accepts_code_hash_state_and_spends_each_login(tmp_path: Path) -> None:
    with oauth_stack(tmp_path, accounts=("key",)) as (stack, oauth), stack.admin() as admin:
        started = admin.post("/admin/oauth/start", json={"name": "sub"}).json()
        params = query_of(started["authorize_url"])
        assert params["code"] == "true" and params["redirect_uri"] == MANUAL_CALLBACK
        assert params["state"] == started["state"]
        pasted = oauth.approve(started["authorize_url"])
        code, state = pasted.split("#")
        assert state == started["state"]

        wrong = admin.post("/admin/oauth/exchange", json={"state": "x" * 43, "code": pasted})
        assert wrong.status_code == 400 and wrong.json()["error"]["field"] == "code"
        created = admin.post("/admin/oauth/exchange", json={"code": f"  {pasted}\n"})
        assert created.status_code == 201, created.text
        assert created.json()["email"] == EMAIL
        again = admin.post("/admin/oauth/exchange", json={"code": pasted})
        assert again.status_code == 400 and "already used" in again.json()["error"]["message"]
        unknown = admin.post("/admin/oauth/exchange", json={"state": "nope", "code": code})
        assert unknown.status_code == 400 and "unknown" in unknown.json()["error"]["message"]

        # logging in again under the same name reconnects the same account
        reconnected = connect(stack, oauth, "sub")
        assert reconnected["id"] == created.json()["id"]
        assert reconnected["credential_hint"].endswith(oauth.access_tokens[-1][-4:])

        # a name an API-key account holds is refused before anyone signs in
        taken = admin.post("/admin/oauth/start", json={"name": "key"})
        assert taken.status_code == 409 and taken.json()["error"]["field"] == "name"

        answers = [created.text, again.text, reconnected, admin.get("/admin/accounts").text]
        assert not any(s in json.dumps(answers) for s in secrets_of(oauth))


def test_bad_callbacks_store_nothing_and_escape_what_they_show(tmp_path: Path) -> None:
    with oauth_stack(tmp_path) as (stack, oauth), stack.kestrel.client() as browser:
        for params, says in (
                ({"code": "c", "state": "never-issued"}, "unknown login state"),
                ({"code": "c"}, "no state"),
                ({"state": "<script>alert(1)</script>", "code": "c"}, "unknown login state")):
            page = browser.get("/api/oauth/callback", params=params)
            assert page.status_code == 400 and says in page.text, page.text
            assert "<script>" not in page.text
        with stack.admin() as admin:
            url = admin.get("/api/oauth/authorize", params={"name": "sub"}).headers["location"]
        oauth.deny_next = True
        back = oauth.approve(url)
        page = browser.get("/api/oauth/callback", params=query_of(back))
        assert page.status_code == 400 and "access_denied" in page.text
        assert "&lt;b&gt;denied&lt;/b&gt;" in page.text and "<b>denied" not in page.text
        # the refused login cannot be replayed with a code either
        replay = browser.get("/api/oauth/callback",
                             params={"code": "c", "state": query_of(back)["state"]})
        assert "already used" in replay.text
        # a code the provider refuses: 400, nothing stored
        with stack.admin() as admin:
            started = admin.post("/admin/oauth/start", json={"name": "sub"}).json()
            refused = admin.post("/admin/oauth/exchange",
                                 json={"state": started["state"], "code": "forged"})
            assert refused.status_code == 400, refused.text
            assert "invalid_grant" in refused.json()["error"]["message"]
            assert admin.get("/admin/accounts").json()["data"] == []


def test_signed_links_let_a_browser_start_a_login_for_two_minutes(tmp_path: Path) -> None:
    with oauth_stack(tmp_path) as (stack, oauth), stack.kestrel.client() as browser:
        assert browser.get("/api/oauth/authorize", params={"name": "sub"}).status_code == 401
        with stack.admin() as admin:
            link = admin.post("/admin/oauth/link", json={"name": "sub"})
        assert link.status_code == 200
        url = link.json()["url"]
        assert url.startswith("/api/oauth/authorize?")
        followed = browser.get(url)
        assert followed.status_code == 302
        assert followed.headers["location"].startswith(oauth.base_url)
        params = query_of(url)
        for tampered in ({**params, "name": "other"}, {**params, "sig": params["sig"][::-1]},
                         {**params, "expires": str(int(params["expires"]) + 60)}):
            refused = browser.get("/api/oauth/authorize", params=tampered)
            assert refused.status_code == 401, tampered
        wrong_key = browser.get("/api/oauth/authorize", params={"name": "sub"},
                                headers={"X-Admin-Key": "not-the-admin-key-at-all"})
        assert wrong_key.status_code == 401


def test_oauth_is_off_without_a_client_id(kestrel: KestrelProcess) -> None:
    from conftest import ADMIN_KEY

    with kestrel.client(headers={"X-Admin-Key": ADMIN_KEY}) as admin:
        for response in (admin.post("/admin/oauth/start", json={"name": "sub"}),
                         admin.post("/admin/oauth/link", json={"name": "sub"}),
                         admin.get("/api/oauth/authorize", params={"name": "sub"})):
            assert response.status_code == 400
            assert "OAUTH_CLIENT_ID" in response.json()["error"]["message"]
    page = httpx.get(f"{kestrel.base_url}/api/oauth/callback", params={"code": "c", "state": "s"})
    assert page.status_code == 400 and "OAUTH_CLIENT_ID" in page.text
