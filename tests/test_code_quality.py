"""The package type-checks (mypy --strict, per pyproject) and lints clean (ruff)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=240)


def test_mypy_strict_finds_nothing() -> None:
    result = run("mypy", "kestrel")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_finds_nothing() -> None:
    result = run("ruff", "check", "kestrel", "tests", "build.py")
    assert result.returncode == 0, result.stdout + result.stderr
