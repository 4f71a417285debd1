"""`/app/` under attack: only the files of the build, as they were at start, are ever served.

The real process serves a copy of the build planted in its working directory (`python -m`
puts that directory first on `sys.path`, so `dashboard_dist` is imported from there), with
symlinks and a secret beside it; the copy's index page carries a marker, so a test notices if
the copy is not what is served. Traversal spellings the process never sees as such (a client
library would normalise them) go over a raw socket. `tests/dashboard/test_dashboard_static.py`
covers the common spellings; these are the rest, then Hypothesis' own.
"""

from __future__ import annotations

import gzip
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kestrel.api.dashboard import NOT_FOUND_PAGE

from support.figures import report
from support.process import REPO, KestrelProcess
from support.rawhttp import Client, RawResponse, run
from support.stack import ADMIN_KEY, ENCRYPTION_KEY

MARKER = b"<!-- served from the planted copy -->"
SECRET = b"KESTREL-HOSTILE-SECRET-0123456789"
NOT_SERVED = ("__init__.py", "source-hash.txt")


class Site:
    """The planted build, what it may serve, and the process serving it."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.dist = workdir / "dashboard_dist"
        shutil.copytree(REPO / "dashboard_dist", self.dist,
                        ignore=shutil.ignore_patterns("__pycache__"))
        index = self.dist / "index.html"
        index.write_bytes(index.read_bytes() + MARKER)
        self.secret = workdir / "secret.txt"
        self.secret.write_bytes(SECRET)
        # The build as it is at start: these bodies, and nothing else, may ever be served.
        self.built = {path.relative_to(self.dist).as_posix(): path.read_bytes()
                      for path in self.dist.rglob("*")
                      if path.is_file() and path.name not in NOT_SERVED}
        # Planted before start: links out of the build, to a file and to a directory.
        os.symlink(self.secret, self.dist / "linked-secret.txt")
        os.symlink(workdir, self.dist / "assets" / "linked-dir")
        os.symlink("/", self.dist / "root")
        self.kestrel = KestrelProcess(workdir, env={"ADMIN_KEY": ADMIN_KEY,
                                                    "ENCRYPTION_KEY": ENCRYPTION_KEY})
        self.requests = 0
        self.refused = 0
        self.leaked = 0

    def allowed(self, response: RawResponse) -> bool:
        """A built file (plain or gzipped), the index for a deep link, or a refusal."""
        body = response.body
        if response.status in (304, 400, 404, 405, 414, 431):
            return body in (b"", NOT_FOUND_PAGE) or response.header("content-type") == (
                "application/json")
        return response.status == 200 and plain(response) in self.built.values()

    def get(self, target: bytes) -> RawResponse:
        """GET `target` exactly as given, on a new connection."""
        assert self.kestrel.port is not None
        port = self.kestrel.port

        async def fetch() -> RawResponse:
            async with await Client.connect(port) as client:
                await client.send(b"GET " + target + b" HTTP/1.1\r\nHost: kestrel\r\n"
                                  b"Accept-Encoding: gzip\r\n\r\n")
                return await client.response()

        response = run(fetch())
        self.requests += 1
        self.refused += response.status != 200
        self.leaked += SECRET in plain(response)
        assert SECRET not in plain(response), target
        assert self.allowed(response), (target, response.status, response.body[:200])
        return response


def plain(response: RawResponse) -> bytes:
    """The body as the file holds it (the dashboard gzips larger files for clients that ask)."""
    if response.header("content-encoding") == "gzip":
        return gzip.decompress(response.body)
    return response.body


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    planted = Site(tmp_path_factory.mktemp("hostile-dashboard"))
    with planted.kestrel:
        index = planted.get(b"/app/")
        assert index.status == 200 and MARKER in plain(index), "the planted copy is not served"
        yield planted
    report("Dashboard static route", ("requests", "answered 200 with a built file",
                                      "refused (404/400)", "secret served"),
           (planted.requests, planted.requests - planted.refused, planted.refused,
            planted.leaked))


@pytest.mark.parametrize("target", [
    "/app/linked-secret.txt",
    "/app/assets/linked-dir/secret.txt",
    "/app/assets/linked-dir/dashboard_dist/index.html",
    "/app/root/etc/passwd",
    "/app/root/proc/self/environ",
])
def test_symlinks_in_the_build_are_not_followed(site: Site, target: str) -> None:
    """A link planted in the installed build points out of it: it is not part of the build.
    Following it would serve any file on the machine (or, for a link to `/`, read the whole
    filesystem into memory at start)."""
    response = site.get(target.encode())
    # Plain segments are a deep link of the app: its index page, never the linked file.
    assert (response.status, plain(response)) in ((404, NOT_FOUND_PAGE),
                                                  (200, site.built["index.html"])), target


def test_files_changed_after_start_are_not_served(site: Site) -> None:
    """The build is read once, at start: what appears or changes on disk later never shows."""
    late = {
        "late.txt": b"late file",
        "assets/late-0123abcd.js": b"console.log('late')",
        "late-dir/index.html": b"late index",
    }
    for name, content in late.items():
        path = site.dist / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(content + SECRET)
    os.symlink(site.secret, site.dist / "assets" / "late-link.js")
    favicon = site.dist / "favicon.svg"
    favicon.write_bytes(b"<svg>changed</svg>" + SECRET)
    try:
        for target in [*late, "assets/late-link.js"]:
            response = site.get(f"/app/{target}".encode())
            assert response.status == 404, target
        assert plain(site.get(b"/app/favicon.svg")) == site.built["favicon.svg"]
    finally:
        favicon.write_bytes(site.built["favicon.svg"])


def test_traversal_spellings(site: Site) -> None:
    """Encodings a lenient server would decode into `..`, `/` or a NUL: all refused (404 from
    the dashboard, or 400 from the HTTP layer for bytes that are not a valid target)."""
    secret = str(site.secret)
    targets = [
        "/app/%252e%252e/%252e%252e/secret.txt",  # double-encoded
        "/app/%c0%ae%c0%ae/%c0%ae%c0%ae/secret.txt",  # overlong UTF-8 dots
        "/app/%e0%80%ae%e0%80%ae/secret.txt",
        "/app/..%5c..%5csecret.txt",  # encoded backslash
        "/app/..%255c..%255csecret.txt",
        "/app/assets/..;/..;/secret.txt",  # Tomcat's path parameter
        "/app/....//....//secret.txt",  # a filter that strips `../` once
        "/app/.../.../secret.txt",
        "/app/favicon.svg%00.html",
        "/app/favicon.svg/..",
        "/app/./favicon.svg",
        "/app/assets/./../index.html",
        "/app/%66avicon.svg",  # an encoded plain letter is not the file either
        "/app/FAVICON.SVG",
        "/app/~/secret.txt",
        "/app/" + quote(secret, safe=""),
        "/app/%2F" + quote(secret.lstrip("/")),
        "/app/file:" + secret,
        "/app/\\\\server\\share\\secret.txt",
        "/app/%5c%5cserver%5cshare",
    ]
    for target in targets:
        response = site.get(target.encode("latin-1"))
        assert response.status == 404, (target, response.status)
    # Bytes that are no valid request target at all: the HTTP layer refuses them.
    for raw in (b"/app/..\x00/secret.txt", b"/app/\xc0\xae\xc0\xae/secret.txt",
                b"/app/\t../secret.txt"):
        assert site.get(raw).status == 400, raw


SEGMENTS = st.sampled_from(["..", ".", "", "%2e%2e", "%2E%2e", ".%2e", "%2f", "%5c", "\\",
                            "%00", "%252e", "assets", "index.html", "favicon.svg", "linked-dir",
                            "linked-secret.txt", "root", "etc", "passwd", "secret.txt", "~",
                            "dashboard_dist", "%c0%ae", ";", "logs", "accounts"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(SEGMENTS | st.text(st.sampled_from("./%\\a2eEfF5c0"), max_size=6),
                max_size=8))
def test_any_path_serves_a_built_file_or_nothing(site: Site, segments: list[str]) -> None:
    """Whatever the path below /app/, the answer is a built file, the app's index (a deep
    link), or a refusal; never the secret, a source file, or anything outside the build."""
    site.get(("/app/" + "/".join(segments)).encode("latin-1"))


def test_every_built_file_is_served_byte_for_byte(site: Site) -> None:
    """The positive half: the refusals above are not a server that refuses everything."""
    for path, content in site.built.items():
        response = site.get(f"/app/{path}".encode())
        assert (response.status, plain(response)) == (200, content), path
