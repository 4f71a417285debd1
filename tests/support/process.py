"""Run a real Kestrel process on an ephemeral port, the way an operator would start it."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 20.0


class KestrelProcess:
    """`python -m kestrel --port 0` in `workdir`, with JSON logs captured line by line."""

    def __init__(self, workdir: Path, env: dict[str, str] | None = None,
                 args: list[str] | None = None, command: list[str] | None = None) -> None:
        self.workdir = workdir
        base = {k: v for k, v in os.environ.items()
                if not k.startswith(("ANTHROPIC_", "CLAUDE_", "OAUTH_"))
                and k not in ("PORT", "HOST", "DB_PATH", "DATABASE_URL", "INSTANCE_NAME",
                              "ADMIN_KEY", "ENCRYPTION_KEY",
                              "LOG_LEVEL", "LOG_FORMAT", "MAX_BODY_BYTES")}
        base["PYTHONPATH"] = str(REPO) + os.pathsep + base.get("PYTHONPATH", "")
        base["LOG_FORMAT"] = "json"
        for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                      "all_proxy"):
            base.pop(proxy, None)  # the fake upstream is on loopback; never route it elsewhere
        base.update(env or {})
        self.env = base
        self.command = command or [sys.executable, "-m", "kestrel"]
        self.args = args if args is not None else ["--port", "0"]
        self.proc: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        self.port: int | None = None
        # httpx event hooks every `client()` gets: e.g. a transcript of every answer it saw
        self.event_hooks: dict[str, list[Callable[..., Any]]] = {}
        self._started = threading.Event()
        self._reader: threading.Thread | None = None

    def start(self) -> KestrelProcess:
        self.proc = subprocess.Popen(
            [*self.command, *self.args], cwd=self.workdir, env=self.env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, bufsize=1,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self._started.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("kestrel did not start:\n" + "\n".join(self.lines))
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            record = _parse(line)
            event = record.get("event") if record else None
            if isinstance(event, dict) and event.get("name") == "started":
                self.port = int(event["port"])
                self._started.set()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def records(self) -> list[dict[str, Any]]:
        """The JSON log records so far (banner lines that are not JSON are left out)."""
        return [r for r in map(_parse, list(self.lines)) if r is not None]

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=10,
                            **{"event_hooks": self.event_hooks, **kwargs})

    def client_from(self, address: str, **kwargs: Any) -> httpx.Client:
        """A client whose connections come from `address` (a loopback address of this machine),
        which is what Kestrel's per-address limits count."""
        # Plain HTTP on loopback: no TLS context to build (loading the CA bundle takes 30 ms
        # per client, which adds up when a test spreads requests over hundreds of addresses).
        transport = httpx.HTTPTransport(local_address=address, verify=False)
        return self.client(transport=transport, **kwargs)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._reader is not None:
            self._reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode

    def __enter__(self) -> KestrelProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _parse(line: str) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def loopback_addresses() -> Iterator[str]:
    """Fresh source addresses, 127.1.0.1 onwards: Linux answers for all of 127.0.0.0/8, so each
    batch of refused admin requests can start with a clean per-address failure count."""
    for n in itertools.count(1 << 16):
        if n & 0xFF not in (0, 0xFF):
            yield f"127.{n >> 16 & 0xFF}.{n >> 8 & 0xFF}.{n & 0xFF}"


def run_kestrel(workdir: Path, args: list[str], env: dict[str, str] | None = None,
                timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    """Run a Kestrel command to completion (for config errors, --version, --help)."""
    proc = KestrelProcess(workdir, env=env, args=args)
    return subprocess.run([*proc.command, *args], cwd=workdir, env=proc.env, text=True,
                          capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
