"""Egress through proxies (issue 17), with real proxy software on loopback (tinyproxy for HTTP
CONNECT and absolute-form, microsocks for SOCKS5) in front of a TLS fake Anthropic whose
certificate comes from a CA the test makes and hands Kestrel through CA_BUNDLE."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anthropic
import pytest
from fake_oauth import FakeOAuth

from fake_upstream import FakeAnthropic, success
from support.ca import CaFiles
from support.oauthkit import connect
from support.process import KestrelProcess
from support.proxies import MicroSocks, Starter, TinyProxy, TlsFront, free_port
from support.stack import ADMIN_KEY, ENCRYPTION_KEY, MODEL, Stack, account_key, running_stack

SECRET = "pr0xy-S3CRET-pw"


@contextmanager
def kestrel_for(workdir: Path, upstream: FakeAnthropic, test_ca: CaFiles,
                **env: str) -> Iterator[Stack]:
    """A Kestrel in front of `upstream`, trusting the test CA, with `env` (proxy variables)."""
    settings = {"ADMIN_KEY": ADMIN_KEY, "ENCRYPTION_KEY": ENCRYPTION_KEY,
                "CLAUDE_BASE_URL": upstream.base_url, "CA_BUNDLE": str(test_ca.ca_cert), **env}
    with KestrelProcess(workdir, env=settings) as kestrel:
        with kestrel.client(headers={"X-Admin-Key": ADMIN_KEY}) as admin:
            key = admin.post("/admin/keys", json={"name": "tests"}).json()["key"]
        stack = Stack(upstream, kestrel, key)
        try:
            yield stack
        finally:
            for sdk in stack.sdk_clients:
                sdk.close()


def ask(stack: Stack, text: str = "hello") -> anthropic.types.Message:
    return stack.sdk().messages.create(model=MODEL, max_tokens=32,
                                       messages=[{"role": "user", "content": text}])


def stream_text(stack: Stack) -> str:
    with stack.sdk().messages.stream(model=MODEL, max_tokens=32,
                                     messages=[{"role": "user", "content": "hello"}]) as stream:
        return "".join(stream.text_stream)


def host_port(url: str) -> str:
    return url.split("://", 1)[1]


def test_the_environment_proxy_carries_answers_and_streams_intact(
        tmp_path: Path, tls_upstream: FakeAnthropic, test_ca: CaFiles,
        http_proxy: Starter[TinyProxy]) -> None:
    proxy = http_proxy()
    with kestrel_for(tmp_path, tls_upstream, test_ca, HTTPS_PROXY=proxy.url) as stack:
        stack.add_account("a")
        tls_upstream.set_default(account_key("a"), success(chunk_size=7))
        with stack.http() as client:
            answer = client.post("/v1/messages", json={
                "model": MODEL, "max_tokens": 32,
                "messages": [{"role": "user", "content": "hello"}]})
        assert answer.status_code == 200
        assert answer.content == tls_upstream.requests[-1].answer  # byte for byte
        with stack.http() as client, client.stream("POST", "/v1/messages", json={
                "model": MODEL, "max_tokens": 32, "stream": True,
                "messages": [{"role": "user", "content": "hello"}]}) as streamed:
            body = b"".join(streamed.iter_raw())
        assert body == tls_upstream.requests[-1].answer
        assert b"message_stop" in body
    # Through the proxy, as a tunnel to the upstream's name: the proxy never saw a request.
    assert proxy.destinations() and set(proxy.destinations()) == {
        host_port(tls_upstream.base_url)}


def test_each_account_leaves_through_its_own_proxy(
        tmp_path: Path, tls_upstream: FakeAnthropic, test_ca: CaFiles,
        http_proxy: Starter[TinyProxy], socks_proxy: Starter[MicroSocks]) -> None:
    """Two accounts, one behind an HTTP proxy with a login, one behind SOCKS5 with a login
    (names resolved by the proxy); each account's upstream is named differently (the test
    certificate covers both), so each proxy's own log tells whose connections it made."""
    http = http_proxy(user="alice", password=SECRET)
    socks = socks_proxy(user="bob", password=SECRET)
    port = tls_upstream.base_url.rsplit(":", 1)[1]
    with kestrel_for(tmp_path, tls_upstream, test_ca) as stack:
        stack.add_account("a", proxy_url=http.url, base_url=f"https://localhost:{port}")
        stack.add_account("b", proxy_url=socks.url_as("socks5h"),
                          base_url=f"https://127.0.0.1:{port}")
        listed = {a["name"]: a for a in admin_get(stack, "/admin/accounts")["data"]}
        assert listed["a"]["proxy_url"] == f"http://alice:…@127.0.0.1:{http.port}"
        assert listed["b"]["proxy_url"] == f"socks5h://bob:…@127.0.0.1:{socks.port}"
        for n in range(6):  # six conversations, spread over both accounts
            assert ask(stack, f"hello {n}").content
        assert stream_text(stack)
        served = {r.credential for r in tls_upstream.requests}
        assert served == {account_key("a"), account_key("b")}
    assert set(http.destinations()) == {f"localhost:{port}"}
    assert set(socks.destinations()) == {f"127.0.0.1:{port}"}
    assert SECRET not in "\n".join(stack.kestrel.lines) + str(listed)


def admin_get(stack: Stack, path: str) -> Any:
    with stack.admin() as admin:
        answer = admin.get(path)
        assert answer.status_code == 200, answer.text
        return answer.json()


@pytest.mark.parametrize("no_proxy", ["localhost", ".example.com"])
def test_no_proxy_sends_matching_hosts_direct(
        tmp_path: Path, tls_upstream: FakeAnthropic, test_ca: CaFiles,
        http_proxy: Starter[TinyProxy], no_proxy: str) -> None:
    proxy = http_proxy()
    with kestrel_for(tmp_path, tls_upstream, test_ca, HTTPS_PROXY=proxy.url,
                     NO_PROXY=no_proxy) as stack:
        stack.add_account("a")
        assert ask(stack).content
    through = proxy.destinations()
    assert through == ([] if no_proxy == "localhost" else [host_port(tls_upstream.base_url)])


def test_a_plain_http_upstream_through_an_http_proxy_with_a_login(
        tmp_path: Path, test_ca: CaFiles, http_proxy: Starter[TinyProxy]) -> None:
    proxy = http_proxy(user="carol", password=SECRET)
    with FakeAnthropic() as plain, kestrel_for(tmp_path, plain, test_ca,
                                               HTTP_PROXY=proxy.url) as stack:
        stack.add_account("a")
        assert ask(stack).content
        assert stream_text(stack)
        assert len(plain.requests) == 2
        # The proxy's login never reaches the upstream.
        assert all(r.header("proxy-authorization") is None for r in plain.requests)
    assert proxy.destinations() == [host_port(plain.base_url)] * 2


def test_a_dead_proxy_and_a_refused_login_cool_their_accounts_and_the_next_one_serves(
        tmp_path: Path, tls_upstream: FakeAnthropic, test_ca: CaFiles,
        http_proxy: Starter[TinyProxy], socks_proxy: Starter[MicroSocks]) -> None:
    guarded = http_proxy(user="dave", password="the-right-one")
    socks = socks_proxy(user="erin", password="the-right-one")
    dead = f"http://frank:{SECRET}@127.0.0.1:{free_port()}"
    wrong_http = guarded.url.replace("the-right-one", SECRET)
    wrong_socks = socks.url_as("socks5h").replace("the-right-one", SECRET)
    with kestrel_for(tmp_path, tls_upstream, test_ca) as stack:
        stack.add_account("dead", proxy_url=dead, priority=30)
        stack.add_account("refused", proxy_url=wrong_http, priority=20)
        stack.add_account("socks-refused", proxy_url=wrong_socks, priority=10)
        stack.add_account("direct")
        assert ask(stack).content
        assert [r.credential for r in tls_upstream.requests] == [account_key("direct")]
        (row,) = stack.logs(expect=1)
        attempts = [(a["error_type"], a["proxy"]) for a in row["attempts"]]
        assert attempts == [
            ("proxy_unreachable", dead.replace(f"frank:{SECRET}@", "")),
            ("proxy_auth", f"http://127.0.0.1:{guarded.port}"),
            ("proxy_auth", f"socks5h://127.0.0.1:{socks.port}"),
            (None, None)]
        accounts = {a["name"]: a for a in admin_get(stack, "/admin/accounts")["data"]}
        for name in ("dead", "refused", "socks-refused"):
            assert accounts[name]["status"] == "cooldown", accounts[name]
        assert accounts["refused"]["last_error"] == "its proxy refused the login"
        with stack.admin() as admin:
            metrics = admin.get("/metrics").text
        assert (f'kestrel_proxy_failures_total{{proxy="http://127.0.0.1:{guarded.port}",'
                f'kind="proxy_auth"}} 1') in metrics
        every_answer = (str(accounts) + str(admin_get(stack, "/admin/logs")) + metrics
                        + "\n".join(stack.kestrel.lines))
        assert SECRET not in every_answer
    assert guarded.destinations() == [] and socks.destinations() == []


def test_the_oauth_token_endpoint_goes_through_the_proxies(
        tmp_path: Path, http_proxy: Starter[TinyProxy]) -> None:
    """The code exchange through the environment's proxy; the refresh of an account with a
    proxy of its own through that one, as its requests."""
    env_proxy, own = http_proxy(), http_proxy()
    with FakeOAuth(lifetimes=(1,)) as oauth, running_stack(
            tmp_path, accounts=(), env={**oauth.env(), "HTTP_PROXY": env_proxy.url}) as stack:
        account = connect(stack, oauth)
        provider = host_port(oauth.base_url)
        assert env_proxy.destinations() == [provider]
        with stack.admin() as admin:
            assert admin.put(f"/admin/accounts/{account['id']}",
                             json={"proxy_url": own.url}).status_code == 200
        assert ask(stack).content  # its one-second token is due: refreshed first
        assert len(oauth.access_tokens) == 2
    assert own.destinations() == [provider, host_port(stack.up.base_url)]
    assert env_proxy.destinations() == [provider]


def test_proxy_from_env_off_ignores_the_variables(
        tmp_path: Path, tls_upstream: FakeAnthropic, test_ca: CaFiles,
        http_proxy: Starter[TinyProxy]) -> None:
    proxy = http_proxy()
    with kestrel_for(tmp_path, tls_upstream, test_ca, HTTPS_PROXY=proxy.url,
                     PROXY_FROM_ENV="off") as stack:
        stack.add_account("a")
        assert ask(stack).content
    assert proxy.destinations() == []


def test_an_https_proxy_wraps_the_tunnel_in_tls_too(
        tmp_path: Path, tls_upstream: FakeAnthropic, test_ca: CaFiles,
        http_proxy: Starter[TinyProxy], tls_front: Callable[[TinyProxy], TlsFront]) -> None:
    """TLS to the proxy (stunnel in front of tinyproxy, its certificate from the test CA), the
    login inside it, then TLS to the upstream inside the tunnel: TLS in TLS."""
    behind = http_proxy(user="grace", password="in-the-tunnel")
    front = tls_front(behind)
    assert front.url.startswith("https://grace:")
    with kestrel_for(tmp_path, tls_upstream, test_ca) as stack:
        stack.add_account("a", proxy_url=front.url)
        assert ask(stack).content
        assert stream_text(stack)
    # One tunnel for both requests: kept alive through the proxy.
    assert behind.destinations() == [host_port(tls_upstream.base_url)]


def test_socks5_resolves_the_name_here_and_hands_the_proxy_an_address(
        tmp_path: Path, tls_upstream: FakeAnthropic, test_ca: CaFiles,
        socks_proxy: Starter[MicroSocks]) -> None:
    socks = socks_proxy()
    with kestrel_for(tmp_path, tls_upstream, test_ca) as stack:
        stack.add_account("a", proxy_url=socks.url)  # socks5://, the upstream is "localhost"
        assert ask(stack).content
    port = tls_upstream.base_url.rsplit(":", 1)[1]
    assert socks.destinations() in ([f"127.0.0.1:{port}"], [f"[::1]:{port}"])
