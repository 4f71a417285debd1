"""A throwaway PostgreSQL cluster of the tests' own: Debian's server, `initdb` in a temporary
directory, listening on a free loopback port, stopped and deleted at the end.

The server refuses to run as root, so under root (CI) the cluster runs as the `postgres` user the
Debian package creates (or `nobody`), in a directory given to that user.

`REQUIRE_POSTGRES=1` (set by `.ci/run`) turns a missing server into a failure; otherwise the
PostgreSQL tests are skipped and the run says so at its end.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import pg8000.dbapi

REQUIRED = os.environ.get("REQUIRE_POSTGRES") == "1"
SUPERUSER = "kestrel"
PASSWORD = "test-password-pg"  # scram-sha-256 on TCP: the tests log in as users do
START_TIMEOUT = 60.0


class Unavailable(Exception):
    """No PostgreSQL server can be started here (the reason is the message)."""


def server_bin() -> Path:
    """The folder of `initdb`, `pg_ctl` and `postgres`: Debian keeps them off PATH, per version."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
                      key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit()
                      else 0)
    if versions:
        return versions[-1].parent
    raise Unavailable("no PostgreSQL server: install Debian's `postgresql` package")


def _run_as() -> str | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise Unavailable("running as root, and no `postgres` or `nobody` user to run the server as")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Cluster:
    """One server; `database()` gives each test a fresh database of its own."""

    def __init__(self, settings: tuple[str, ...] = ()) -> None:
        """`settings`: more `name=value` server settings (say, TLS's)."""
        self.settings = settings
        self.bin = server_bin()
        self.user = _run_as()
        self.root = Path(tempfile.mkdtemp(prefix="kestrel-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.log = self.root / "server.log"

    def _run(self, *args: str, timeout: float = START_TIMEOUT) -> None:
        result = subprocess.run(args, user=self.user, capture_output=True, text=True,
                                timeout=timeout, cwd=self.root)
        if result.returncode != 0:
            raise Unavailable(f"{Path(args[0]).name} failed: {result.stderr.strip()[-800:]}")

    def give(self, path: Path, text: bytes) -> Path:
        """Write a file the server reads (its user owns it, nobody else may read it)."""
        path.write_bytes(text)
        path.chmod(0o600)
        if self.user is not None:
            shutil.chown(path, self.user)
        return path

    def start(self) -> Cluster:
        if self.user is not None:
            shutil.chown(self.root, self.user)
        password_file = self.root / "pw"
        password_file.write_text(PASSWORD)
        if self.user is not None:
            shutil.chown(password_file, self.user)
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", SUPERUSER,
                  "--auth-local=trust", "--auth-host=scram-sha-256",
                  f"--pwfile={password_file}", "-E", "UTF8", "--no-sync")
        self.start_server()
        return self

    def start_server(self) -> None:
        options = " ".join([
            f"-p {self.port}", "-c listen_addresses=127.0.0.1",
            f"-c unix_socket_directories={self.root}",
            # A test server: speed over durability (never used for a deployment).
            "-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off",
            "-c max_connections=300",
            *(f"-c {setting}" for setting in self.settings),
        ])
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                  "-o", options, "-w", "-t", str(int(START_TIMEOUT)), "start")

    def stop_server(self, mode: str = "fast") -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self) -> None:
        self.stop_server()
        self.start_server()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.stop_server("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str, *, user: str = SUPERUSER, password: str = PASSWORD) -> str:
        return (f"postgresql://{user}:{password}@127.0.0.1:{self.port}/{database}"
                "?sslmode=disable")

    def connect(self, database: str = "postgres") -> pg8000.dbapi.Connection:
        """A plain connection for looking under the hood."""
        conn = pg8000.dbapi.connect(SUPERUSER, host="127.0.0.1", port=self.port,
                                    password=PASSWORD, database=database, ssl_context=False)
        conn.autocommit = True
        return conn

    def database(self) -> str:
        """A new, empty database; its URL."""
        name = "t_" + uuid.uuid4().hex[:16]
        conn = self.connect()
        try:
            conn.cursor().execute(f"CREATE DATABASE {name}")
        finally:
            conn.close()
        return self.url(name)


def start_cluster(settings: tuple[str, ...] = ()) -> Cluster:
    server = Cluster(settings)
    try:
        return server.start()
    except BaseException:
        server.close()
        raise
