"""The dashboard at `/app/`: the built single-page app in `dashboard_dist`, served read-only.

The build is read with `importlib.resources` (Traversable methods only), so the same code
serves it from a source checkout and from inside `kestrel.pyz`. Every file is read once, at
start, into a map of URL path → bytes; a request can reach only a key of that map, so no
spelling of a path (`..`, `%2e%2e`, `//`, backslashes, absolute paths) can name anything else.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.resources
import logging
import re
from dataclasses import dataclass
from importlib.resources.abc import Traversable

from kestrel.api.endpoints import Auth, Endpoint
from kestrel.http import Handler, Request, Response

log = logging.getLogger("kestrel.dashboard")

PACKAGE = "dashboard_dist"
PREFIX = "/app/"

# Vite names built assets after a hash of their content, so a name never changes meaning and a
# browser may keep it for a year; index.html names the current ones, so it is revalidated.
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"

# What the build needs and nothing more: its own scripts and stylesheets (no inline script or
# style element), API calls to this origin, images from itself or data: URIs (SVG icons).
# Styles set through the CSSOM (React's `style` prop) are not inline styles for CSP.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = (
    ("content-security-policy", CSP),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
)

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".webp": "image/webp",
    ".woff2": "font/woff2",
    ".txt": "text/plain; charset=utf-8",
}
COMPRESSIBLE = (".html", ".js", ".mjs", ".css", ".json", ".map", ".svg", ".txt")
# Smaller bodies gain nothing worth a Content-Encoding and a Vary header.
MIN_GZIP_BYTES = 1024
# Not part of the app: the package marker and the build's bookkeeping.
NOT_SERVED = ("__init__.py", "source-hash.txt")

# A deep link of the app (`/app/logs`, `/app/accounts/3`): plain segments only. Anything else
# that is not a built file (a dot, a percent sign, an empty segment) is answered 404.
_DEEP_LINK = re.compile(r"[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*/?")

MISSING_PAGE = b"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Kestrel: dashboard not built</title></head>
<body><h1>The dashboard is not built</h1>
<p>This Kestrel runs from a source tree without the dashboard's build
(the <code>dashboard_dist</code> package). Build it with Node.js 20 or newer:</p>
<pre>cd dashboard &amp;&amp; npm ci &amp;&amp; npm run build</pre>
<p>and restart Kestrel. The proxy and the admin API work without it.</p></body></html>
"""

NOT_FOUND_PAGE = b"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Not found</title></head>
<body><h1>Not found</h1><p><a href="/app/">Open the dashboard</a></p></body></html>
"""


@dataclass(frozen=True)
class Asset:
    body: bytes
    gzipped: bytes | None
    content_type: str
    cache_control: str
    etag: str

    @property
    def gzip_etag(self) -> str:
        # Another representation, so another validator (RFC 9110, 8.8.3).
        return self.etag[:-1] + '-gz"'


def _walk(node: Traversable, prefix: str = "") -> dict[str, Traversable]:
    found: dict[str, Traversable] = {}
    for child in node.iterdir():
        if child.name.startswith(".") or child.name == "__pycache__" or _is_link(child):
            continue
        if child.is_dir():
            found.update(_walk(child, f"{prefix}{child.name}/"))
        elif child.is_file() and not child.name.endswith((".py", ".pyc")):
            found[prefix + child.name] = child
    return found


def _is_link(node: Traversable) -> bool:
    """A build holds no symlinks (Vite writes plain files), so one is not part of it: followed,
    it could serve any file of the machine, or (a link to `/`, a loop) walk the whole disk at
    start. Only a filesystem path can be one; Traversable itself has no such method."""
    is_symlink = getattr(node, "is_symlink", None)
    return callable(is_symlink) and bool(is_symlink())


def _asset(path: str, body: bytes) -> Asset:
    suffix = path[path.rfind("."):].lower() if "." in path.rsplit("/", 1)[-1] else ""
    gzipped = None
    if suffix in COMPRESSIBLE and len(body) >= MIN_GZIP_BYTES:
        packed = gzip.compress(body, compresslevel=9, mtime=0)
        gzipped = packed if len(packed) < len(body) else None
    return Asset(
        body=body,
        gzipped=gzipped,
        content_type=CONTENT_TYPES.get(suffix, "application/octet-stream"),
        cache_control=IMMUTABLE if path.startswith("assets/") else REVALIDATE,
        etag='"' + hashlib.sha256(body).hexdigest()[:32] + '"',
    )


def load_assets(root: Traversable | None = None) -> dict[str, Asset]:
    """URL path below `/app/` → asset, for every file of the build; empty without a build."""
    if root is None:
        try:
            root = importlib.resources.files(PACKAGE)
        except ModuleNotFoundError:
            return {}
    try:
        files = _walk(root)
    except (FileNotFoundError, NotADirectoryError):
        return {}
    return {path: _asset(path, node.read_bytes()) for path, node in sorted(files.items())
            if path not in NOT_SERVED}


class DashboardApi:
    def __init__(self, assets: dict[str, Asset] | None = None) -> None:
        self._assets = load_assets() if assets is None else assets
        self._index = self._assets.get("index.html")
        if self._index is None:
            log.warning("the dashboard is not built (no %s package with index.html); /app/ "
                        "answers 503 until it is: cd dashboard && npm ci && npm run build",
                        PACKAGE)

    def endpoints(self) -> list[Endpoint]:
        html: dict[int, None] = {200: None, 304: None, 404: None, 503: None}

        def public(path: str, handler: Handler, summary: str,
                   responses: dict[int, None]) -> Endpoint:
            return Endpoint("GET", path, handler, summary, "dashboard", Auth.PUBLIC,
                            responses=responses)

        return [
            public("/", self.root, "Redirect to the dashboard", {302: None}),
            public("/app", self.root, "Redirect to the dashboard", {302: None}),
            public("/app/", self.page, "The dashboard (single-page app)", html),
            public("/app/{path:path}", self.page,
                   "A file of the dashboard's build, or its page for a deep link", html),
        ]

    async def root(self, request: Request) -> Response:
        return Response(302, [("location", PREFIX), ("cache-control", REVALIDATE),
                              *SECURITY_HEADERS])

    async def page(self, request: Request) -> Response:
        if self._index is None:
            return self._html(503, MISSING_PAGE, [("retry-after", "3600")])
        path = request.path_params.get("path", "")
        asset = self._assets.get(path) if path else self._index
        if asset is None and path != "index.html" and _DEEP_LINK.fullmatch(path):
            asset = self._index
        if asset is None:
            return self._html(404, NOT_FOUND_PAGE)
        return _serve(asset, request)

    @staticmethod
    def _html(status: int, body: bytes, extra: list[tuple[str, str]] | None = None) -> Response:
        return Response(status, [("content-type", CONTENT_TYPES[".html"]),
                                 ("cache-control", "no-store"), *(extra or []),
                                 *SECURITY_HEADERS], body)


def _accepts_gzip(request: Request) -> bool:
    for part in ",".join(request.headers.get_all("accept-encoding")).split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() in ("gzip", "*"):
            return params.replace(" ", "").lower() not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


def _serve(asset: Asset, request: Request) -> Response:
    gzipped = asset.gzipped is not None and _accepts_gzip(request)
    etag = asset.gzip_etag if gzipped else asset.etag
    headers = [("content-type", asset.content_type), ("cache-control", asset.cache_control),
               ("etag", etag), *SECURITY_HEADERS]
    if asset.gzipped is not None:
        headers.append(("vary", "accept-encoding"))
    match = request.headers.get("if-none-match")
    if match and etag in (tag.strip().removeprefix("W/") for tag in match.split(",")):
        return Response(304, headers)
    if gzipped and asset.gzipped is not None:
        return Response(200, [*headers, ("content-encoding", "gzip")], asset.gzipped)
    return Response(200, headers, asset.body)
