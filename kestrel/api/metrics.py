"""`GET /metrics`: Prometheus text format, for the admin key or a separate `METRICS_TOKEN`.

A scraper gets its own token so the admin key need not sit in a Prometheus config. With
several workers, whichever one a scrape reaches answers for all: counters are summed over every
worker (`Siblings`); the account gauges are this worker's view of the shared pool.
"""

from __future__ import annotations

from collections.abc import Callable

from kestrel.api.endpoints import Auth, Endpoint
from kestrel.http import Request, Response
from kestrel.proxy.forwarder import Forwarder
from kestrel.proxy.metrics import Metrics, Snapshot, WriterStats, render
from kestrel.proxy.pool import AccountPool
from kestrel.workers.siblings import Siblings

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


class MetricsApi:
    def __init__(self, metrics: Metrics, pool: AccountPool, forwarder: Forwarder,
                 writer: Callable[[], WriterStats], workers: Siblings,
                 clock: Callable[[], float]) -> None:
        self._metrics = metrics
        self._pool = pool
        self._forwarder = forwarder
        self._writer = writer
        self._workers = workers
        self._clock = clock
        workers.provide(self._snapshot)

    def _snapshot(self) -> Snapshot:
        return self._metrics.snapshot(self._writer(), self._forwarder.active_streams)

    def endpoints(self) -> list[Endpoint]:
        return [Endpoint("GET", "/metrics", self.metrics, "Prometheus metrics", "meta",
                         Auth.METRICS, responses={200: None})]

    async def metrics(self, request: Request) -> Response:
        snapshot, workers = await self._workers.gather()
        text = render(snapshot, self._pool.accounts(), workers, self._clock())
        return Response(200, [("content-type", PROMETHEUS_TEXT), ("cache-control", "no-store")],
                        text.encode())
