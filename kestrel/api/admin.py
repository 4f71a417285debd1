"""Admin API for accounts and client keys: parse, call the store, shape the reply.

Credentials are write-only: they go in through `api_key` and come back only as a
`credential_hint`. Client keys are shown whole exactly once, in the answer that creates them.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, tzinfo
from typing import Any

from kestrel.api.endpoints import Auth, Endpoint
from kestrel.api.responses import iso_time, json_response, parse_time, read_json_object
from kestrel.api.schema import Schema, validate
from kestrel.domain import (
    UNSET,
    Account,
    AccountType,
    ApiKey,
    ClientError,
    Credential,
    RateLimits,
    UsageWindows,
    ValidationError,
)
from kestrel.egress import parse_proxy
from kestrel.http import Request, Response
from kestrel.proxy.forwarder import AccountTest, Forwarder
from kestrel.proxy.key_limits import periods
from kestrel.proxy.pool import AccountPool
from kestrel.store.accounts import AccountProxy, AccountStore
from kestrel.store.keys import KeyControls, KeyStore
from kestrel.store.usage import KeySpend, UsageStore, Window

_TIME = {"type": ["string", "null"], "format": "date-time", "readOnly": True}
_NAME = {"type": "string", "minLength": 1, "maxLength": 100, "pattern": r"^[^\x00-\x1f\x7f]+$"}
_SECRET = {"type": "string", "minLength": 8, "maxLength": 4096, "pattern": r"^[\x21-\x7e]+$",
           "writeOnly": True, "description": "The Anthropic API key. Never returned."}

_WINDOW_TIME = {"type": ["string", "null"], "format": "date-time"}
USAGE_WINDOWS: Schema = {
    "type": ["object", "null"],
    "readOnly": True,
    "description": "Subscription usage as the latest upstream answer reported it "
                   "(anthropic-ratelimit-unified-* headers); null until one did.",
    "properties": {
        "status": {"type": ["string", "null"],
                   "description": "allowed, allowed_warning or rejected"},
        "reset_at": _WINDOW_TIME,
        "representative_claim": {"type": ["string", "null"]},
        "observed_at": _WINDOW_TIME,
        "windows": {"type": "object", "description": "By window name: 5h, 7d, and others.",
                    "additionalProperties": {"type": "object", "properties": {
                        "status": {"type": ["string", "null"]},
                        "utilization": {"type": ["number", "null"],
                                        "description": "Fraction used; 1 is all of it."},
                        "reset_at": _WINDOW_TIME}}},
    },
}

_HEADROOM = {"type": "object", "properties": {
    "limit": {"type": ["integer", "null"]}, "remaining": {"type": ["integer", "null"]},
    "reset_at": _WINDOW_TIME}}
RATE_LIMITS: Schema = {
    "type": ["object", "null"],
    "readOnly": True,
    "description": "API-key accounts: how much of each rate limit was left at the latest "
                   "upstream answer (anthropic-ratelimit-requests-*, -tokens-*, -input-tokens-*, "
                   "-output-tokens-*); null until one reported it. Only the limits reported "
                   "are present.",
    "properties": {"observed_at": _WINDOW_TIME, "requests": _HEADROOM, "tokens": _HEADROOM,
                   "input_tokens": _HEADROOM, "output_tokens": _HEADROOM},
}

ACCOUNT: Schema = {
    "type": "object",
    "properties": {
        "id": {"type": "integer", "readOnly": True},
        "name": _NAME,
        "type": {"type": "string", "enum": ["api_key", "oauth"], "readOnly": True},
        "base_url": {"type": ["string", "null"], "format": "uri",
                     "description": "Upstream for this account; null means CLAUDE_BASE_URL. "
                                    "No user name, password, query or fragment."},
        "priority": {"type": "integer", "minimum": -1000, "maximum": 1000,
                     "description": "Higher is tried first."},
        "enabled": {"type": "boolean"},
        "status": {"type": "string", "readOnly": True,
                   "enum": ["active", "cooldown", "disabled", "invalid", "exhausted"]},
        "cooldown_until": _TIME,
        "consecutive_failures": {"type": "integer", "readOnly": True},
        "last_error": {"type": ["string", "null"], "readOnly": True},
        "last_used_at": _TIME,
        "created_at": _TIME,
        "updated_at": _TIME,
        "credential_hint": {"type": "string", "readOnly": True},
        "email": {"type": ["string", "null"], "readOnly": True,
                  "description": "OAuth accounts: who signed in."},
        "organization": {"type": ["string", "null"], "readOnly": True},
        "usage_windows": USAGE_WINDOWS,
        "rate_limits": RATE_LIMITS,
        "proxy_url": {"type": ["string", "null"], "maxLength": 2048,
                      "description": "This account's own egress proxy: http://, https://, "
                                     "socks5:// or socks5h:// (the proxy resolves names), with "
                                     "an optional user:password@. Sealed at rest; answers show "
                                     "it with the password masked. null: the environment's "
                                     "proxy (HTTPS_PROXY...), if any."},
    },
    "required": ["id", "name", "type", "base_url", "priority", "enabled", "status",
                 "cooldown_until", "consecutive_failures", "last_error", "last_used_at",
                 "created_at", "updated_at", "credential_hint", "email", "organization",
                 "usage_windows", "rate_limits", "proxy_url"],
}

_WRITABLE = {"name": _NAME, "api_key": _SECRET, "base_url": ACCOUNT["properties"]["base_url"],
             "priority": ACCOUNT["properties"]["priority"],
             "enabled": ACCOUNT["properties"]["enabled"],
             "proxy_url": ACCOUNT["properties"]["proxy_url"]}

ACCOUNT_CREATE: Schema = {
    "type": "object",
    "properties": {"type": {"type": "string", "enum": ["api_key"],
                            "description": "OAuth accounts are connected through the OAuth flow."},
                   **_WRITABLE},
    "required": ["name", "api_key"],
    "additionalProperties": False,
}

ACCOUNT_UPDATE: Schema = {
    "type": "object",
    "properties": _WRITABLE,
    "additionalProperties": False,
}

# An operator waiting on a test button: longer than this and the test has failed (a real
# request would wait up to UPSTREAM_CONNECT_TIMEOUT, then try another account).
ACCOUNT_TEST_SECONDS = 8.0

ACCOUNT_TEST: Schema = {
    "type": "object",
    "properties": {
        "ok": {"type": "boolean", "description": "Upstream answered 2xx."},
        "status": {"type": ["integer", "null"],
                   "description": "Upstream's status; null when no HTTP answer came."},
        "error_type": {"type": ["string", "null"],
                       "description": "Upstream's error type, or why no answer came "
                                      "(connect, timeout, proxy_auth...)."},
        "message": {"type": ["string", "null"], "description": "Upstream's error message."},
        "proxy": {"type": ["string", "null"], "description": "The proxy that failed."},
        "latency_ms": {"type": "number"},
        "account": ACCOUNT,
    },
    "required": ["ok", "status", "error_type", "message", "proxy", "latency_ms", "account"],
}

# What an operator may set on a key; every field optional, null (or left out) is no limit.
KEY_CONTROLS: dict[str, Schema] = {
    "models": {"type": ["array", "null"], "maxItems": 100,
               "items": {"type": "string", "minLength": 1, "maxLength": 200,
                         "pattern": r"^[A-Za-z0-9._:@/*+-]+$"},
               "description": "Model names the key may use; `*` matches any run of "
                              "characters (`claude-haiku-*`). Others are refused with 403."},
    "expires_at": {"type": ["string", "null"], "format": "date-time",
                   "description": "From then on the key is refused with 403 (RFC 3339 with "
                                  "an offset)."},
    "allowed_ips": {"type": ["array", "null"], "maxItems": 100,
                    "items": {"type": "string", "minLength": 1, "maxLength": 50},
                    "description": "Addresses or networks (CIDR) the key may be used from; "
                                   "others are refused with 403. Behind a reverse proxy, set "
                                   "TRUSTED_PROXIES."},
    "owner": {"type": ["string", "null"], "maxLength": 200,
              "pattern": r"^[^\x00-\x1f\x7f]*$", "description": "Who holds the key."},
    "note": {"type": ["string", "null"], "maxLength": 1000, "description": "Free text."},
    **{name: {"type": ["integer", "null"], "minimum": 1, "maximum": 2**53,
              "description": text} for name, text in (
        ("rpm", "Requests per calendar minute; more are refused with 429 until it ends."),
        ("tpm", "Tokens (input, cache writes and output) per calendar minute."),
        ("max_concurrency", "Requests in flight at once, streams included."),
        ("daily_tokens", "Tokens (input, cache writes and output) per calendar day in "
                         "TIME_ZONE."))},
    **{name: {"type": ["number", "null"], "minimum": 0, "maximum": 1e9, "description": text}
       for name, text in (
        ("daily_budget_usd", "Dollars per calendar day in TIME_ZONE, at the price table's "
                             "rates. A request that starts under budget may end above it; "
                             "the next is refused with 429."),
        ("monthly_budget_usd", "Dollars per calendar month in TIME_ZONE, likewise."))},
}
# What a key has used, read-only in answers: what its daily and monthly limits count.
KEY_SPEND: dict[str, Schema] = {
    "tokens_today": {"type": "integer", "readOnly": True},
    "spent_today_usd": {"type": "number", "readOnly": True},
    "spent_this_month_usd": {"type": "number", "readOnly": True},
}
_LIMITS = ("rpm", "tpm", "max_concurrency", "daily_tokens", "daily_budget_usd",
           "monthly_budget_usd")

API_KEY: Schema = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "name": {"type": "string"},
        "prefix": {"type": "string", "description": "The first characters, to recognise it."},
        "created_at": _TIME,
        "last_used_at": _TIME,
        "revoked_at": _TIME,
        **KEY_CONTROLS,
        **KEY_SPEND,
    },
    "required": ["id", "name", "prefix", "created_at", "last_used_at", "revoked_at",
                 *KEY_CONTROLS, *KEY_SPEND],
}

API_KEY_CREATED: Schema = {
    "type": "object",
    "properties": {**API_KEY["properties"],
                   "key": {"type": "string", "description": "Shown this once; store it now."}},
    "required": [*API_KEY["required"], "key"],
}

KEY_CREATE: Schema = {
    "type": "object",
    "properties": {"name": _NAME, **KEY_CONTROLS},
    "required": ["name"],
    "additionalProperties": False,
}

KEY_UPDATE: Schema = {
    "type": "object",
    "properties": {"name": _NAME, **KEY_CONTROLS},
    "additionalProperties": False,
}


def _list_of(item: Schema) -> Schema:
    return {"type": "object", "properties": {"data": {"type": "array", "items": item}},
            "required": ["data"]}


ERROR: Schema = {
    "type": "object",
    "properties": {"error": {"type": "object", "properties": {
        "type": {"type": "string"}, "message": {"type": "string"},
        "field": {"type": ["string", "null"]}}, "required": ["type", "message"]}},
    "required": ["error"],
}


def account_json(account: Account, now: float) -> dict[str, Any]:
    return {
        "id": account.id,
        "name": account.name,
        "type": account.type.value,
        "base_url": account.base_url,
        "priority": account.priority,
        "enabled": account.enabled,
        "status": account.status(now).value,
        "cooldown_until": iso_time(account.cooldown_until)
        if account.cooldown_until and account.cooldown_until > now else None,
        "consecutive_failures": account.consecutive_failures,
        "last_error": account.last_error,
        "last_used_at": iso_time(account.last_used_at),
        "created_at": iso_time(account.created_at),
        "updated_at": iso_time(account.updated_at),
        "credential_hint": account.credential_hint,
        "email": account.email,
        "organization": account.organization,
        "usage_windows": usage_json(account.usage_windows),
        "rate_limits": rate_limits_json(account.rate_limits),
        "proxy_url": account.proxy_hint,
    }


def rate_limits_json(limits: RateLimits | None) -> dict[str, Any] | None:
    if limits is None:
        return None
    return {"observed_at": iso_time(limits.observed_at),
            **{h.name: {"limit": h.limit, "remaining": h.remaining,
                        "reset_at": iso_time(h.reset_at)} for h in limits.limits}}


def usage_json(usage: UsageWindows | None) -> dict[str, Any] | None:
    if usage is None:
        return None
    return {
        "status": usage.status,
        "reset_at": iso_time(usage.reset_at),
        "representative_claim": usage.representative_claim,
        "observed_at": iso_time(usage.observed_at),
        "windows": {w.name: {"status": w.status, "utilization": w.utilization,
                             "reset_at": iso_time(w.reset_at)} for w in usage.windows},
    }


def key_json(key: ApiKey, spend: KeySpend) -> dict[str, Any]:
    return {
        "id": key.id,
        "name": key.name,
        "prefix": key.prefix,
        "created_at": iso_time(key.created_at),
        "last_used_at": iso_time(key.last_used_at),
        "revoked_at": iso_time(key.revoked_at),
        "models": None if key.models is None else list(key.models),
        "expires_at": iso_time(key.expires_at),
        "allowed_ips": None if key.allowed_ips is None else list(key.allowed_ips),
        "owner": key.owner,
        "note": key.note,
        **{name: getattr(key, name) for name in _LIMITS},
        "tokens_today": spend.tokens_today,
        "spent_today_usd": round(spend.today_usd, 6),
        "spent_this_month_usd": round(spend.month_usd, 6),
    }


def account_proxy(url: str | None) -> AccountProxy | None:
    """A validated `proxy_url` as the store keeps it; the error never quotes the URL, which may
    hold a password."""
    if url is None:
        return None
    try:
        proxy = parse_proxy(url)
    except ValueError as exc:
        raise ValidationError(f"proxy_url {exc}", field="proxy_url") from None
    return AccountProxy(url=url.strip(), hint=proxy.masked)


def key_controls(body: dict[str, Any]) -> KeyControls:
    """The controls a validated create or update body gives; those it leaves out stay UNSET."""
    models = body.get("models", UNSET)
    expires = body.get("expires_at", UNSET)
    networks = body.get("allowed_ips", UNSET)
    return KeyControls(
        models=tuple(models) if isinstance(models, list) else models,
        expires_at=parse_time(expires, "expires_at") if isinstance(expires, str) else expires,
        allowed_ips=_networks(networks) if isinstance(networks, list) else networks,
        owner=body.get("owner", UNSET), note=body.get("note", UNSET),
        **{name: body.get(name, UNSET) for name in _LIMITS})


def _networks(items: list[str]) -> tuple[str, ...]:
    """Each address or network in its normal CIDR form (`10.1.2.3` → `10.1.2.3/32`)."""
    networks = []
    for index, item in enumerate(items):
        try:
            networks.append(str(ipaddress.ip_network(item.strip(), strict=False)))
        except ValueError:
            raise ValidationError(f"allowed_ips[{index}] is not an address or a network (CIDR)",
                                  field=f"allowed_ips[{index}]") from None
    return tuple(networks)


# What `_path_id` accepts, as `/openapi.json` documents it: up to 18 digits, nothing else.
PATH_ID: Schema = {"type": "integer", "minimum": 0, "maximum": 10**18 - 1}


def _path_id(request: Request, name: str = "id") -> int:
    raw = request.path_params[name]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        # Not quoted back: whatever was pasted there (a key, by mistake) stays out of the answer.
        raise ClientError(f"the {name} in the path must be a number of up to 18 digits",
                          field=name)
    return int(raw)


class AdminApi:
    def __init__(self, accounts: AccountStore, keys: KeyStore, pool: AccountPool,
                 forwarder: Forwarder, usage: UsageStore, clock: Callable[[], float],
                 zone: tzinfo = UTC) -> None:
        self._forwarder = forwarder
        self._accounts = accounts
        self._keys = keys
        self._usage = usage
        self._zone = zone  # TIME_ZONE: where a key's day and month begin
        self._pool = pool  # told of every change, so the proxy uses it from the next request
        self._clock = clock

    def endpoints(self) -> list[Endpoint]:
        account: dict[int, Schema | None] = {200: ACCOUNT}
        errors: dict[int, Schema | None] = {400: ERROR, 401: ERROR, 404: ERROR, 422: ERROR,
                                            429: ERROR}

        def admin(method: str, path: str, handler: Any, summary: str, tag: str,
                  responses: dict[int, Schema | None], request: Schema | None = None) -> Endpoint:
            return Endpoint(method, path, handler, summary, tag, Auth.ADMIN,
                            request_schema=request, responses={**responses, **errors},
                            params={"id": PATH_ID})

        return [
            admin("GET", "/admin/accounts", self.list_accounts, "List accounts", "accounts",
                  {200: _list_of(ACCOUNT)}),
            admin("POST", "/admin/accounts", self.create_account, "Add an API-key account",
                  "accounts", {201: ACCOUNT, 409: ERROR, 413: ERROR}, ACCOUNT_CREATE),
            admin("GET", "/admin/accounts/{id}", self.get_account, "Get an account",
                  "accounts", account),
            admin("PUT", "/admin/accounts/{id}", self.update_account,
                  "Change an account (only the fields given)", "accounts",
                  {**account, 409: ERROR, 413: ERROR}, ACCOUNT_UPDATE),
            admin("DELETE", "/admin/accounts/{id}", self.delete_account, "Delete an account",
                  "accounts", {204: None}),
            admin("POST", "/admin/accounts/{id}/reset", self.reset_account,
                  "Clear cooldown, failure count and invalid/exhausted state", "accounts",
                  account),
            admin("POST", "/admin/accounts/{id}/test", self.test_account,
                  "One minimal real request through this account alone (the model list, "
                  "free); a failure updates its state as a real request's would", "accounts",
                  {200: ACCOUNT_TEST}),
            admin("GET", "/admin/keys", self.list_keys, "List client keys", "keys",
                  {200: _list_of(API_KEY)}),
            admin("POST", "/admin/keys", self.create_key,
                  "Create a client key (shown once)", "keys",
                  {201: API_KEY_CREATED, 409: ERROR, 413: ERROR},
                  KEY_CREATE),
            admin("PUT", "/admin/keys/{id}", self.update_key,
                  "Change a client key's name, allowed models, expiry, owner or note", "keys",
                  {200: API_KEY, 409: ERROR, 413: ERROR}, KEY_UPDATE),
            admin("DELETE", "/admin/keys/{id}", self.revoke_key, "Revoke a client key", "keys",
                  {200: API_KEY}),
        ]

    def _live(self, account: Account) -> Account:
        """The account with the pool's usage windows and rate limits when they are newer: the
        pool sees every answer, the store is written at most every few seconds per account."""
        pooled = self._pool.current(account.id)
        live = pooled.usage_windows if pooled is not None else None
        stored = account.usage_windows
        if live is not None and (stored is None or live.observed_at > stored.observed_at):
            account = replace(account, usage_windows=live)
        limits = self._pool.rate_limits(account.id)
        if limits is not None and (account.rate_limits is None
                                   or limits.observed_at > account.rate_limits.observed_at):
            account = replace(account, rate_limits=limits)
        return account

    async def list_accounts(self, request: Request) -> Response:
        now = self._clock()
        accounts = await self._accounts.list()
        return json_response({"data": [account_json(self._live(a), now) for a in accounts]})

    async def get_account(self, request: Request) -> Response:
        account = await self._accounts.get(_path_id(request))
        return json_response(account_json(self._live(account), self._clock()))

    async def create_account(self, request: Request) -> Response:
        body = await read_json_object(request)
        validate(ACCOUNT_CREATE, body)
        now = self._clock()
        account = await self._accounts.create(
            name=body["name"],
            type=AccountType.API_KEY,
            credential=Credential(api_key=body["api_key"]),
            base_url=body.get("base_url"),
            priority=body.get("priority", 0),
            enabled=body.get("enabled", True),
            proxy=account_proxy(body.get("proxy_url")),
            now=now,
        )
        self._pool.put(account)
        return json_response(account_json(account, now), 201)

    async def update_account(self, request: Request) -> Response:
        account_id = _path_id(request)
        body = await read_json_object(request)
        validate(ACCOUNT_UPDATE, body)
        now = self._clock()
        account = await self._accounts.update(
            account_id,
            now=now,
            name=body.get("name"),
            credential=Credential(api_key=body["api_key"]) if "api_key" in body else None,
            base_url=body.get("base_url", UNSET),
            priority=body.get("priority"),
            enabled=body.get("enabled"),
            proxy=account_proxy(body["proxy_url"]) if "proxy_url" in body else UNSET,
        )
        self._pool.put(account)
        return json_response(account_json(account, now))

    async def delete_account(self, request: Request) -> Response:
        account_id = _path_id(request)
        await self._accounts.delete(account_id, now=self._clock())
        self._pool.remove(account_id)
        return Response(204)

    async def reset_account(self, request: Request) -> Response:
        now = self._clock()
        account = await self._accounts.reset(_path_id(request), now=now)
        self._pool.put(account)
        return json_response(account_json(account, now))

    async def _spend(self) -> dict[int, KeySpend]:
        at = periods(self._clock(), self._zone)
        return await self._usage.spend(Window.of(at.minute, at.day, at.month))

    async def test_account(self, request: Request) -> Response:
        account_id = _path_id(request)
        account = self._pool.current(account_id) or await self._accounts.get(account_id)
        started = time.monotonic()
        try:
            async with asyncio.timeout(ACCOUNT_TEST_SECONDS):
                result = await self._forwarder.test_account(account, request.request_id)
        except TimeoutError:
            # Cut short by us, not judged: the account's state stays as it was.
            result = AccountTest(None, "test_timeout", (time.monotonic() - started) * 1000,
                                 message=f"no answer within {ACCOUNT_TEST_SECONDS:g} s")
        now = self._clock()
        after = self._pool.current(account_id) or await self._accounts.get(account_id)
        return json_response({
            "ok": result.status is not None and 200 <= result.status < 300,
            "status": result.status, "error_type": result.error_type,
            "message": result.message, "proxy": result.proxy,
            "latency_ms": round(result.latency_ms, 2), "account": account_json(after, now)})

    async def list_keys(self, request: Request) -> Response:
        keys = await self._keys.list()
        spend = await self._spend()
        return json_response({"data": [key_json(k, spend.get(k.id, KeySpend())) for k in keys]})

    async def create_key(self, request: Request) -> Response:
        body = await read_json_object(request)
        validate(KEY_CREATE, body)
        key, secret = await self._keys.create(name=body["name"], now=self._clock(),
                                              controls=key_controls(body))
        return json_response({**key_json(key, KeySpend()), "key": secret}, 201,
                             [("cache-control", "no-store")])

    async def update_key(self, request: Request) -> Response:
        key_id = _path_id(request)
        body = await read_json_object(request)
        validate(KEY_UPDATE, body)
        key = await self._keys.update(key_id, now=self._clock(), name=body.get("name"),
                                      controls=key_controls(body))
        return json_response(key_json(key, (await self._spend()).get(key.id, KeySpend())))

    async def revoke_key(self, request: Request) -> Response:
        key = await self._keys.revoke(_path_id(request), now=self._clock())
        return json_response(key_json(key, (await self._spend()).get(key.id, KeySpend())))
