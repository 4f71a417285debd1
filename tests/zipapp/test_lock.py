"""`build.lock` pins what pyproject.toml allows, for every platform, and one wheel per
distribution except the per-Python ones: the pins can drift from the ranges only by hand."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
LOCK = json.loads((ROOT / "build.lock").read_text())
DEPENDENCIES = [Requirement(line) for line in
                tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]]


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
