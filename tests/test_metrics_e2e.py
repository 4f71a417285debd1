"""`/metrics` scraped from a real Kestrel after a known run: the numbers match what happened."""

from __future__ import annotations

import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from fake_upstream import rate_limited
from support.stack import ADMIN_KEY, account_key, message_body, running_stack

TOKEN = "metrics-token-0123456789"


def scrape(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_count_a_known_run(tmp_path: Path) -> None:
    with running_stack(tmp_path, accounts=(), env={"METRICS_TOKEN": TOKEN}) as stack:
        a = stack.add_account("a", priority=10)
        b = stack.add_account("b")
        stack.up.script(account_key("a"), [rate_limited(retry_after=60)])
        with stack.http() as client:
            for n in range(3):
                assert client.post("/v1/messages", json=message_body(f"m{n}")).status_code == 200
        with stack.kestrel.client() as client:
            assert client.get("/metrics").status_code == 401
            assert client.get("/metrics", headers={"authorization": "Bearer wrong"}
                              ).status_code == 401
            by_token = client.get("/metrics", headers={"authorization": f"Bearer {TOKEN}"})
            by_admin = client.get("/metrics", headers={"X-Admin-Key": ADMIN_KEY})
        assert by_token.status_code == by_admin.status_code == 200
        assert by_token.headers["content-type"].startswith("text/plain; version=0.0.4")
        got = scrape(by_token.text)
        sent = [r.usage for r in stack.up.requests if r.usage]
    route = ("route", "/v1/messages")
    assert got[("kestrel_requests_total", (("account_id", str(b)), route, ("status", "200")))] == 3
    assert got[("kestrel_upstream_attempts_total", (("account_id", str(a)),
                                                    ("outcome", "429")))] == 1
    assert got[("kestrel_upstream_attempts_total", (("account_id", str(b)),
                                                    ("outcome", "200")))] == 3
    assert got[("kestrel_retries_total", (route,))] == 1
    assert got[("kestrel_tokens_total", (("account_id", str(b)), ("kind", "output"),
                                         ("model", "claude-sonnet-4-6")))] == sum(
        u["output_tokens"] for u in sent)
    assert got[("kestrel_account_up", (("account", "a"), ("account_id", str(a)),
                                       ("status", "cooldown")))] == 0
    assert 55 <= got[("kestrel_account_cooldown_seconds", (("account", "a"),
                                                           ("account_id", str(a))))] <= 60
    assert got[("kestrel_request_duration_seconds_count", (route,))] == 3
    assert got[("kestrel_active_streams", ())] == 0


def test_request_log_off_writes_no_rows_but_metrics_still_count(tmp_path: Path) -> None:
    with running_stack(tmp_path, accounts=("a",), env={"REQUEST_LOG": "off"}) as stack:
        with stack.http() as client:
            for n in range(3):
                assert client.post("/v1/messages", json=message_body(f"m{n}")).status_code == 200
        with stack.admin() as admin:
            got = scrape(admin.get("/metrics").text)
            # The writer flushes every 0.5 s: three times that is long enough for a row to
            # have appeared had one been queued.
            time.sleep(1.5)
            rows = admin.get("/admin/logs").json()["data"]
            queued = scrape(admin.get("/metrics").text)
    route = ("route", "/v1/messages")
    assert got[("kestrel_request_duration_seconds_count", (route,))] == 3
    assert rows == []
    assert queued[("kestrel_log_rows_written_total", ())] == 0
