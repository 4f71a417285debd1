"""Prometheus metrics counted from request log rows, rendered in the text format."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kestrel.domain import Account, Attempt, RequestLog
from kestrel.proxy.metrics import (
    COUNT_EVERY,
    SNAPSHOT_VERSION,
    Metrics,
    Snapshot,
    Workers,
    WriterStats,
    from_json,
    merge,
    render,
    to_json,
)

from support.accounts import make_account

NOW = 1_800_000_000.0


def account(id_: int, name: str, **changes: object) -> Account:
    return make_account(id_, name=name, **changes)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


SERVED = RequestLog(ts=NOW, request_id="r1", route="/v1/messages", status=200, account_id=2,
                    model="claude-sonnet-4-6", input_tokens=10, output_tokens=5,
                    cache_read_tokens=3, cost_usd=0.0001234, latency_ms=120.0, ttfb_ms=40.0,
                    attempts=(Attempt(1, 429, "rate_limit_error", 5.0),
                              Attempt(2, 200, None, 100.0)))
REFUSED = RequestLog(ts=NOW, request_id="r2", route="/v1/messages", status=429,
                     latency_ms=2.0, attempts=())
ALONE = Workers(up=1, configured=1)
NOTHING_WRITTEN = WriterStats(0, 0, 0)


def counted(*rows: RequestLog, writer: WriterStats = NOTHING_WRITTEN,
            active_streams: int = 0) -> Snapshot:
    metrics = Metrics()
    for row in rows:
        metrics.observe(row)
    return metrics.snapshot(writer, active_streams)


def test_counts_add_up_to_the_rows_observed() -> None:
    snapshot = counted(SERVED, SERVED, REFUSED,
                       writer=WriterStats(queue_depth=4, written=100, dropped=1),
                       active_streams=3)
    text = render(snapshot, [account(1, "one", cooldown_until=NOW + 30), account(2, "two")],
                  Workers(up=2, configured=3), now=NOW)
    got = samples(text)
    req = "kestrel_requests_total"
    assert got[(req, (("account_id", "2"), ("route", "/v1/messages"), ("status", "200")))] == 2
    assert got[(req, (("account_id", ""), ("route", "/v1/messages"), ("status", "429")))] == 1
    attempts = "kestrel_upstream_attempts_total"
    assert got[(attempts, (("account_id", "1"), ("outcome", "429")))] == 2
    assert got[(attempts, (("account_id", "2"), ("outcome", "200")))] == 2
    assert got[("kestrel_retries_total", (("route", "/v1/messages"),))] == 2
    tokens = "kestrel_tokens_total"
    key = (("account_id", "2"), ("kind", "input"), ("model", "claude-sonnet-4-6"))
    assert got[(tokens, key)] == 20
    cost = got[("kestrel_cost_usd_total", (("model", "claude-sonnet-4-6"),))]
    assert abs(cost - 0.0002468) < 1e-12
    assert got[("kestrel_account_up", (("account", "one"), ("account_id", "1"),
                                       ("status", "cooldown")))] == 0
    assert got[("kestrel_account_up", (("account", "two"), ("account_id", "2"),
                                       ("status", "active")))] == 1
    assert got[("kestrel_account_cooldown_seconds", (("account", "one"),
                                                     ("account_id", "1")))] == 30
    assert got[("kestrel_log_queue_depth", ())] == 4
    assert got[("kestrel_active_streams", ())] == 3
    assert got[("kestrel_log_rows_dropped_total", ())] == 1
    duration = "kestrel_request_duration_seconds"
    route = (("route", "/v1/messages"),)
    assert got[(duration + "_count", route)] == 3
    assert abs(got[(duration + "_sum", route)] - 0.242) < 1e-9
    assert got[(duration + "_bucket", (("le", "0.005"), *route))] == 1
    assert got[(duration + "_bucket", (("le", "0.25"), *route))] == 3
    assert got[("kestrel_time_to_first_byte_seconds_count", route)] == 2
    assert got[("kestrel_workers", (("state", "up"),))] == 2
    assert got[("kestrel_workers", (("state", "configured"),))] == 3


def test_workers_merged_render_as_one_process_that_saw_everything() -> None:
    """Three workers' snapshots, through JSON as they travel between processes, add up to
    what one process counting every row would render."""
    one = counted(SERVED, writer=WriterStats(1, 10, 0), active_streams=1)
    two = counted(SERVED, REFUSED, writer=WriterStats(2, 20, 1), active_streams=2)
    three = counted(writer=WriterStats(0, 5, 0))
    merged = merge(from_json(to_json(s)) for s in (one, two, three))
    alone = counted(SERVED, SERVED, REFUSED, writer=WriterStats(3, 35, 1), active_streams=3)
    accounts = [account(2, "two")]
    assert render(merged, accounts, ALONE, NOW) == render(alone, accounts, ALONE, NOW)
    # A snapshot is a copy: counting on afterwards does not change it.
    metrics = Metrics()
    taken = metrics.snapshot(NOTHING_WRITTEN, 0)
    metrics.observe(SERVED)
    assert not taken.metrics.requests


def test_a_snapshot_counts_every_row_observed_batches_or_not() -> None:
    # Rows are counted in batches; a snapshot between two batches still sees every row.
    for rows in (1, COUNT_EVERY - 1, COUNT_EVERY, COUNT_EVERY + 1, 3 * COUNT_EVERY + 5):
        metrics = Metrics()
        for _ in range(rows):
            metrics.observe(SERVED)
        got = samples(render(metrics.snapshot(NOTHING_WRITTEN, 0), [], ALONE, NOW))
        assert got[("kestrel_requests_total", (("account_id", "2"), ("route", "/v1/messages"),
                                               ("status", "200")))] == rows
        assert got[("kestrel_request_duration_seconds_count",
                    (("route", "/v1/messages"),))] == rows


def test_a_retired_worker_keeps_its_counters_and_drops_its_gauges() -> None:
    retired = counted(SERVED, writer=WriterStats(4, 10, 2), active_streams=3).retired()
    got = samples(render(retired, [], ALONE, NOW))
    assert got[("kestrel_log_rows_written_total", ())] == 10
    assert got[("kestrel_log_rows_dropped_total", ())] == 2
    assert got[("kestrel_log_queue_depth", ())] == 0
    assert got[("kestrel_active_streams", ())] == 0
    assert got[("kestrel_request_duration_seconds_count", (("route", "/v1/messages"),))] == 1


@pytest.mark.parametrize("data", [
    None, [], {}, {"version": SNAPSHOT_VERSION + 1},
    {**to_json(counted(SERVED)), "requests": [[[["route", "/v1"]], "3"]]},
    {**to_json(counted(SERVED)), "latency": [[[["route", "/v1"]], [1, 2], 0.5, 3]]},
    {**to_json(counted(SERVED)), "writer": [0, 1]},
])
def test_anything_but_a_snapshot_of_this_version_is_refused(data: object) -> None:
    with pytest.raises(ValueError):
        from_json(data)


def test_label_values_are_escaped() -> None:
    text = render(counted(), [account(1, 'quote " and \\ and\nnewline')], ALONE, NOW)
    names = [s.labels.get("account") for f in text_string_to_metric_families(text)
             for s in f.samples if s.name == "kestrel_account_up"]
    assert names == ['quote " and \\ and\nnewline']
