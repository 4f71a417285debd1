# -*- coding: utf-8 -*-
"""The first code `kestrel.pyz` runs: it refuses, in one line, a Python or a machine the file was
not built for, before shiv unpacks anything and before any dependency is imported.

`build.py` copies this module to the root of the zipapp and writes a `__main__.py` that calls
`check()` with the file's target. Without it a wrong interpreter ends in a traceback deep inside
an import (`No module named '_cffi_backend'`) that tells the user nothing.

It must parse and run on any Python someone may start the file with, Python 2.7 included (an old
box's `python`): so no f-strings, no annotations (types are comments), nothing but the stdlib.
"""

import os
import platform
import sys

MYPY = False
if MYPY:  # mypy reads these; no interpreter imports `typing` here, which 2.7 lacks
    from typing import Any, Dict, List, Optional, Sequence  # noqa: F401 (type comments)

    Facts = Dict[str, Any]
    Target = Dict[str, Any]

EXIT_REFUSED = 2  # what `kestrel` answers to a configuration it cannot run with

_OS_NAMES = {"linux": "Linux", "darwin": "macOS"}


def _dotted(numbers):
    # type: (Sequence[int]) -> str
    return ".".join(str(n) for n in numbers)


def _describe_platform(os_name, machine, libc):
    # type: (str, str, Optional[List[Any]]) -> str
    where = "%s %s" % (_OS_NAMES.get(os_name, os_name), machine)
    if libc:
        where += " (%s)" % " ".join(str(part) for part in [libc[0], _dotted(libc[1])] if part)
    return where


def platform_key(facts):
    # type: (Facts) -> Optional[str]
    """The name of the release file for this machine, as in `kestrel-VERSION-KEY.pyz`."""
    machine = facts["machine"]
    if facts["os"] == "linux" and machine in ("x86_64", "aarch64") and facts["libc"]:
        libc = facts["libc"][0]
        if libc == "glibc":
            return "linux-%s" % machine
        if libc == "musl":
            return "linux-musl-%s" % machine
    if facts["os"] == "darwin" and machine in ("x86_64", "arm64"):
        return "macos-%s" % machine
    return None


def describe_target(target):
    # type: (Target) -> str
    """What a file needs, in words: `CPython 3.11 to 3.15 on Linux x86_64 (glibc 2.17+)`."""
    pythons = target["pythons"]
    where = "%s %s" % (_OS_NAMES[target["os"]], target["machine"])
    if target["libc"]:
        where += " (%s %s+)" % (target["libc"], _dotted(target["floor"]))
    elif target["os"] == "darwin":
        where += " (macOS %s+)" % _dotted(target["floor"])
    return "CPython %s to %s on %s" % (_dotted(pythons[0]), _dotted(pythons[-1]), where)


def refusal(target, facts):
    # type: (Target, Facts) -> Optional[str]
    """Why this file cannot run here, as one line that says what to do instead; None if it can.

    Pure: `facts` come from `gather_facts()` or from a test's table.
    """
    needs = "%s needs %s" % (facts["file"], describe_target(target))
    found = "%s %s on %s" % (facts["implementation"], _dotted(facts["python"]),
                             _describe_platform(facts["os"], facts["machine"], facts["libc"]))
    key = platform_key(facts)
    if key != target["name"]:
        if key in target["matrix"]:
            advice = "get kestrel-%s-%s.pyz instead" % (target["kestrel"], key)
        else:
            advice = ("no kestrel.pyz is built for this platform: install from source with "
                      "pip (see the README)")
        return "%s; this is %s: %s." % (needs, found, advice)
    if target["libc"] == "glibc" and tuple(facts["libc"][1]) < tuple(target["floor"]):
        return "%s; this is %s: the C library is too old for the bundled cryptography." % (
            needs, found)
    if target["os"] == "darwin" and tuple(facts["macos"]) < tuple(target["floor"]):
        return "%s; this is %s on macOS %s: upgrade macOS." % (
            needs, found, _dotted(facts["macos"]))
    oldest, newest = tuple(target["pythons"][0]), tuple(target["pythons"][-1])
    version = tuple(facts["python"][:2])
    if facts["implementation"] != "CPython" or version < oldest:
        return "%s; this is %s: run it with python%s or newer." % (needs, found, _dotted(oldest))
    if version > newest:
        return ("%s; this is %s: run it with python%s, or get a kestrel.pyz built for "
                "Python %s." % (needs, found, _dotted(newest), _dotted(version)))
    if facts["free_threaded"]:
        return ("%s; this is the free-threaded build of %s: run it with the standard "
                "python%s." % (needs, found, _dotted(version)))
    return None


def _libc():
    # type: () -> Optional[List[Any]]
    """['glibc', [2, 36]], ['musl', []] or None, cheaply: no subprocess, no ELF parsing."""
    try:
        found = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (AttributeError, ValueError, OSError):  # musl has no such name, nor has Python 2
        found = " ".join(platform.libc_ver())
    name, _, version = found.partition(" ")
    if name == "glibc":
        return ["glibc", [int(part) for part in version.split(".")[:2] if part.isdigit()]]
    try:
        if any(entry.startswith("ld-musl-") for entry in os.listdir("/lib")):
            return ["musl", []]
    except OSError:
        pass
    return None


def gather_facts():
    # type: () -> Facts
    """The running interpreter and machine, in the shape `refusal()` reads."""
    os_name = "linux" if sys.platform.startswith("linux") else sys.platform
    machine = platform.machine()
    if os_name == "linux" and machine == "arm64":
        machine = "aarch64"
    macos = [int(part) for part in platform.mac_ver()[0].split(".")[:2] if part.isdigit()]
    return {
        "implementation": platform.python_implementation(),
        "python": list(sys.version_info[:3]),
        "free_threaded": "t" in getattr(sys, "abiflags", ""),
        "os": os_name,
        "machine": machine,
        "libc": _libc() if os_name == "linux" else None,
        "macos": macos,
        "file": os.path.basename(sys.argv[0]) or "kestrel.pyz",
    }


def check(target):
    # type: (Target) -> None
    """Exit with status 2 and one line on stderr when this file cannot run here."""
    reason = refusal(target, gather_facts())
    if reason is not None:
        sys.stderr.write(reason + "\n")
        sys.exit(EXIT_REFUSED)
