"""Real egress proxies for the tests: Debian's `tinyproxy` (HTTP: CONNECT and absolute-form) and
`microsocks` (SOCKS5), each a process of the test's own on a free loopback port, with its own
config and log in a folder the test gives, stopped at the end.

Kestrel's proxy support is only believable against the software people put in front of it: a
Python stand-in would share our own reading of the RFCs. Each proxy's log is kept, so a test can
tell which destinations it really connected to (`destinations()`), and so whether Kestrel went
through it at all.

Both run as whoever runs the tests, root included. tinyproxy 1.11 without a `User` line only
warns under root and keeps running; given one, it would open its log after dropping privileges,
in a folder that user cannot reach.

`REQUIRE_PROXIES=1` (set by `.ci/run`) turns a missing binary into a failure; otherwise the
tests that need one are skipped and the run says so at its end.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import IO, ClassVar, Protocol, Self, TypeVar
from urllib.parse import quote, urlsplit

REQUIRED = os.environ.get("REQUIRE_PROXIES") == "1"
SKIPPED = "proxy tests skipped"
HOST = "127.0.0.1"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
# The port is picked free, then bound by the proxy: another process may take it in between.
# Worth another go only when the proxy's words say so (both name the address or listening).
START_ATTEMPTS = 3
PORT_TROUBLE = re.compile(r"address|listen|bind", re.IGNORECASE)
DEFAULT_PORTS = {"http": 80, "https": 443}


class Unavailable(Exception):
    """The proxy's binary is not installed (the reason is the message)."""


class StartFailed(RuntimeError):
    """The proxy is installed but did not come up; the message carries its output."""


def find(binary: str, package: str) -> str:
    """The executable's path (Debian puts some daemons in sbin, off a user's PATH)."""
    found = shutil.which(binary) or next(
        (str(path) for path in (Path("/usr/sbin") / binary, Path("/usr/bin") / binary)
         if os.access(path, os.X_OK)), None)
    if found is None:
        raise Unavailable(f"`{binary}` is not installed (Debian package `{package}`)")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def hostport(host: str, port: int) -> str:
    """`host:port`, an IPv6 address in brackets (as in a URL or a CONNECT line)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _listening(pid: int, port: int) -> bool | None:
    """Whether process `pid` holds a socket listening on `port` (None: no /proc to tell).

    Asking /proc rather than connecting: a connection could reach another program that took
    the port, and would show up in the proxy's log as a client."""
    inodes: set[str] = set()
    try:
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with contextlib.suppress(FileNotFoundError):
                for line in Path(table).read_text().splitlines()[1:]:
                    fields = line.split()
                    if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(fields[9])  # state 0A is LISTEN
        held = {os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()}
    except OSError:
        return None
    return any(f"socket:[{inode}]" in held for inode in inodes)


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


class Proxy:
    """One proxy process; a context manager (`with TinyProxy(folder) as proxy:`)."""

    binary: ClassVar[str]
    package: ClassVar[str]
    scheme: ClassVar[str]

    def __init__(self, folder: Path, *, user: str | None = None,
                 password: str | None = None) -> None:
        """`folder`: where its config, log and output go (created). `user` and `password`:
        the credentials it demands (both or neither)."""
        if (user is None) != (password is None):
            raise ValueError("a proxy takes a user and a password, or neither")
        self.executable = find(self.binary, self.package)
        self.folder = folder
        self.user = user
        self.password = password
        self.port = 0
        self.log_path = folder / f"{self.binary}.log"
        self.output_path = folder / f"{self.binary}.out"
        self.config_path: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._output: IO[bytes] | None = None

    # --- what a test uses ----------------------------------------------------------------

    @property
    def url(self) -> str:
        """`scheme://user:password@127.0.0.1:port` (no credentials when it needs none)."""
        return self.url_as(self.scheme)

    def url_as(self, scheme: str) -> str:
        """The URL with another scheme: say `socks5h` (names resolved by the proxy)."""
        auth = ""
        if self.user is not None and self.password is not None:
            auth = f"{quote(self.user, safe='')}:{quote(self.password, safe='')}@"
        return f"{scheme}://{auth}{HOST}:{self.port}"

    def log_text(self) -> str:
        """What the proxy logged so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def destinations(self) -> list[str]:
        """The `host:port` of every connection the proxy made, in order, as the client named
        the host (a name or an address)."""
        raise NotImplementedError

    # --- lifecycle -----------------------------------------------------------------------

    def command(self) -> list[str]:
        """The command line for `self.port` (writing whatever config it reads)."""
        raise NotImplementedError

    def start(self) -> Self:
        self.folder.mkdir(parents=True, exist_ok=True)
        failures: list[str] = []
        for _ in range(START_ATTEMPTS):
            self.port = free_port()
            failure = self._try_start()
            if failure is None:
                return self
            failures.append(failure)
            if not PORT_TROUBLE.search(self.output_path.read_text(errors="replace")):
                break
        raise StartFailed(f"{self.binary} did not start:\n" + "\n---\n".join(failures))

    def _try_start(self) -> str | None:
        """Start on `self.port`; None once it listens, else what went wrong."""
        command = self.command()
        self._output = self.output_path.open("wb")
        proc = subprocess.Popen(command, cwd=self.folder, stdin=subprocess.DEVNULL,
                                stdout=self._output, stderr=subprocess.STDOUT)
        self._proc = proc
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            listening = _listening(proc.pid, self.port)
            if listening is None:
                listening = _accepts(self.port) and proc.poll() is None
            if listening:
                return None
            time.sleep(0.02)
        self.close()
        status = "timed out" if proc.returncode is None or proc.returncode < 0 \
            else f"exit status {proc.returncode}"
        output = self.output_path.read_text(errors="replace").strip()[-2000:]
        text = f"port {self.port}: {status}\ncommand: {' '.join(command)}\n" \
            f"output: {output or '(none)'}"
        if self.log_path != self.output_path:
            text += f"\nlog: {self.log_text().strip()[-2000:] or '(none)'}"
        if self.config_path is not None:
            text += f"\nconfig:\n{self.config_path.read_text()}"
        return text

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT)
        if self._output is not None:
            self._output.close()
            self._output = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


P_co = TypeVar("P_co", bound=Proxy, covariant=True)


class Starter(Protocol[P_co]):
    """A fixture's factory: a running proxy, stopped at the end of the test."""

    def __call__(self, *, user: str | None = None, password: str | None = None) -> P_co: ...


# --- tinyproxy ---------------------------------------------------------------------------

# tinyproxy reads BasicAuth's words with the pattern [-a-z0-9._]+ (case-insensitive).
TINYPROXY_WORD = re.compile(r"[-A-Za-z0-9._]+")
# "Request (file descriptor 5): CONNECT localhost:41234 HTTP/1.1"
TINYPROXY_REQUEST = re.compile(r"Request \(file descriptor \d+\): (\S+) (\S+)")
# "opensock: opening connection to ::1:41234" (an IPv6 address unbracketed: the port is after
# the last colon), then 'Established connection to host "::1" using file descriptor 6.' or
# "opensock: Could not establish a connection to ::1:41234".
TINYPROXY_OPENING = re.compile(r"opening connection to (\S+):(\d+)")
TINYPROXY_ESTABLISHED = re.compile(r'Established connection to host "([^"]*)"')
TINYPROXY_FAILED = re.compile(r"Could not establish a connection to (\S+):(\d+)")


class TinyProxy(Proxy):
    """An HTTP proxy: CONNECT to any port, plain-HTTP absolute-form requests, optional Basic
    auth (`BasicAuth`), every connection logged (`LogLevel Info`).

    tinyproxy 1.11.1 (Debian 12) answers a request without Proxy-Authorization with 407, but
    one with wrong credentials with 401 (upstream fixed it later: 407 both times)."""

    binary = "tinyproxy"
    package = "tinyproxy-bin"  # the executable alone; `tinyproxy` adds a system service
    scheme = "http"

    def __init__(self, folder: Path, *, user: str | None = None,
                 password: str | None = None) -> None:
        for word in (user, password):
            if word is not None and not TINYPROXY_WORD.fullmatch(word):
                raise ValueError(f"tinyproxy's BasicAuth takes [-A-Za-z0-9._]+ only: {word!r}")
        super().__init__(folder, user=user, password=password)
        self.config_path: Path = folder / "tinyproxy.conf"

    def command(self) -> list[str]:
        lines = [
            "# A test's own proxy (tests/support/proxies.py), on loopback.",
            f"Port {self.port}",
            f"Listen {HOST}",
            f"Allow {HOST}",
            "Timeout 600",
            "MaxClients 200",
            f'LogFile "{self.log_path}"',
            "LogLevel Info",
            # No ConnectPort line: CONNECT to any port (Debian's own config allows 443 and 563).
            # No User/Group: see the module's docstring. No PidFile: -d keeps it in front.
        ]
        if self.user is not None:
            lines.append(f"BasicAuth {self.user} {self.password}")
        self.config_path.write_text("\n".join(lines) + "\n")
        return [self.executable, "-d", "-c", str(self.config_path)]

    def requests(self) -> list[tuple[str, str]]:
        """Every request line it read, as (method, target): `CONNECT host:port` or an
        absolute-form `GET http://...`; refused ones (bad credentials) too."""
        return [(found.group(1), found.group(2))
                for found in map(TINYPROXY_REQUEST.search, self.log_text().splitlines())
                if found]

    def destinations(self) -> list[str]:
        return tinyproxy_destinations(self.log_text())


def tinyproxy_destinations(log: str) -> list[str]:
    """Each connection tinyproxy makes is logged in two lines: "opensock: opening connection to
    HOST:PORT", then "Established connection to host "HOST"" (or "Could not establish a
    connection to HOST:PORT"). Threads may interleave them, so an established host is matched
    to the oldest attempt at it still open. A request refused before any attempt (bad
    credentials) leaves no trace here. Without opensock lines (LogLevel Connect) the request
    lines stand in for the attempts, and a refused one would be taken for the next to its
    host."""
    lines = log.splitlines()
    attempts = [found.groups() for found in map(TINYPROXY_OPENING.search, lines) if found]
    pending: list[tuple[str, int]] = []
    made: list[str] = []
    for line in lines:
        if attempts:
            opening = TINYPROXY_OPENING.search(line)
            target = (opening.group(1), int(opening.group(2))) if opening else None
        else:
            request = TINYPROXY_REQUEST.search(line)
            target = _tinyproxy_target(*request.groups()) if request else None
        if target is not None:
            pending.append((target[0].strip("[]"), target[1]))
            continue
        failed = TINYPROXY_FAILED.search(line)
        if failed and (failed.group(1), int(failed.group(2))) in pending:
            pending.remove((failed.group(1), int(failed.group(2))))
            continue
        established = TINYPROXY_ESTABLISHED.search(line)
        if established:
            host = established.group(1).strip("[]").lower()
            for index, (wanted, port) in enumerate(pending):
                if wanted.lower() == host:
                    del pending[index]
                    made.append(hostport(wanted, port))
                    break
    return made


def _tinyproxy_target(method: str, target: str) -> tuple[str, int] | None:
    """(host, port) a request line asks for; None for an origin-form target."""
    if method.upper() == "CONNECT":
        parts = urlsplit("//" + target)
        default = 443
    else:
        parts = urlsplit(target)
        default = DEFAULT_PORTS.get(parts.scheme.lower(), 80)
    try:
        port = parts.port or default
    except ValueError:
        return None
    return (parts.hostname, port) if parts.hostname else None


# --- microsocks --------------------------------------------------------------------------

# "client[4] 127.0.0.1: connected to localhost:41234" (1.0.3; later versions log the address
# the name resolved to). An IPv6 destination has no brackets: "connected to ::1:41234".
MICROSOCKS_CONNECTED = re.compile(r"connected to (\S+):(\d+)\s*$")


class MicroSocks(Proxy):
    """A SOCKS5 proxy (RFC 1928), optionally with user/password (RFC 1929). It logs a line to
    stderr per connection it made, none for a refused client."""

    binary = "microsocks"
    package = "microsocks"
    scheme = "socks5"

    def __init__(self, folder: Path, *, user: str | None = None,
                 password: str | None = None) -> None:
        super().__init__(folder, user=user, password=password)
        self.log_path = self.output_path  # its output is its log

    def command(self) -> list[str]:
        auth: list[str] = []
        if self.user is not None and self.password is not None:
            auth = ["-u", self.user, "-P", self.password]
        return [self.executable, "-i", HOST, "-p", str(self.port), *auth]

    def destinations(self) -> list[str]:
        return microsocks_destinations(self.log_text())


def microsocks_destinations(log: str) -> list[str]:
    """One "connected to HOST:PORT" line per connection made (the port is after the last
    colon, so an unbracketed IPv6 address parses too)."""
    return [hostport(found.group(1).strip("[]"), int(found.group(2)))
            for found in map(MICROSOCKS_CONNECTED.search, log.splitlines()) if found]


class TlsFront(Proxy):
    """TLS in front of another proxy (Debian's stunnel4): an `https://` proxy. Its certificate
    is the test CA's server certificate, for 127.0.0.1; the login, if any, is the proxy's
    behind it, and so is the log of destinations."""

    binary = "stunnel4"
    package = "stunnel4"
    scheme = "https"

    def __init__(self, folder: Path, behind: Proxy, certificate: Path, key: Path) -> None:
        super().__init__(folder, user=behind.user, password=behind.password)
        self.behind = behind
        self.certificate = certificate
        self.key = key

    def command(self) -> list[str]:
        self.config_path = self.folder / "stunnel.conf"
        self.config_path.write_text(
            f"foreground = yes\npid =\n[proxy]\naccept = {HOST}:{self.port}\n"
            f"connect = {HOST}:{self.behind.port}\ncert = {self.certificate}\n"
            f"key = {self.key}\n")
        return [self.executable, str(self.config_path)]

    def destinations(self) -> list[str]:
        return self.behind.destinations()
