"""The router's path patterns: `{name}` takes one segment, `{name:path}` the rest of the path."""

from __future__ import annotations

import pytest

from kestrel.http import MethodNotAllowed, NotFound, Request, Response, Router


async def _handler(request: Request) -> Response:
    return Response()


def _router(*patterns: str) -> Router:
    router = Router()
    for pattern in patterns:
        router.add("GET", pattern, _handler)
    return router


def test_segment_parameter_takes_one_segment() -> None:
    router = _router("/items/{id}")
    assert router.match("GET", "/items/7")[1] == {"id": "7"}
    for path in ("/items/", "/items/7/8", "/items"):
        with pytest.raises(NotFound):
            router.match("GET", path)


def test_path_parameter_takes_the_rest() -> None:
    router = _router("/app/", "/app/{path:path}")
    assert router.match("GET", "/app/")[1] == {}
    assert router.match("GET", "/app/logs")[1] == {"path": "logs"}
    assert router.match("GET", "/app/assets/x-1.js")[1] == {"path": "assets/x-1.js"}
    assert router.match("GET", "/app//etc/passwd")[1] == {"path": "/etc/passwd"}
    assert router.match("HEAD", "/app/a/b/")[1] == {"path": "a/b/"}
    with pytest.raises(NotFound):
        router.match("GET", "/apps/x")
    with pytest.raises(MethodNotAllowed):
        router.match("POST", "/app/logs")


def test_earlier_routes_win_over_a_catch_all() -> None:
    router = Router()

    async def specific(request: Request) -> Response:
        return Response(201)

    router.add("GET", "/app/{path:path}", _handler)
    router.add("GET", "/x/special", specific)
    router.add("GET", "/x/{rest:path}", _handler)
    assert router.match("GET", "/x/special")[0] is specific
    assert router.match("GET", "/x/special/more")[0] is _handler


def test_mixed_parameters() -> None:
    router = _router("/files/{bucket}/{key:path}")
    assert router.match("GET", "/files/b1/a/b/c.txt")[1] == {"bucket": "b1", "key": "a/b/c.txt"}


def test_a_path_without_parameters_keeps_the_order_routes_were_added_in() -> None:
    async def first(request: Request) -> Response:
        return Response(201)

    async def pattern(request: Request) -> Response:
        return Response(202)

    async def later(request: Request) -> Response:
        return Response(203)

    router = Router()
    router.add("GET", "/a", first)
    router.add("POST", "/{name}", pattern)  # between two routes of the same plain path
    router.add("POST", "/a", later)
    router.add("DELETE", "/a", later)
    router.add("GET", "/{name}/b", pattern)  # before the plain path it matches
    router.add("GET", "/a/b", later)
    assert router.match("GET", "/a")[0] is first
    assert router.match("HEAD", "/a")[0] is first
    assert router.match("POST", "/a")[0] is pattern
    assert router.match("DELETE", "/a")[0] is later
    assert router.match("GET", "/a/b") == (pattern, {"name": "a"})
    with pytest.raises(MethodNotAllowed) as refused:
        router.match("PUT", "/a")
    assert refused.value.allow == ("DELETE", "GET", "HEAD", "POST")
