"""`GET /openapi.json`: OpenAPI 3.1, generated from the same endpoints as the router."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from kestrel import __version__
from kestrel.api.endpoints import Auth, Endpoint
from kestrel.api.responses import json_response
from kestrel.http import Request, Response

# `{name}` or the router's catch-all `{name:path}`, which OpenAPI writes as plain `{name}`.
_PARAM = re.compile(r"\{([a-z_][a-z0-9_]*)(?::path)?\}")


def document_path(path: str) -> str:
    """The route's pattern as OpenAPI spells it."""
    return _PARAM.sub(r"{\1}", path)

_REASONS = {200: "OK", 201: "Created", 204: "No content", 302: "Found", 400: "Bad request",
            401: "Unauthorized", 403: "Forbidden", 404: "Not found", 409: "Conflict",
            413: "Body too large", 422: "Invalid field", 429: "Too many requests",
            500: "Internal error", 502: "Upstream error", 503: "Unavailable"}

_SECURITY: dict[Auth, list[dict[str, list[str]]]] = {
    Auth.ADMIN: [{"adminKey": []}],
    Auth.CLIENT: [{"clientKey": []}, {"clientBearer": []}],
    Auth.PUBLIC: [],
    Auth.METRICS: [{"adminKey": []}, {"metricsToken": []}],
}


def _operation(endpoint: Endpoint) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": endpoint.summary,
        "tags": [endpoint.tag],
        "operationId": f"{endpoint.method.lower()}_"
        + re.sub(r"[^a-z0-9]+", "_", endpoint.path.lower()).strip("_"),
        "security": _SECURITY[endpoint.auth],
        "responses": {
            str(status): {"description": _REASONS.get(status, "Response"),
                          **({"content": {"application/json": {"schema": schema}}}
                             if schema is not None else {})}
            for status, schema in sorted(endpoint.responses.items())
        },
    }
    parameters = [{"name": name, "in": "path", "required": True,
                   "schema": endpoint.params.get(name, {"type": "string"})}
                  for name in _PARAM.findall(endpoint.path)]
    parameters += [{"name": name, "in": "query", "required": False, "schema": schema}
                   for name, schema in endpoint.query.items()]
    if parameters:
        operation["parameters"] = parameters
    if endpoint.request_schema is not None:
        operation["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": endpoint.request_schema}}}
    return operation


def build_document(endpoints: Sequence[Endpoint]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in endpoints:
        operations = paths.setdefault(document_path(endpoint.path), {})
        operations[endpoint.method.lower()] = _operation(endpoint)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Kestrel", "version": __version__,
                 "description": "A proxy that pools Anthropic accounts behind one endpoint."},
        "paths": paths,
        "components": {"securitySchemes": {
            "adminKey": {"type": "apiKey", "in": "header", "name": "X-Admin-Key"},
            "clientKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
            "clientBearer": {"type": "http", "scheme": "bearer"},
            "metricsToken": {"type": "http", "scheme": "bearer",
                             "description": "METRICS_TOKEN"},
        }},
    }


def openapi_endpoint(endpoints: Callable[[], Sequence[Endpoint]]) -> Endpoint:
    """The document endpoint; `endpoints` is read at request time so it lists itself too."""
    async def document(request: Request) -> Response:
        return json_response(build_document(endpoints()))

    return Endpoint("GET", "/openapi.json", document, "This document", "meta", Auth.PUBLIC,
                    responses={200: {"type": "object"}})
