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
