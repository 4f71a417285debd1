"""`GET /health`: public liveness that also proves the database can be read, and says how many
worker processes serve.

Three answers, for a load balancer and a person:
- `ok` (200): serving, and the database answers.
- `degraded` (200): serving, but the database does not answer. The instance goes on proxying
  with the accounts and keys it holds in memory (keep sending it traffic); admin writes answer
  503 until the database is back, and changes made elsewhere meanwhile do not reach it.
- `down` (503): no process of this instance takes new work (it is shutting down).
"""

from __future__ import annotations

import asyncio
import logging

from kestrel import __version__
from kestrel.api.endpoints import Auth, Endpoint
from kestrel.api.responses import json_response
from kestrel.http import Request, Response
from kestrel.store.database import Database
from kestrel.workers.siblings import Siblings

log = logging.getLogger("kestrel.health")

# A health probe that hangs is worse than one that says no: answer 503 after this long.
DB_CHECK_TIMEOUT_SECONDS = 2.0

HEALTH = {
    "type": "object",
    "properties": {"status": {"type": "string", "enum": ["ok", "degraded", "down"]},
                   "version": {"type": "string"},
                   "workers": {"type": "object",
                               "properties": {"up": {"type": "integer", "minimum": 0},
                                              "configured": {"type": "integer", "minimum": 1}},
                               "required": ["up", "configured"],
                               "additionalProperties": False},
                   "error": {"type": "string"}},
    "required": ["status", "version", "workers"],
}


class HealthApi:
    def __init__(self, db: Database, workers: Siblings) -> None:
        self._db = db
        self._workers = workers

    def endpoints(self) -> list[Endpoint]:
        return [Endpoint("GET", "/health", self.health, "Liveness and database check", "health",
                         Auth.PUBLIC, responses={200: HEALTH, 503: HEALTH})]

    async def health(self, request: Request) -> Response:
        workers = await self._workers.count()
        answer: dict[str, object] = {
            "status": "ok" if workers.up else "down", "version": __version__,
            "workers": {"up": workers.up, "configured": workers.configured}}
        try:
            await asyncio.wait_for(self._db.probe(), DB_CHECK_TIMEOUT_SECONDS)
        except Exception as exc:  # any failure to read is what this probe exists to report
            log.warning("health check: the database cannot be read (%s)", type(exc).__name__)
            answer["error"] = "the database cannot be read; proxying goes on from memory"
            if workers.up:
                answer["status"] = "degraded"
        return json_response(answer, 200 if workers.up else 503)
