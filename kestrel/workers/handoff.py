"""What the supervisor hands a worker it starts: one environment variable naming the worker and
the file descriptors it inherits.

- the listening sockets, bound once by the supervisor and shared by every worker;
- a pipe to say "ready" on, once the worker serves: the supervisor starts the next step of a
  start or a rolling restart only then;
- the read end of a pipe whose only write end the supervisor holds: when the supervisor is gone
  (even by SIGKILL) the worker reads EOF and drains, so no orphan keeps serving;
- a private directory (mode 0700) where the workers find each other (`siblings.py`).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass

from kestrel.domain import ConfigError

ENV_VAR = "KESTREL_WORKER"
READY = b"ready\n"


@dataclass(frozen=True)
class Handoff:
    index: int  # 1..configured; a replacement takes the index of the worker it replaces
    configured: int
    listen_fds: tuple[int, ...]
    ready_fd: int
    parent_fd: int
    runtime_dir: str

    def encode(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Handoff | None:
        """The handoff of this process, or None when it was not started as a worker."""
        raw = environ.get(ENV_VAR)
        if raw is None:
            return None
        try:
            fields = json.loads(raw)
            return cls(index=int(fields["index"]), configured=int(fields["configured"]),
                       listen_fds=tuple(int(fd) for fd in fields["listen_fds"]),
                       ready_fd=int(fields["ready_fd"]), parent_fd=int(fields["parent_fd"]),
                       runtime_dir=str(fields["runtime_dir"]))
        except (ValueError, TypeError, KeyError):
            raise ConfigError([f"{ENV_VAR} is set by Kestrel's supervisor for the processes it "
                               "starts; it is not a setting (unset it)"]) from None

    def sockets(self) -> list[socket.socket]:
        """The inherited listening sockets (their family and type are read from the fds)."""
        return [socket.socket(fileno=fd) for fd in self.listen_fds]

    def notify_ready(self) -> None:
        """Tell the supervisor this worker serves. Once: the pipe is closed after."""
        try:
            os.write(self.ready_fd, READY)
        finally:
            os.close(self.ready_fd)

    def on_parent_exit(self, callback: Callable[[], None]) -> None:
        """Call `callback` once the supervisor is gone (EOF on the inherited pipe)."""
        loop = asyncio.get_running_loop()

        def readable() -> None:
            loop.remove_reader(self.parent_fd)
            callback()

        loop.add_reader(self.parent_fd, readable)
