"""A small HTTP/1.1 server on h11 and asyncio. Reusable: imports nothing else from Kestrel."""

from kestrel.http.messages import (
    BadRequest,
    BodyTooLarge,
    Handler,
    Headers,
    HeadersTooLarge,
    HTTPError,
    MethodNotAllowed,
    NotFound,
    Request,
    Response,
)
from kestrel.http.routing import Route, Router

__all__ = [
    "BadRequest",
    "BodyTooLarge",
    "HTTPError",
    "Handler",
    "Headers",
    "HeadersTooLarge",
    "MethodNotAllowed",
    "NotFound",
    "Request",
    "Response",
    "Route",
    "Router",
]
