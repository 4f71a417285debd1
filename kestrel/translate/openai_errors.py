"""OpenAI's error object for a failure known by its HTTP status and Anthropic-style type. Pure.

The official openai SDKs choose the exception class from the HTTP status alone (400
BadRequestError, 401 AuthenticationError, 403 PermissionDeniedError, 404 NotFoundError, 422
UnprocessableEntityError, 429 RateLimitError, 5xx InternalServerError) and expose the body's
`type`, `param` and `code` on it for code that wants to branch further. So the status must be
right, and `type` / `code` follow the names OpenAI uses where it has one.

A stream that already started cannot change its status: an error inside it is sent as an event
whose data is this same object, which the SDKs raise as `APIError`.
"""

from __future__ import annotations

from typing import Any

# The HTTP status Anthropic pairs with each error type, for errors that arrive without one
# (an `event: error` inside a started stream).
ANTHROPIC_ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}

_TYPE_BY_STATUS = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
}
# OpenAI's own codes for the two failures clients most often branch on.
_CODE_BY_STATUS = {401: "invalid_api_key", 429: "rate_limit_exceeded"}
# Types that say nothing the OpenAI type does not already say.
_GENERIC_TYPES = frozenset({"invalid_request_error", "api_error"})


def openai_type(status: int) -> str:
    """OpenAI's `type` for a status: its names for auth, permission, not-found and rate
    limits, `server_error` for 5xx, `invalid_request_error` for every other client error."""
    if status >= 500:
        return "server_error"
    return _TYPE_BY_STATUS.get(status, "invalid_request_error")


def error_object(status: int, kind: str | None, message: str,
                 param: str | None = None) -> dict[str, Any]:
    """`{"error": {"message", "type", "param", "code"}}`.

    `kind` is the Anthropic-style type (ours or the upstream's); when it is more specific than
    OpenAI's type (`request_too_large`, `overloaded_error`, ...) it becomes the `code`, so the
    detail is not lost in translation.
    """
    type_ = openai_type(status)
    code = _CODE_BY_STATUS.get(status)
    if code is None and kind and kind != type_ and kind not in _GENERIC_TYPES:
        code = kind
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def stream_error_object(kind: str | None, message: str | None) -> dict[str, Any]:
    """The error event for an upstream `event: error` (or a broken stream) after the start."""
    status = ANTHROPIC_ERROR_STATUS.get(kind or "", 500)
    return error_object(status, kind, message or "the upstream stream failed")
