"""The egress test kit works: real tinyproxy and microsocks on loopback, a TLS fake Anthropic
under a throwaway CA, and each proxy's log naming the destinations it connected to.

Kestrel's proxy tests (issue 17) stand on these pieces, so they are checked here with clients
that are not Kestrel: httpx, and SOCKS5 spoken by hand from the RFCs' bytes. An answer is
compared byte for byte with what the fake recorded sending, so a proxy that altered, dropped
or never carried it fails the test.
"""

from __future__ import annotations

import base64
import socket
import ssl
import struct
from collections.abc import Iterator
from pathlib import Path

import h11
import httpx
import pytest

from fake_upstream import FakeAnthropic, reset_before_headers
from support import proxies
from support.ca import CaFiles, make_ca
from support.proxies import MicroSocks, Starter, TinyProxy

KEY = "sk-ant-api03-egress-test-key"
PAYLOAD = {"model": "claude-sonnet-4-6", "max_tokens": 64,
           "messages": [{"role": "user", "content": "Hello through a proxy"}]}
HEADERS = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
TIMEOUT = 10.0


@pytest.fixture
def up() -> Iterator[FakeAnthropic]:
    """A plain-HTTP fake Anthropic (127.0.0.1)."""
    with FakeAnthropic() as server:
        yield server
    assert server.errors == []


def client(proxy: str, ca: CaFiles | None = None) -> httpx.Client:
    """httpx through `proxy`, trusting `ca` only (no environment: HTTPS_PROXY is not ours)."""
    verify: ssl.SSLContext | bool = ca.client_context() if ca is not None else True
    return httpx.Client(proxy=proxy, verify=verify, trust_env=False, timeout=TIMEOUT)


def post_message(http: httpx.Client, base_url: str) -> httpx.Response:
    return http.post(f"{base_url}/v1/messages", headers=HEADERS, json=PAYLOAD)


def connect_status(proxy: TinyProxy, target: str, credentials: str | None) -> tuple[int, str]:
    """Send `CONNECT target` by hand (with `user:password` as Basic, if given); the status
    and the head of the proxy's answer."""
    lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
    if credentials is not None:
        token = base64.b64encode(credentials.encode()).decode()
        lines.append(f"Proxy-Authorization: Basic {token}")
    with socket.create_connection((proxies.HOST, proxy.port), timeout=TIMEOUT) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
    text = head.split(b"\r\n\r\n")[0].decode("latin-1")
    return int(text.split()[1]), text


def ipv6_loopback() -> bool:
    """Whether ::1 exists here (a machine without IPv6 skips what needs it)."""
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


# --- the test CA -------------------------------------------------------------------------


def test_ca_server_certificate_verifies_for_its_names_only(test_ca: CaFiles) -> None:
    with FakeAnthropic(tls=test_ca.server_context()) as server:
        assert server.base_url == f"https://localhost:{server.port}"
        names = [("127.0.0.1", "localhost"), ("127.0.0.1", "127.0.0.1")]
        if ipv6_loopback():
            names += [("::1", "localhost"), ("::1", "::1")]
        for address, name in names:
            with socket.create_connection((address, server.port), TIMEOUT) as raw, \
                    test_ca.client_context().wrap_socket(raw, server_hostname=name) as tls:
                assert tls.version() is not None
        with socket.create_connection(("127.0.0.1", server.port), TIMEOUT) as raw, \
                pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
            test_ca.client_context().wrap_socket(raw, server_hostname="api.anthropic.com")
        # Another CA's server certificate is not trusted: verification is real.
        other = make_ca(test_ca.ca_cert.parent / "other")
        with socket.create_connection(("127.0.0.1", server.port), TIMEOUT) as raw, \
                pytest.raises(ssl.SSLCertVerificationError):
            other.client_context().wrap_socket(raw, server_hostname="localhost")
    assert server.errors == []


def test_tls_upstream_answers_a_direct_client(tls_upstream: FakeAnthropic,
                                              test_ca: CaFiles) -> None:
    with httpx.Client(verify=test_ca.client_context(), trust_env=False) as http:
        response = post_message(http, tls_upstream.base_url)
    assert response.status_code == 200
    assert response.content == tls_upstream.requests[-1].answer


def test_tls_upstream_keeps_its_scripted_behaviours(tls_upstream: FakeAnthropic,
                                                   test_ca: CaFiles) -> None:
    """A reset is still a TCP reset under TLS, and a stream arrives whole."""
    tls_upstream.script(KEY, [reset_before_headers()])
    with httpx.Client(verify=test_ca.client_context(), trust_env=False) as http:
        with pytest.raises(httpx.TransportError):
            post_message(http, tls_upstream.base_url)
        streamed = http.post(f"{tls_upstream.base_url}/v1/messages", headers=HEADERS,
                             json={**PAYLOAD, "stream": True})
    assert streamed.headers["content-type"].startswith("text/event-stream")
    assert streamed.content == tls_upstream.requests[-1].answer
    assert b"message_stop" in streamed.content


# --- tinyproxy -----------------------------------------------------------------------------


def test_https_through_tinyproxy_connect(http_proxy: Starter[TinyProxy],
                                         tls_upstream: FakeAnthropic, test_ca: CaFiles) -> None:
    proxy = http_proxy()
    assert proxy.url == f"http://127.0.0.1:{proxy.port}"
    with client(proxy.url, test_ca) as http:
        response = post_message(http, tls_upstream.base_url)
    assert response.status_code == 200
    [seen] = tls_upstream.requests
    assert seen.credential == KEY and seen.json() == PAYLOAD
    assert response.content == seen.answer
    target = f"localhost:{tls_upstream.port}"
    assert proxy.requests() == [("CONNECT", target)]
    assert proxy.destinations() == [target]


def test_tinyproxy_tunnel_does_not_weaken_verification(http_proxy: Starter[TinyProxy],
                                                       tls_upstream: FakeAnthropic) -> None:
    """Without the test CA the same request fails: the tunnel is end to end."""
    proxy = http_proxy()
    with client(proxy.url) as http, pytest.raises(httpx.ConnectError, match="CERTIFICATE"):
        post_message(http, tls_upstream.base_url)
    assert tls_upstream.requests == []
    assert proxy.destinations() == [f"localhost:{tls_upstream.port}"]


def test_tinyproxy_connects_to_an_ipv6_literal(http_proxy: Starter[TinyProxy],
                                               tls_upstream: FakeAnthropic) -> None:
    if not ipv6_loopback():
        pytest.skip("no IPv6 loopback here")
    proxy = http_proxy()
    target = f"[::1]:{tls_upstream.port}"
    status, head = connect_status(proxy, target, None)
    assert status == 200, head
    assert proxy.destinations() == [target]


def test_tinyproxy_basic_auth(http_proxy: Starter[TinyProxy], tls_upstream: FakeAnthropic,
                              test_ca: CaFiles) -> None:
    proxy = http_proxy(user="egress", password="s3cret.pw")
    assert proxy.url == f"http://egress:s3cret.pw@127.0.0.1:{proxy.port}"
    target = f"localhost:{tls_upstream.port}"

    status, head = connect_status(proxy, target, None)
    assert status == 407, head
    assert "proxy-authenticate: basic" in head.lower()
    # tinyproxy 1.11.1 refuses wrong credentials with 401 (later versions: 407).
    status, head = connect_status(proxy, target, "egress:wrong")
    assert status in (401, 407), head
    with client(f"http://egress:wrong@127.0.0.1:{proxy.port}", test_ca) as http, \
            pytest.raises(httpx.ProxyError):
        post_message(http, tls_upstream.base_url)
    assert proxy.destinations() == []
    assert tls_upstream.requests == []

    with client(proxy.url, test_ca) as http:
        response = post_message(http, tls_upstream.base_url)
    assert response.status_code == 200
    assert response.content == tls_upstream.requests[-1].answer
    assert proxy.destinations() == [target]


def test_plain_http_absolute_form_through_tinyproxy(http_proxy: Starter[TinyProxy],
                                                    up: FakeAnthropic) -> None:
    proxy = http_proxy(user="plain", password="pw")
    with client(proxy.url) as http:
        response = post_message(http, up.base_url)
    assert response.status_code == 200
    [seen] = up.requests
    assert response.content == seen.answer
    assert seen.credential == KEY
    assert "tinyproxy" in (seen.header("via") or "")  # it really went through the proxy
    assert seen.header("proxy-authorization") is None  # the proxy's secret stays there
    assert proxy.requests() == [("POST", f"{up.base_url}/v1/messages")]
    assert proxy.destinations() == [f"127.0.0.1:{up.port}"]


def test_plain_http_wrong_credentials_are_answered_by_tinyproxy(
        http_proxy: Starter[TinyProxy], up: FakeAnthropic) -> None:
    """The refusal is the proxy's own answer, not Anthropic's (a client must tell them apart:
    tinyproxy 1.11.1 says 401, as an upstream refusing a key would).

    A request with a body may not even get that far: tinyproxy answers after the head and
    closes without reading the body, and the unread bytes make the close a reset."""
    proxy = http_proxy(user="plain", password="pw")
    with client(f"http://plain:nope@127.0.0.1:{proxy.port}") as http:
        for _ in range(5):  # on a loaded machine even a GET's close may come as a reset
            try:
                response = http.get(f"{up.base_url}/v1/models", headers=HEADERS)
                break
            except httpx.TransportError:
                continue
        assert response.status_code in (401, 407)
        assert response.headers["server"].startswith("tinyproxy")
        refused: int | str
        try:
            refused = post_message(http, up.base_url).status_code
        except httpx.TransportError as exc:  # the reset
            refused = type(exc).__name__
        assert refused in (401, 407, "ReadError", "WriteError", "RemoteProtocolError")
    assert up.requests == []
    assert proxy.destinations() == []


def test_two_proxies_of_a_kind_keep_their_own_logs(http_proxy: Starter[TinyProxy],
                                                   up: FakeAnthropic) -> None:
    used, idle = http_proxy(), http_proxy(user="idle", password="pw")
    assert used.port != idle.port
    with client(used.url) as http:
        assert post_message(http, up.base_url).status_code == 200
    assert used.destinations() == [f"127.0.0.1:{up.port}"]
    assert idle.destinations() == []


def test_a_proxy_that_does_not_start_says_why(tmp_path: Path) -> None:
    class Broken(TinyProxy):
        def command(self) -> list[str]:
            command = super().command()
            with self.config_path.open("a") as config:
                config.write("NoSuchDirective yes\n")
            return command

    try:
        proxy = Broken(tmp_path / "broken")
    except proxies.Unavailable as exc:
        if proxies.REQUIRED:
            pytest.fail(f"{proxies.SKIPPED}: {exc} (REQUIRE_PROXIES=1)")
        pytest.skip(f"{proxies.SKIPPED}: {exc}")
    with pytest.raises(proxies.StartFailed) as failed:
        proxy.start()
    proxy.close()
    message = str(failed.value)
    assert message.startswith("tinyproxy did not start:\nport ")
    assert "Syntax error on line" in message  # its own words
    assert "NoSuchDirective yes" in message  # and the config it choked on
    assert message.count("command:") == 1  # no second try: the port was not the trouble


# --- microsocks ----------------------------------------------------------------------------


def socks5_connect(proxy: MicroSocks, address: bytes, port: int,
                   credentials: tuple[str, str] | None) -> socket.socket:
    """Open a SOCKS5 tunnel by hand: RFC 1928's greeting and CONNECT, RFC 1929's
    user/password. `address`: ATYP and address bytes (01 + 4 bytes, or 03 + length + name)."""
    sock = socket.create_connection((proxies.HOST, proxy.port), timeout=TIMEOUT)
    try:
        method = 0x02 if credentials else 0x00
        sock.sendall(bytes([0x05, 0x01, method]))
        chosen = recv_exactly(sock, 2)
        if chosen != bytes([0x05, method]):
            raise PermissionError(f"SOCKS5 method refused: {chosen.hex()}")
        if credentials:
            user, password = (part.encode() for part in credentials)
            sock.sendall(bytes([0x01, len(user)]) + user + bytes([len(password)]) + password)
            reply = recv_exactly(sock, 2)
            if reply != b"\x01\x00":
                raise PermissionError(f"SOCKS5 authentication refused: {reply.hex()}")
        sock.sendall(b"\x05\x01\x00" + address + struct.pack("!H", port))
        version, status, _, atyp = recv_exactly(sock, 4)
        assert version == 0x05 and status == 0x00, f"CONNECT refused: status {status}"
        recv_exactly(sock, {0x01: 4, 0x04: 16}[atyp] + 2)  # the bound address and port
        return sock
    except BaseException:
        sock.close()
        raise


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError(f"closed after {len(data)} of {size} bytes")
        data += chunk
    return data


def http_exchange(sock: socket.socket, host: str) -> tuple[int, bytes]:
    """POST /v1/messages over an open connection, read with h11: (status, body)."""
    conn = h11.Connection(h11.CLIENT)
    body = httpx.Request("POST", "http://x", json=PAYLOAD).read()
    sock.sendall(conn.send(h11.Request(method="POST", target="/v1/messages", headers=[
        ("host", host), ("content-type", "application/json"), ("content-length", str(len(body))),
        ("connection", "close"), *HEADERS.items()])) + conn.send(h11.Data(data=body))
        + conn.send(h11.EndOfMessage()))
    status, received = 0, b""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(sock.recv(65536))
        elif isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.Data):
            received += event.data
        elif isinstance(event, h11.EndOfMessage):
            return status, received


def test_socks5_with_password_by_hand(socks_proxy: Starter[MicroSocks],
                                      up: FakeAnthropic) -> None:
    proxy = socks_proxy(user="sock-user", password="p@ss word")
    assert proxy.url == f"socks5://sock-user:p%40ss%20word@127.0.0.1:{proxy.port}"
    with socks5_connect(proxy, b"\x01" + socket.inet_aton("127.0.0.1"), up.port,
                        ("sock-user", "p@ss word")) as tunnel:
        status, body = http_exchange(tunnel, f"127.0.0.1:{up.port}")
    assert status == 200
    assert body == up.requests[-1].answer
    assert proxy.destinations() == [f"127.0.0.1:{up.port}"]


def test_socks5_refuses_wrong_or_missing_credentials(socks_proxy: Starter[MicroSocks],
                                                     up: FakeAnthropic) -> None:
    proxy = socks_proxy(user="sock-user", password="right")
    ipv4 = b"\x01" + socket.inet_aton("127.0.0.1")
    with pytest.raises(PermissionError, match="authentication refused"):
        socks5_connect(proxy, ipv4, up.port, ("sock-user", "wrong"))
    with pytest.raises(PermissionError, match="method refused: 05ff"):
        socks5_connect(proxy, ipv4, up.port, None)
    assert proxy.destinations() == []
    assert up.requests == []


def test_socks5h_name_to_the_tls_upstream(socks_proxy: Starter[MicroSocks],
                                          tls_upstream: FakeAnthropic, test_ca: CaFiles) -> None:
    """The proxy resolves `localhost` (socks5h) and TLS runs end to end through it."""
    proxy = socks_proxy()
    assert proxy.url_as("socks5h") == f"socks5h://127.0.0.1:{proxy.port}"
    name = b"localhost"
    with socks5_connect(proxy, b"\x03" + bytes([len(name)]) + name, tls_upstream.port,
                        None) as tunnel, \
            test_ca.client_context().wrap_socket(tunnel, server_hostname="localhost") as tls:
        status, body = http_exchange(tls, f"localhost:{tls_upstream.port}")
    assert status == 200
    assert body == tls_upstream.requests[-1].answer
    assert proxy.destinations() == [f"localhost:{tls_upstream.port}"]


# --- log parsing, from the installed versions' real lines ------------------------------------

# tinyproxy 1.11.1's lines (LogLevel Info) as written, each after a stamp like this one.
STAMP = "Dec 04 21:50:02.227 [6042]: "
TINYPROXY_LOG = "".join(f"{level:<10}{STAMP}{text}\n" for level, text in [
    ("CONNECT", "Connect (file descriptor 5): 127.0.0.1"),
    ("CONNECT", "Request (file descriptor 5): CONNECT localhost:1111 HTTP/1.1"),  # refused
    ("CONNECT", "Request (file descriptor 6): GET http://127.0.0.1:18080/ HTTP/1.1"),
    ("INFO", "opensock: opening connection to 127.0.0.1:18080"),
    ("CONNECT", "Request (file descriptor 7): CONNECT [::1]:8443 HTTP/1.1"),
    ("INFO", "opensock: opening connection to ::1:8443"),
    ("INFO", "opensock: getaddrinfo returned for ::1:8443"),
    ("CONNECT", 'Established connection to host "::1" using file descriptor 8.'),
    ("CONNECT", 'Established connection to host "127.0.0.1" using file descriptor 9.'),
    ("CONNECT", "Request (file descriptor 5): CONNECT localhost:1 HTTP/1.1"),
    ("INFO", "opensock: opening connection to localhost:1"),
    ("ERROR", "opensock: Could not establish a connection to localhost:1"),
    ("CONNECT", "Request (file descriptor 5): CONNECT localhost:2222 HTTP/1.1"),
    ("INFO", "opensock: opening connection to localhost:2222"),
    ("CONNECT", 'Established connection to host "localhost" using file descriptor 6.'),
])
# The same at LogLevel Connect: no INFO lines, the request lines stand in for the attempts
# (without the refused request, which would be taken there for the next one to its host).
TINYPROXY_QUIET_LOG = "".join(line + "\n" for line in TINYPROXY_LOG.splitlines()
                              if not line.startswith("INFO") and "localhost:1111" not in line)

MICROSOCKS_LOG = """\
client[4] 127.0.0.1: connected to 127.0.0.1:18080
client[5] 127.0.0.1: connected to localhost:18080
client[4] 127.0.0.1: connected to ::1:18081
"""


def test_destination_parsers_read_real_log_lines() -> None:
    assert proxies.tinyproxy_destinations(TINYPROXY_LOG) == [
        "[::1]:8443", "127.0.0.1:18080", "localhost:2222"]
    assert proxies.tinyproxy_destinations(TINYPROXY_QUIET_LOG) == [
        "[::1]:8443", "127.0.0.1:18080", "localhost:2222"]
    assert proxies.microsocks_destinations(MICROSOCKS_LOG) == [
        "127.0.0.1:18080", "localhost:18080", "[::1]:18081"]
    assert proxies.tinyproxy_destinations("") == proxies.microsocks_destinations("") == []
