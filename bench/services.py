"""The servers of a benchmark run: the mock upstream, Kestrel, and proxies to compare with.

Each is started as a real process on loopback and described by a `Target`: where to send
requests, which key to send, and which process to measure.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from load import ROUTE_BODIES, ROUTE_PATHS
from procs import Process, free_port, wait_until_ready

BENCH_DIR = Path(__file__).resolve().parent
# Issue 13: a change made through one worker is in force in every other within 1 s.
SPREAD_SECONDS = 1.0
REPO_DIR = BENCH_DIR.parent

# Variables Kestrel reads that a developer's shell may hold; the bench sets its own.
_KESTREL_ENV = ("HOST", "PORT", "LOG_LEVEL", "LOG_FORMAT", "DB_PATH", "ENCRYPTION_KEY",
                "ADMIN_KEY", "CLAUDE_API_KEY", "CLAUDE_BASE_URL", "MAX_BODY_BYTES",
                "SHUTDOWN_GRACE_SECONDS", "ROTATION", "COOLDOWN_MAX", "LOG_RETENTION_DAYS",
                "UPSTREAM_CONNECT_TIMEOUT", "UPSTREAM_READ_TIMEOUT", "METRICS_TOKEN", "WORKERS",
                "DATABASE_URL", "INSTANCE_NAME")


@dataclass
class Tools:
    mock: Path
    sseload: Path


@dataclass
class Target:
    """Something requests can be sent to, and the process whose cost is measured."""

    name: str
    base_url: str
    process: Process
    api_key: str | None = None
    routes: tuple[str, ...] = ("messages",)
    note: str = ""

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def port(self) -> int:
        return int(self.base_url.rsplit(":", 1)[1])


def build_tools(build_dir: Path) -> Tools:
    """Compile the mock and the stream load generator (a second or two with gcc)."""
    result = subprocess.run(["make", "-s", "-C", str(BENCH_DIR), f"BUILD={build_dir}"],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"building the C programs failed:\n{result.stdout}{result.stderr}")
    return Tools(mock=build_dir / "mock", sseload=build_dir / "sseload")


def start_mock(tools: Tools, workdir: Path, *, deltas: int, interval_ms: int, delay_ms: int,
               cpus: set[int] | None) -> Target:
    port = free_port()
    process = Process("mock", [str(tools.mock), "--port", str(port), "--deltas", str(deltas),
                               "--interval-ms", str(interval_ms), "--delay-ms", str(delay_ms)],
                      log_path=workdir / "mock.log", cpus=cpus)
    url = f"http://127.0.0.1:{port}"
    wait_until_ready(url + "/", process)
    return Target("direct", url, process, note="the mock upstream alone")


def _admin_post(base_url: str, admin_key: str, path: str, body: dict[str, object]) -> object:
    request = urllib.request.Request(
        base_url + path, data=json.dumps(body).encode(), method="POST",
        headers={"X-Admin-Key": admin_key, "content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def export_ref(ref: str, directory: Path) -> Path:
    """The tree of a git commit (`git archive`), to run a committed Kestrel next to the
    working tree's. The checkout itself is left alone."""
    directory.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO_DIR), "archive", "--format=tar", ref],
                             capture_output=True, check=False)
    if archive.returncode != 0:
        raise RuntimeError(f"git archive {ref}: {archive.stderr.decode(errors='replace')}")
    subprocess.run(["tar", "-x", "-C", str(directory)], input=archive.stdout, check=True)
    return directory


# Accounts in every Kestrel's pool: a team's pool is several, and choosing among them costs.
ACCOUNTS = 3


def start_kestrel(name: str, workdir: Path, upstream: Target, *, request_log: bool,
                  access_log: bool, cpus: set[int] | None, source: Path = REPO_DIR,
                  workers: int | None = None, database_url: str | None = None,
                  key_controls: dict[str, object] | None = None,
                  under: Sequence[str] = (), ready_seconds: float = 30.0) -> Target:
    """`python -m kestrel` from `source` (this checkout by default), with three accounts on the
    mock (what issue 14 measures with) and one client key. `request_log=False` sets
    `REQUEST_LOG=off`; `workers` sets WORKERS (unset by default: one process, no supervisor);
    `database_url` puts its state in PostgreSQL (DATABASE_URL) instead of a SQLite file;
    `key_controls` are set on its client key (POST /admin/keys); `under` is a command that runs
    Python (valgrind, say), given `ready_seconds` to answer."""
    port = free_port()
    home = workdir / re.sub(r"[^\w.@-]", "_", name)
    home.mkdir()
    env = _kestrel_env(home, upstream, request_log=request_log, access_log=access_log,
                       source=source, database_url=database_url)
    env["PORT"] = str(port)
    if workers is not None:
        env["WORKERS"] = str(workers)
    process = Process(name, [*under, sys.executable, "-m", "kestrel"], env=env, cwd=source,
                      log_path=home / "kestrel.log", cpus=cpus)
    base_url = f"http://127.0.0.1:{port}"
    wait_until_ready(base_url + "/health", process, timeout=ready_seconds)
    created = _set_up(base_url, env["ADMIN_KEY"], key_controls or {})
    if workers is not None:
        time.sleep(SPREAD_SECONDS)  # until every worker knows the account just added
    notes = [] if source == REPO_DIR else ["a committed version, from git archive"]
    if workers is not None:
        notes.append(f"WORKERS={workers}")
    if database_url is not None:
        notes.append("state in PostgreSQL (DATABASE_URL, a throwaway local cluster)")
    if key_controls:
        notes.append("client key with " + ", ".join(sorted(key_controls)))
    if not request_log:
        notes.append("request log off (REQUEST_LOG=off)")
    if access_log:
        notes.append("access log on (LOG_LEVEL=info)")
    return Target(name, base_url, process, api_key=created["key"],
                  routes=("messages", "chat"), note="; ".join(notes))


def _kestrel_env(home: Path, upstream: Target, *, request_log: bool, access_log: bool,
                 source: Path, database_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _KESTREL_ENV}
    env.update({
        "HOST": "127.0.0.1", "DB_PATH": str(home / "kestrel.db"),
        "ADMIN_KEY": "kadm_" + secrets.token_hex(16), "ENCRYPTION_KEY": secrets.token_hex(32),
        "CLAUDE_BASE_URL": upstream.base_url, "LOG_FORMAT": "json",
        "LOG_LEVEL": "info" if access_log else "warning",
        "REQUEST_LOG": "on" if request_log else "off",
        "PYTHONPATH": str(source) + os.pathsep + env.get("PYTHONPATH", ""),
    })
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    return env


def _set_up(base_url: str, admin_key: str,
            key_controls: dict[str, object] | None = None) -> dict[str, str]:
    """Three accounts on the mock and one client key (with `key_controls`), through the admin
    API; the new key."""
    for number in range(1, ACCOUNTS + 1):
        _admin_post(base_url, admin_key, "/admin/accounts",
                    {"name": f"bench-{number}", "api_key": "sk-ant-bench-" + secrets.token_hex(8)})
    created = _admin_post(base_url, admin_key, "/admin/keys",
                          {"name": "bench", **(key_controls or {})})
    assert isinstance(created, dict) and isinstance(created.get("key"), str)
    return created


def start_kestrel_instances(name: str, workdir: Path, upstream: Target, *, count: int,
                            database_url: str, access_log: bool,
                            cpus: set[int] | None) -> Target:
    """`count` Kestrels on one PostgreSQL database behind nginx (one worker, as
    `--compare nginx`), started by one shell so the meter sees them all, nginx included: what
    an operator runs for many instances, on one machine."""
    home = workdir / re.sub(r"[^\w.@-]", "_", name)
    home.mkdir()
    env = _kestrel_env(home, upstream, request_log=True, access_log=access_log,
                       source=REPO_DIR, database_url=database_url)
    nginx = nginx_command()
    if nginx is None:
        raise RuntimeError(f"{name} needs nginx (Debian: apt-get install nginx)")
    ports = [free_port() for _ in range(count)]
    port = free_port()
    _render_nginx(home, port, ports[0])
    conf = home / "nginx.conf"
    conf.write_text(conf.read_text().replace(
        f"server 127.0.0.1:{ports[0]};", " ".join(f"server 127.0.0.1:{p};" for p in ports)))
    script = "".join(f"PORT={p} INSTANCE_NAME=instance-{i} {shlex.quote(sys.executable)} "
                     "-m kestrel & " for i, p in enumerate(ports, 1))
    script += "exec " + nginx.replace("{dir}", shlex.quote(str(home)))
    process = Process(name, ["sh", "-c", script], env=env, cwd=REPO_DIR,
                      log_path=home / "kestrel.log", cpus=cpus)
    for instance_port in ports:
        wait_until_ready(f"http://127.0.0.1:{instance_port}/health", process)
    base_url = f"http://127.0.0.1:{port}"
    wait_until_ready(base_url + "/health", process)
    created = _set_up(f"http://127.0.0.1:{ports[0]}", env["ADMIN_KEY"])
    time.sleep(SPREAD_SECONDS)  # until every instance knows the accounts just added
    return Target(name, base_url, process, api_key=created["key"], routes=("messages", "chat"),
                  note=f"{count} instances on one PostgreSQL database behind nginx (all "
                       "measured together)")


NGINX_TEMPLATE = BENCH_DIR / "nginx.conf.template"


def nginx_command() -> str | None:
    """The `--compare` command for nginx as a plain reverse proxy, or None if not installed."""
    nginx = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None)
    if nginx is None:
        return None
    return f"{shlex.quote(nginx)} -p {{dir}} -c {{dir}}/nginx.conf -e {{dir}}/error.log"


def _render_nginx(directory: Path, port: int, upstream_port: int) -> None:
    text = NGINX_TEMPLATE.read_text()
    for placeholder, value in (("@PORT@", str(port)), ("@UPSTREAM_PORT@", str(upstream_port)),
                               ("@DIR@", str(directory))):
        text = text.replace(placeholder, value)
    (directory / "nginx.conf").write_text(text)


# The least a proxy in Kestrel's design costs: asyncio + h11 on both sides (`floor`), or h11
# on the client side only with the upstream's answer parsed by hand (`lean-floor`); each name
# with the server `floor_servers.py` runs for it.
FLOORS = {"floor": "proxy", "lean-floor": "lean-proxy"}


def floor_argv(name: str) -> list[str]:
    """The command that runs a floor, without its port and upstream."""
    return [sys.executable, str(BENCH_DIR / "floor_servers.py"), FLOORS[name]]


def floor_command(name: str) -> str:
    """The shell command of a floor, for `start_command`."""
    return shlex.join(floor_argv(name)) + " --port {port} --upstream {upstream}"


def start_command(name: str, command: str, workdir: Path, upstream: Target, *,
                  cpus: set[int] | None) -> Target:
    """Any other proxy, from a shell command with {port}, {upstream}, {upstream_port}, {dir}.

    The command must run in the foreground, listen on 127.0.0.1:{port} and send to
    {upstream}. The whole process tree it starts is measured.
    """
    port = free_port()
    directory = workdir / name
    directory.mkdir()
    upstream_port = int(upstream.base_url.rsplit(":", 1)[1])
    if name == "nginx":
        _render_nginx(directory, port, upstream_port)
    argv = ["/bin/sh", "-c", "exec " + command.format(
        port=port, upstream=upstream.base_url, upstream_port=upstream_port, dir=directory)]
    process = Process(name, argv, log_path=directory / "out.log", cpus=cpus)
    base_url = f"http://127.0.0.1:{port}"
    wait_until_ready(base_url + "/", process)
    notes = {"nginx": "plain reverse proxy",
             "floor": "minimal asyncio + h11 proxy, bench/floor_servers.py",
             "lean-floor": "the same with h11 on the client side only, the upstream's answer "
                           "parsed by hand, bench/floor_servers.py"}
    return Target(name, base_url, process, api_key="sk-ant-bench",
                  note=notes.get(name, command))


def check_route(target: Target, route: str) -> str | None:
    """One non-streaming request on `route`: None if the answer has the right shape, else what
    is wrong (404 meaning the route is not there)."""
    headers = {"content-type": "application/json", "anthropic-version": "2023-06-01"}
    if target.api_key:
        headers["x-api-key"] = target.api_key
    request = urllib.request.Request(target.base_url + ROUTE_PATHS[route], method="POST",
                                     data=ROUTE_BODIES[route].encode(), headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:300].decode(errors="replace")
        return f"the route answers {exc.code}" + (" (not there yet)" if exc.code == 404
                                                  else f": {detail}")
    except OSError as exc:
        return f"no answer ({exc})"
    try:
        payload = json.loads(body)
    except ValueError:
        return "the answer is not JSON"
    want = ("type", "message") if route == "messages" else ("object", "chat.completion")
    if not isinstance(payload, dict) or payload.get(want[0]) != want[1]:
        return f"the answer is not a {want[1]}: {body[:200]!r}"
    return None
