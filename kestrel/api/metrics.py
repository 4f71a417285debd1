"""`GET /metrics`: Prometheus text format, for the admin key or a separate `METRICS_TOKEN`.

A scraper gets its own token so the admin key need not sit in a Prometheus config.
"""

from __future__ import annotations

from collections.abc import Callable

from kestrel.api.endpoints import Auth, Endpoint
from kestrel.http import Request, Response
from kestrel.proxy.forwarder import Forwarder
from kestrel.proxy.metrics import Metrics, WriterStats
from kestrel.proxy.pool import AccountPool

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


class MetricsApi:
    def __init__(self, metrics: Metrics, pool: AccountPool, forwarder: Forwarder,
                 writer: Callable[[], WriterStats], clock: Callable[[], float]) -> None:
        self._metrics = metrics
        self._pool = pool
        self._forwarder = forwarder
        self._writer = writer
        self._clock = clock

    def endpoints(self) -> list[Endpoint]:
        return [Endpoint("GET", "/metrics", self.metrics, "Prometheus metrics", "meta",
                         Auth.METRICS, responses={200: None})]

    async def metrics(self, request: Request) -> Response:
        text = self._metrics.render(self._pool.accounts(), self._writer(),
                                    self._forwarder.active_streams, self._clock())
        return Response(200, [("content-type", PROMETHEUS_TEXT), ("cache-control", "no-store")],
                        text.encode())
