"""What a starting server tells its operator: the secrets it generated (once, on the terminal)
and where it listens (the `started` event that watchers wait for).

The process that binds says it: the single process, or with WORKERS the supervisor, once every
worker serves; the workers themselves announce only their own start.
"""

from __future__ import annotations

import logging
import sys

from kestrel import __version__
from kestrel.config import Settings

log = logging.getLogger("kestrel.serve")


def url_for(host: str, port: int | str) -> str:
    """The URL a client on this machine uses to reach a server bound to `host`."""
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


def announce_generated(settings: Settings, url: str) -> None:
    """Printed once, when the secrets are generated, straight to the terminal.

    Not through logging: log lines never carry secrets (the redaction filter would mask it),
    and this is the one moment the operator must see the admin key.
    """
    lines = [f"Kestrel generated {', '.join(settings.generated)} and saved it to "
             f"{settings.secrets_path} (mode 0600)."]
    if "ADMIN_KEY" in settings.generated:
        lines.append(f"  Admin key: {settings.admin_key}")
    lines.append(f"  Dashboard: {url}/app/")
    lines.append("This is shown only now; the secrets file keeps it for later starts.")
    print("\n".join(lines), file=sys.stderr, flush=True)


def announce_started(settings: Settings, port: int, **event: object) -> None:
    """The generated secrets if any, then the `started` line that tells watchers we are up."""
    url = url_for(settings.host, port)
    if settings.generated:
        announce_generated(settings, url)
    local = settings.host in ("127.0.0.1", "localhost", "::1")
    log.info("listening on %s%s", url,
             " (this machine only; set HOST=0.0.0.0 to accept other machines)" if local else "",
             extra={"event": {"name": "started", "version": __version__, "port": port,
                              "db": settings.database_label, **event}})
