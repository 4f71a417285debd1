"""The real Claude Code CLI (`@anthropic-ai/claude-code` from the npm registry), pointed at a
Kestrel, as a person runs it: print mode, a throwaway HOME, no traffic but to Kestrel.

.ci/run installs the pinned version and sets CLAUDE_CODE_BIN and REQUIRE_CLAUDE_CODE=1, which
turns a missing CLI into a failure; run by hand without it, these tests are skipped with a red
banner. Elsewhere, CLAUDE_CODE_BIN or a `claude` on the PATH is used.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

REQUIRED = os.environ.get("REQUIRE_CLAUDE_CODE") == "1"
SKIPPED = "Claude Code CLI tests skipped"
# The version .ci/run installs (npm install @anthropic-ai/claude-code@VERSION).
VERSION = "2.1.197"
TIMEOUT = 120.0


class Unavailable(Exception):
    pass


def find() -> str:
    """The `claude` executable, or Unavailable saying how to get it."""
    found = os.environ.get("CLAUDE_CODE_BIN") or shutil.which("claude")
    if not found or not os.access(found, os.X_OK):
        raise Unavailable(f"no Claude Code CLI (npm install @anthropic-ai/claude-code@{VERSION} "
                          "and set CLAUDE_CODE_BIN to its bin/claude)")
    return found


def run_claude(executable: str, base_url: str, key: str, prompt: str,
               *extra: str) -> subprocess.CompletedProcess[str]:
    """`claude -p PROMPT` against `base_url` with the client key `key`, in a fresh HOME."""
    with tempfile.TemporaryDirectory(prefix="claude-home-") as home:
        env = {name: value for name, value in os.environ.items()
               if not name.startswith(("ANTHROPIC_", "CLAUDE_"))}
        env.update({"HOME": home, "ANTHROPIC_BASE_URL": base_url, "ANTHROPIC_API_KEY": key,
                    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1",
                    "NO_COLOR": "1"})
        return subprocess.run([executable, "-p", prompt, *extra], env=env, cwd=Path(home),
                              capture_output=True, text=True, timeout=TIMEOUT,
                              stdin=subprocess.DEVNULL, check=False)
