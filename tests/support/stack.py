"""A whole deployment for end-to-end tests: fake Anthropic ← real Kestrel process ← clients."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import anthropic
import httpx

from fake_upstream import FakeAnthropic
from support.process import KestrelProcess

ADMIN_KEY = "stack-admin-key-0123456789"
ENCRYPTION_KEY = "5a" * 32
MODEL = "claude-sonnet-4-6"


def account_key(name: str) -> str:
    """The fake Anthropic key of the account called `name` (recognisable in any output)."""
    return f"sk-ant-api03-{name}-UPSTREAMSECRET-0123456789"


class Closable(Protocol):
    def close(self) -> None: ...


C = TypeVar("C", bound=Closable)


@dataclass
class Stack:
    up: FakeAnthropic
    kestrel: KestrelProcess
    key: str
    accounts: dict[str, int] = field(default_factory=dict)
    admin_key: str = ADMIN_KEY
    # SDK clients handed out, closed with the stack: one left to the garbage collector drops
    # its pooled sockets unclosed, and the ResourceWarning fails whichever test runs then.
    sdk_clients: list[Closable] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.kestrel.base_url

    def admin(self) -> httpx.Client:
        return self.kestrel.client(headers={"X-Admin-Key": self.admin_key})

    def http(self, headers: dict[str, str] | None = None, **kwargs: Any) -> httpx.Client:
        """A plain client carrying the Kestrel key, for what the SDK hides."""
        return self.kestrel.client(headers={"x-api-key": self.key,
                                            "anthropic-version": "2023-06-01", **(headers or {})},
                                   **kwargs)

    def sdk(self, **kwargs: Any) -> anthropic.Anthropic:
        return self.closed_with_stack(
            anthropic.Anthropic(base_url=self.url, api_key=self.key, max_retries=0, **kwargs))

    def closed_with_stack(self, client: C) -> C:
        self.sdk_clients.append(client)
        return client

    def add_account(self, name: str, **fields: Any) -> int:
        with self.admin() as client:
            response = client.post("/admin/accounts",
                                   json={"name": name, "api_key": account_key(name), **fields})
            assert response.status_code == 201, response.text
            self.accounts[name] = response.json()["id"]
        return self.accounts[name]

    def account(self, name: str) -> dict[str, Any]:
        with self.admin() as client:
            result: dict[str, Any] = client.get(f"/admin/accounts/{self.accounts[name]}").json()
            return result

    def served_by(self, index: int = -1) -> str:
        """Which account the upstream saw on its `index`-th request."""
        credential = self.up.requests[index].credential
        return next(name for name in self.accounts if account_key(name) == credential)

    def logs(self, expect: int, timeout: float = 5.0, **filters: Any) -> list[dict[str, Any]]:
        """The request logs, once `expect` rows have been written (they are batched)."""
        return self._rows_once("/admin/logs", {"limit": 500, **filters}, timeout,
                               lambda rows: len(rows) >= expect)

    def usage(self, expect: int, timeout: float = 5.0, **params: Any) -> list[dict[str, Any]]:
        """The usage report's rows, once they count `expect` requests: each process adds its
        counts every quarter second, apart from the request log's batches."""
        return self._rows_once("/admin/usage", params, timeout,
                               lambda rows: sum(row["requests"] for row in rows) >= expect)

    def _rows_once(self, path: str, params: dict[str, Any], timeout: float,
                   enough: Callable[[list[dict[str, Any]]], bool]) -> list[dict[str, Any]]:
        """An admin listing's `data`, once `enough` says so or `timeout` seconds have passed."""
        deadline = time.monotonic() + timeout
        with self.admin() as client:
            while True:
                rows: list[dict[str, Any]] = client.get(path, params=params).json()["data"]
                if enough(rows) or time.monotonic() > deadline:
                    return rows
                time.sleep(0.1)

    def restart(self) -> None:
        self.kestrel.stop()
        self.kestrel = KestrelProcess(self.kestrel.workdir, env=self.kestrel.env).start()


@contextmanager
def running_stack(workdir: Path, accounts: tuple[str, ...] = ("a", "b"),
                  env: dict[str, str] | None = None,
                  args: list[str] | None = None) -> Iterator[Stack]:
    """`args`: the command line (default: `--port 0`, a free port)."""
    with FakeAnthropic() as up:
        settings = {"ADMIN_KEY": ADMIN_KEY, "ENCRYPTION_KEY": ENCRYPTION_KEY,
                    "CLAUDE_BASE_URL": up.base_url, **(env or {})}
        with KestrelProcess(workdir, env=settings, args=args) as kestrel:
            admin_key = settings["ADMIN_KEY"]  # the env may bring its own
            with kestrel.client(headers={"X-Admin-Key": admin_key}) as client:
                key = _client_key(client)
            stack = Stack(up, kestrel, key, admin_key=admin_key)
            for name in accounts:
                stack.add_account(name)
            try:
                yield stack
            finally:
                for sdk in stack.sdk_clients:
                    sdk.close()
                stack.kestrel.stop()


def _client_key(admin: httpx.Client) -> str:
    """A new key for the stack's clients; "tests", or "tests 2"... when a copied or restarted
    database already has a key of that name in use (names tell keys in use apart)."""
    for attempt in range(1, 10):
        created = admin.post("/admin/keys",
                             json={"name": "tests" if attempt == 1 else f"tests {attempt}"})
        if created.status_code != 409:
            assert created.status_code == 201, created.text
            key: str = created.json()["key"]
            return key
    raise AssertionError("no free name for the stack's key")


def message_body(text: str = "hello", **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "max_tokens": 64,
            "messages": [{"role": "user", "content": text}], **extra}
