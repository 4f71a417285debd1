"""Which proxy a request leaves through, and the SOCKS5 handshake as bytes (issue 17). Pure."""

from __future__ import annotations

import pytest

from kestrel.egress import EnvProxies, Proxy, bypassed, env_proxies, parse_proxy
from kestrel.proxy import socks5


def test_proxy_urls_parse_with_their_defaults_and_never_show_the_password() -> None:
    proxy = parse_proxy("socks5h://alice:s%40cret@proxy.corp")
    assert (proxy.scheme, proxy.host, proxy.port, proxy.username, proxy.password) == (
        "socks5h", "proxy.corp", 1080, "alice", "s@cret")
    assert proxy.label == "socks5h://proxy.corp:1080"
    assert proxy.masked == "socks5h://alice:…@proxy.corp:1080"
    assert "s@cret" not in repr(proxy) + proxy.label + proxy.masked
    assert parse_proxy("proxy.corp:3128") == Proxy("http", "proxy.corp", 3128)  # as curl
    assert parse_proxy("https://[::1]").label == "https://[::1]:443"
    assert parse_proxy("http://bob@p:8080").authorization() == b"Basic Ym9iOg=="
    for bad, reason in (("ftp://p:21", "must start with"), ("http://:80", "has no host"),
                        ("http://p:99999", "is not a valid URL"),
                        ("http://u:topsecret@p/path", "nothing after")):
        with pytest.raises(ValueError, match=reason) as refused:
            parse_proxy(bad)
        assert "topsecret" not in str(refused.value)


def test_the_environment_as_curl_reads_it() -> None:
    proxies, problems = env_proxies({
        "HTTPS_PROXY": "http://upper:3128", "https_proxy": "http://lower:3128",
        "ALL_PROXY": "socks5://all:1080", "NO_PROXY": "internal.corp, .lan,10.0.0.0/8,::1"})
    assert problems == []
    assert proxies.https == parse_proxy("http://lower:3128")  # lower case wins
    assert proxies.for_origin("https", "api.anthropic.com") == proxies.https
    assert proxies.for_origin("http", "example.com") == parse_proxy("socks5://all:1080")
    for direct in ("internal.corp", "x.internal.corp", "box.lan", "10.1.2.3", "[::1]"):
        assert proxies.for_origin("https", direct) is None, direct
    for proxied in ("notinternal.corp", "lan.example", "11.0.0.1", "::2"):
        assert proxies.for_origin("https", proxied) is not None, proxied
    _, problems = env_proxies({"http_proxy": "gopher://x:topsecret@y"})
    assert problems == ["http_proxy: the proxy URL must start with http://, https://, "
                        "socks5://, socks5h://"]
    assert EnvProxies().for_origin("https", "api.anthropic.com") is None


def test_no_proxy_star_and_names_without_resolving() -> None:
    assert bypassed(("*",), "anything")
    assert bypassed(("example.com",), "EXAMPLE.com.")
    assert not bypassed(("example.com",), "badexample.com")
    assert not bypassed(("127.0.0.0/8",), "localhost")  # names are not resolved


def test_the_socks5_handshake_byte_for_byte() -> None:
    assert socks5.greeting(False) == b"\x05\x01\x00"
    assert socks5.greeting(True) == b"\x05\x01\x02"
    assert socks5.chosen_method(b"\x05\x02") == socks5.USER_PASSWORD
    with pytest.raises(socks5.SocksError) as refused:
        socks5.chosen_method(b"\x05\xff")
    assert refused.value.auth
    assert socks5.password_request("al", "pw") == b"\x01\x02al\x02pw"
    socks5.check_password_answer(b"\x01\x00")
    with pytest.raises(socks5.SocksError, match="refused the user name"):
        socks5.check_password_answer(b"\x01\x01")
    assert socks5.connect_request("api.anthropic.com", 443, remote_dns=True) == (
        b"\x05\x01\x00\x03\x11api.anthropic.com\x01\xbb")
    assert socks5.connect_request("127.0.0.1", 80, remote_dns=False) == (
        b"\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x50")
    assert socks5.connect_request("::1", 80, remote_dns=False)[3] == socks5.IPV6
    assert socks5.reply_length(b"\x05\x00\x00\x01\x7f") == 10
    assert socks5.reply_length(b"\x05\x00\x00\x03\x05") == 4 + 1 + 5 + 2
    with pytest.raises(socks5.SocksError, match="connection refused"):
        socks5.reply_length(b"\x05\x05\x00\x01\x00")
    with pytest.raises(socks5.SocksError, match="not answer"):
        socks5.reply_length(b"HTTP/")
