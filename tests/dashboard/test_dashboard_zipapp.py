"""`kestrel.pyz` carries the dashboard and serves it from inside the zipapp, anywhere."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from support.process import KestrelProcess
from support.zipapp import clean_env

ROOT = Path(__file__).resolve().parents[2]


def test_zipapp_serves_the_dashboard_outside_the_checkout(
        built_pyz: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    server = KestrelProcess(elsewhere, command=[sys.executable, str(built_pyz)],
                            env={**clean_env(tmp_path / "shiv"), "PYTHONPATH": ""})
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
