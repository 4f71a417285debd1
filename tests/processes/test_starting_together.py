"""Processes that open a new database at the same moment (the workers of one supervisor): the
account CLAUDE_API_KEY names is added once, and no process fails its start over it."""

from __future__ import annotations

import asyncio
from pathlib import Path

from kestrel.app import App
from kestrel.config import load_settings

from support.stack import ADMIN_KEY, ENCRYPTION_KEY


def test_the_env_account_is_added_once_by_processes_starting_together(tmp_path: Path) -> None:
    settings = load_settings({"DB_PATH": str(tmp_path / "k.db"), "ADMIN_KEY": ADMIN_KEY,
                              "ENCRYPTION_KEY": ENCRYPTION_KEY,
                              "CLAUDE_API_KEY": "sk-ant-api03-seeded-0123456789abcd"})

    async def main() -> list[list[str]]:
        # Each App has its own database connections, as each process has.
        apps = await asyncio.gather(*(App.open(settings) for _ in range(4)))
        try:
            return [[a.name for a in await app.accounts.list()] for app in apps]
        finally:
            for app in apps:
                await app.close()

    assert asyncio.run(main()) == [["default"]] * 4
