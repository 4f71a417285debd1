"""Building JSON responses and rendering times, shared by every surface."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from kestrel.domain import ClientError, ValidationError
from kestrel.http import Request, Response
from kestrel.jsontext import compact

JSON_TYPE = "application/json"


def json_response(
    body: Any, status: int = 200, headers: Iterable[tuple[str, str]] = (),
    checked_headers: Sequence[tuple[bytes, bytes]] = (),
) -> Response:
    """`checked_headers`: fields relayed from upstream (see `Response.checked_headers`)."""
    return json_text_response(compact(body), status, headers, checked_headers)


def json_text_response(
    text: str, status: int = 200, headers: Iterable[tuple[str, str]] = (),
    checked_headers: Sequence[tuple[bytes, bytes]] = (),
) -> Response:
    """A body already written as JSON text (a translated answer), as `json_response` sends
    a value."""
    return Response(status, [("content-type", JSON_TYPE), *headers], text.encode(),
                    checked_headers)


def iso_time(ts: float | None) -> str | None:
    """RFC 3339 in UTC with milliseconds: what both JavaScript and humans read without help."""
    if ts is None:
        return None
    moment = datetime.fromtimestamp(ts, UTC)
    # The year by hand: strftime's %Y leaves years before 1000 unpadded on some C libraries,
    # and RFC 3339 wants four digits.
    return (f"{moment.year:04d}-" + moment.strftime("%m-%dT%H:%M:%S.")
            + f"{moment.microsecond // 1000:03d}Z")


# The times RFC 3339 (and Python's datetime) can write: years 1 to 9999, as epoch seconds.
EARLIEST = datetime(1, 1, 1, tzinfo=UTC).timestamp()
LATEST = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()
_EPOCH = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)")


def parse_time(raw: str, field: str) -> float:
    """RFC 3339 with an offset, or epoch seconds, as epoch seconds; `ValidationError` naming
    `field` for anything else."""
    if _EPOCH.fullmatch(raw):
        value = float(raw)
    else:
        try:
            moment = datetime.fromisoformat(raw)
        except ValueError:
            raise ValidationError(f"{field} must be an RFC 3339 time or epoch seconds",
                                  field=field) from None
        if moment.tzinfo is None:
            # Without an offset the moment depends on whose clock is meant: refuse to guess.
            raise ValidationError(f"{field} needs a UTC offset, for example Z or +02:00",
                                  field=field)
        value = moment.timestamp()
    if not math.isfinite(value) or not EARLIEST <= value <= LATEST:
        raise ValidationError(f"{field} is out of range (years 1 to 9999)", field=field)
    return value


async def read_json_object(request: Request) -> dict[str, Any]:
    """The body as a JSON object, or a `ClientError` that says what is wrong with it."""
    raw = await request.body()
    if not raw.strip():
        raise ClientError("the request body must be a JSON object; it is empty")
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ClientError(f"the request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ClientError("the request body is nested too deeply") from None
    if not isinstance(value, dict):
        raise ClientError("the request body must be a JSON object")
    return value
