"""What `kestrel.pyz` costs: its size by distribution, the import time each adds to a start, the
size of every platform's file, and how long it takes from `python3 kestrel.pyz` to a served
`/health`, first start (shiv unpacks the file) and later starts.

    python3 bench/zipapp.py                              # build, then measure with this Python
    python3 bench/zipapp.py --python python3.12 --python python3.13 --runs 9 --matrix

The machine is shared: the load average is printed before and after; rerun when it was above 0.5.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from collections import Counter
from pathlib import Path

from machine import REPO_DIR, describe_machine
from procs import free_port

# Which distribution a top-level name in the file belongs to.
OWNERS = {"_cffi_backend": "cffi", "dashboard_dist": "kestrel (dashboard)", "_bootstrap": "shiv",
          "environment.json": "shiv", "__main__.py": "guard", "_kestrel_guard.py": "guard"}


def owner(name: str) -> str:
    top = name.removeprefix("site-packages/").split("/")[0]
    top = re.split(r"[-.]", top)[0] if top not in OWNERS else top
    return OWNERS.get(top, top)


def sizes(pyz: Path) -> None:
    packed, raw = Counter[str](), Counter[str]()
    with zipfile.ZipFile(pyz) as archive:
        for info in archive.infolist():
            packed[owner(info.filename)] += info.compress_size
            raw[owner(info.filename)] += info.file_size
    print(f"\n{pyz.name}: {pyz.stat().st_size / 1e6:.2f} MB\n")
    print("| part | in the file (kB) | unpacked (kB) |\n|---|--:|--:|")
    for name, size in packed.most_common():
        print(f"| {name} | {size / 1e3:,.0f} | {raw[name] / 1e3:,.0f} |")


def start_to_health(python: str, pyz: Path, shiv_root: Path, *flags: str) -> tuple[float, str]:
    """Seconds from exec to a 200 on /health, and what the process wrote on stderr."""
    workdir = Path(tempfile.mkdtemp(prefix="kestrel-start-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env.update(SHIV_ROOT=str(shiv_root), PORT=str(port), LOG_LEVEL="warning")
    began = time.perf_counter()
    proc = subprocess.Popen([python, *flags, str(pyz)], cwd=workdir, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    answered = False
    try:
        while not answered and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                    answered = r.status == 200
            except OSError:
                time.sleep(0.005)
        elapsed = time.perf_counter() - began
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)
    if not answered:
        raise SystemExit(f"{python} {pyz} exited with {proc.returncode}: {stderr}")
    return elapsed, stderr


def start_times(pythons: list[str], pyz: Path, runs: int) -> None:
    print("\n| Python | first start, median (max) | later starts, median (max) |\n|---|--:|--:|")
    for python in pythons:
        first, later = [], []
        for _ in range(runs):
            root = Path(tempfile.mkdtemp(prefix="kestrel-shiv-"))
            first.append(start_to_health(python, pyz, root)[0])
            later.append(start_to_health(python, pyz, root)[0])
            shutil.rmtree(root, ignore_errors=True)
        version = subprocess.run(
            [python, "-c", "import platform; print(platform.python_version())"],
            capture_output=True, text=True).stdout.strip()
        print(f"| {version} | {statistics.median(first) * 1e3:.0f} ms ({max(first) * 1e3:.0f}) "
              f"| {statistics.median(later) * 1e3:.0f} ms ({max(later) * 1e3:.0f}) |")


def import_times(python: str, pyz: Path) -> None:
    """Self time of every import in a start (`-X importtime`), summed by distribution."""
    root = Path(tempfile.mkdtemp(prefix="kestrel-shiv-"))
    start_to_health(python, pyz, root)  # unpack and compile first: count imports, not that
    _, stderr = start_to_health(python, pyz, root, "-X", "importtime")
    shutil.rmtree(root, ignore_errors=True)
    spent = Counter[str]()
    for line in stderr.splitlines():
        found = re.match(r"import time:\s+(\d+) \|\s+\d+ \|\s*(\S+)", line)
        if found:
            top = found.group(2).split(".")[0]
            spent[owner(top) if top not in sys.stdlib_module_names else "stdlib"] += int(
                found.group(1))
    print(f"\nimport time by distribution in one later start ({python}):\n")
    print("| part | ms |\n|---|--:|")
    for name, micros in spent.most_common():
        print(f"| {name} | {micros / 1e3:.1f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--pyz", type=Path, help="measure this file instead of building one")
    parser.add_argument("--python", action="append", help="an interpreter to start it with "
                        "(repeat; default: this one)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--matrix", action="store_true", help="also build and size every "
                        "platform's file")
    args = parser.parse_args()
    print("\n".join(describe_machine()))
    with tempfile.TemporaryDirectory(prefix="kestrel-bench-") as tmp:
        pyz = args.pyz.resolve() if args.pyz else None
        if pyz is None:
            pyz = Path(tmp) / "kestrel.pyz"
            subprocess.run([sys.executable, str(REPO_DIR / "build.py"), "-o", str(pyz)],
                           check=True, stdout=subprocess.DEVNULL)
        sizes(pyz)
        if args.matrix:
            dist = Path(tmp) / "dist"
            subprocess.run([sys.executable, str(REPO_DIR / "build.py"), "--all", "-o", str(dist)],
                           check=True, stdout=subprocess.DEVNULL)
            print("\n| platform file | MB |\n|---|--:|")
            for path in sorted(dist.glob("*.pyz")):
                print(f"| {path.name} | {path.stat().st_size / 1e6:.2f} |")
        pythons = args.python or [sys.executable]
        load = os.getloadavg()[0]
        start_times(pythons, pyz, args.runs)
        import_times(pythons[0], pyz)
        print(f"\nload average (1 min): {load:.2f} before the timings, "
              f"{os.getloadavg()[0]:.2f} after")
    return 0


if __name__ == "__main__":
    sys.exit(main())
