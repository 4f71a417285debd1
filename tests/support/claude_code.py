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
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
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


def run_claude(executable: str, base_url: str, key: str, prompt: str, *extra: str,
               cwd: Path | None = None, key_variable: str = "ANTHROPIC_API_KEY",
               env: Mapping[str, str] | None = None,
               timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    """`claude -p PROMPT` against `base_url` with the client key `key`, in a fresh HOME.

    `cwd`: where the CLI runs, i.e. the project its tools see (default: the fresh HOME);
    `key_variable`: which variable carries the key: ANTHROPIC_API_KEY (sent as `x-api-key`) or
    ANTHROPIC_AUTH_TOKEN (sent as `Authorization: Bearer`); `env`: more variables; `timeout`:
    seconds before subprocess.TimeoutExpired (the CLI is killed)."""
    with tempfile.TemporaryDirectory(prefix="claude-home-") as home:
        return subprocess.run([executable, "-p", prompt, *extra],
                              env=_environment(home, base_url, key, key_variable, env),
                              cwd=cwd or Path(home), capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL, check=False)


@contextmanager
def started_claude(executable: str, base_url: str, key: str, prompt: str, *extra: str,
                   cwd: Path | None = None, key_variable: str = "ANTHROPIC_API_KEY",
                   env: Mapping[str, str] | None = None,
                   timeout: float = TIMEOUT) -> Iterator[subprocess.Popen[str]]:
    """`run_claude`, still running: for a test that reads the CLI's stdout line by line as it
    comes (stderr is piped too). Killed after `timeout` seconds, or when the block ends."""
    with tempfile.TemporaryDirectory(prefix="claude-home-") as home, subprocess.Popen(
            [executable, "-p", prompt, *extra],
            env=_environment(home, base_url, key, key_variable, env), cwd=cwd or Path(home),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            stdin=subprocess.DEVNULL) as process:
        watchdog = threading.Timer(timeout, process.kill)
        watchdog.start()
        try:
            yield process
        finally:
            watchdog.cancel()
            if process.poll() is None:
                process.kill()


def _environment(home: str, base_url: str, key: str, key_variable: str,
                 env: Mapping[str, str] | None) -> dict[str, str]:
    variables = {name: value for name, value in os.environ.items()
                 if not name.startswith(("ANTHROPIC_", "CLAUDE_"))}
    variables.update({"HOME": home, "ANTHROPIC_BASE_URL": base_url, key_variable: key,
                      "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
                      "DISABLE_AUTOUPDATER": "1", "NO_COLOR": "1", **(env or {})})
    return variables
