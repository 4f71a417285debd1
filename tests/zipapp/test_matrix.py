"""`build.py --all`: one file per platform, each checked by what it holds, since no machine here
runs macOS, musl or aarch64. And two builds of one commit are the same bytes.

The expectations are the issue's, written out here, not read back from build.py.
"""

from __future__ import annotations

import ast
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import pytest

import kestrel
from kestrel.zipapp_guard import gather_facts, platform_key

from support.zipapp import REPO, build, clean_env

VERSION = kestrel.__version__
PYTHONS = [(3, 11), (3, 12), (3, 13), (3, 14)]  # at least these, each with its compiled modules
# platform → (suffix of a version-specific extension module, the tags' floor family, its arch)
PLATFORMS = {
    "linux-x86_64": ("x86_64-linux-gnu", "manylinux", "x86_64"),
    "linux-aarch64": ("aarch64-linux-gnu", "manylinux", "aarch64"),
    "linux-musl-x86_64": ("x86_64-linux-musl", "musllinux", "x86_64"),
    "linux-musl-aarch64": ("aarch64-linux-musl", "musllinux", "aarch64"),
    "macos-arm64": ("darwin", "macosx", "arm64"),
    "macos-x86_64": ("darwin", "macosx", "x86_64"),
}
# The floors the README states; the glibc one must be at most the 2.28.
FLOORS = {"manylinux": (2, 17), "musllinux": (1, 2), "macosx-arm64": (11, 0),
          "macosx-x86_64": (10, 15)}
LEGACY_MANYLINUX = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
HERE = platform_key(gather_facts())  # the platform of this machine, and of the default file
MODULE = re.compile(r"site-packages/(?:.*/)?[^/]+?\.(?:cpython-3(\d+)-([\w-]+)|abi3)\.so$")


def target_of(archive: zipfile.ZipFile) -> dict[str, Any]:
    """The target build.py wrote into `__main__.py` for the guard."""
    call = re.search(r"_kestrel_guard\.check\((\{.*\})\)", archive.read("__main__.py").decode())
    assert call, "the file does not start with its guard"
    target: dict[str, Any] = ast.literal_eval(call.group(1))
    return target


def tag_floor(platform_tag: str) -> tuple[str, str, tuple[int, int]] | None:
    """('manylinux', 'x86_64', (2, 17)) from `manylinux2014_x86_64`; None for `any`."""
    if platform_tag == "any":
        return None
    for alias, floor in LEGACY_MANYLINUX.items():
        if platform_tag.startswith(alias + "_"):
            return "manylinux", platform_tag.removeprefix(alias + "_"), floor
    family, major, minor, arch = re.fullmatch(r"(\w+?)_(\d+)_(\d+)_(\w+)", platform_tag).groups()
    return family, arch, (int(major), int(minor))


def test_the_matrix_has_every_platform_and_checksums(built_matrix: Path) -> None:
    names = {f"kestrel-{VERSION}-{platform}.pyz" for platform in PLATFORMS}
    assert {p.name for p in built_matrix.iterdir()} == names | {"SHA256SUMS"}
    sums = (built_matrix / "SHA256SUMS").read_text().splitlines()
    assert sorted(line.split("  ")[1] for line in sums) == sorted(names)
    for line in sums:
        digest, name = line.split("  ")
        assert hashlib.sha256((built_matrix / name).read_bytes()).hexdigest() == digest, name
    if shutil.which("sha256sum"):  # what the README tells users to run
        check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=built_matrix,
                               capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.parametrize("platform", PLATFORMS)
def test_each_file_holds_every_compiled_module_it_needs_within_its_floor(
        built_matrix: Path, platform: str) -> None:
    suffix, family, arch = PLATFORMS[platform]
    pyz = built_matrix / f"kestrel-{VERSION}-{platform}.pyz"
    with zipfile.ZipFile(pyz) as archive:
        names = archive.namelist()
        target = target_of(archive)
        claimed = [tuple(p) for p in target["pythons"]]
        assert target["name"] == platform
        assert set(PYTHONS) <= set(claimed), claimed

        modules = [MODULE.match(name) for name in names if name.endswith(".so")]
        assert all(modules), [n for n in names if n.endswith(".so")]
        for found in filter(None, modules):
            if found.group(1):  # built for one Python: one the file claims, this platform's
                assert (3, int(found.group(1))) in claimed and found.group(2) == suffix, found[0]
        for version in claimed:
            backend = f"site-packages/_cffi_backend.cpython-3{version[1]}-{suffix}.so"
            assert backend in names, f"{platform} claims Python {version} but lacks {backend}"
        assert "site-packages/cryptography/hazmat/bindings/_rust.abi3.so" in names

        floor = FLOORS.get(f"{family}-{arch}", FLOORS.get(family))
        assert floor is not None and tuple(target["floor"]) == floor
        tags = [line.removeprefix("Tag: ") for name in names if name.endswith(".dist-info/WHEEL")
                for line in archive.read(name).decode().splitlines() if line.startswith("Tag:")]
        assert any(tag.endswith("-any") for tag in tags) and len(tags) > 10, tags
        for tag in tags:
            python, abi, platforms = tag.split("-")
            if abi == "abi3":
                assert (3, int(python.removeprefix("cp3"))) <= min(claimed), tag
            elif abi != "none":
                assert abi == python and (3, int(abi.removeprefix("cp3"))) in claimed, tag
            for platform_tag in platforms.split("."):
                parsed = tag_floor(platform_tag)
                if parsed is None:
                    continue
                tag_family, tag_arch, tag_version = parsed
                assert tag_family == family, tag
                assert tag_arch == arch or (family == "macosx" and tag_arch == "universal2"), tag
                assert tag_version <= floor, f"{tag} is above the {platform} floor {floor}"


def glibc_versions_needed(library: bytes) -> list[tuple[int, ...]]:
    """The GLIBC_x.y symbol versions a shared library asks for, read by binutils."""
    with tempfile.NamedTemporaryFile(suffix=".so") as handle:
        handle.write(library)
        handle.flush()
        listing = subprocess.run(["readelf", "--version-info", "--wide", handle.name],
                                 capture_output=True, text=True, check=True).stdout
    return sorted({tuple(map(int, v.split("."))) for v in re.findall(r"GLIBC_([\d.]+)", listing)})


def test_the_glibc_floor_holds_for_the_code_inside_not_only_the_tags(
        built_matrix: Path) -> None:
    """Tags are the wheels' claims: the symbol versions are what the loader will demand."""
    pyz = built_matrix / f"kestrel-{VERSION}-linux-x86_64.pyz"
    with zipfile.ZipFile(pyz) as archive:
        libraries = [n for n in archive.namelist() if n.endswith(".so")]
        assert len(libraries) >= 5
        for name in libraries:
            needed = glibc_versions_needed(archive.read(name))
            assert needed and max(needed) <= FLOORS["manylinux"], (name, needed[-1:])


def test_the_default_file_is_the_matrix_file_for_this_machine(
        built_pyz: Path, built_matrix: Path) -> None:
    """Two builds, apart in time, folder and file name: the same bytes."""
    assert built_pyz.stat().st_size <= 8_000_000, "the goal is a default file of at most 8 MB"
    assert built_pyz.read_bytes() == (built_matrix / f"kestrel-{VERSION}-{HERE}.pyz").read_bytes()


def test_two_builds_in_a_row_are_identical_and_say_their_sha256(
        built_pyz: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "cwd"
    (elsewhere / "tmp").mkdir(parents=True)
    again = elsewhere / "renamed.pyz"
    result = build("--output", str(again), cwd=elsewhere,
                   env={**os.environ, "TMPDIR": str(elsewhere / "tmp")})
    assert result.returncode == 0, result.stdout + result.stderr
    digest = hashlib.sha256(again.read_bytes()).hexdigest()
    assert f"sha256 {digest}" in result.stdout.splitlines()
    assert digest == hashlib.sha256(built_pyz.read_bytes()).hexdigest()
    with zipfile.ZipFile(again) as archive:  # no path of the building machine inside
        for name in archive.namelist():
            data = archive.read(name)
            assert str(REPO).encode() not in data and str(tmp_path).encode() not in data, name


# This machine's own file serves: test_pythons.py starts it under every Python here.
@pytest.mark.parametrize("platform", [p for p in PLATFORMS if p != HERE])
def test_a_file_for_another_platform_names_the_one_to_get(
        built_matrix: Path, platform: str, tmp_path: Path) -> None:
    pyz = built_matrix / f"kestrel-{VERSION}-{platform}.pyz"
    result = subprocess.run([sys.executable, str(pyz), "--version"], cwd=tmp_path,
                            env=clean_env(tmp_path / "shiv"), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2 and result.stdout == "", result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith(f"{pyz.name} needs CPython 3.11 to "), result.stderr
    assert result.stderr.rstrip().endswith(f"get kestrel-{VERSION}-{HERE}.pyz instead."), \
        result.stderr
    assert not (tmp_path / "shiv").exists()
