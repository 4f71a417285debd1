"""`GET /health`: public liveness that also proves the database can be read."""

from __future__ import annotations

import asyncio
import logging

from kestrel import __version__
from kestrel.api.endpoints import Auth, Endpoint
from kestrel.api.responses import json_response
from kestrel.http import Request, Response
from kestrel.store.database import Database

log = logging.getLogger("kestrel.health")

# A health probe that hangs is worse than one that says no: answer 503 after this long.
DB_CHECK_TIMEOUT_SECONDS = 2.0

HEALTH = {
    "type": "object",
    "properties": {"status": {"type": "string", "enum": ["ok", "unavailable"]},
                   "version": {"type": "string"},
                   "error": {"type": "string"}},
    "required": ["status", "version"],
}


class HealthApi:
    def __init__(self, db: Database) -> None:
        self._db = db

    def endpoints(self) -> list[Endpoint]:
        return [Endpoint("GET", "/health", self.health, "Liveness and database check", "health",
                         Auth.PUBLIC, responses={200: HEALTH, 503: HEALTH})]

    async def health(self, request: Request) -> Response:
        try:
            await asyncio.wait_for(self._db.probe(), DB_CHECK_TIMEOUT_SECONDS)
        except Exception as exc:  # any failure to read is what this probe exists to report
            log.warning("health check failed: %s", type(exc).__name__)
            return json_response({"status": "unavailable", "version": __version__,
                                  "error": "the database cannot be read"}, 503)
        return json_response({"status": "ok", "version": __version__})
