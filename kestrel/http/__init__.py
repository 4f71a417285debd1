"""A small HTTP/1.1 server on h11 and asyncio. Reusable: imports nothing else from Kestrel."""

from kestrel.http.limits import ServerLimits
from kestrel.http.messages import (
    AccessEntry,
    AccessLog,
    BadRequest,
    BodyTooLarge,
    Handler,
    Headers,
    HeadersTooLarge,
    HTTPError,
    MethodNotAllowed,
    NotFound,
    Request,
    RequestTimeout,
    Response,
)
from kestrel.http.routing import Route, Router
from kestrel.http.server import Server

__all__ = [
    "AccessEntry",
    "AccessLog",
    "BadRequest",
    "BodyTooLarge",
    "HTTPError",
    "Handler",
    "Headers",
    "HeadersTooLarge",
    "MethodNotAllowed",
    "NotFound",
    "Request",
    "RequestTimeout",
    "Response",
    "Route",
    "Router",
    "Server",
    "ServerLimits",
]
