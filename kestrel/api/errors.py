"""The one place where errors become responses, in the wire shape of each surface.

Admin and public routes answer `{"error": {"type", "message", "field"}}`; Anthropic routes
answer `{"type": "error", "error": {"type", "message"}}` as Anthropic does, and OpenAI's chat
routes `{"error": {"message", "type", "param", "code"}}` as OpenAI does, so each official SDK
raises its matching exception class.
"""

from __future__ import annotations

import enum
import math

from kestrel import http
from kestrel.api.responses import json_response
from kestrel.domain import (
    ClientError,
    KestrelError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    RequestTimeout,
)
from kestrel.http import Response
from kestrel.translate.openai_errors import error_object


class Surface(enum.Enum):
    ADMIN = "admin"
    ANTHROPIC = "anthropic"
    OPENAI = "openai"


# OpenAI's chat routes: the clients on them (openai SDKs, Cursor, aider...) read only its shape.
OPENAI_PREFIX = "/v1/chat/"


def surface_for_path(path: str) -> Surface:
    """Which error shape a path speaks, also for paths no route matched."""
    if path.startswith(OPENAI_PREFIX):
        return Surface.OPENAI
    return Surface.ANTHROPIC if path.startswith("/v1/") else Surface.ADMIN


def from_http_error(exc: http.HTTPError) -> KestrelError:
    """Errors raised by the HTTP layer (routing, body limits) in the domain's terms."""
    if isinstance(exc, http.MethodNotAllowed):
        return MethodNotAllowed(exc.message, allow=exc.allow)
    if isinstance(exc, http.NotFound):
        return NotFound(exc.message)
    if isinstance(exc, http.BodyTooLarge):
        return PayloadTooLarge(exc.message)
    if isinstance(exc, http.RequestTimeout):
        return RequestTimeout(exc.message)
    return ClientError(exc.message)


def error_response(surface: Surface, exc: KestrelError) -> Response:
    headers: list[tuple[str, str]] = []
    if isinstance(exc, MethodNotAllowed):
        headers.append(("allow", ", ".join(exc.allow)))
    if isinstance(exc, RateLimited) and exc.retry_after is not None:
        headers.append(("retry-after", str(max(1, math.ceil(exc.retry_after)))))
    if exc.final:
        headers.append(("x-should-retry", "false"))
    body: dict[str, object]
    if surface is Surface.ANTHROPIC:
        body = {"type": "error", "error": {"type": exc.type, "message": exc.message}}
    elif surface is Surface.OPENAI:
        body = error_object(exc.status, exc.type, exc.message, exc.field)
    else:
        body = {"error": {"type": exc.type, "message": exc.message, "field": exc.field}}
    return json_response(body, exc.status, headers)
