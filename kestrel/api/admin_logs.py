"""Admin API for request logs: a filtered, paged listing, the aggregate stats behind the charts,
and usage (requests, tokens, cost) by day or month.

Query strings are parsed here, each known parameter validated against the same schema that
documents it in `/openapi.json`; unknown parameters are ignored. Times go out as RFC 3339 (UTC,
milliseconds) and come in as RFC 3339 or epoch seconds.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import UTC, date, tzinfo
from typing import Any
from urllib.parse import parse_qs

from kestrel.api.admin import ERROR
from kestrel.api.endpoints import Auth, Endpoint
from kestrel.api.responses import iso_time, json_response, parse_time
from kestrel.api.schema import Schema, validate
from kestrel.domain import ValidationError
from kestrel.http import Request, Response
from kestrel.proxy.key_limits import periods
from kestrel.store.request_logs import RequestLogStore, StoredLog
from kestrel.store.usage import UsageStore

DEFAULT_LIMIT = 50
# A page of 500 rows is about 300 kB of JSON: plenty for a table, small enough to render at once.
MAX_LIMIT = 500

# window → (seconds covered, bucket seconds): 60, 96 and 168 points, each a readable chart.
WINDOWS = {"1h": (3_600, 60), "24h": (86_400, 900), "7d": (7 * 86_400, 3_600)}
DEFAULT_WINDOW = "24h"

_ID = {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}
_TIME_FORMS = "RFC 3339 time (with offset, e.g. 2025-01-31T12:00:00Z) or epoch seconds."
_TIME_PARAM = {"type": "string", "maxLength": 64}

LOGS_QUERY: dict[str, Schema] = {
    "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT,
              "description": "Rows per page."},
    "cursor": {"type": "string", "maxLength": 200,
               "description": "`next_cursor` of the previous page, with the same filters."},
    "account_id": {**_ID, "description": "Only requests this account served or tried (and "
                                         "failed)."},
    "key_id": {**_ID, "description": "Only requests made with this client key."},
    "status": {"type": "integer", "minimum": 100, "maximum": 599,
               "description": "Only requests answered with this HTTP status."},
    "model": {"type": "string", "minLength": 1, "maxLength": 200,
              "description": "Only requests for a model whose name contains this "
                             "(`sonnet`, `claude-haiku-4`); case does not matter."},
    "instance": {"type": "string", "minLength": 1, "maxLength": 200,
                 "description": "Only requests served by this instance (its INSTANCE_NAME)."},
    "since": {**_TIME_PARAM, "description": f"Only requests at or after this time. {_TIME_FORMS}"},
    "until": {**_TIME_PARAM, "description": f"Only requests before this time. {_TIME_FORMS}"},
}

STATS_QUERY: dict[str, Schema] = {
    "window": {"type": "string", "enum": list(WINDOWS), "default": DEFAULT_WINDOW,
               "description": "Time covered, ending with the current bucket: 1h in 1-minute "
                              "buckets, 24h in 15-minute buckets, 7d in 1-hour buckets."},
}

_TIME = {"type": "string", "format": "date-time"}
_COUNT = {"type": "integer", "minimum": 0}
_MS = {"type": ["number", "null"], "minimum": 0}


def _object(properties: dict[str, Schema], description: str | None = None) -> Schema:
    # additionalProperties false: the conformance test then also catches an undocumented field.
    schema: Schema = {"type": "object", "properties": properties, "required": list(properties),
                      "additionalProperties": False}
    if description:
        schema["description"] = description
    return schema


ATTEMPT = _object({
    "account_id": {"type": "integer"},
    "status": {"type": ["integer", "null"],
               "description": "Upstream status; null when no HTTP answer came (connect error, "
                              "timeout, reset)."},
    "error_type": {"type": ["string", "null"]},
    "duration_ms": {"type": "number", "minimum": 0,
                    "description": "How long the try took, to the microsecond."},
    "proxy": {"type": ["string", "null"],
              "description": "The proxy that failed, for `proxy_unreachable`, `proxy_refused` "
                             "and `proxy_auth` (scheme, host and port; never a password)."},
    "message": {"type": ["string", "null"],
                "description": "The upstream's error message (at most 500 characters)."},
    "account_name": {"type": ["string", "null"],
                     "description": "The account's name at the time; null in rows written "
                                    "before names were kept."},
}, "One try of one upstream account.")

LOG = _object({
    "id": {"type": "integer"},
    "ts": _TIME,
    "request_id": {"type": "string"},
    "route": {"type": "string"},
    "status": {"type": "integer", "description": "The status the client got."},
    "key_id": {"type": ["integer", "null"]},
    "account_id": {"type": ["integer", "null"],
                   "description": "The account that gave the final answer, if any."},
    "account_name": {"type": ["string", "null"],
                     "description": "Its name at the time, kept after a rename or deletion."},
    "model": {"type": ["string", "null"]},
    "stream": {"type": "boolean"},
    "error_type": {"type": ["string", "null"],
                   "description": "The upstream's error type; or why Kestrel answered itself: "
                                  "`no_accounts`, `all_cooling_down`, `none_can_serve`, a key's "
                                  "control or limit (`rpm`, `model_not_allowed`...), "
                                  "`missing_key`, `unknown_key`, `revoked_key`."},
    "error_message": {"type": ["string", "null"],
                      "description": "Why, in words (at most 500 characters): the upstream's "
                                     "message, or Kestrel's own, naming the account that comes "
                                     "back first when all are cooling down."},
    "input_tokens": _COUNT,
    "output_tokens": _COUNT,
    "cache_read_tokens": _COUNT,
    "cache_creation_tokens": _COUNT,
    "cost_usd": {"type": "number", "minimum": 0,
                 "description": "What the request cost, from its final usage and the price "
                                "table."},
    "priced": {"type": "boolean",
               "description": "False: the model is not in the price table, and cost_usd is 0 "
                              "rather than its cost."},
    "latency_ms": {"type": "number", "minimum": 0},
    "ttfb_ms": _MS,
    "client": {"type": ["string", "null"]},
    "user_agent": {"type": ["string", "null"]},
    "attempts": {"type": "array", "items": ATTEMPT},
    "instance": {"type": ["string", "null"],
                 "description": "The Kestrel instance that served it (INSTANCE_NAME); null for "
                                "rows written before instances were named."},
}, "One client request on a proxy route.")

LOG_PAGE = _object({
    "data": {"type": "array", "items": LOG, "description": "Newest first."},
    "next_cursor": {"type": ["string", "null"],
                    "description": "Pass as `cursor` for the next page; null on the last."},
})

_USD = {"type": "number", "minimum": 0}
_TOKENS = {"input_tokens": _COUNT, "output_tokens": _COUNT, "cache_read_tokens": _COUNT,
           "cache_creation_tokens": _COUNT, "cost_usd": _USD}
_ERRORS: dict[str, Schema] = {
    "errors": {**_COUNT, "description": "Requests answered with status >= 400, or whose "
                                        "error_type is set (a stream that failed midway)."},
    "pool_errors": {**_COUNT, "description": "Errors the pool is to blame for: 5xx, Kestrel's "
                                             "own 429 or 503 when no account could serve, "
                                             "streams broken midway."},
    "client_errors": {**_COUNT, "description": "The client's own: bad requests, unknown "
                                               "models, keys refused or over their limits, "
                                               "clients that went away."},
}
_GROUP: dict[str, Schema] = {
    "requests": _COUNT,
    **_ERRORS,
    "errors_by_type": {"type": "object", "additionalProperties": _COUNT,
                       "description": "Errors by error_type, or `http_<status>` if none."},
    **_TOKENS,
    "p50_latency_ms": _MS,
    "p95_latency_ms": _MS,
    "p50_ttfb_ms": _MS,
    "p95_ttfb_ms": _MS,
}


def _ranking(name: str, id_schema: Schema, extra: dict[str, Schema] | None = None,
             description: str = "Busiest first.") -> Schema:
    return {"type": "array", "description": description,
            "items": _object({name: id_schema, **_GROUP, **(extra or {})})}


_TRIES: dict[str, Schema] = {
    "attempts": {**_COUNT, "description": "Upstream tries of this account, for any request."},
    "served": {**_COUNT, "description": "Tries it answered with 2xx."},
    "failed": {**_COUNT, "description": "Tries that failed (and moved on, or ended the "
                                        "request)."},
    "failures_by_type": {"type": "object", "additionalProperties": _COUNT,
                         "description": "Failed tries by upstream error type, `http_<status>`, "
                                        "or what broke (`connect`, `timeout`, `proxy_auth`...)."},
    "last_failure_at": {"type": ["string", "null"], "format": "date-time"},
}


STATS = _object({
    "window": {"type": "string", "enum": list(WINDOWS)},
    "since": _TIME,
    "until": _TIME,
    "bucket_seconds": {"type": "integer", "minimum": 1},
    "totals": _object(_GROUP, "Percentiles are nearest-rank; null when there is no value."),
    "accounts": _ranking("account_id", {"type": ["integer", "null"]}, _TRIES,
                         "By requests served, then by tries: an account that only failed is "
                         "listed too. The request figures count what it served; the tries, "
                         "everything it was asked."),
    "keys": _ranking("key_id", {"type": ["integer", "null"]}),
    "models": _ranking("model", {"type": ["string", "null"]}),
    "series": {"type": "array", "description": "Every bucket of the window, oldest first; "
                                               "empty buckets count zero.",
               "items": _object({"start": _TIME, "requests": _COUNT, **_ERRORS,
                                 **_TOKENS, "p50_latency_ms": _MS, "p95_latency_ms": _MS,
                                 "p50_ttfb_ms": _MS, "p95_ttfb_ms": _MS})},
})


_USAGE_COUNTS = ("requests", "input_tokens", "output_tokens", "cache_read_tokens",
                 "cache_creation_tokens", "unpriced")
_DAY_PARAM = {"type": "string", "pattern": r"^[0-9]{4}-[0-9]{2}(-[0-9]{2})?$",
              "description": "A day (YYYY-MM-DD) or a month (YYYY-MM) in TIME_ZONE."}
USAGE_QUERY: dict[str, Schema] = {
    "group_by": {"type": "string", "enum": ["key", "account", "model"], "default": "key"},
    "period": {"type": "string", "enum": ["day", "month"], "default": "day"},
    "from": {**_DAY_PARAM, "description": "First day (a month: its first day). Default: the "
                                          "first of this month (period=day), of the same month "
                                          "last year (period=month)."},
    "to": {**_DAY_PARAM, "description": "Last day, included (a month: its last day). Default: "
                                        "today."},
}
_USAGE_ROW: dict[str, Schema] = {
    "period": {"type": "string", "description": "YYYY-MM-DD, or YYYY-MM by month."},
    **{name: _COUNT for name in _USAGE_COUNTS},
    "cost_usd": _USD,
}
USAGE = _object({
    "group_by": {"type": "string", "enum": ["key", "account", "model"]},
    "period": {"type": "string", "enum": ["day", "month"]},
    "from": {"type": "string"},
    "to": {"type": "string"},
    "time_zone": {"type": "string", "description": "TIME_ZONE: where days begin."},
    "data": {"type": "array", "description": "Oldest period first; within one, by group. "
                                             "`unpriced` counts requests for models not in the "
                                             "price table (costed at 0).",
             "items": {"type": "object", "properties": {
                 **_USAGE_ROW, "key": {"type": ["integer", "null"]},
                 "account": {"type": ["integer", "null"]},
                 "model": {"type": ["string", "null"]}}, "required": list(_USAGE_ROW)}},
    "totals": _object({name: _COUNT for name in _USAGE_COUNTS} | {"cost_usd": _USD}),
})


def _day(value: str | None, name: str, *, end: bool = False) -> str | None:
    """A YYYY-MM-DD day; a month is its first day, or its last (`-31`) for an `end`."""
    if value is None:
        return None
    try:
        date.fromisoformat(value if len(value) == 10 else f"{value}-01")
    except ValueError:
        raise ValidationError(f"{name} is not a date", field=name) from None
    return value if len(value) == 10 else f"{value}-{'31' if end else '01'}"


def log_json(stored: StoredLog) -> dict[str, Any]:
    row = stored.log
    return {
        "id": stored.id,
        "ts": iso_time(row.ts),
        "request_id": row.request_id,
        "route": row.route,
        "status": row.status,
        "key_id": row.key_id,
        "account_id": row.account_id,
        "model": row.model,
        "stream": row.stream,
        "error_type": row.error_type,
        "input_tokens": row.input_tokens,
        "output_tokens": row.output_tokens,
        "cache_read_tokens": row.cache_read_tokens,
        "cache_creation_tokens": row.cache_creation_tokens,
        "cost_usd": row.cost_usd,
        "priced": row.priced,
        "latency_ms": row.latency_ms,
        "ttfb_ms": row.ttfb_ms,
        "client": row.client,
        "user_agent": row.user_agent,
        "account_name": next((a.account_name for a in reversed(row.attempts)
                              if a.account_id == row.account_id), None),
        "error_message": row.error_message,
        "attempts": [{"account_id": a.account_id, "status": a.status,
                      "error_type": a.error_type, "duration_ms": a.duration_ms,
                      "proxy": a.proxy, "message": a.message, "account_name": a.account_name}
                     for a in row.attempts],
        "instance": stored.instance,
    }


# --- query-string parsing -------------------------------------------------------------------------

_INTEGER = re.compile(r"[+-]?[0-9]{1,19}")


class _Query:
    """The known parameters of one query string, each validated against its documented schema."""

    def __init__(self, request: Request, schemas: dict[str, Schema]) -> None:
        self._schemas = schemas
        self._values: dict[str, str] = {}
        for name, values in parse_qs(request.query, keep_blank_values=True).items():
            if name not in schemas:
                continue  # unknown parameters are ignored, as documented
            if len(values) > 1:
                raise ValidationError(f"{name} is given more than once", field=name)
            self._values[name] = values[0]

    def string(self, name: str) -> str | None:
        value = self._values.get(name)
        if value is not None:
            validate(self._schemas[name], value, path=name)
        return value

    def integer(self, name: str) -> int | None:
        raw = self._values.get(name)
        if raw is None:
            return None
        if not _INTEGER.fullmatch(raw):
            raise ValidationError(f"{name} must be an integer", field=name)
        value = int(raw)
        validate(self._schemas[name], value, path=name)
        return value

    def time(self, name: str) -> float | None:
        """RFC 3339 with an offset, or epoch seconds, as epoch seconds."""
        raw = self.string(name)
        return None if raw is None else parse_time(raw, name)


class LogsApi:
    def __init__(self, store: RequestLogStore, usage: UsageStore, clock: Callable[[], float],
                 zone: tzinfo = UTC) -> None:
        self._store = store
        self._usage = usage
        self._clock = clock
        self._zone = zone  # TIME_ZONE: where days begin

    def endpoints(self) -> list[Endpoint]:
        errors: dict[int, Schema | None] = {401: ERROR, 422: ERROR, 429: ERROR}
        return [
            Endpoint("GET", "/admin/logs", self.list_logs, "List request logs, newest first",
                     "logs", Auth.ADMIN, responses={200: LOG_PAGE, **errors}, query=LOGS_QUERY),
            Endpoint("GET", "/admin/stats", self.stats,
                     "Request, error, token, cost and latency totals and time series", "logs",
                     Auth.ADMIN, responses={200: STATS, **errors}, query=STATS_QUERY),
            Endpoint("GET", "/admin/usage", self.usage,
                     "Requests, tokens and cost per key, account or model, by day or month",
                     "logs", Auth.ADMIN, responses={200: USAGE, **errors}, query=USAGE_QUERY),
        ]

    async def usage(self, request: Request) -> Response:
        query = _Query(request, USAGE_QUERY)
        group_by = query.string("group_by") or "key"
        period = query.string("period") or "day"
        at = periods(self._clock(), self._zone)
        first = _day(query.string("from"), "from") or (
            f"{at.month}-01" if period == "day" else f"{int(at.month[:4]) - 1}{at.month[4:]}-01")
        last = _day(query.string("to"), "to", end=True) or at.day
        if last < first:
            raise ValidationError("to must not be before from", field="to")
        rows = await self._usage.report(group_by=group_by, first_day=first, last_day=last,
                                        by_month=period == "month")
        totals = {name: 0 for name in _USAGE_COUNTS} | {"cost_usd": 0.0}
        for row in rows:
            for name in totals:
                totals[name] += row[name]
        return json_response({"group_by": group_by, "period": period, "from": first,
                              "to": last, "time_zone": at.zone_name, "data": rows,
                              "totals": totals})

    async def list_logs(self, request: Request) -> Response:
        query = _Query(request, LOGS_QUERY)
        limit = query.integer("limit")
        since, until = query.time("since"), query.time("until")
        if since is not None and until is not None and until <= since:
            raise ValidationError("until must be after since", field="until")
        rows, next_cursor = await self._store.query(
            limit=DEFAULT_LIMIT if limit is None else limit,
            cursor=query.string("cursor"),
            account_id=query.integer("account_id"),
            key_id=query.integer("key_id"),
            status=query.integer("status"),
            model=query.string("model"),
            instance=query.string("instance"),
            since=since,
            until=until,
        )
        return json_response({"data": [log_json(row) for row in rows],
                              "next_cursor": next_cursor})

    async def stats(self, request: Request) -> Response:
        window = _Query(request, STATS_QUERY).string("window") or DEFAULT_WINDOW
        seconds, bucket = WINDOWS[window]
        # Buckets sit on whole minutes / quarters / hours, the last one being the current one, so
        # a chart refreshed a minute later shifts by whole buckets instead of redrawing them all.
        until = (math.floor(self._clock() / bucket) + 1) * bucket
        since = until - seconds
        stats = await self._store.stats(since=since, until=until, bucket_seconds=bucket)
        return json_response({
            "window": window,
            "since": iso_time(since),
            "until": iso_time(until),
            "bucket_seconds": bucket,
            "totals": stats["totals"],
            "accounts": [{**row, "last_failure_at": iso_time(row["last_failure_at"])}
                         for row in stats["accounts"]],
            "keys": stats["keys"],
            "models": stats["models"],
            "series": [{**point, "start": iso_time(point["start"])} for point in stats["series"]],
        })
