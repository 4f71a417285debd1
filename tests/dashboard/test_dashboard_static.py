"""`/app/`: the built dashboard served from `dashboard_dist`, and nothing else.

Requests go over a raw socket (`http.client`), which sends the target exactly as written:
HTTP client libraries normalise `..` and `//` away before a server could ever see them.
"""

from __future__ import annotations

import asyncio
import gzip
import http.client
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from kestrel.api.dashboard import CSP, DashboardApi, load_assets
from kestrel.http import Headers, Request

from conftest import ADMIN_KEY, ENCRYPTION_KEY
from support.process import KestrelProcess

ROOT = Path(__file__).resolve().parents[2]
DIST = ROOT / "dashboard_dist"


@pytest.fixture(scope="module")
def kestrel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KestrelProcess]:
    """One server for the module: these tests only read."""
    workdir = tmp_path_factory.mktemp("dashboard")
    with KestrelProcess(workdir, env={"ADMIN_KEY": ADMIN_KEY,
                                      "ENCRYPTION_KEY": ENCRYPTION_KEY}) as process:
        yield process


def get(kestrel: KestrelProcess, target: str, method: str = "GET",
        headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    assert kestrel.port is not None
    conn = http.client.HTTPConnection("127.0.0.1", kestrel.port, timeout=10)
    try:
        conn.request(method, target, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def built_assets() -> list[str]:
    """The hashed files index.html loads, as `/app/assets/...` paths."""
    index = (DIST / "index.html").read_text()
    return re.findall(r'(?:src|href)="(/app/assets/[^"]+)"', index)


def assert_page_headers(headers: dict[str, str]) -> None:
    assert headers["content-security-policy"] == CSP
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "no-referrer"


def test_csp_is_strict() -> None:
    directives = dict(d.strip().split(" ", 1) for d in CSP.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'"  # no inline scripts, no eval
    assert "unsafe" not in CSP
    assert directives["frame-ancestors"] == "'none'"


def test_index_and_deep_links(kestrel: KestrelProcess) -> None:
    index = (DIST / "index.html").read_bytes()
    for target in ("/app/", "/app/logs", "/app/accounts", "/app/keys/", "/app/logs/42"):
        status, headers, body = get(kestrel, target)
        assert status == 200, target
        assert body == index, target
        assert headers["content-type"] == "text/html; charset=utf-8"
        assert headers["cache-control"] == "no-cache"
        assert_page_headers(headers)


def test_root_redirects_to_the_dashboard(kestrel: KestrelProcess) -> None:
    for target in ("/", "/app"):
        status, headers, body = get(kestrel, target)
        assert (status, headers["location"], body) == (302, "/app/", b"")
    # Claude Code probes the base URL with HEAD: it must stay 2xx/3xx.
    status, _, body = get(kestrel, "/", method="HEAD")
    assert status == 302 and body == b""
    assert get(kestrel, "/api/hello")[0] == 200


def test_hashed_assets_are_immutable_with_the_right_type(kestrel: KestrelProcess) -> None:
    assets = built_assets()
    assert any(a.endswith(".js") for a in assets) and any(a.endswith(".css") for a in assets)
    types = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
    for target in assets:
        status, headers, body = get(kestrel, target)
        assert status == 200, target
        assert headers["content-type"] == types[Path(target).suffix]
        assert headers["cache-control"] == "public, max-age=31536000, immutable"
        assert body == (DIST / target.removeprefix("/app/")).read_bytes()
        assert_page_headers(headers)
    status, headers, _ = get(kestrel, "/app/favicon.svg")
    assert (status, headers["content-type"], headers["cache-control"]) == (
        200, "image/svg+xml", "no-cache")


def test_gzip_and_revalidation(kestrel: KestrelProcess) -> None:
    script = next(a for a in built_assets() if a.endswith(".js"))
    plain = (DIST / script.removeprefix("/app/")).read_bytes()
    status, headers, body = get(kestrel, script, headers={"accept-encoding": "gzip, br"})
    assert status == 200 and headers["content-encoding"] == "gzip"
    assert headers["vary"] == "accept-encoding"
    assert gzip.decompress(body) == plain
    status, headers, body = get(kestrel, script, headers={"accept-encoding": "gzip;q=0"})
    assert "content-encoding" not in headers and body == plain

    _, headers, _ = get(kestrel, "/app/")
    status, again, body = get(kestrel, "/app/", headers={"if-none-match": headers["etag"]})
    assert (status, body) == (304, b"")
    assert again["cache-control"] == "no-cache"


@pytest.mark.parametrize("target", [
    "/app/../kestrel/app.py",
    "/app/../pyproject.toml",
    "/app/%2e%2e/",
    "/app/%2e%2e/kestrel/app.py",
    "/app/%2E%2E%2Fkestrel%2Fapp.py",
    "/app/assets/../../kestrel/app.py",
    "/app/assets/..%2f..%2fkestrel%2fapp.py",
    "/app//etc/passwd",
    "/app/..\\kestrel\\app.py",
    "/app/.%2e/.%2e/etc/passwd",
    "/app/%00",
    "/app/__init__.py",
    "/app/source-hash.txt",
    "/app/assets/missing-0123abcd.js",
    "/app/index.html/",
    "/app/C:/Windows/win.ini",
    "/app/" + str(ROOT / "kestrel" / "app.py"),
])
def test_only_built_files_are_reachable(kestrel: KestrelProcess, target: str) -> None:
    status, headers, body = get(kestrel, target)
    assert status == 404, (target, status)
    assert b"import" not in body and b"root:" not in body
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert_page_headers(headers)


def test_absolute_form_target_does_not_escape(kestrel: KestrelProcess) -> None:
    status, _, body = get(kestrel, "http://127.0.0.1/app/../kestrel/app.py")
    assert status in (400, 404) and b"import" not in body


def test_map_holds_only_the_build(tmp_path: Path) -> None:
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text("<!doctype html><title>x</title>")
    (tmp_path / "assets" / "app-1234.js").write_text("console.log(1)" * 200)
    (tmp_path / "__init__.py").write_text("")
    (tmp_path / "source-hash.txt").write_text("abc\n")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "x.pyc").write_bytes(b"\0")
    assets = load_assets(tmp_path)
    assert sorted(assets) == ["assets/app-1234.js", "index.html"]
    assert assets["assets/app-1234.js"].gzipped is not None
    assert assets["index.html"].gzipped is None  # too small to be worth it


def test_without_a_build_the_dashboard_says_how_to_build_it() -> None:
    api = DashboardApi(assets={})
    page = next(e for e in api.endpoints() if e.path == "/app/{path:path}")
    request = Request(method="GET", target="/app/logs", headers=Headers(), client=None,
                      request_id="r", receive=_no_body)
    request.path_params = {"path": "logs"}
    response = asyncio.run(page.handler(request))
    assert response.status == 503
    assert isinstance(response.body, bytes) and b"npm run build" in response.body
    assert dict(response.headers)["content-type"] == "text/html; charset=utf-8"


async def _no_body() -> bytes | None:
    return None
