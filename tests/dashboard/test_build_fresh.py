"""`dashboard_dist/` is the build of the sources in `dashboard/`, not of some older version.

The hash is computed here exactly as `dashboard/scripts/stamp.mjs` computes it at build time:
over the files the build reads (sorted by path), each as `path NUL sha256(content) LF`.
"""

from __future__ import annotations

import gzip
import hashlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ROOT / "dashboard"
DIST = ROOT / "dashboard_dist"

FILES = ("index.html", "package.json", "package-lock.json", "tsconfig.json", "vite.config.ts")
DIRS = ("src", "public", "scripts")

# The budget for the first load: everything index.html pulls in, gzipped.
FIRST_LOAD_BUDGET = 300 * 1024


def source_hash() -> str:
    paths = [SOURCES / name for name in FILES]
    for directory in DIRS:
        paths += [p for p in (SOURCES / directory).rglob("*") if p.is_file()]
    digest = hashlib.sha256()
    for rel in sorted(p.relative_to(SOURCES).as_posix() for p in paths):
        content = hashlib.sha256((SOURCES / rel).read_bytes()).hexdigest()
        digest.update(f"{rel}\0{content}\n".encode())
    return digest.hexdigest()


def test_build_matches_the_sources() -> None:
    recorded = (DIST / "source-hash.txt").read_text().strip()
    assert recorded == source_hash(), (
        "dashboard/ changed since dashboard_dist/ was built: "
        "run `cd dashboard && npm ci && npm run build` and commit dashboard_dist/")


def test_build_is_complete_and_small() -> None:
    index = (DIST / "index.html").read_text()
    assert (DIST / "__init__.py").is_file()
    loaded = re.findall(r'(?:src|href)="/app/([^"]+)"', index)
    assert loaded, index
    total = len(gzip.compress(index.encode()))
    for name in loaded:
        path = DIST / name
        assert path.is_file(), f"index.html loads {name}, which the build does not have"
        total += len(gzip.compress(path.read_bytes()))
    assert total < FIRST_LOAD_BUDGET, f"first load is {total / 1024:.0f} KB gzipped"
    # No request to another host: no absolute URL in what the page loads.
    assert not re.search(r'(?:src|href)="(?:https?:)?//', index)
