"""The routes a running Kestrel documents, read from its own `/openapi.json`.

Security tests take their list of routes from the document rather than from a list of their own,
so a route added later is covered the day it appears (the router and the document are built from
the same endpoints, see `tests/test_openapi.py`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD")


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    """The documented pattern, e.g. `/admin/accounts/{id}`."""
    schemes: frozenset[str]
    """Every security scheme that may authorise it (empty: public)."""


def operations(document: Mapping[str, Any]) -> list[Operation]:
    return [Operation(method.upper(), path,
                      frozenset(name for requirement in operation.get("security", [])
                                for name in requirement))
            for path, item in document["paths"].items() for method, operation in item.items()]


def admin_operations(document: Mapping[str, Any]) -> list[Operation]:
    """The operations the admin key opens: `/admin/...` and `/metrics`."""
    return [op for op in operations(document) if "adminKey" in op.schemes]


def concrete(path: str, values: Mapping[str, object]) -> str:
    """`path` with each `{name}` replaced by `values[name]`."""
    return re.sub(r"\{([a-z_]+)\}", lambda m: str(values[m.group(1)]), path)
