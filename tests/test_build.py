"""The zipapp: `build.py` makes it, and it runs from anywhere with nothing but Python."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import kestrel

from support.process import KestrelProcess

ROOT = Path(__file__).resolve().parents[1]

# Run by the zipapp's own interpreter mode: proves the code comes from inside the zipapp (not the
# checkout or an editable install) and that the compiled cryptography wheel loads and works.
PROBE = """
import h11, httpx, kestrel, kestrel.config, kestrel.logs
from kestrel.crypto import Sealer, generate_key
sealer = Sealer(generate_key())
assert sealer.open(sealer.seal(b"x", aad=b"a"), aad=b"a") == b"x"
print(kestrel.__file__)
"""


def test_build_makes_a_zipapp_that_runs_outside_the_checkout(tmp_path: Path) -> None:
    pyz = tmp_path / "out" / "kestrel.pyz"
    build = subprocess.run(
        [sys.executable, str(ROOT / "build.py"), "--output", str(pyz)],
        capture_output=True, text=True, timeout=300,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    assert re.search(r"^built kestrel\.pyz \(\d+\.\d MB\) for CPython \d+\.\d+ on .+$",
                     build.stdout, re.MULTILINE), build.stdout

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shiv_root = tmp_path / "shiv"  # where the zipapp unpacks itself; keep it out of $HOME
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("SHIV_")}
    env["SHIV_ROOT"] = str(shiv_root)

    def run_pyz(*args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(pyz), *args], cwd=elsewhere,
                              env={**env, **extra_env}, capture_output=True, text=True,
                              timeout=60)

    version = run_pyz("--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"kestrel {kestrel.__version__}"

    probe = run_pyz("-c", PROBE, SHIV_INTERPRETER="1")
    assert probe.returncode == 0, probe.stderr
    assert Path(probe.stdout.strip()).is_relative_to(shiv_root), probe.stdout

    # The built file is a working server: first run in an empty directory, /health answers.
    server = KestrelProcess(elsewhere, command=[sys.executable, str(pyz)],
                            env={"SHIV_ROOT": str(shiv_root), "PYTHONPATH": ""})
    with server, server.client() as client:
        health = client.get("/health")
        assert health.status_code == 200
        assert health.json() == {"status": "ok", "version": kestrel.__version__}
    assert (elsewhere / "kestrel.db").exists() and (elsewhere / "kestrel.db.secrets").exists()
