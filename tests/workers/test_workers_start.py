"""Starting with WORKERS: the setting, the first run, start errors reported once, and every way
of launching Kestrel (module, console script, zipapp) re-executing itself as its workers."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import httpx
import pytest

from conftest import ADMIN_KEY, ENCRYPTION_KEY
from support.process import KestrelProcess, run_kestrel
from support.workers import events, worker_pids
from support.zipapp import clean_env

KEYS = {"ADMIN_KEY": ADMIN_KEY, "ENCRYPTION_KEY": ENCRYPTION_KEY}
WORKERS_PROBLEM = "is not a number of worker processes (1 or more, or auto)"


@pytest.mark.parametrize(("env", "args", "line"), [
    ({"WORKERS": "0"}, [], f"WORKERS: '0' {WORKERS_PROBLEM}"),
    ({"WORKERS": "abc"}, [], f"WORKERS: 'abc' {WORKERS_PROBLEM}"),
    ({"WORKERS": "2"}, ["serve", "--workers", "-1"], f"--workers: '-1' {WORKERS_PROBLEM}"),
])
def test_a_bad_workers_value_is_one_line_and_exit_2(
        tmp_path: Path, env: dict[str, str], args: list[str], line: str) -> None:
    result = run_kestrel(tmp_path, [*args, "--port", "0"], env={**KEYS, **env})
    assert (result.returncode, result.stderr) == (2, f"kestrel: {line}\n")
    assert not (tmp_path / "kestrel.db").exists()


def test_auto_starts_a_worker_per_cpu(tmp_path: Path) -> None:
    with KestrelProcess(tmp_path, env={**KEYS, "WORKERS": "auto"}) as kestrel:
        (started,) = events(kestrel, "started")
        assert started["workers"] == os.cpu_count()
        assert sorted(worker_pids(kestrel)) == list(range(1, (os.cpu_count() or 1) + 1))


def test_first_run_secrets_are_made_and_shown_once_for_every_worker(tmp_path: Path) -> None:
    with KestrelProcess(tmp_path, env={"WORKERS": "2"}) as kestrel:
        output = "\n".join(kestrel.lines)
        assert output.count("Admin key: kadm_") == 1
        admin_key = output.split("Admin key: ")[1].split()[0]
        for _ in range(10):  # new connections: whichever worker answers knows the key
            with httpx.Client(base_url=kestrel.base_url) as client:
                assert client.get("/admin/accounts", headers={"X-Admin-Key": admin_key}
                                  ).status_code == 200


def test_a_database_error_is_reported_once_before_any_worker_starts(tmp_path: Path) -> None:
    with KestrelProcess(tmp_path, env=KEYS):
        pass  # the database now holds the key check of ENCRYPTION_KEY
    result = run_kestrel(tmp_path, ["--port", "0"],
                         env={**KEYS, "ENCRYPTION_KEY": "44" * 32, "WORKERS": "2"})
    assert result.returncode == 1
    assert result.stderr.count("ENCRYPTION_KEY does not open") == 1
    assert "worker" not in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("launcher", ["console script", "zipapp"])
def test_every_launcher_starts_its_workers_from_itself(
        launcher: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if launcher == "zipapp":
        built_pyz: Path = request.getfixturevalue("built_pyz")
        command = [sys.executable, str(built_pyz)]
        env = {**clean_env(tmp_path / "shiv"), "PYTHONPATH": ""}
    else:
        script = Path(sys.executable).with_name("kestrel")
        assert script.exists(), "pip install -e . makes the kestrel script"
        command, env = [str(script)], {}
    with KestrelProcess(tmp_path, env={**env, **KEYS}, command=command,
                        args=["--port", "0", "--workers", "2"]) as kestrel:
        assert sorted(worker_pids(kestrel)) == [1, 2]
        with kestrel.client() as client:
            assert client.get("/health").json()["workers"] == {"up": 2, "configured": 2}

