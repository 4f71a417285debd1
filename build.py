#!/usr/bin/env python3
"""Build `kestrel.pyz`, a single-file zipapp that runs with `python3 kestrel.pyz`.

    python3 build.py [--output PATH] [--platform TAG --python-version X.Y]

Needs only Python 3.11+ with pip: shiv is fetched into a temporary directory when it is not
importable, and nothing is installed into the calling environment. `cryptography` ships
compiled wheels, so the zipapp runs only on the platform and Python it was built for; build for
another one with pip's `--platform` (e.g. manylinux2014_aarch64) and `--python-version`.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
# The dashboard's built assets (a later addition); wherever they sit, they must reach the wheel.
DASHBOARD_DIRS = (ROOT / "dashboard_dist", ROOT / "kestrel" / "dashboard_dist")


class BuildError(Exception):
    pass


def run(step: str, cmd: list[str], env: dict[str, str] | None = None) -> None:
    print(f"build.py: {step}", flush=True)
    if subprocess.run(cmd, env=env).returncode != 0:
        raise BuildError(f"{step} failed (see the output above)")


def shiv_command(tmp: Path) -> tuple[list[str], dict[str, str] | None]:
    """How to run shiv: the one already importable, or a private copy under `tmp`."""
    command = [sys.executable, "-m", "shiv"]
    if importlib.util.find_spec("shiv") is not None:
        return command, None
    tools = tmp / "tools"
    # --target keeps shiv out of the user's environment; pip's cache still makes it quick.
    run("installing shiv into a temporary directory",
        [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(tools), "shiv"])
    path = os.pathsep.join(p for p in (str(tools), os.environ.get("PYTHONPATH")) if p)
    return command, dict(os.environ, PYTHONPATH=path)


def _skip(directory: str, names: list[str]) -> list[str]:
    """Leave out what the wheel never needs: VCS, caches, tests, the dashboard's sources."""
    at_root = Path(directory) == ROOT
    return [n for n in names
            if n in ("__pycache__", "node_modules") or n.endswith((".pyc", ".egg-info"))
            or at_root and (n.startswith(".") or n in ("build", "dist", "tests", "dashboard")
                            or n.endswith((".pyz", ".db", ".db-wal", ".db-shm", ".secrets")))]


def build_wheel(tmp: Path) -> Path:
    """The project as a pure-Python wheel, so cross builds can use `--only-binary=:all:`.

    Built from a copy: setuptools leaves `build/` behind in the source tree, and a stale module
    there would slip into the next wheel.
    """
    source, out = tmp / "src", tmp / "wheel"
    shutil.copytree(ROOT, source, ignore=_skip)
    run("building the kestrel wheel",
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(source)])
    wheel = next(out.glob("kestrel-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        packed = any("dashboard_dist/" in name for name in zf.namelist())
    for directory in DASHBOARD_DIRS:
        if directory.is_dir() and any(p.is_file() for p in directory.rglob("*")) and not packed:
            raise BuildError(f"{directory.relative_to(ROOT)}/ exists but is not in the wheel: "
                             "declare it as package data in pyproject.toml")
    return wheel


def describe(pyz: Path, platforms: list[str], python_version: str | None) -> str:
    """What the zipapp runs on, confirmed by the tag of the cryptography wheel inside it."""
    version = python_version or f"{sys.version_info.major}.{sys.version_info.minor}"
    if "." not in version and len(version) > 1:  # pip also takes "312"
        version = f"{version[0]}.{version[1:]}"
    where = ", ".join(platforms) or f"{sys.platform} {platform.machine()}"
    with zipfile.ZipFile(pyz) as zf:
        tags = [line.split(":", 1)[1].strip()
                for name in zf.namelist()
                if name.startswith("site-packages/cryptography-") and name.endswith("/WHEEL")
                for line in zf.read(name).decode().splitlines() if line.startswith("Tag:")]
    size = pyz.stat().st_size / 1e6
    tag = f" (cryptography wheel {', '.join(tags)})" if tags else ""
    return (f"built {pyz.name} ({size:.1f} MB) for {platform.python_implementation()} {version} "
            f"on {where}{tag}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", "-o", type=Path, default=ROOT / "kestrel.pyz",
                        help="where to write the zipapp (default: kestrel.pyz in the repo)")
    parser.add_argument("--platform", action="append", default=[], metavar="TAG",
                        help="build for this pip platform tag instead of this machine")
    parser.add_argument("--python-version", metavar="X.Y",
                        help="build for this Python version instead of the running one")
    args = parser.parse_args()

    if importlib.util.find_spec("pip") is None:
        print(f"build.py: pip is not available for {sys.executable}; install it first "
              "(Debian/Ubuntu: apt install python3-pip)", file=sys.stderr)
        return 1
    output: Path = args.output.resolve()
    cross: list[str] = [f"--platform={tag}" for tag in args.platform]
    if args.python_version:
        cross.append(f"--python-version={args.python_version}")
    if cross:  # pip refuses to build sdists for a foreign target, so it must find wheels
        cross.append("--only-binary=:all:")

    try:
        with tempfile.TemporaryDirectory(prefix="kestrel-build-") as tmp_name:
            tmp = Path(tmp_name)
            shiv, env = shiv_command(tmp)
            wheel = build_wheel(tmp)
            output.parent.mkdir(parents=True, exist_ok=True)
            run("bundling kestrel and its dependencies with shiv",
                [*shiv, "--compressed", "-e", "kestrel.cli:main", "-o", str(output),
                 "-p", "/usr/bin/env python3", str(wheel), "--quiet", *cross], env)
    except BuildError as exc:
        print(f"build.py: {exc}", file=sys.stderr)
        return 1
    print(describe(output, args.platform, args.python_version))
    return 0


if __name__ == "__main__":
    sys.exit(main())
