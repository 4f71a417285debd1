#!/usr/bin/env python3
"""Build `kestrel.pyz`, a single-file zipapp that runs with `python3 kestrel.pyz`.

    python3 build.py                   kestrel.pyz for this machine's platform
    python3 build.py --platform NAME   one file for another platform (see --help for the names)
    python3 build.py --all             dist/: a file for every platform, and SHA256SUMS
    python3 build.py --lock            re-pin build.lock to the newest wheels the index offers

One file serves every CPython from 3.11 to 3.15: pure-Python code is shared, and the one compiled
module built per Python version (cffi's `_cffi_backend`) is bundled once per version, side by side,
since its file name carries the ABI tag. `cryptography` is a stable-ABI (`abi3`) wheel that any of
them loads. Wheels come from the package index with pip, pinned by hash in `build.lock`, for the
oldest C library each platform's wheels support; nothing is compiled here.

Two builds of one commit are byte-identical: entries sorted, times taken from the commit
(or SOURCE_DATE_EPOCH), fixed modes, and no path of the building machine inside.
Needs Python 3.11+ with pip; shiv's runtime comes from its pinned wheel, not from the
calling environment.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from kestrel import __version__
from kestrel.zipapp_guard import describe_target, gather_facts, platform_key

ROOT = Path(__file__).resolve().parent
LOCK = ROOT / "build.lock"
GUARD_SOURCE = ROOT / "kestrel" / "zipapp_guard.py"
ENTRY_POINT = "kestrel.cli:main"
SHIV = "shiv==1.0.8"
PYTHONS = ((3, 11), (3, 12), (3, 13), (3, 14), (3, 15))

# What the file carries besides Kestrel: only distributions Kestrel imports. httpcore is httpx's
# default transport, which `kestrel accounts login` uses; certifi is the CA bundle of every TLS
# connection Kestrel opens; pg8000 is the PostgreSQL driver (DATABASE_URL), with scramp (SCRAM
# authentication), asn1crypto (scramp's certificate parsing) and python-dateutil (imported by
# pg8000's converters), all pure Python.
BUNDLED = ("asn1crypto", "certifi", "cffi", "cryptography", "h11", "httpcore", "httpx", "idna",
           "pg8000", "python_dateutil", "scramp")
# Installed by pip as dependencies, never imported by Kestrel (measured with `-X importtime`
# over a start, proxied requests and a login): anyio and sniffio serve httpcore's async
# transport, which Kestrel replaces with its own; pycparser only compiles cffi modules at build
# time; typing_extensions is for Pythons older than any this file runs on; tzdata serves
# dateutil's time zones by name, which pg8000 never asks for (Kestrel stores epoch seconds).
DROPPED = ("anyio", "pycparser", "sniffio", "typing_extensions", "tzdata")


class BuildError(Exception):
    pass


@dataclass(frozen=True)
class Target:
    """A platform one file is built for, and the oldest system its wheels accept."""

    name: str
    os: str
    machine: str
    libc: str | None
    floor: tuple[int, int]
    constraints: tuple[str, ...] = ()  # extra pins for --lock

    def pip_platforms(self) -> list[str]:
        """Every platform tag up to the floor: pip matches only the tags it is given, so a
        partial list lets it fall back to another release (a pre-release, once) or fail."""
        arch, (major, minor) = self.machine, self.floor
        if self.libc == "glibc":
            tags = [f"manylinux_{major}_{m}_{arch}" for m in range(5, minor + 1)]
            legacy = {"manylinux1": 5, "manylinux2010": 12, "manylinux2014": 17}
            return tags + [f"{alias}_{arch}" for alias, m in legacy.items() if m <= minor]
        if self.libc == "musl":
            return [f"musllinux_{major}_{m}_{arch}" for m in range(minor + 1)]
        releases = [(10, m) for m in range(9, 16)] + [(v, 0) for v in range(11, major + 1)]
        allowed = [(v, m) for v, m in releases if (v, m) <= self.floor]
        native = [f"macosx_{v}_{m}_{arch}" for v, m in allowed if arch == "x86_64" or v >= 11]
        return native + [f"macosx_{v}_{m}_universal2" for v, m in allowed]

    def guard(self, version: str) -> dict[str, object]:
        """What the zipapp's guard compares the running machine with."""
        return {"kestrel": version, "name": self.name, "os": self.os, "machine": self.machine,
                "libc": self.libc, "floor": list(self.floor),
                "pythons": [list(p) for p in PYTHONS], "matrix": list(TARGETS)}


TARGETS = {t.name: t for t in (
    Target("linux-x86_64", "linux", "x86_64", "glibc", (2, 17)),
    Target("linux-aarch64", "linux", "aarch64", "glibc", (2, 17)),
    Target("linux-musl-x86_64", "linux", "x86_64", "musl", (1, 2)),
    Target("linux-musl-aarch64", "linux", "aarch64", "musl", (1, 2)),
    Target("macos-arm64", "darwin", "arm64", None, (11, 0)),
    # cryptography 49 stopped publishing Intel macOS wheels; 48.0.1 is the last that has them.
    Target("macos-x86_64", "darwin", "x86_64", None, (10, 15), ("cryptography<49",)),
)}


def host_target() -> Target:
    """This machine's platform, detected by the same code the zipapp's guard runs."""
    key = platform_key(gather_facts())
    if key is None:
        raise BuildError("no file is built for this platform; pick one with --platform")
    return TARGETS[key]


def pip(step: str, *args: str) -> None:
    result = subprocess.run([sys.executable, "-m", "pip", *args, "--quiet",
                             "--disable-pip-version-check"], capture_output=True, text=True)
    if result.returncode != 0:
        raise BuildError(f"{step} failed:\n{result.stdout}{result.stderr}")


def pip_download(step: str, dest: Path, target: Target, python: tuple[int, int],
                 args: Iterable[str]) -> None:
    tag = f"cp{python[0]}{python[1]}"
    platforms = [f"--platform={p}" for p in target.pip_platforms()]
    pip(step, "download", "--only-binary=:all:", "--implementation=cp",
        f"--python-version={python[0]}.{python[1]}", f"--abi={tag}", "--abi=abi3",
        "--abi=none", *platforms, "--dest", str(dest), *args)


def dist_of(wheel: str) -> tuple[str, str]:
    """(normalised distribution name, version) from a wheel's file name."""
    name, version = wheel.split("-")[:2]
    return name.lower().replace(".", "_").replace("-", "_"), version


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- fetching the pinned wheels ---------------------------------------------------------------

def read_lock() -> dict[str, object]:
    try:
        lock: dict[str, object] = json.loads(LOCK.read_text())
    except (OSError, ValueError) as exc:
        raise BuildError(f"cannot read {LOCK.name}: {exc}; run `python3 build.py --lock`") from None
    return lock


def per_python(wheel: str) -> bool:
    """Whether a wheel serves one CPython version only (`cp312-cp312`), not every one (`abi3`,
    pure). The file carries one of those per version, and one wheel of every other kind: the
    one for the oldest Python, which the newer ones load too."""
    return wheel.split("-")[-2].startswith("cp")


def fetch(target: Target, cache: Path, lock: dict[str, object]) -> list[Path]:
    """The wheels the lock pins for `target`, every Python's, checked against their hashes."""
    pinned = lock["targets"]
    if not isinstance(pinned, dict) or target.name not in pinned:
        raise BuildError(f"{LOCK.name} has no wheels for {target.name}: run --lock")
    wheels: dict[str, str] = pinned[target.name]["wheels"]
    hashes: dict[str, list[str]] = {}
    for wheel, digest in wheels.items():
        hashes.setdefault("==".join(dist_of(wheel)), []).append(digest)
    varying = {"==".join(dist_of(w)) for w in wheels if per_python(w)}

    def requirements(name: str, pins: Iterable[str]) -> list[str]:
        path = cache / f"{target.name}-{name}.txt"
        path.write_text("".join(
            f"{pin} " + " ".join(f"--hash=sha256:{h}" for h in hashes[pin]) + "\n"
            for pin in sorted(pins)))
        return ["--no-deps", "--require-hashes", "-r", str(path)]

    every, varying_only = requirements("all", hashes), requirements("per-python", varying)
    got = {p.name: p for p in downloads(target, cache, {
        python: every if python == PYTHONS[0] else varying_only for python in PYTHONS})}
    if set(got) != set(wheels):
        raise BuildError(f"the index offered {sorted(set(got) - set(wheels))} instead of "
                         f"{sorted(set(wheels) - set(got))} for {target.name}: run --lock")
    return [got[name] for name in sorted(got)]


def downloads(target: Target, cache: Path,
              jobs: dict[tuple[int, int], list[str]]) -> list[Path]:
    """`pip download` once per Python (pip takes one version a call), two at a time, each into
    its own folder so that no two write one file."""
    def one(python: tuple[int, int]) -> list[Path]:
        dest = cache / target.name / f"{python[0]}.{python[1]}"
        pip_download(f"fetching the wheels for {target.name}, Python {python[0]}.{python[1]}",
                     dest, target, python, jobs[python])
        return sorted(dest.glob("*.whl"))

    with ThreadPoolExecutor(max_workers=2) as pool:
        return [wheel for wheels in pool.map(one, jobs) for wheel in wheels]


def fetch_shiv(cache: Path, lock: dict[str, object]) -> Path:
    pinned = lock["shiv"]
    assert isinstance(pinned, dict)
    requirement = cache / "shiv.txt"
    requirement.write_text(f"{SHIV} --hash=sha256:{pinned['sha256']}\n")
    pip("fetching shiv", "download", "--no-deps", "--only-binary=:all:", "--require-hashes",
        "-r", str(requirement), "--dest", str(cache / "shiv"))
    return next((cache / "shiv").glob("shiv-*.whl"))


# --- what goes into the file ------------------------------------------------------------------

def wanted(path: str) -> bool:
    """Files of the bundled wheels that can run: not cffi's compiler (only its compiled
    `_cffi_backend` loads), type stubs, or pip's install record (the contents change here)."""
    top = path.split("/", 1)[0]
    return not (top == "cffi" or path.endswith((".pyi", "/py.typed", ".dist-info/RECORD")))


def unpack(wheels: list[Path]) -> dict[str, bytes]:
    """site-packages as {path: content}. The same distribution for several Pythons unpacks
    to the same files but one `_cffi_backend` per Python; its WHEEL lists every tag."""
    files: dict[str, bytes] = {}
    tags: dict[str, set[str]] = {}
    for wheel in wheels:
        dist, _ = dist_of(wheel.name)
        if dist not in BUNDLED:
            raise BuildError(f"{wheel.name} is neither bundled nor dropped: decide in build.py")
        with zipfile.ZipFile(wheel) as archive:
            for info in archive.infolist():
                path = info.filename
                if ".data/" in path.split("/", 1)[0] + "/":  # name.data/purelib/x → x
                    kind, _, path = path.split("/", 1)[1].partition("/")
                    if kind not in ("purelib", "platlib"):
                        continue
                if info.is_dir() or not wanted(path):
                    continue
                data = archive.read(info)
                if path.endswith(".dist-info/WHEEL"):
                    lines = data.decode().splitlines()
                    tags.setdefault(path, set()).update(x for x in lines if x.startswith("Tag:"))
                    rest = [x for x in lines if x and not x.startswith("Tag:")]
                    data = "".join(f"{x}\n" for x in rest).encode()
                if files.setdefault(path, data) != data:
                    raise BuildError(f"{path} differs between the wheels of {dist}")
    for path, found in tags.items():
        files[path] += "".join(f"{tag}\n" for tag in sorted(found)).encode()
    return files


def kestrel_files() -> dict[str, bytes]:
    """Kestrel's package and the dashboard's build, straight from the tree: the same files the
    wheel declares, with no build backend's version stamped into them."""
    files: dict[str, bytes] = {}
    for top in ("kestrel", "dashboard_dist"):
        for path in sorted((ROOT / top).rglob("*")):
            rel = path.relative_to(ROOT).as_posix()
            if path.is_file() and "__pycache__" not in rel and path != GUARD_SOURCE:
                files[rel] = path.read_bytes()
    return files


def source_epoch() -> int:
    """The time every entry carries: SOURCE_DATE_EPOCH, else the commit's, else 1980."""
    if "SOURCE_DATE_EPOCH" in os.environ:
        return int(os.environ["SOURCE_DATE_EPOCH"])
    try:  # a tarball of the source, or a box without git, builds as of 1980
        commit = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%ct"],
                                capture_output=True, text=True)
    except OSError:
        return 0
    return int(commit.stdout) if commit.returncode == 0 and commit.stdout.strip() else 0


@dataclass(frozen=True)
class Sources:
    """What every platform's file shares, gathered once per command: the lock, shiv's pinned
    wheel, Kestrel's own files and the time the entries carry."""

    lock: dict[str, object]
    shiv_wheel: Path
    kestrel: dict[str, bytes]
    epoch: int

    @classmethod
    def gather(cls, cache: Path) -> Sources:
        lock = read_lock()
        shiv_wheel = fetch_shiv(cache, lock)
        sys.path.insert(0, str(shiv_wheel))  # pure Python: importable from the wheel as it is
        return cls(lock, shiv_wheel, kestrel_files(),
                   max(source_epoch(), 315532800))  # zip times start in 1980


def write_zipapp(output: Path, site_packages: dict[str, bytes], sources: Sources,
                 target: Target) -> None:
    from shiv.bootstrap.environment import Environment  # type: ignore[import-untyped]

    content = hashlib.sha256()
    for path in sorted(site_packages):
        content.update(site_packages[path] + path.encode())
    environment = Environment(
        built_at=time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(sources.epoch)),
        shiv_version=SHIV.split("==")[1],
        build_id=content.hexdigest(), entry_point=ENTRY_POINT, compile_pyc=False,
        reproducible=True)
    entries = {f"site-packages/{path}": data for path, data in site_packages.items()}
    with zipfile.ZipFile(sources.shiv_wheel) as wheel:
        for name in wheel.namelist():
            if name.startswith("shiv/bootstrap/") and name.endswith(".py"):
                entries["_bootstrap/" + name.removeprefix("shiv/bootstrap/")] = wheel.read(name)
    entries["environment.json"] = environment.to_json().encode()
    entries["_kestrel_guard.py"] = GUARD_SOURCE.read_bytes()
    # Runs on any Python, like the guard: a dict's repr is a literal for all of them.
    entries["__main__.py"] = (
        "# -*- coding: utf-8 -*-\n"
        f"import _kestrel_guard\n_kestrel_guard.check({target.guard(__version__)!r})\n"
        "import _bootstrap\n_bootstrap.bootstrap()\n").encode()
    stamp = time.gmtime(sources.epoch)[:6]
    partial = output.with_name(output.name + ".part")
    with partial.open("wb") as fd:
        fd.write(b"#!/usr/bin/env python3\n")
        with zipfile.ZipFile(fd, "w") as archive:
            for name in sorted(entries):
                info = zipfile.ZipInfo(name, stamp)
                info.create_system = 3  # Unix, whatever builds it, so the modes below apply
                info.external_attr = (0o100755 if name.endswith(".so") else 0o100644) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, entries[name], compresslevel=9)
    partial.chmod(0o755)
    partial.replace(output)


# --- the commands -----------------------------------------------------------------------------

def build(target: Target, output: Path, cache: Path, sources: Sources) -> str:
    """Write the file for `target`; its SHA-256."""
    site_packages = unpack(fetch(target, cache, sources.lock))
    site_packages.update(sources.kestrel)
    write_zipapp(output, site_packages, sources, target)
    digest = sha256(output)
    print(f"built {output.name} ({output.stat().st_size / 1e6:.1f} MB) for "
          f"{describe_target(target.guard(__version__))}\nsha256 {digest}", flush=True)
    return digest


def build_matrix(directory: Path, cache: Path, sources: Sources) -> None:
    """Every platform's file and a SHA256SUMS that `sha256sum -c` reads."""
    directory.mkdir(parents=True, exist_ok=True)
    sums = []
    for target in TARGETS.values():
        name = f"kestrel-{__version__}-{target.name}.pyz"
        sums.append(f"{build(target, directory / name, cache, sources)}  {name}\n")
    (directory / "SHA256SUMS").write_text("".join(sorted(sums, key=lambda line: line[66:])))
    print(f"wrote {len(sums)} files and SHA256SUMS to {directory}")


def lock(cache: Path) -> None:
    """Pin, for every platform, the newest wheels within pyproject.toml's ranges."""
    import tomllib  # 3.11+, like the rest: main() said so already on older Pythons

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    targets: dict[str, object] = {}
    for target in TARGETS.values():
        requested = [*project["dependencies"], *target.constraints]
        resolved = downloads(target, cache / "resolved", dict.fromkeys(PYTHONS, requested))
        oldest = f"{PYTHONS[0][0]}.{PYTHONS[0][1]}"
        versions: dict[str, str] = {}
        pinned: dict[str, str] = {}
        for wheel in resolved:
            dist, version = dist_of(wheel.name)
            if dist in DROPPED or not (per_python(wheel.name) or wheel.parent.name == oldest):
                continue
            if dist not in BUNDLED:
                raise BuildError(f"a dependency now needs {dist}: bundle or drop it in build.py")
            if versions.setdefault(dist, version) != version:
                raise BuildError(f"{dist} resolves to {versions[dist]} and {version} on "
                                 f"{target.name}: pin one in the target's constraints")
            pinned[wheel.name] = sha256(wheel)
        targets[target.name] = {"versions": dict(sorted(versions.items())),
                                "wheels": dict(sorted(pinned.items()))}
        print(f"pinned {target.name}: "
              + ", ".join(f"{dist} {version}" for dist, version in sorted(versions.items())))
    pip("fetching shiv", "download", "--no-deps", "--only-binary=:all:", SHIV,
        "--dest", str(cache / "shiv"))
    shiv = next((cache / "shiv").glob("shiv-*.whl"))
    LOCK.write_text(json.dumps({
        "about": "The wheels kestrel.pyz bundles, per platform, pinned by SHA-256. "
                 "Written by `python3 build.py --lock`; read by every build.",
        "shiv": {"wheel": shiv.name, "sha256": sha256(shiv)},
        "targets": targets,
    }, indent=1) + "\n")
    print(f"wrote {LOCK.name}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        epilog="platforms: " + ", ".join(
            f"{t.name} ({t.libc or 'macOS'} {'.'.join(map(str, t.floor))}+)"
            for t in TARGETS.values()))
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--platform", choices=list(TARGETS), metavar="NAME",
                      help="build for this platform instead of this machine's")
    what.add_argument("--all", action="store_true",
                      help="build every platform's file into dist/ with SHA256SUMS")
    what.add_argument("--lock", action="store_true",
                      help="pin build.lock to the newest wheels within pyproject.toml's ranges")
    parser.add_argument("--output", "-o", type=Path,
                        help="the file to write (default kestrel.pyz), or with --all the "
                        "folder (default dist/)")
    args = parser.parse_args(argv)

    if sys.version_info < (3, 11):  # noqa: UP036 (a user may run it with any python3)
        print(f"build.py: needs Python 3.11 or newer; this is {sys.version.split()[0]}",
              file=sys.stderr)
        return 2
    if importlib.util.find_spec("pip") is None:
        print(f"build.py: pip is not available for {sys.executable}; install it first "
              "(Debian/Ubuntu: apt install python3-pip)", file=sys.stderr)
        return 1
    try:
        with tempfile.TemporaryDirectory(prefix="kestrel-build-") as tmp:
            cache = Path(tmp)
            if args.lock:
                lock(cache)
            elif args.all:
                build_matrix((args.output or ROOT / "dist").resolve(), cache,
                             Sources.gather(cache))
            else:
                target = TARGETS[args.platform] if args.platform else host_target()
                output = (args.output or ROOT / "kestrel.pyz").resolve()
                output.parent.mkdir(parents=True, exist_ok=True)
                build(target, output, cache, Sources.gather(cache))
    except BuildError as exc:
        print(f"build.py: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
