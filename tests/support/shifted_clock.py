"""A Kestrel process whose wall clock the test moves: Debian's libfaketime, preloaded, reads the
offset from a file on every call. The monotonic clock is left alone, so timers, timeouts and
asyncio run as they always do; only `time.time()` (windows, budgets, expiry) jumps.

.ci/run installs `faketime` and sets REQUIRE_FAKETIME=1, which turns a missing library into a
failure; run by hand without it, the tests that need it are skipped with a banner.
"""

from __future__ import annotations

import glob
import os
import time
from pathlib import Path

REQUIRED = os.environ.get("REQUIRE_FAKETIME") == "1"
SKIPPED = "clock-shifting tests skipped"
# The multi-threaded build: Kestrel's store runs on threads of its own.
LIBRARY_PATTERNS = ("/usr/lib/*/faketime/libfaketimeMT.so.1",
                    "/usr/lib/faketime/libfaketimeMT.so.1")


class Unavailable(Exception):
    pass


class ShiftedClock:
    """The environment that gives a process the clock, and `set` to move it."""

    def __init__(self, folder: Path) -> None:
        found = [path for pattern in LIBRARY_PATTERNS for path in glob.glob(pattern)]
        if not found:
            raise Unavailable("libfaketime is not installed (Debian package faketime)")
        self._file = folder / "faketime"
        self._file.write_text("+0\n")
        self.env = {"LD_PRELOAD": found[0], "FAKETIME_TIMESTAMP_FILE": str(self._file),
                    "FAKETIME_NO_CACHE": "1", "DONT_FAKE_MONOTONIC": "1"}

    def set(self, moment: float) -> None:
        """From now on the process's clock reads `moment` (epoch seconds) and runs on."""
        self._file.write_text(f"{moment - time.time():+.0f}\n")
