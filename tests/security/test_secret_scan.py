"""No credential ever leaves Kestrel: a whole session, then every output searched for every secret.

The session runs a real Kestrel (debug logs, JSON) with recognisable fake secrets everywhere one
can be: the admin key, the encryption key, the metrics token, API-key accounts, OAuth tokens
(access, refresh, the authorization code), client keys (live, revoked, mistyped). It proxies
requests and provokes the errors most likely to echo a secret: upstream errors quoting the
account's key or token, a refused OAuth refresh quoting the refresh token, bad and revoked client
keys, client keys knocking on the admin API, admin keys in the wrong place, malformed admin
bodies carrying a key. Then `support.leaks` looks for any 12-byte slice of any secret (raw, hex,
base64, URL-encoded) in every log line, every answer a client got (admin and proxy, headers and
bodies, errors included) and every byte of the database files: while Kestrel runs (the WAL not
yet checkpointed) and after it stopped.

By design, exactly one answer shows a secret: `POST /admin/keys` (201) shows the new client key
once. Those answers are left out of the search, and counted in the figures.

The search proves it can find something: an account name is public and stored in clear, so it is
searched for like a secret and must turn up in the log, the admin answers and the database files;
and `test_the_scan_finds_planted_secrets` plants encoded slices of secrets in haystacks.

An upstream error text quoting the account's credential is checked on its own
(`test_an_upstream_error_quoting_the_credential_does_not_reach_the_client`): Kestrel redacts
the serving account's credential from relayed error bodies and stream events.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import httpx
from fake_oauth import INVALID_GRANT, FakeOAuth

from kestrel.store.keys import DISPLAY_PREFIX_LENGTH

from fake_upstream import error, stream_error_after
from support.figures import report
from support.leaks import WINDOW, Hit, Secret, Transcript, response_bytes, scan, summary
from support.oauthkit import connect
from support.stack import MODEL, Stack, account_key, message_body, running_stack

# No family prefix on purpose: the log filter's patterns cannot save these, only never
# writing them can.
ADMIN_KEY = "adm-SCAN-7f3c9e1a5b2d8f40c6e2"
ENCRYPTION_KEY = hashlib.sha256(b"kestrel secret scan").hexdigest()
METRICS_TOKEN = "mtok-SCAN-3e8b1d6f2a9c5e7b"
# Public, stored in clear: what the scan must find, to show it searches the right bytes.
CANARY = "canary-PUBLICNAME-4b7e1f9a2c6d"
CANARY_KEY = "sk-ant-api03-canaryacct-UPSTREAMSECRET-9876543210"
FAMILY = len("sk-ant-api03-")  # the public head of every Anthropic key and token


def _creates_a_key(response: httpx.Response) -> bool:
    """The one answer that shows a secret by design: a new client key, shown once."""
    return (response.request.method == "POST" and response.request.url.path == "/admin/keys"
            and response.status_code == 201)


@dataclass
class Session:
    stack: Stack
    oauth: FakeOAuth
    transcript: Transcript = field(default_factory=lambda: Transcript(exclude=_creates_a_key))
    secrets: list[Secret] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)

    def secret(self, name: str, value: str, public: int = 0) -> str:
        self.secrets.append(Secret.of(name, value, public))
        return value


def test_no_secret_leaks_from_a_whole_session(tmp_path: Path) -> None:
    with FakeOAuth(lifetimes=(60,), echo_secrets=True) as oauth, running_stack(
            tmp_path, accounts=(), env={
                "ADMIN_KEY": ADMIN_KEY, "ENCRYPTION_KEY": ENCRYPTION_KEY,
                "METRICS_TOKEN": METRICS_TOKEN, "LOG_LEVEL": "debug", **oauth.env()}) as stack:
        session = Session(stack, oauth)
        stack.kestrel.event_hooks.update(session.transcript.hooks())
        _accounts(session)
        _proxy_traffic(session)
        _refused_callers(session)
        _admin_mistakes(session)
        _admin_reads(session)
        session.files.update(_read_files(tmp_path, "running"))
        stack.kestrel.stop()
        session.files.update(_read_files(tmp_path, "stopped"))
        lines = list(stack.kestrel.lines)

    for token in oauth.access_tokens:
        session.secret("OAuth access token", token, FAMILY)
    for token in oauth.refresh_tokens:
        session.secret("OAuth refresh token", token, FAMILY)
    places = _places(session, lines)
    haystacks = {name: data for name, (data, _) in places.items()}
    canary = scan(haystacks, [Secret.of("canary", CANARY)])
    hits = scan(haystacks, session.secrets)
    _report(session, places, hits, canary)

    found_in = {hit.place for hit in canary}
    assert {"Kestrel log lines", ADMIN_ANSWERS} <= found_in, found_in
    assert any(p.endswith("(running)") for p in found_in), "the scan misses the live database"
    assert any(p.endswith("(stopped)") for p in found_in), "the scan misses the database file"
    assert haystacks.get("kestrel.db-wal (running)"), "no WAL to search while running"
    assert not hits, "secrets leaked:\n" + summary(hits)


# --- the session ------------------------------------------------------------------------------


def _accounts(session: Session) -> None:
    """API-key accounts, one OAuth account by the paste flow, one by the browser flow."""
    stack, oauth = session.stack, session.oauth
    session.secret("admin key", ADMIN_KEY)
    session.secret("encryption key (hex)", ENCRYPTION_KEY)
    session.secrets.append(Secret("encryption key (bytes)", bytes.fromhex(ENCRYPTION_KEY)))
    session.secret("metrics token", METRICS_TOKEN)
    session.secret("client key", stack.key, DISPLAY_PREFIX_LENGTH)
    with stack.kestrel.client() as client:  # the access log names the path: a canary sighting
        assert client.get(f"/{CANARY}").status_code == 404
    for name, priority in (("a", 10), ("b", 5)):
        stack.add_account(name, priority=priority)
        session.secret(f"account key {name}", account_key(name), FAMILY)
    with stack.admin() as admin:
        created = admin.post("/admin/accounts", json={"name": CANARY, "api_key": CANARY_KEY})
        assert created.status_code == 201, created.text
        stack.accounts[CANARY] = created.json()["id"]
    session.secret("account key canary", CANARY_KEY, FAMILY)

    sub = connect(stack, oauth, "sub")  # a one-minute token: refreshed on first use
    with stack.admin() as admin:
        assert admin.put(f"/admin/accounts/{sub['id']}", json={"priority": 20}).status_code == 200
        link = admin.post("/admin/oauth/link", json={"name": "sub2"}).json()["url"]
    with stack.kestrel.client() as browser:  # a signed link needs no admin key
        started = browser.get(link)
        assert started.status_code == 302, started.text
        back = oauth.approve(started.headers["location"])
        query = {k: v[0] for k, v in parse_qs(urlsplit(back).query).items()}
        page = browser.get("/api/oauth/callback", params=query)
        assert page.status_code == 200, page.text
    session.secret("OAuth authorization code", query["code"])


def _proxy_traffic(session: Session) -> None:
    """Served requests on every surface, then upstream errors that quote the credential."""
    stack, oauth = session.stack, session.oauth
    with stack.http() as client:
        assert client.post("/v1/messages", json=message_body("first")).status_code == 200
        with client.stream("POST", "/v1/messages",
                           json=message_body("second", stream=True)) as stream:
            assert stream.status_code == 200
        token = oauth.access_tokens[-1]
        assert stack.up.requests[-1].header("authorization") == f"Bearer {token}"

        # sub: a 401 quoting its token, then a refresh the provider refuses quoting the refresh
        # token; a: a 401 quoting its key; b: a 429 quoting its key. The request still succeeds.
        stack.up.script(token, [error(401, "authentication_error",
                                      f"Invalid bearer token {token}")])
        oauth.script_refresh([INVALID_GRANT])
        stack.up.script(account_key("a"), [error(
            401, "authentication_error", f"invalid x-api-key: {account_key('a')}")])
        stack.up.script(account_key("b"), [error(
            429, "rate_limit_error", f"rate limited: key {account_key('b')}",
            headers={"retry-after": "30"})])
        third = client.post("/v1/messages", json=message_body("third"))
        assert third.status_code == 200, third.text
        sub = stack.account("sub")
        assert (sub["status"], stack.account("a")["status"]) == ("invalid", "invalid")
        # the refresh really was refused, with the token quoted in the provider's answer
        assert [r.status for r in oauth.refreshes()] == [200, 400]
        assert "invalid_grant" in sub["last_error"], sub["last_error"]

        # whichever serves next (sub2 or the canary account): the client's own error, handed
        # back as Anthropic's answer (one quoting the credential: see the xfail test below)
        for credential in (*oauth.access_tokens, CANARY_KEY):
            stack.up.script(credential, [error(
                400, "invalid_request_error", "messages: roles must alternate")])
        refused = client.post("/v1/messages", json=message_body("fourth"))
        assert refused.status_code == 400, refused.text
        stack.up.reset()  # the steps queued for the accounts that did not serve

        chat = client.post("/v1/chat/completions", headers={"Authorization": f"Bearer {stack.key}"},
                           json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]})
        assert chat.status_code == 200, chat.text
        assert client.get("/v1/models").status_code == 200
        assert client.post("/v1/messages/count_tokens", json=message_body()).status_code == 200


def _refused_callers(session: Session) -> None:
    """Bad client keys on the proxy, wrong credentials on the admin API (fewer than the ten
    failures that would lock this address out)."""
    stack = session.stack
    with stack.admin() as admin:
        doomed = admin.post("/admin/keys", json={"name": "doomed"}).json()
        assert admin.delete(f"/admin/keys/{doomed['id']}").status_code == 200
        spare = admin.post("/admin/keys", json={"name": "spare"}).json()["key"]
    session.secret("revoked client key", doomed["key"], DISPLAY_PREFIX_LENGTH)
    session.secret("spare client key", spare, DISPLAY_PREFIX_LENGTH)
    near = session.secret("mistyped client key", stack.key[:-1] + (
        "A" if stack.key[-1] != "A" else "B"), DISPLAY_PREFIX_LENGTH)
    unknown = session.secret("unknown client key", "kst_" + secrets.token_urlsafe(32), 4)
    with stack.kestrel.client() as client:
        for key in (doomed["key"], near, unknown, ADMIN_KEY, METRICS_TOKEN):
            for headers in ({"x-api-key": key}, {"Authorization": f"Bearer {key}"}):
                answer = client.post("/v1/messages", json=message_body(),
                                     headers={**headers, "anthropic-version": "2023-06-01"})
                assert answer.status_code == 401, answer.text
            chat = client.post("/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                               json={"model": MODEL, "messages": []})
            assert chat.status_code == 401, chat.text
        wrong_admin = session.secret("mistyped admin key", ADMIN_KEY[:-1] + "X")
        for headers in ({"X-Admin-Key": wrong_admin}, {"X-Admin-Key": stack.key},
                        {"Authorization": f"Bearer {ADMIN_KEY}"}):
            assert client.get("/admin/accounts", headers=headers).status_code == 401
        in_query = client.get("/admin/accounts", params={"x-admin-key": ADMIN_KEY})
        assert in_query.status_code == 401
        in_query = client.post("/v1/messages", params={"api_key": unknown, "key": near},
                               json=message_body())
        assert in_query.status_code == 401
        assert client.get("/metrics", headers={"Authorization": f"Bearer {near}"}
                          ).status_code == 401


def _admin_mistakes(session: Session) -> None:
    """Admin requests that carry a key and fail: the error must not quote it back or log it."""
    stack = session.stack
    key = session.secret("rejected account key", "sk-ant-api03-REJECTED-4f1c9d2e7a8b6035", FAMILY)
    rotated = session.secret("rotated account key", "sk-ant-api03-ROTATED-0e9d8c7b6a5f4e3d",
                             FAMILY)
    with stack.admin() as admin:
        truncated = f'{{"name": "broken", "api_key": "{key}", "priority": '
        for body, status in (
                (truncated.encode(), 400),
                (json.dumps({"name": "spaced", "api_key": key + " trailing words"}).encode(), 422),
                (json.dumps({"name": "a", "api_key": key}).encode(), 409),
                (json.dumps({"name": "bad-url", "api_key": key,
                             "base_url": f"http://user:{key}@127.0.0.1/"}).encode(), 422),
                (json.dumps({"name": "extra", "api_key": key, "apiKey": key}).encode(), 422)):
            answer = admin.post("/admin/accounts", content=body,
                                headers={"content-type": "application/json"})
            assert answer.status_code == status, answer.text
        b = stack.accounts["b"]
        assert admin.put(f"/admin/accounts/{b}", json={"api_key": rotated}).status_code == 200
        bad = admin.put(f"/admin/accounts/{b}", json={"api_key": key, "priority": "high"})
        assert bad.status_code == 422, bad.text
        assert admin.post("/admin/oauth/exchange", json={"code": f"{key}#nope"}
                          ).status_code == 400
        assert admin.get(f"/admin/accounts/{quote(key)}").status_code == 400  # not an id


def _admin_reads(session: Session) -> None:
    """Everything the admin API shows about the session."""
    stack = session.stack
    # The request logs are batched: wait for the 7 served or relayed requests and the 16
    # refused for their key (each leaves a trace: the key's hint, never the key) so that they
    # are in the answers and the database.
    rows = stack.logs(expect=23)
    assert len(rows) == 23
    refused = sorted(row["error_type"] for row in rows if row["status"] == 401)
    assert refused == ["missing_key"] + ["revoked_key"] * 3 + ["unknown_key"] * 12, refused
    with stack.admin() as admin:
        for path in ("/admin/accounts", "/admin/keys", "/admin/logs?limit=500", "/metrics",
                     "/openapi.json", "/health", "/admin/stats?window=1h",
                     "/admin/stats?window=24h", "/admin/stats?window=7d",
                     *(f"/admin/accounts/{id_}" for id_ in stack.accounts.values())):
            assert admin.get(path).status_code == 200, path
        assert admin.post(f"/admin/accounts/{stack.accounts['a']}/reset").status_code == 200
        started = admin.post("/admin/oauth/start", json={"name": "later"})
        assert started.status_code == 200
    with stack.kestrel.client() as scraper:
        answer = scraper.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert answer.status_code == 200


def _read_files(workdir: Path, when: str) -> dict[str, bytes]:
    """Every file Kestrel keeps in its directory (the database, its WAL and shared memory)."""
    return {f"{path.relative_to(workdir)} ({when})": path.read_bytes()
            for path in sorted(workdir.rglob("*")) if path.is_file()}


# --- the search -------------------------------------------------------------------------------

ADMIN_ANSWERS = "answers off /v1/ (admin API, OAuth pages, metrics, 404s)"
PROXY_ANSWERS = "answers on /v1/ (proxy), errors included"


def _places(session: Session, lines: list[str]) -> dict[str, tuple[bytes, int | str]]:
    """Each place searched: its bytes, and how many log lines or answers they hold."""
    def on_v1(request: httpx.Request, status: int) -> bool:
        return request.url.path.startswith("/v1/")

    places: dict[str, tuple[bytes, int | str]] = {
        "Kestrel log lines": ("\n".join(lines).encode(), len(lines))}
    count, data = session.transcript.joined(lambda r, s: not on_v1(r, s))
    places[ADMIN_ANSWERS] = (data, count)
    count, data = session.transcript.joined(on_v1)
    places[PROXY_ANSWERS] = (data, count)
    places.update((name, (data, "-")) for name, data in session.files.items())
    return places


def _report(session: Session, places: dict[str, tuple[bytes, int | str]], hits: list[Hit],
            canary: list[Hit]) -> None:
    columns = ("place", "bytes", "lines/answers", "secrets", "hits", "canary hits")
    for place, (data, count) in places.items():
        report("Secret scan", columns, (
            place, len(data), count, len(session.secrets),
            sum(h.place == place for h in hits), sum(h.place == place for h in canary)))
    excluded = sorted(set(session.transcript.excluded))
    report("Secret scan", columns, (
        f"left out by design (new client key shown once): {', '.join(excluded)}", "-",
        len(session.transcript.excluded), "-", "-", "-"))


def test_the_scan_finds_planted_secrets() -> None:
    """Every encoding of every slice is found, wherever it sits in a haystack; hints that Kestrel
    shows by design (four characters, a display prefix) are not."""
    key = Secret.of("client key", "kst_" + secrets.token_urlsafe(32), DISPLAY_PREFIX_LENGTH)
    raw = Secret("raw bytes", bytes(range(200, 232)))
    odd = Secret.of("punctuated", "pass word/with+signs=and!more")
    filler = secrets.token_bytes(3000) + b" log line: " + b"x" * 50
    planted = {
        "raw slice": key.value[20:20 + WINDOW],
        "hex": key.value[15:40].hex().encode(),
        "base64, from an offset not a multiple of 3": base64.b64encode(b"Q" + key.value[5:]),
        "base64url of the bytes": base64.urlsafe_b64encode(b"ab" + raw.value),
        "url-encoded": quote(odd.value.decode(), safe="").encode(),
        "bytes": raw.value[5:5 + WINDOW],
    }
    for name, needle in planted.items():
        for at in (0, 1, 1501, len(filler)):
            haystack = filler[:at] + needle + filler[at:]
            assert scan({name: haystack}, [key, raw, odd]), (name, at)
    shown_by_design = (b' "' + key.value[:DISPLAY_PREFIX_LENGTH] + b'", "sk-ant-\xe2\x80\xa6'
                       + key.value[-4:] + b'" ' + key.value[-WINDOW + 1:] + b" ")
    assert not scan({"hints": filler + shown_by_design + filler}, [key, raw, odd])


def test_an_upstream_error_quoting_the_credential_does_not_reach_the_client(
        tmp_path: Path) -> None:
    """Anthropic's 4xx for the client's own mistake goes back as it is; if its text quotes the
    account's credential (as some gateways' errors do), the client of a pool would learn the
    key of an account it must never see. Only the credential may go; the rest is the client's.
    Both surfaces (Anthropic's, relayed byte for byte; OpenAI's, translated), and an error
    event in a stream already under way, which reaches the client as it is too."""
    secret = Secret.of("account key a", account_key("a"), FAMILY)
    quoting = f"bad request for {account_key('a')}"
    answers = {}
    with running_stack(tmp_path, accounts=("a",)) as stack, stack.http() as client:
        for place, route, headers, body, step in (
                ("messages", "/v1/messages", {}, message_body(),
                 error(400, "invalid_request_error", quoting)),
                ("chat", "/v1/chat/completions", {"Authorization": f"Bearer {stack.key}"},
                 {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
                 error(400, "invalid_request_error", quoting)),
                ("stream", "/v1/messages", {}, message_body(stream=True),
                 stream_error_after(2, "api_error", quoting))):
            stack.up.script(account_key("a"), [step])
            answer = client.post(route, headers=headers, json=body)
            assert "bad request" in answer.text, answer.text
            answers[place] = response_bytes(answer)
    hits = scan(answers, [secret])
    assert not hits, summary(hits)
