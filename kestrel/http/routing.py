"""Method + path-pattern routing with `{param}` segments, 404 and 405-with-Allow.

`{name}` matches one non-empty segment; `{name:path}` matches the non-empty rest of the path,
slashes included (a catch-all, e.g. for a single-page app's deep links).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kestrel.http.messages import Handler, MethodNotAllowed, NotFound

_PARAM = re.compile(r"\{([a-z_][a-z0-9_]*)(:path)?\}")


@dataclass(frozen=True)
class Route:
    method: str
    pattern: str
    handler: Handler
    regex: re.Pattern[str]


def _compile(pattern: str) -> re.Pattern[str]:
    parts: list[str] = []
    last = 0
    for match in _PARAM.finditer(pattern):
        parts.append(re.escape(pattern[last : match.start()]))
        parts.append(f"(?P<{match.group(1)}>{'.+' if match.group(2) else '[^/]+'})")
        last = match.end()
    parts.append(re.escape(pattern[last:]))
    return re.compile("".join(parts) + r"\Z")


class Router:
    """Routes are matched in the order added; a GET route answers HEAD too.

    A route whose path has no parameter is found by a dictionary lookup, when no route added
    before it matches its path: every request would otherwise try the patterns one by one
    until its own (a dozen for the proxy's routes). Anything else, and a lookup that finds the
    path but not the method, takes the patterns in order.
    """

    def __init__(self) -> None:
        self._routes: list[Route] = []
        self._literal: dict[str, list[Route]] = {}

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        route = Route(method.upper(), pattern, handler, _compile(pattern))
        if _PARAM.search(pattern) is None and all(
                earlier.pattern == pattern or earlier.regex.match(pattern) is None
                for earlier in self._routes):
            self._literal.setdefault(pattern, []).append(route)
        self._routes.append(route)

    @property
    def routes(self) -> tuple[Route, ...]:
        return tuple(self._routes)

    def match(self, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        """The handler and path parameters, or `NotFound` / `MethodNotAllowed` (with `allow`)."""
        for route in self._literal.get(path, ()):
            if route.method == method or (method == "HEAD" and route.method == "GET"):
                return route.handler, {}
        allowed: list[str] = []
        for route in self._routes:
            found = route.regex.match(path)
            if found is None:
                continue
            if route.method == method or (method == "HEAD" and route.method == "GET"):
                return route.handler, found.groupdict()
            allowed.append(route.method)
        if not allowed:
            raise NotFound(f"no route for {path}")
        if "GET" in allowed and "HEAD" not in allowed:
            allowed.append("HEAD")
        raise MethodNotAllowed(f"{method} is not allowed on {path}", tuple(sorted(set(allowed))))
