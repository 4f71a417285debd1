"""The process as an operator runs it: flags, config errors, first run, restarts, wrong keys."""

from __future__ import annotations

import json
import signal
import sqlite3
import stat
from pathlib import Path

from kestrel import __version__

from conftest import ADMIN_KEY, ENCRYPTION_KEY
from support.process import KestrelProcess, run_kestrel

CLAUDE_KEY = "sk-ant-api03-FROM-ENVIRONMENT-abcdefgh1234"


def test_version_and_help(tmp_path: Path) -> None:
    version = run_kestrel(tmp_path, ["--version"])
    assert (version.returncode, version.stdout.strip()) == (0, f"kestrel {__version__}")
    helped = run_kestrel(tmp_path, ["--help"])
    assert helped.returncode == 0
    for word in ("serve", "--host", "--port", "--db"):
        assert word in helped.stdout
    serve_help = run_kestrel(tmp_path, ["serve", "--help"])
    assert serve_help.returncode == 0 and "--port" in serve_help.stdout


def test_config_errors_are_one_line_each_and_exit_nonzero(tmp_path: Path) -> None:
    result = run_kestrel(tmp_path, [], env={"PORT": "abc", "LOG_FORMAT": "xml",
                                            "ENCRYPTION_KEY": "secretvalue-not-a-key"})
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 3, lines
    assert any(line.startswith("kestrel: PORT:") for line in lines)
    assert any(line.startswith("kestrel: LOG_FORMAT:") for line in lines)
    assert any(line.startswith("kestrel: ENCRYPTION_KEY:") for line in lines)
    assert "secretvalue-not-a-key" not in result.stderr
    assert not (tmp_path / "kestrel.db").exists()
    assert not (tmp_path / "kestrel.db.secrets").exists()


def test_first_run_generates_secrets_once(tmp_path: Path) -> None:
    first = KestrelProcess(tmp_path).start()
    try:
        banner = "\n".join(first.lines)
        assert "Admin key: kadm_" in banner
        assert f"{first.base_url}/app/" in banner
        admin_key = banner.split("Admin key: ")[1].split()[0]
        with first.client(headers={"X-Admin-Key": admin_key}) as client:
            assert client.get("/admin/accounts").status_code == 200
        records = first.records()
        assert records and admin_key not in json.dumps(records)
    finally:
        assert first.stop() == 0
    secrets = tmp_path / "kestrel.db.secrets"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
    saved = secrets.read_bytes()

    with KestrelProcess(tmp_path) as second:
        assert "Admin key" not in "\n".join(second.lines)
        with second.client(headers={"X-Admin-Key": admin_key}) as client:
            assert client.get("/admin/accounts").status_code == 200
    assert secrets.read_bytes() == saved


def test_wrong_encryption_key_stops_the_start_and_changes_nothing(tmp_path: Path) -> None:
    env = {"ADMIN_KEY": ADMIN_KEY, "ENCRYPTION_KEY": ENCRYPTION_KEY}
    with KestrelProcess(tmp_path, env=env) as server, server.client(
            headers={"X-Admin-Key": ADMIN_KEY}) as client:
        assert client.post("/admin/accounts", json={"name": "a", "api_key": CLAUDE_KEY}
                           ).status_code == 201
    before = _contents(tmp_path)
    result = run_kestrel(tmp_path, ["--port", "0"],
                         env={**env, "ENCRYPTION_KEY": "44" * 32})
    assert result.returncode == 1
    assert "ENCRYPTION_KEY does not open" in result.stderr
    assert "Traceback" not in result.stderr
    assert _contents(tmp_path) == before


def _contents(directory: Path) -> tuple[list[str], bytes | None]:
    """What the database holds (not how SQLite happens to lay it out in -wal/-shm files), and
    the secrets file (if any) byte for byte."""
    conn = sqlite3.connect(directory / "kestrel.db")
    try:
        dump = list(conn.iterdump())
    finally:
        conn.close()
    secrets = directory / "kestrel.db.secrets"
    return dump, secrets.read_bytes() if secrets.exists() else None


def test_claude_api_key_seeds_one_default_account(tmp_path: Path) -> None:
    env = {"ADMIN_KEY": ADMIN_KEY, "ENCRYPTION_KEY": ENCRYPTION_KEY, "CLAUDE_API_KEY": CLAUDE_KEY}
    for _ in range(2):
        with KestrelProcess(tmp_path, env=env) as server, server.client(
                headers={"X-Admin-Key": ADMIN_KEY}) as client:
            accounts = client.get("/admin/accounts").json()["data"]
            assert [(a["name"], a["credential_hint"]) for a in accounts] == [
                ("default", "sk-ant-…1234")]
            assert CLAUDE_KEY not in "\n".join(server.lines)


def test_database_newer_than_the_binary_is_refused(tmp_path: Path) -> None:
    env = {"ADMIN_KEY": ADMIN_KEY, "ENCRYPTION_KEY": ENCRYPTION_KEY}
    with KestrelProcess(tmp_path, env=env):
        pass
    with sqlite3.connect(tmp_path / "kestrel.db") as conn:
        conn.execute("INSERT INTO schema_version (version, applied_at) VALUES (999, 0)")
    conn.close()
    result = run_kestrel(tmp_path, ["--port", "0"], env=env)
    assert result.returncode == 1
    assert "schema version 999" in result.stderr
    assert "Traceback" not in result.stderr


def test_db_flag_overrides_environment_and_sigint_exits_cleanly(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    env = {"ADMIN_KEY": ADMIN_KEY, "ENCRYPTION_KEY": ENCRYPTION_KEY,
           "DB_PATH": str(tmp_path / "ignored.db")}
    server = KestrelProcess(tmp_path, env=env, args=["serve", "--port", "0", "--db",
                                                     "data/here.db"]).start()
    assert server.stop(signal.SIGINT) == 0
    assert (tmp_path / "data" / "here.db").exists()
    assert not (tmp_path / "ignored.db").exists()
    events = [r.get("event", {}).get("name") for r in server.records()]
    assert events[-1] == "stopped"


def test_access_log_lines_are_structured_and_hold_no_secret(kestrel: KestrelProcess) -> None:
    with kestrel.client(headers={"X-Admin-Key": ADMIN_KEY}) as client:
        client.post("/admin/accounts", json={"name": "a", "api_key": CLAUDE_KEY})
        client.get("/admin/accounts?token=" + CLAUDE_KEY)
    kestrel.stop()
    access = [r for r in kestrel.records() if "http" in r]
    assert [(r["http"]["method"], r["http"]["path"], r["http"]["status"]) for r in access] == [
        ("POST", "/admin/accounts", 201), ("GET", "/admin/accounts", 200)]
    for record in access:
        assert record["http"]["request_id"] and record["http"]["duration_ms"] >= 0
    text = "\n".join(kestrel.lines)
    assert CLAUDE_KEY not in text and ADMIN_KEY not in text
