"""What every command is handed: the admin API, how to print, and the terminal's input."""

from __future__ import annotations

import getpass
import json
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

from kestrel.admin_cli.client import USAGE, AdminClient, CommandFailed


@dataclass
class Session:
    admin: AdminClient
    as_json: bool = False
    colour: bool = False
    out: TextIO = field(default_factory=lambda: sys.stdout)
    now: float = field(default_factory=time.time)

    def print(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def print_json(self, value: Any) -> None:
        self.print(json.dumps(value, indent=2, ensure_ascii=False))

    def answer(self, value: Any, text: str) -> int:
        """What a command did: the admin API's answer with --json, else a sentence. Exit 0."""
        if self.as_json:
            self.print_json(value)
        else:
            self.print(text)
        return 0

    def tell(self, text: str) -> None:
        """A message for the person, not for a pipe: it goes to standard error."""
        print(text, file=sys.stderr, flush=True)


def colour_wanted(stream: TextIO, environ: Mapping[str, str]) -> bool:
    """Colour on a terminal only, and never with NO_COLOR set (https://no-color.org)."""
    return stream.isatty() and "NO_COLOR" not in environ and environ.get("TERM") != "dumb"


def read_secret(label: str) -> str:
    """A secret from a hidden prompt on a terminal, or one line of standard input otherwise:
    never from the command line, where shell history and `ps` would keep it."""
    if sys.stdin.isatty():
        value = getpass.getpass(f"{label}: ", stream=sys.stderr)
    else:
        value = sys.stdin.readline()
    value = value.strip()
    if not value:
        raise CommandFailed(f"no {label} was given (type it at the prompt, or pipe it to "
                            "standard input)", USAGE)
    return value
