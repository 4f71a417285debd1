"""`kestrel.pyz` carries the dashboard and serves it from inside the zipapp, anywhere."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from support.process import KestrelProcess

ROOT = Path(__file__).resolve().parents[2]


def test_zipapp_serves_the_dashboard_outside_the_checkout(tmp_path: Path) -> None:
    pyz = tmp_path / "kestrel.pyz"
    build = subprocess.run([sys.executable, str(ROOT / "build.py"), "--output", str(pyz)],
                           capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stdout + build.stderr

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("SHIV_")}
    server = KestrelProcess(elsewhere, command=[sys.executable, str(pyz)],
                            env={**env, "SHIV_ROOT": str(tmp_path / "shiv"), "PYTHONPATH": ""})
    index = (ROOT / "dashboard_dist" / "index.html").read_bytes()
    with server, server.client() as client:
        page = client.get("/app/logs")
        assert page.status_code == 200 and page.content == index
        for asset in re.findall(r'(?:src|href)="(/app/assets/[^"]+)"', index.decode()):
            answer = client.get(asset)
            assert answer.status_code == 200, asset
            assert answer.headers["cache-control"] == "public, max-age=31536000, immutable"
            assert answer.content == (ROOT / "dashboard_dist" / asset.removeprefix("/app/")) \
                .read_bytes()
