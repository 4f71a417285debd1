"""PostgreSQL as the engine, on a real server of the tests' own: what differs from SQLite.

The repositories' own tests run on both engines (the `db_target` fixture); these cover what only
a server has: URLs, TLS modes, instances migrating at once, writes from many handles, a server
that goes away and comes back, and batches larger than one statement.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import pytest

from kestrel.database_url import PostgresUrl
from kestrel.domain import Attempt, RequestLog, StoreError
from kestrel.store.database import Database
from kestrel.store.migrations import load_migrations
from kestrel.store.postgres_engine import ssl_context
from kestrel.store.request_logs import RequestLogStore, StoredLog
from kestrel.store.session import Session

from support.postgres import PASSWORD, Cluster

NEWEST = len(load_migrations())


# --- URLs and TLS, no server needed --------------------------------------------------------------


def test_a_url_is_read_as_libpq_reads_it() -> None:
    url = PostgresUrl.parse("postgresql://kes%40trel:p%3Ass@db.example:6543/state"
                            "?sslmode=verify-full&sslrootcert=/etc/ca.pem&connect_timeout=3")
    assert (url.user, url.password, url.host, url.port, url.database) == (
        "kes@trel", "p:ss", "db.example", 6543, "state")
    assert (url.sslmode, url.sslrootcert, url.connect_timeout) == ("verify-full", "/etc/ca.pem",
                                                                   3.0)
    assert url.where == "postgresql://kes@trel@db.example:6543/state"
    assert "p:ss" not in repr(url) and "p:ss" not in url.where
    defaults = PostgresUrl.parse("postgres://k@h")
    assert (defaults.port, defaults.database, defaults.sslmode) == (5432, "k", "prefer")
    socket_dir = PostgresUrl.parse("postgresql://k@/db?host=/run/postgresql")
    assert socket_dir.host == "/run/postgresql"


@pytest.mark.parametrize(("url", "problem"), [
    ("postgresql://h/db", "names no user"),
    ("postgresql://k@h/db?sslmode=sometimes", "sslmode must be one of"),
    ("postgresql://k@h/db?pool=3", "unknown URL parameter(s): pool"),
    ("postgresql://k@h:port/db", "port is not a number"),
    ("postgresql://k@h/db?connect_timeout=soon", "connect_timeout is not a number"),
])
def test_a_bad_url_is_refused_with_what_is_wrong(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        PostgresUrl.parse(url)


def test_a_bad_url_stops_the_open_with_one_line_and_no_password() -> None:
    with pytest.raises(StoreError, match="DATABASE_URL: unknown URL parameter") as caught:
        asyncio.run(Database.open("postgresql://k:hunter22@h/db?pool=3"))
    assert "hunter22" not in str(caught.value)


def test_ssl_modes_map_to_what_libpq_does() -> None:
    def context(mode: str, root: str | None = None) -> Any:
        extra = f"&sslrootcert={root}" if root else ""
        return ssl_context(PostgresUrl.parse(f"postgresql://k@h/db?sslmode={mode}{extra}"))
    assert context("disable") is False
    assert context("allow") is None and context("prefer") is None  # TLS if offered, unchecked
    required = context("require")
    assert required.verify_mode == ssl.CERT_NONE and not required.check_hostname
    ca = ssl.get_default_verify_paths().cafile or ssl.get_default_verify_paths().openssl_cafile
    with_root = context("require", ca)  # libpq: a root certificate makes `require` check it
    assert with_root.verify_mode == ssl.CERT_REQUIRED and not with_root.check_hostname
    verify_ca = context("verify-ca")
    assert verify_ca.verify_mode == ssl.CERT_REQUIRED and not verify_ca.check_hostname
    verify_full = context("verify-full")
    assert verify_full.verify_mode == ssl.CERT_REQUIRED and verify_full.check_hostname


# --- on the server -------------------------------------------------------------------------------


def test_instances_starting_together_migrate_once(pg_cluster: Cluster) -> None:
    url = pg_cluster.database()

    async def main() -> list[Any]:
        handles = await asyncio.gather(*(Database.open(url) for _ in range(4)))
        try:
            assert [db.schema_version for db in handles] == [NEWEST] * 4
            assert {db.engine for db in handles} == {"postgresql"}
            return await handles[0].read(lambda s: s.execute(
                "SELECT version FROM schema_version ORDER BY version").fetchall())
        finally:
            await asyncio.gather(*(db.close() for db in handles))
    assert [row[0] for row in asyncio.run(main())] == list(range(1, NEWEST + 1))


def test_an_instance_older_than_the_schema_refuses_to_start(pg_cluster: Cluster) -> None:
    url = pg_cluster.database()

    async def main() -> None:
        db = await Database.open(url)
        await db.write(lambda s: s.execute(
            "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)", (999, 0.0)))
        await db.close()
        await Database.open(url)
    with pytest.raises(StoreError) as caught:
        asyncio.run(main())
    assert str(caught.value) == (
        f"{PostgresUrl.parse(url).where} has schema version 999 but this Kestrel knows only "
        f"up to {NEWEST}; use a newer Kestrel or another DATABASE_URL")


def test_writes_from_many_instances_never_interleave(pg_cluster: Cluster) -> None:
    """Read-modify-write from three handles (three instances): no update is lost, because
    every write transaction holds the one write lock, as on SQLite."""
    url = pg_cluster.database()

    def increment(session: Session) -> None:
        row = session.execute("SELECT value FROM meta WHERE key = 'n'").fetchone()
        n = 0 if row is None else int(bytes(row[0]).decode())
        session.execute("DELETE FROM meta WHERE key = 'n'")
        session.execute("INSERT INTO meta (key, value) VALUES ('n', ?)", (str(n + 1).encode(),))

    async def main() -> int:
        handles = [await Database.open(url) for _ in range(3)]
        try:
            await asyncio.gather(*(db.write(increment) for db in handles for _ in range(40)))
            row = await handles[0].read(
                lambda s: s.execute("SELECT value FROM meta WHERE key = 'n'").fetchone())
            return int(bytes(row[0]).decode())
        finally:
            await asyncio.gather(*(db.close() for db in handles))
    assert asyncio.run(main()) == 120


def test_reads_cannot_write(pg_cluster: Cluster) -> None:
    async def main() -> None:
        db = await Database.open(pg_cluster.database())
        try:
            with pytest.raises(Exception, match="read-only transaction"):
                await db.read(lambda s: s.execute("INSERT INTO meta (key, value) VALUES (?, ?)",
                                                  ("x", b"1")))
        finally:
            await db.close()
    asyncio.run(main())


def test_a_wrong_password_stops_the_open_with_one_clear_line(pg_cluster: Cluster) -> None:
    url = pg_cluster.database().replace(PASSWORD, "not-the-password")
    with pytest.raises(StoreError, match="password authentication failed") as caught:
        asyncio.run(Database.open(url))
    assert "not-the-password" not in str(caught.value)


def test_a_server_that_cannot_be_reached_is_one_clear_line(pg_cluster: Cluster) -> None:
    from support.postgres import free_port

    url = f"postgresql://kestrel@127.0.0.1:{free_port()}/x?connect_timeout=2"
    with pytest.raises(StoreError, match=r"cannot use postgresql://kestrel@127\.0\.0\.1:\d+/x "
                                         r"as a database: cannot connect"):
        asyncio.run(Database.open(url))


def test_the_database_comes_back_by_itself_after_a_server_restart(pg_cluster: Cluster) -> None:
    url = pg_cluster.database()

    def count(session: Session) -> int:
        return int(session.execute("SELECT count(*) FROM api_keys").fetchone()[0])

    async def main() -> None:
        db = await Database.open(url)
        try:
            assert await db.read(count) == 0
            await asyncio.to_thread(pg_cluster.stop_server)
            with pytest.raises(Exception) as down:
                await db.read(count)
            assert db.is_transient(down.value), repr(down.value)
            await asyncio.to_thread(pg_cluster.start_server)
            deadline = asyncio.get_running_loop().time() + 15
            while True:  # the reconnect backoff may hold the first tries off
                try:
                    assert await db.read(count) == 0
                    await db.write(lambda s: s.execute(
                        "INSERT INTO api_keys (name, key_hash, prefix, created_at) "
                        "VALUES (?, ?, ?, ?)", ("k", b"h", "kst_", 0.0)))
                    break
                except Exception as exc:
                    assert db.is_transient(exc), repr(exc)
                    assert asyncio.get_running_loop().time() < deadline, repr(exc)
                    await asyncio.sleep(0.2)
            assert await db.read(count) == 1
        finally:
            await db.close()
    asyncio.run(main())


def test_a_batch_goes_in_whole_and_every_awkward_value_reads_back_the_same(
        pg_cluster: Cluster) -> None:
    """Rows go in through COPY's text format: tabs, newlines, backslashes, the text `\\N`,
    empty strings, NULLs, non-ASCII and exact floats must all survive it."""
    awkward = ["tab\there", "line\nbreak\r", "back\\slash", "\\N", "", "é 🙂 ü", None]
    rows = [RequestLog(ts=1000.0 + n / 7, request_id=f"req-{n}", route="messages", status=200,
                       model="m", stream=n % 2 == 0, input_tokens=n, latency_ms=n / 3,
                       ttfb_ms=None if n % 3 else 0.1 + n, client=awkward[n % len(awkward)],
                       user_agent=awkward[(n + 1) % len(awkward)],
                       attempts=(Attempt(n % 5, None if n % 4 else 429, "rate\tlimit", 1.5),))
            for n in range(5_000)]

    async def main() -> list[StoredLog]:
        db = await Database.open(pg_cluster.database())
        try:
            store = RequestLogStore(db, instance="tab\tand\\back")
            await store.insert_many(rows)
            found: list[StoredLog] = []
            cursor = None
            while True:
                page, cursor = await store.query(limit=500, cursor=cursor)
                found += page
                if cursor is None:
                    return found
        finally:
            await db.close()
    stored = sorted(asyncio.run(main()), key=lambda r: r.log.ts)
    assert [r.log for r in stored] == rows
    assert {r.instance for r in stored} == {"tab\tand\\back"}


def test_request_logs_wait_while_the_server_is_away_and_none_is_lost(
        pg_cluster: Cluster) -> None:
    from kestrel.store.log_writer import LogWriter

    url = pg_cluster.database()

    async def main() -> None:
        db = await Database.open(url)
        writer = LogWriter(RequestLogStore(db), flush_interval=0.05)
        await writer.start()
        try:
            await asyncio.to_thread(pg_cluster.stop_server)
            for n in range(50):
                writer.submit(RequestLog(ts=float(n), request_id=f"away-{n}", route="messages",
                                         status=200))
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while writer.flush_failures == 0:  # the writer has tried, and kept the rows
                assert loop.time() < deadline, "the writer never tried"
                await asyncio.sleep(0.05)
            assert (writer.written, writer.dropped, writer.queue_depth) == (0, 0, 50)
            await asyncio.to_thread(pg_cluster.start_server)
            deadline = loop.time() + 20
            while writer.written < 50:
                assert loop.time() < deadline, (writer.written, writer.dropped)
                await asyncio.sleep(0.05)
            assert writer.dropped == 0
            count = await db.read(lambda s: s.execute(
                "SELECT count(*) FROM request_logs WHERE request_id LIKE 'away-%'").fetchone())
            assert count[0] == 50
        finally:
            await writer.close()
            await db.close()
    asyncio.run(main())


# --- TLS, on a server of its own -----------------------------------------------------------------


def _certificate(subject: str, key: Any, issuer: tuple[str, Any] | None = None,
                 ip: str | None = None) -> bytes:
    """A PEM certificate for `key`: a CA's own when `issuer` is None, else signed by it."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, issuer_key = (name, key) if issuer is None else (
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer[0])]), issuer[1])
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer_name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None),
                              critical=True))
    if ip is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
            critical=False)
    return builder.sign(issuer_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def test_sslmode_and_sslrootcert_work_as_in_libpq(tmp_path: Any, pg_cluster: Cluster) -> None:
    """On a server of its own, with TLS on (`pg_cluster` only says a server can be started)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from support.postgres import Cluster as Server

    ca_key, other_key, server_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = tmp_path / "ca.pem"
    ca.write_bytes(_certificate("Kestrel test CA", ca_key))
    other_ca = tmp_path / "other-ca.pem"
    other_ca.write_bytes(_certificate("Someone else's CA", other_key))
    server = Server()
    try:
        cert = server.give(server.root / "server.crt", _certificate(
            "postgres", server_key, issuer=("Kestrel test CA", ca_key), ip="127.0.0.1"))
        key = server.give(server.root / "server.key", server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        server.settings = ("ssl=on", f"ssl_cert_file={cert}", f"ssl_key_file={key}")
        server.start()
        url = server.database()

        def encrypted(mode: str, *, host: str = "127.0.0.1", root: Any = None) -> bool:
            query = f"sslmode={mode}" + (f"&sslrootcert={root}" if root else "")
            target = url.replace("127.0.0.1", host).replace("sslmode=disable", query)

            async def main() -> bool:
                db = await Database.open(target)
                try:
                    row = await db.read(lambda s: s.execute(
                        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone())
                    return bool(row[0])
                finally:
                    await db.close()
            return asyncio.run(main())

        assert encrypted("disable") is False
        assert encrypted("prefer") is True and encrypted("require") is True
        assert encrypted("verify-full", root=ca) is True
        assert encrypted("verify-ca", host="localhost", root=ca) is True  # no name check
        assert encrypted("require", host="localhost", root=ca) is True  # as verify-ca
        for mode, host, root in (("verify-full", "127.0.0.1", other_ca),
                                 ("verify-ca", "127.0.0.1", other_ca),
                                 ("require", "127.0.0.1", other_ca),
                                 ("verify-full", "localhost", ca)):
            with pytest.raises(StoreError, match="certificate verify failed") as refused:
                encrypted(mode, host=host, root=root)
            assert PASSWORD not in str(refused.value)
    finally:
        server.close()
