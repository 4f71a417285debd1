"""`kestrel.pyz` for the tests: built once per run (xdist workers share it), and every Python
interpreter on this machine it can be tried with."""

from __future__ import annotations

import fcntl
import glob
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD_TIMEOUT = 300


@dataclass(frozen=True)
class Interpreter:
    path: str
    version: tuple[int, int]
    implementation: str

    @property
    def label(self) -> str:
        return f"{self.implementation} {self.version[0]}.{self.version[1]} ({self.path})"


def build(*args: str, cwd: Path = REPO, env: dict[str, str] | None = None
          ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(REPO / "build.py"), *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT)


@contextmanager
def _exclusive(lock: Path) -> Iterator[None]:
    with lock.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def shared_build(shared_dir: Path, name: str, *args: str) -> Path:
    """Build once for the whole run: the first worker to ask builds, the others wait for it.
    A marker says it is done (`--all` makes its folder before the first file is in it)."""
    output = shared_dir / name
    with _exclusive(shared_dir / f"{name}.lock"):
        done = shared_dir / f"{name}.built"
        if not done.exists():
            result = build(*args, "--output", str(output))
            assert result.returncode == 0, result.stdout + result.stderr
            done.touch()
    return output


def clean_env(shiv_root: Path) -> dict[str, str]:
    """The environment of a user who downloaded the file: no checkout on the path, and shiv's
    unpacked copy kept out of $HOME."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME") and not k.startswith(("SHIV_", "PYENV_"))}
    env["SHIV_ROOT"] = str(shiv_root)
    return env


_PROBE = ("import platform, sys; sys.stdout.write('%s %d %d' % "
          "(platform.python_implementation(), sys.version_info[0], sys.version_info[1]))")


def interpreters() -> list[Interpreter]:
    """Every Python on this machine, once each: pyenv's versions, then any `pythonX.Y` on PATH
    and the system's."""
    candidates = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/*/bin/python")))
    for folder in ("/usr/bin", "/usr/local/bin"):
        candidates += sorted(glob.glob(f"{folder}/python[23].*"))
    for minor in range(6, 20):
        found = shutil.which(f"python3.{minor}")
        if found and "/shims/" not in found:
            candidates.append(found)
    seen: dict[str, Interpreter] = {}
    for path in candidates:
        real = os.path.realpath(path)
        if real in seen or not os.access(real, os.X_OK) or real.endswith("-config"):
            continue
        try:
            out = subprocess.run([real, "-c", _PROBE], capture_output=True, text=True, timeout=30,
                                 env={"PATH": os.environ.get("PATH", "")})
        except (OSError, subprocess.TimeoutExpired):
            continue
        fields = out.stdout.split()
        if out.returncode == 0 and len(fields) == 3:
            seen[real] = Interpreter(real, (int(fields[1]), int(fields[2])), fields[0])
    return sorted(seen.values(), key=lambda i: (i.version, i.path))
