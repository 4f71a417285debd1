"""The admin API fuzzed by schemathesis from the server's own `/openapi.json`.

Schemathesis reads the document a running Kestrel serves and generates requests for every admin
operation (plus `/health` and `/openapi.json`), valid and invalid, single and chained (create an
account, then read, change, reset and delete it). It checks that no answer is a server error,
that every status is documented, and that every body and content type matches the documented
schema. The server has real data to show: API-key and OAuth accounts, client keys, and request
logs with retries in them, so list and stats answers are checked with rows in them.

Schemathesis runs as its own process (its CLI), which keeps its warnings and hypothesis settings
away from this suite's `filterwarnings = error`; its JSON report says what it found, and any
failure or error fails this test with schemathesis's own account of it. It sends the admin key
on every request and generates no other credentials: wrong keys would trip the brute-force
lock-out and leave the rest of the run answering 429 (refusals are `test_admin_access.py`'s job).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from fake_oauth import FakeOAuth

from fake_upstream import error
from support.figures import report
from support.oauthkit import connect
from support.routes import admin_operations, operations
from support.stack import Stack, account_key, message_body, running_stack

# Test cases per operation and phase: enough to walk every schema branch, small enough for the
# suite's budget (about 600 requests in all).
MAX_EXAMPLES = 10
CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_headers_conformance", "response_schema_conformance",
          "negative_data_rejection", "missing_required_header", "unsupported_method",
          "allow_header_conformance", "use_after_free", "ensure_resource_availability")
# Left out: `positive_data_acceptance` expects any schema-valid body to succeed, which opaque
# tokens cannot (a made-up `cursor` or login `state` is rightly refused), and `ignored_auth`,
# which sends wrong keys (see the module docstring).
RUN_TIMEOUT = 120


def _populate(stack: Stack, oauth: FakeOAuth) -> None:
    """Accounts of both kinds, keys live and revoked, request logs with a retry in them."""
    connect(stack, oauth, "sub")
    with stack.admin() as admin:
        for name in ("laptop", "ci"):
            admin.post("/admin/keys", json={"name": name})
        admin.delete("/admin/keys/2")
    stack.up.script(account_key("a"), [error(529, "overloaded_error", "busy")])
    with stack.http() as client:
        for n in range(3):
            assert client.post("/v1/messages", json=message_body(f"hi {n}")).status_code == 200
    stack.logs(expect=3)


def _schemathesis(stack: Stack, workdir: Path, pattern: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    return subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", f"{stack.url}/openapi.json",
         "--header", f"X-Admin-Key: {stack.admin_key}",
         "--include-path-regex", pattern,
         "--checks", ",".join(CHECKS),
         "--max-examples", str(MAX_EXAMPLES),
         "--generation-with-security-parameters", "false",
         "--generation-database", "none",
         "--max-redirects", "0", "--request-timeout", "10",
         "--report", "json", "--report-dir", str(workdir),
         "--no-color"],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT,
        stdin=subprocess.DEVNULL)


def test_schemathesis_finds_nothing_on_the_admin_api(tmp_path: Path) -> None:
    with FakeOAuth() as oauth, running_stack(tmp_path, accounts=("a", "b"),
                                             env=oauth.env()) as stack:
        _populate(stack, oauth)
        with stack.admin() as admin:
            document = admin.get("/openapi.json").json()
        targets = {op.path for op in admin_operations(document)} | {"/health", "/openapi.json"}
        assert {"/admin/accounts", "/admin/keys/{id}", "/admin/logs"} <= targets, targets
        selected = [op for op in operations(document) if op.path in targets]
        pattern = "^(" + "|".join(re.escape(path) for path in sorted(targets)) + ")$"
        reports = tmp_path / "schemathesis"
        reports.mkdir()
        started = time.monotonic()
        run = _schemathesis(stack, reports, pattern)
        seconds = time.monotonic() - started
        with stack.kestrel.client() as client:
            assert client.get("/health").status_code == 200  # still standing
        logged_errors = [r for r in stack.kestrel.records() if r.get("level") == "error"]

    output = run.stdout[-6000:] + run.stderr[-2000:]
    (path,) = reports.glob("*.json")
    result: dict[str, Any] = json.loads(path.read_text())
    cases = result["test_cases"]
    report("Schemathesis", ("operations", "cases", "failures", "errors", "seconds", "seed"),
           (f"{result['operations']['tested']}/{len(selected)}", cases["generated"],
            cases["unique_failures"], len(result["errors"]), f"{seconds:.1f}", result["seed"]))
    assert run.returncode == 0, output
    assert not result["failures"] and not result["errors"], output
    assert result["operations"]["selected"] == result["operations"]["tested"] == len(selected)
    assert cases["generated"] >= 10 * len(selected), cases
    # Answers must come from the handlers, not from the lock-out or a missing key.
    assert not result["warnings"]["rate_limited"], result["warnings"]
    assert not result["warnings"]["missing_auth"], result["warnings"]
    assert not logged_errors, logged_errors[:5]
