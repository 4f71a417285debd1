"""The one default `kestrel.pyz` starts under every CPython 3.11+ on this machine, and every older
Python gets one line and status 2, not a traceback.

What a user does: drop the file on a box and start it with whatever `python3` is there.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import kestrel

from support.process import KestrelProcess
from support.zipapp import Interpreter, clean_env, interpreters

FOUND = interpreters()
SUPPORTED = [i for i in FOUND if i.implementation == "CPython" and i.version >= (3, 11)]
OLDER = [i for i in FOUND if i.version < (3, 11)]

# Run in the zipapp's interpreter mode: the code comes from inside the file, the compiled modules
# this Python needs (cffi's backend, cryptography's Rust core) load and work, and httpx's own
# transport, which `kestrel accounts login` uses, works without the distributions left out.
PROBE = """
import sys, httpx, kestrel, kestrel.serve
from kestrel.crypto import Sealer, generate_key
sealer = Sealer(generate_key())
assert sealer.open(sealer.seal(b"x", aad=b"a"), aad=b"a") == b"x"
assert httpx.Client().get(sys.argv[1] + "/health").status_code == 200
print(kestrel.__file__)
print(sys.modules["_cffi_backend"].__file__)
"""


def test_this_machine_has_several_pythons_to_try() -> None:
    """The checks below prove nothing with one interpreter: this kind of machine has 3.11, 3.12
    and 3.13 (pyenv), and 3.10 to refuse."""
    assert len({i.version for i in SUPPORTED}) >= 2, [i.label for i in FOUND]
    assert any(i.version == (3, 10) for i in OLDER), [i.label for i in FOUND]


@pytest.mark.parametrize("python", SUPPORTED, ids=lambda i: i.label)
def test_the_file_serves_under_every_supported_python(
        python: Interpreter, built_pyz: Path, tmp_path: Path) -> None:
    env = clean_env(tmp_path / "shiv")
    workdir = tmp_path / "empty"
    workdir.mkdir()

    version = subprocess.run([python.path, str(built_pyz), "--version"], cwd=workdir, env=env,
                             capture_output=True, text=True, timeout=60)
    assert (version.returncode, version.stdout.strip()) == (0, f"kestrel {kestrel.__version__}"), \
        version.stderr

    server = KestrelProcess(workdir, command=[python.path, str(built_pyz)],
                            env={**env, "PYTHONPATH": ""})
    with server, server.client() as client:
        health = client.get("/health")
        assert health.status_code == 200
        assert health.json() == {"status": "ok", "version": kestrel.__version__,
                                 "workers": {"up": 1, "configured": 1}}

        probe = subprocess.run([python.path, str(built_pyz), "-c", PROBE, server.base_url],
                               cwd=workdir, env={**env, "SHIV_INTERPRETER": "1"},
                               capture_output=True, text=True, timeout=60)
        assert probe.returncode == 0, probe.stderr
    package, backend = probe.stdout.split()
    assert Path(package).is_relative_to(tmp_path / "shiv"), package
    tag = f"cpython-{python.version[0]}{python.version[1]}"
    assert Path(backend).is_relative_to(tmp_path / "shiv") and tag in Path(backend).name, backend
    assert (workdir / "kestrel.db").exists() and (workdir / "kestrel.db.secrets").exists()


@pytest.mark.parametrize("python", OLDER, ids=lambda i: i.label)
def test_an_older_python_gets_one_line_and_status_2(
        python: Interpreter, built_pyz: Path, tmp_path: Path) -> None:
    result = subprocess.run([python.path, str(built_pyz)], cwd=tmp_path,
                            env=clean_env(tmp_path / "shiv"), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    dotted = f"{python.version[0]}.{python.version[1]}"
    assert result.stderr.startswith("kestrel.pyz needs CPython 3.11 to "), result.stderr
    assert f"this is CPython {dotted}." in result.stderr, result.stderr
    assert result.stderr.rstrip().endswith("run it with python3.11 or newer."), result.stderr
    assert not (tmp_path / "shiv").exists(), "the guard must refuse before anything is unpacked"
