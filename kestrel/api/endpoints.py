"""An endpoint: a route together with what it needs (auth, error surface) and how it is documented.

The router and `/openapi.json` are both built from the same list of endpoints, so a route
cannot exist undocumented, and authentication is applied by the dispatcher from `auth`,
not remembered by each handler.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from kestrel.api.schema import Schema
from kestrel.http import Handler


class Auth(enum.Enum):
    PUBLIC = "public"
    ADMIN = "admin"
    CLIENT = "client"
    METRICS = "metrics"  # the admin key, or METRICS_TOKEN as a bearer token


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    auth: Auth
    request_schema: Schema | None = None
    # status → JSON schema of the body (None: the body is not JSON or there is none)
    responses: Mapping[int, Schema | None] = field(default_factory=dict)
    query: Mapping[str, Schema] = field(default_factory=dict)
    # path parameter → schema, for `/openapi.json`; a parameter not named here is any string
    params: Mapping[str, Schema] = field(default_factory=dict)
