"""What an operator allows a client key (issue 16, first part): allowed models and an expiry,
set through the admin API, refused with 403 before anything reaches upstream, in each route's
own error shape, as the official SDKs raise it; and an owner and a note to tell keys apart."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from kestrel.domain import ApiKey
from kestrel.proxy.client_address import client_address
from kestrel.proxy.key_policy import model_allowed, refusal

from support.stack import MODEL, Stack, running_stack

HAIKU = "claude-haiku-4-5"
NOW = 1_800_000_000.0


# --- the decision, pure --------------------------------------------------------------------------


@pytest.mark.parametrize(("patterns", "model", "allowed"), [
    (("claude-haiku-*",), "claude-haiku-4-5", True),
    (("claude-haiku-*",), "claude-sonnet-4-6", False),
    (("claude-haiku-*",), "xclaude-haiku-4-5", False),  # whole names only
    (("claude-sonnet-4-6", "claude-opus-*"), "claude-opus-4-7", True),
    (("claude-sonnet-4-6",), "claude-sonnet-4-6-20260101", False),
    (("*",), "anything", True),
    (("claude-3.5-*",), "claude-3x5-sonnet", False),  # a dot is a dot, not any character
    ((), "claude-haiku-4-5", False),  # an empty list allows nothing
])
def test_model_patterns(patterns: tuple[str, ...], model: str, allowed: bool) -> None:
    assert model_allowed(patterns, model) is allowed


def key(**controls: Any) -> ApiKey:
    return ApiKey(id=7, name="k", prefix="kst_abc", created_at=0.0, last_used_at=None,
                  revoked_at=None, **controls)


def test_refusals_name_the_control_and_its_value() -> None:
    assert refusal(key(), model=MODEL, now=NOW) is None
    assert refusal(key(models=("claude-haiku-*",)), model=None, now=NOW) is None
    expired = refusal(key(expires_at=NOW), model=MODEL, now=NOW)
    assert expired is not None and (expired.status, expired.reason) == (403, "key_expired")
    assert expired.message == ("this API key expired at 2027-01-15 08:00:00 UTC; ask the "
                               "Kestrel operator for a new one")
    assert refusal(key(expires_at=NOW + 1), model=MODEL, now=NOW) is None
    wrong = refusal(key(models=("claude-haiku-*", "claude-opus-4-7")), model=MODEL, now=NOW)
    assert wrong is not None and wrong.reason == "model_not_allowed"
    assert wrong.message == ("model 'claude-sonnet-4-6' is not allowed for this API key "
                             "(allowed: claude-haiku-*, claude-opus-4-7)")


# --- through a real Kestrel ---------------------------------------------------------------------


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with running_stack(tmp_path, accounts=("a",)) as stack:
        yield stack


def sdk(stack: Stack, key: str) -> anthropic.Anthropic:
    return stack.closed_with_stack(anthropic.Anthropic(base_url=stack.url, api_key=key,
                                                       max_retries=0))


def new_key(stack: Stack, **controls: Any) -> dict[str, Any]:
    with stack.admin() as admin:
        created = admin.post("/admin/keys", json={"name": "limited", **controls})
        assert created.status_code == 201, created.text
        return dict(created.json())


def test_a_model_outside_the_list_is_refused_in_each_routes_shape(stack: Stack) -> None:
    limited = new_key(stack, models=["claude-haiku-*"], owner="Ada", note="the intern")
    assert (limited["models"], limited["owner"], limited["note"]) == (
        ["claude-haiku-*"], "Ada", "the intern")
    sent = len(stack.up.requests)
    message = ("model 'claude-sonnet-4-6' is not allowed for this API key "
               "(allowed: claude-haiku-*)")

    claude = sdk(stack, limited["key"])
    with pytest.raises(anthropic.PermissionDeniedError) as refused:
        claude.messages.create(model=MODEL, max_tokens=16,
                               messages=[{"role": "user", "content": "hi"}])
    assert refused.value.body == {"type": "error", "error": {"type": "permission_error",
                                                             "message": message}}
    with pytest.raises(anthropic.PermissionDeniedError):
        claude.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(anthropic.PermissionDeniedError), claude.messages.stream(
            model=MODEL, max_tokens=16, messages=[{"role": "user", "content": "hi"}]) as stream:
        list(stream)  # streaming too: refused before any byte

    chat = stack.closed_with_stack(openai.OpenAI(base_url=stack.url + "/v1",
                                                 api_key=limited["key"], max_retries=0))
    with pytest.raises(openai.PermissionDeniedError) as denied:
        chat.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert denied.value.status_code == 403
    assert denied.value.body == {"message": message, "type": "permission_error", "param": None,
                                 "code": None}
    assert len(stack.up.requests) == sent  # nothing reached upstream

    allowed = claude.messages.create(model=HAIKU, max_tokens=16,
                                     messages=[{"role": "user", "content": "hi"}])
    assert allowed.content and len(stack.up.requests) == sent + 1

    rows = stack.logs(expect=5, key_id=limited["id"])
    assert sorted((r["status"], r["error_type"]) for r in rows) == [
        (200, None), *[(403, "model_not_allowed")] * 4]
    with stack.admin() as admin:
        metrics = admin.get("/metrics").text
    assert 'kestrel_refused_total{reason="model_not_allowed"} 4' in metrics


def test_an_expiry_refuses_the_key_and_clearing_it_lets_it_in_again(stack: Stack) -> None:
    limited = new_key(stack, expires_at="2030-01-01T00:00:00+01:00")
    assert limited["expires_at"] == "2029-12-31T23:00:00.000Z"
    claude = sdk(stack, limited["key"])

    def ask() -> Any:
        return claude.messages.create(model=MODEL, max_tokens=16,
                                      messages=[{"role": "user", "content": "hi"}])
    assert ask().content  # not expired yet
    with stack.admin() as admin:
        past = admin.put(f"/admin/keys/{limited['id']}",
                         json={"expires_at": "2020-05-01T12:00:00Z"})
        assert past.status_code == 200 and past.json()["expires_at"] == "2020-05-01T12:00:00.000Z"
    with pytest.raises(anthropic.PermissionDeniedError) as refused:
        ask()
    assert refused.value.body["error"]["message"] == (
        "this API key expired at 2020-05-01 12:00:00 UTC; ask the Kestrel operator for a new one")
    with stack.admin() as admin:  # years before 1000 too, written with four digits
        ancient = admin.put(f"/admin/keys/{limited['id']}",
                            json={"expires_at": "0530-04-16T12:45:27Z"})
        assert ancient.json()["expires_at"] == "0530-04-16T12:45:27.000Z"
        cleared = admin.put(f"/admin/keys/{limited['id']}",
                            json={"expires_at": None, "name": "renewed"})
        assert (cleared.json()["expires_at"], cleared.json()["name"]) == (None, "renewed")
    assert ask().content


@pytest.mark.parametrize(("body", "field"), [
    ({"models": ["claude haiku"]}, "models"),
    ({"models": "claude-haiku-*"}, "models"),
    ({"models": [f"m{n}" for n in range(101)]}, "models"),  # at most 100
    ({"expires_at": "2030-01-01T00:00:00"}, "expires_at"),  # no offset: whose clock?
    ({"expires_at": "soon"}, "expires_at"),
    ({"expires_at": "99999999999999"}, "expires_at"),  # past year 9999
    ({"owner": "a\nb"}, "owner"),
    ({"rate": 5}, None),
])
def test_bad_controls_are_refused_naming_the_field(stack: Stack, body: dict[str, Any],
                                                   field: str | None) -> None:
    with stack.admin() as admin:
        created = admin.post("/admin/keys", json={"name": "bad", **body})
        assert created.status_code == 422, created.text
        if field is not None:
            assert created.json()["error"]["field"].startswith(field)
        missing = admin.put("/admin/keys/999999", json={"note": "x"})
        assert missing.status_code == 404


def test_a_change_reaches_a_key_in_use_at_once(stack: Stack) -> None:
    """The process that changed the key drops it from its cache: the next request obeys."""
    limited = new_key(stack)
    with httpx.Client(base_url=stack.url, headers={"x-api-key": limited["key"],
                                                   "anthropic-version": "2023-06-01"}) as client:
        body = {"model": MODEL, "max_tokens": 16, "messages": [{"role": "user", "content": "x"}]}
        assert client.post("/v1/messages", json=body).status_code == 200
        with stack.admin() as admin:
            admin.put(f"/admin/keys/{limited['id']}", json={"models": [HAIKU]})
        started = time.monotonic()
        assert client.post("/v1/messages", json=body).status_code == 403
        assert time.monotonic() - started < 5


# --- addresses -----------------------------------------------------------------------------------

TRUSTED = tuple(ipaddress.ip_network(n) for n in ("127.0.0.1/32", "10.0.0.0/8"))


@pytest.mark.parametrize(("peer", "forwarded", "trusted", "client"), [
    ("198.51.100.7", "203.0.113.9", TRUSTED, "198.51.100.7"),  # an untrusted peer is the client
    ("127.0.0.1", None, TRUSTED, "127.0.0.1"),
    ("127.0.0.1", "203.0.113.9", TRUSTED, "203.0.113.9"),
    ("127.0.0.1", "6.6.6.6, 203.0.113.9", TRUSTED, "203.0.113.9"),  # the left is the sender's
    ("127.0.0.1", "203.0.113.9, 10.1.2.3", TRUSTED, "203.0.113.9"),  # a chain of proxies
    ("127.0.0.1", "10.9.9.9, 10.1.2.3", TRUSTED, "10.9.9.9"),  # all trusted: the farthest
    ("127.0.0.1", "203.0.113.9, nonsense", TRUSTED, "127.0.0.1"),  # stop at what is no address
    ("::ffff:127.0.0.1", "2001:db8::1", TRUSTED, "2001:db8::1"),  # IPv4-mapped peer
    ("127.0.0.1", "203.0.113.9", (), "127.0.0.1"),  # TRUSTED_PROXIES unset: never believed
])
def test_the_client_address_behind_trusted_proxies(peer: str, forwarded: str | None,
                                                   trusted: tuple[Any, ...], client: str) -> None:
    assert client_address(peer, forwarded, trusted) == client


def test_an_address_outside_the_list_is_refused() -> None:
    limited = key(allowed_ips=("10.0.0.0/8", "2001:db8::/32"))
    assert refusal(limited, model=MODEL, now=NOW, client="10.200.0.1") is None
    assert refusal(limited, model=MODEL, now=NOW, client="2001:db8::5") is None
    assert refusal(limited, model=MODEL, now=NOW, client="::ffff:10.0.0.1") is None
    outside = refusal(limited, model=MODEL, now=NOW, client="192.168.1.1")
    assert outside is not None and outside.reason == "address_not_allowed"
    assert outside.message == ("address 192.168.1.1 is not allowed for this API key (allowed: "
                               "10.0.0.0/8, 2001:db8::/32)")
    unknown = refusal(limited, model=MODEL, now=NOW, client=None)
    assert unknown is not None and unknown.message.startswith("address unknown is not allowed")


def test_allowed_addresses_through_a_trusted_proxy(tmp_path: Path) -> None:
    with running_stack(tmp_path, accounts=("a",),
                       env={"TRUSTED_PROXIES": "127.0.0.1, 10.0.0.0/8"}) as stack:
        office = new_key(stack, allowed_ips=["203.0.113.0/24", "198.51.100.1"])
        assert office["allowed_ips"] == ["203.0.113.0/24", "198.51.100.1/32"]
        body = {"model": MODEL, "max_tokens": 16, "messages": [{"role": "user", "content": "x"}]}

        def ask(forwarded: str | None) -> httpx.Response:
            headers = {"x-api-key": office["key"], "anthropic-version": "2023-06-01"}
            if forwarded is not None:
                headers["x-forwarded-for"] = forwarded
            with httpx.Client(base_url=stack.url) as client:
                return client.post("/v1/messages", json=body, headers=headers)
        assert ask("203.0.113.9").status_code == 200
        assert ask("203.0.113.9, 10.0.0.5").status_code == 200
        refused = ask("198.51.100.7")
        assert refused.status_code == 403
        assert refused.json()["error"]["message"] == (
            "address 198.51.100.7 is not allowed for this API key (allowed: 203.0.113.0/24, "
            "198.51.100.1/32)")
        assert ask(None).status_code == 403  # the proxy itself is no client of this key
        rows = stack.logs(expect=4, key_id=office["id"])
        assert sorted((r["client"], r["status"]) for r in rows) == [
            ("127.0.0.1", 403), ("198.51.100.7", 403), ("203.0.113.9", 200),
            ("203.0.113.9", 200)]


def test_without_trusted_proxies_a_forwarded_address_is_never_believed(stack: Stack) -> None:
    office = new_key(stack, allowed_ips=["203.0.113.0/24"])
    with httpx.Client(base_url=stack.url) as client:
        refused = client.post("/v1/messages", headers={
            "x-api-key": office["key"], "anthropic-version": "2023-06-01",
            "x-forwarded-for": "203.0.113.9"},
            json={"model": MODEL, "max_tokens": 16, "messages": [{"role": "user", "content": "x"}]})
    assert refused.status_code == 403
    assert "address 127.0.0.1 is not allowed" in refused.json()["error"]["message"]
    with stack.admin() as admin:
        bad = admin.put(f"/admin/keys/{office['id']}", json={"allowed_ips": ["10.0.0.0/33"]})
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "allowed_ips[0]"
