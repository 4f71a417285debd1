"""Fixtures shared by the suite: a real Kestrel process in a fresh directory."""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from fake_upstream import FakeAnthropic
from support import claude_code, figures, postgres, proxies, shifted_clock, zipapp
from support.ca import CaFiles, make_ca
from support.process import KestrelProcess
from support.stack import Stack, running_stack

ADMIN_KEY = "test-admin-key-0123456789"
ENCRYPTION_KEY = "11" * 32


@pytest.fixture
def kestrel_env() -> dict[str, str]:
    """Settings for a test server; tests add to it before asking for `kestrel`."""
    return {"ADMIN_KEY": ADMIN_KEY, "ENCRYPTION_KEY": ENCRYPTION_KEY}


@pytest.fixture
def kestrel(tmp_path: Path, kestrel_env: dict[str, str]) -> Iterator[KestrelProcess]:
    with KestrelProcess(tmp_path, env=kestrel_env) as process:
        yield process


@pytest.fixture
def ranked_stack(tmp_path: Path) -> Iterator[Stack]:
    """Fake Anthropic, Kestrel, and two accounts: `a` (priority 10, always tried first), `b`."""
    with running_stack(tmp_path, accounts=()) as stack:
        stack.add_account("a", priority=10)
        stack.add_account("b")
        yield stack


@pytest.fixture
def shifted(tmp_path: Path) -> shifted_clock.ShiftedClock:
    """A clock a test moves for the Kestrel process it starts with `shifted.env`."""
    try:
        return shifted_clock.ShiftedClock(tmp_path)
    except shifted_clock.Unavailable as exc:
        if shifted_clock.REQUIRED:
            pytest.fail(f"{shifted_clock.SKIPPED}: {exc} (REQUIRE_FAKETIME=1)")
        pytest.skip(f"{shifted_clock.SKIPPED}: {exc}")


@pytest.fixture(scope="session")
def claude_cli() -> str:
    """The real Claude Code CLI's executable (see support/claude_code.py)."""
    try:
        return claude_code.find()
    except claude_code.Unavailable as exc:
        if claude_code.REQUIRED:
            pytest.fail(f"{claude_code.SKIPPED}: {exc} (REQUIRE_CLAUDE_CODE=1)")
        pytest.skip(f"{claude_code.SKIPPED}: {exc}")


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[postgres.Cluster]:
    """A PostgreSQL server of this test process's own (see support/postgres.py)."""
    try:
        server = postgres.start_cluster()
    except postgres.Unavailable as exc:
        if postgres.REQUIRED:
            pytest.fail(f"{POSTGRES_SKIPPED}: {exc} (REQUIRE_POSTGRES=1)")
        pytest.skip(f"{POSTGRES_SKIPPED}: {exc}")
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a test's database lives, once per engine: a SQLite file, or a fresh database on
    the PostgreSQL server (its URL)."""
    if request.param == "sqlite":
        return str(tmp_path / "k.db")
    cluster: postgres.Cluster = request.getfixturevalue("pg_cluster")
    return cluster.database()


@pytest.fixture(params=["sqlite", "postgresql"])
def shared_database(request: pytest.FixtureRequest) -> dict[str, str]:
    """Settings that put every Kestrel process of a test on one database, once per engine: the
    SQLite file of their shared directory, or a fresh database on the PostgreSQL server (each
    process then stands for an instance on a machine of its own)."""
    if request.param == "sqlite":
        return {}
    cluster: postgres.Cluster = request.getfixturevalue("pg_cluster")
    return {"DATABASE_URL": cluster.database()}


POSTGRES_SKIPPED = "PostgreSQL tests skipped"

ProxyKind = TypeVar("ProxyKind", bound=proxies.Proxy)


def _require(kind: type[proxies.Proxy]) -> None:
    """Skip the test when `kind`'s binary is missing (fail under REQUIRE_PROXIES=1)."""
    try:
        proxies.find(kind.binary, kind.package)
    except proxies.Unavailable as exc:
        if proxies.REQUIRED:
            pytest.fail(f"{proxies.SKIPPED}: {exc} (REQUIRE_PROXIES=1)")
        pytest.skip(f"{proxies.SKIPPED}: {exc}")


def _proxy_starter(kind: type[ProxyKind], folder: Path) -> Iterator[proxies.Starter[ProxyKind]]:
    """A factory of `kind` proxies in `folder`, each stopped when the test ends; skipped (or
    failed, under REQUIRE_PROXIES=1) when the binary is missing."""
    _require(kind)
    numbers = itertools.count(1)
    with contextlib.ExitStack() as running:

        def start(*, user: str | None = None, password: str | None = None) -> ProxyKind:
            proxy = kind(folder / f"{kind.binary}-{next(numbers)}", user=user, password=password)
            running.callback(proxy.close)
            return proxy.start()

        yield start


@pytest.fixture
def http_proxy(tmp_path: Path) -> Iterator[proxies.Starter[proxies.TinyProxy]]:
    """`http_proxy()` or `http_proxy(user=..., password=...)`: a running tinyproxy of the
    test's own (see support/proxies.py); as many as the test asks for."""
    yield from _proxy_starter(proxies.TinyProxy, tmp_path)


@pytest.fixture
def socks_proxy(tmp_path: Path) -> Iterator[proxies.Starter[proxies.MicroSocks]]:
    """`socks_proxy()` or `socks_proxy(user=..., password=...)`: a running microsocks."""
    yield from _proxy_starter(proxies.MicroSocks, tmp_path)


@pytest.fixture
def tls_front(tmp_path: Path, test_ca: CaFiles) -> Iterator[Callable[[proxies.Proxy],
                                                                    proxies.TlsFront]]:
    """`tls_front(proxy)`: an `https://` proxy, stunnel with the test CA's certificate in
    front of `proxy`, stopped when the test ends."""
    _require(proxies.TlsFront)
    with contextlib.ExitStack() as running:

        def start(behind: proxies.Proxy) -> proxies.TlsFront:
            front = proxies.TlsFront(tmp_path / f"stunnel-{behind.port}", behind,
                                     test_ca.server_cert, test_ca.server_key)
            running.callback(front.close)
            return front.start()

        yield start


@pytest.fixture(name="test_ca")
def ca_files(tmp_path: Path) -> CaFiles:
    """A throwaway CA and a server certificate for localhost it signed (support/test_ca.py)."""
    return make_ca(tmp_path / "ca")


@pytest.fixture
def tls_upstream(test_ca: CaFiles) -> Iterator[FakeAnthropic]:
    """A fake Anthropic serving HTTPS at `https://localhost:PORT` with `test_ca`'s server
    certificate: a client trusts `test_ca.ca_cert` to reach it."""
    with FakeAnthropic(tls=test_ca.server_context()) as server:
        yield server
    assert server.errors == []


def _run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of this run that every xdist worker sees."""
    here = tmp_path_factory.getbasetemp()
    return here.parent if os.environ.get("PYTEST_XDIST_WORKER") else here


# The builds shared by a run, by the fixture that hands each out: what build.py writes, and its
# arguments.
SHARED_BUILDS = {"built_pyz": ("kestrel.pyz",), "built_matrix": ("dist", "--all")}


@pytest.fixture(scope="session")
def built_pyz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`python3 build.py` for this machine, built once per run and shared by every worker."""
    return zipapp.shared_build(_run_dir(tmp_path_factory), *SHARED_BUILDS["built_pyz"])


@pytest.fixture(scope="session")
def built_matrix(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`python3 build.py --all`: the folder of every platform's file, built once per run."""
    return zipapp.shared_build(_run_dir(tmp_path_factory), *SHARED_BUILDS["built_matrix"])


@pytest.fixture(scope="session", autouse=True)
def _shared_builds_started(request: pytest.FixtureRequest,
                           tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Start the shared builds this run's tests will ask for in the background, from each
    worker's first test. `build.py --all` takes most of a minute: started on demand, every
    worker that reached a test needing it sat idle until it was done.

    The first worker's thread builds and the others' find it built (`shared_build` takes a
    lock). A build failing here is left to the fixture, which builds again and fails the test
    that needs it, with the build's output. A worker that runs out of tests waits for its
    thread: leaving would release the lock with the build still writing, for another to start
    the same build over it."""
    wanted = {name for item in request.session.items for name in item.fixturenames
              if name in SHARED_BUILDS}
    threads = [threading.Thread(target=_build_quietly, args=(_run_dir(tmp_path_factory), name),
                                name=f"build for {name}", daemon=True) for name in wanted]
    for thread in threads:
        thread.start()
    yield
    for thread in threads:
        thread.join()


def _build_quietly(run_dir: Path, name: str) -> None:
    with contextlib.suppress(Exception):  # the fixture reports it (above)
        zipapp.shared_build(run_dir, *SHARED_BUILDS[name])


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the figures hardening tests measured (fault matrix, fuzzing, leak scan)."""
    reasons = [_skip_reason(report) for report in terminalreporter.stats.get("skipped", [])]
    for prefix, title in ((POSTGRES_SKIPPED, "POSTGRESQL NOT TESTED"),
                          (shifted_clock.SKIPPED, "LIMIT RESETS NOT TESTED"),
                          (claude_code.SKIPPED, "CLAUDE CODE NOT TESTED"),
                          (proxies.SKIPPED, "EGRESS PROXIES NOT TESTED")):
        skipped = [reason for reason in reasons if reason.startswith(prefix)]
        if skipped:
            terminalreporter.section(title, sep="!", red=True, bold=True)
            terminalreporter.write_line(f"{len(skipped)} tests did not run. "
                                        f"{skipped[0].removeprefix(prefix + ': ')}",
                                        red=True, bold=True)
    lines = figures.rendered()
    if lines:
        terminalreporter.section("figures")
        for line in lines:
            terminalreporter.write_line(line)


def _skip_reason(report: pytest.TestReport) -> str:
    """pytest keeps a skip as (file, line, "Skipped: reason")."""
    longrepr = report.longrepr
    text = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return text.removeprefix("Skipped: ")


def pytest_sessionfinish(session: pytest.Session) -> None:
    """On an xdist worker, hand the figures it measured to the controller, which prints them."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["figures"] = figures.exported()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    figures.merge(getattr(node, "workeroutput", {}).get("figures", {}))
