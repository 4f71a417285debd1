"""`build.lock` pins what pyproject.toml allows, for every platform, and one wheel per
distribution except the per-Python ones: the pins can drift from the ranges only by hand. And
`pip install .` ships the same non-Python files that build.py copies into the zipapp."""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
LOCK = json.loads((ROOT / "build.lock").read_text())
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
DEPENDENCIES = [Requirement(line) for line in PYPROJECT["project"]["dependencies"]]


def test_every_platform_pins_versions_within_pyproject_ranges() -> None:
    assert set(LOCK["targets"]) == {"linux-x86_64", "linux-aarch64", "linux-musl-x86_64",
                                    "linux-musl-aarch64", "macos-arm64", "macos-x86_64"}
    for platform, pinned in LOCK["targets"].items():
        for requirement in DEPENDENCIES:
            version = pinned["versions"].get(requirement.name)
            assert version is not None, f"{platform} bundles no {requirement.name}"
            assert requirement.specifier.contains(version), (platform, requirement, version)


def test_wheels_match_the_pinned_versions_one_each_but_per_python_ones() -> None:
    for platform, pinned in LOCK["targets"].items():
        seen: dict[str, list[str]] = {}
        for wheel, digest in pinned["wheels"].items():
            name, version, python, abi = wheel.removesuffix(".whl").split("-")[:4]
            assert pinned["versions"][name.lower()] == version, (platform, wheel)
            assert re.fullmatch(r"[0-9a-f]{64}", digest), wheel
            seen.setdefault(name, []).append(abi)
        for name, abis in seen.items():
            per_python = [abi for abi in abis if abi.startswith("cp")]
            assert len(abis) == 1 or len(per_python) == len(abis), (platform, name, abis)
            if per_python:  # one for each Python the file claims
                assert sorted(per_python) == ["cp311", "cp312", "cp313", "cp314", "cp315"], abis


def test_package_data_declares_every_file_the_zipapp_carries() -> None:
    """build.py copies `kestrel/` and `dashboard_dist/` from the tree; a wheel holds only the
    data files pyproject declares, so an undeclared one would be missing after `pip install .`."""
    declared = PYPROJECT["tool"]["setuptools"]["package-data"]
    for top in ("kestrel", "dashboard_dist"):
        for path in (ROOT / top).rglob("*"):
            if not path.is_file() or path.suffix in (".py", ".pyc"):
                continue
            package = path.parent.relative_to(ROOT).as_posix().replace("/", ".")
            while package not in declared and "." in package:  # the nearest declaring package
                package = package.rsplit(".", 1)[0]
            relative = path.relative_to(ROOT / package.replace(".", "/")).as_posix()
            patterns = declared.get(package, [])
            assert any(fnmatch.fnmatch(relative, p) for p in patterns), relative
