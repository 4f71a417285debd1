"""Running the server process: start, announce, wait for a signal, shut down gracefully."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from kestrel import __version__
from kestrel.app import App
from kestrel.config import Settings
from kestrel.http.server import Server, ServerLimits

log = logging.getLogger("kestrel.serve")


def _announce_generated(settings: Settings, url: str) -> None:
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


async def serve(settings: Settings) -> int:
    app = await App.open(settings)
    server = Server(
        app.handle,
        limits=ServerLimits(max_body_bytes=settings.max_body_bytes,
                            shutdown_grace=settings.shutdown_grace),
        access_logger=logging.getLogger("kestrel.access"),
        server_header=f"kestrel/{__version__}",
    )
    # Signals are caught from before the first "listening" line: a supervisor that reacts to
    # it by stopping us at once must still get a graceful exit.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        try:
            await server.start(settings.host, settings.port)
        except OSError as exc:
            log.error("cannot listen on %s:%s: %s", settings.host, settings.port, exc.strerror)
            return 1
        url = f"http://{_url_host(settings.host)}:{server.port}"
        if settings.generated:  # before the "listening" line, which tells watchers we are up
            _announce_generated(settings, url)
        local = settings.host in ("127.0.0.1", "localhost", "::1")
        log.info("listening on %s%s", url,
                 " (this machine only; set HOST=0.0.0.0 to accept other machines)" if local
                 else "", extra={"event": {"name": "started", "version": __version__,
                                           "port": server.port, "db": str(settings.db_path)}})
        await server.serve_until(stop)
        log.info("stopped", extra={"event": {"name": "stopped"}})
        return 0
    finally:
        await app.close()


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host
