"""The zipapp's guard, as pure logic: which Python and machine a file refuses, and what it says.

The same module runs for real in test_pythons.py, under every interpreter on this machine.
"""

from __future__ import annotations

from typing import Any

import pytest

from kestrel.zipapp_guard import gather_facts, platform_key, refusal

LINUX_X86 = {"kestrel": "1.2.3", "name": "linux-x86_64", "os": "linux", "machine": "x86_64",
             "libc": "glibc", "floor": [2, 17], "pythons": [[3, 11], [3, 12], [3, 15]],
             "matrix": ["linux-x86_64", "linux-aarch64", "linux-musl-x86_64",
                        "linux-musl-aarch64", "macos-arm64", "macos-x86_64"]}
MACOS_ARM = {**LINUX_X86, "name": "macos-arm64", "os": "darwin", "machine": "arm64",
             "libc": None, "floor": [11, 0]}


def facts(**changes: Any) -> dict[str, Any]:
    base = {"implementation": "CPython", "python": [3, 12, 1], "free_threaded": False,
            "os": "linux", "machine": "x86_64", "libc": ["glibc", [2, 36]], "macos": [],
            "file": "kestrel.pyz"}
    return {**base, **changes}


@pytest.mark.parametrize("machine", [
    facts(),
    facts(python=[3, 11, 0]),
    facts(python=[3, 15, 2]),
    facts(libc=["glibc", [2, 17]]),
])
def test_a_machine_the_file_was_built_for_runs_it(machine: dict[str, Any]) -> None:
    assert refusal(LINUX_X86, machine) is None


def test_a_mac_at_the_floor_runs_the_mac_file() -> None:
    assert refusal(MACOS_ARM, facts(os="darwin", machine="arm64", libc=None,
                                    macos=[11, 0])) is None


NEEDS = "kestrel.pyz needs CPython 3.11 to 3.15 on Linux x86_64 (glibc 2.17+); this is "


@pytest.mark.parametrize(("machine", "says"), [
    (facts(python=[3, 10, 13]),
     NEEDS + "CPython 3.10.13 on Linux x86_64 (glibc 2.36): run it with python3.11 or newer."),
    (facts(python=[2, 7, 18]), "CPython 2.7.18 on Linux x86_64 (glibc 2.36): run it with "
                               "python3.11 or newer."),
    (facts(implementation="PyPy", python=[3, 11, 9]),
     "PyPy 3.11.9 on Linux x86_64 (glibc 2.36): run it with python3.11 or newer."),
    (facts(python=[3, 16, 0]),
     "run it with python3.15, or get a kestrel.pyz built for Python 3.16."),
    (facts(free_threaded=True, python=[3, 13, 1]),
     "this is the free-threaded build of CPython 3.13.1 on Linux x86_64 (glibc 2.36): run it "
     "with the standard python3.13."),
    (facts(libc=["glibc", [2, 12]]),
     NEEDS + "CPython 3.12.1 on Linux x86_64 (glibc 2.12): the C library is too old for the "
     "bundled cryptography."),
    (facts(libc=["musl", []]),
     "CPython 3.12.1 on Linux x86_64 (musl): get kestrel-1.2.3-linux-musl-x86_64.pyz instead."),
    (facts(machine="aarch64"),
     "on Linux aarch64 (glibc 2.36): get kestrel-1.2.3-linux-aarch64.pyz instead."),
    (facts(os="darwin", machine="arm64", libc=None, macos=[14, 2]),
     "CPython 3.12.1 on macOS arm64: get kestrel-1.2.3-macos-arm64.pyz instead."),
    (facts(os="darwin", machine="x86_64", libc=None, macos=[13, 0]),
     "get kestrel-1.2.3-macos-x86_64.pyz instead."),
    (facts(os="freebsd14", machine="amd64", libc=None),
     "CPython 3.12.1 on freebsd14 amd64: no kestrel.pyz is built for this platform: install "
     "from source with pip (see the README)."),
    (facts(machine="riscv64"), "no kestrel.pyz is built for this platform"),
    (facts(libc=None), "no kestrel.pyz is built for this platform"),
])
def test_anything_else_is_refused_in_one_line_that_says_what_to_do(
        machine: dict[str, Any], says: str) -> None:
    reason = refusal(LINUX_X86, machine)
    assert reason is not None and says in reason
    assert reason.startswith(NEEDS) and "\n" not in reason


def test_an_old_mac_is_told_to_upgrade() -> None:
    reason = refusal(MACOS_ARM, facts(os="darwin", machine="arm64", libc=None, macos=[10, 15],
                                      file="kestrel-1.2.3-macos-arm64.pyz"))
    assert reason == ("kestrel-1.2.3-macos-arm64.pyz needs CPython 3.11 to 3.15 on macOS arm64 "
                      "(macOS 11.0+); this is CPython 3.12.1 on macOS arm64 on macOS 10.15: "
                      "upgrade macOS.")


def test_this_machine_is_read_as_a_platform_the_matrix_knows() -> None:
    """The same detection build.py uses to pick the default file's platform."""
    here = gather_facts()
    assert here["implementation"] == "CPython" and here["python"][:2] >= [3, 11]
    assert platform_key(here) in LINUX_X86["matrix"], here
    if here["os"] == "linux":
        assert here["libc"] is not None and here["libc"][0] in ("glibc", "musl"), here
