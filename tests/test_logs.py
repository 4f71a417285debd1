"""Structured logging: the line shapes, the request id from context, and redaction everywhere."""

from __future__ import annotations

import io
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from kestrel.http import AccessEntry
from kestrel.logs import (
    ACCESS_LOGGER,
    MAX_WAITING_LINES,
    JsonFormatter,
    access_log,
    redact,
    request_id_var,
    resolve_format,
    setup_logging,
)

HTTP = {"method": "GET", "path": "/health", "status": 200, "duration_ms": 1.23,
        "request_id": "req_abc", "client": "127.0.0.1", "bytes_sent": 15}


@pytest.fixture(autouse=True)
def _restore_kestrel_logger() -> Iterator[None]:
    logger = logging.getLogger("kestrel")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers[:] = saved[0]
    logger.setLevel(saved[1])
    logger.propagate = saved[2]


@pytest.fixture
def capture() -> Callable[..., io.StringIO]:
    def start(fmt: str = "json", level: str = "debug") -> io.StringIO:
        stream = io.StringIO()
        setup_logging(level=level, fmt=fmt, stream=stream)
        return stream
    return start


def written(stream: io.StringIO) -> str:
    """What the stream holds once the lines that wait for the handler's next tick are out."""
    for handler in logging.getLogger("kestrel").handlers:
        handler.flush()
    return stream.getvalue()


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in written(stream).splitlines()]


def test_json_line_carries_http_fields_and_the_request_id(
    capture: Callable[..., io.StringIO]
) -> None:
    stream = capture("json")
    log = logging.getLogger("kestrel.http")
    token = request_id_var.set("req_abc")
    try:
        log.info("GET /health 200", extra={"http": HTTP})
        logging.getLogger("kestrel.proxy").warning("picked %s", "acct-1",
                                                   extra={"account": {"id": 3, "name": "main"}})
    finally:
        request_id_var.reset(token)
    logging.getLogger("kestrel").info("after the request")

    http_line, proxy_line, outside = json_lines(stream)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", http_line.pop("ts"))
    assert http_line == {"level": "info", "logger": "kestrel.http", "msg": "GET /health 200",
                         "request_id": "req_abc", "http": HTTP}
    del proxy_line["ts"]
    assert proxy_line == {"level": "warning", "logger": "kestrel.proxy", "msg": "picked acct-1",
                          "request_id": "req_abc", "account": {"id": 3, "name": "main"}}
    assert "request_id" not in outside


def test_groups_stay_apart_and_cannot_overwrite_the_core_keys(
    capture: Callable[..., io.StringIO]
) -> None:
    stream = capture("json")
    logging.getLogger("kestrel").info("real", extra={"event": {"msg": "fake", "name": "e"},
                                                     "account": {"name": "a"}, "other": "x"})
    (line,) = json_lines(stream)
    assert (line["msg"], line["level"]) == ("real", "info")
    assert line["event"] == {"msg": "fake", "name": "e"} and line["account"] == {"name": "a"}
    assert "other" not in line  # only the known groups are structured output


def test_pretty_line(capture: Callable[..., io.StringIO]) -> None:
    stream = capture("pretty")
    token = request_id_var.set("req_abc")
    try:
        logging.getLogger("kestrel.http").info("GET /health 200", extra={"http": HTTP})
        logging.getLogger("kestrel.app").warning("started", extra={"event": {"port": 8080,
                                                                             "db": "a b.db"}})
    finally:
        request_id_var.reset(token)
    request, started = written(stream).splitlines()
    assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3} INFO  kestrel\.http  GET /health 200 1\.2ms "
                        r"req=req_abc client=127\.0\.0\.1 bytes=15", request), request
    assert started.endswith(' WARN  kestrel.app  started req=req_abc port=8080 db="a b.db"')


def test_a_worker_process_names_itself_on_every_line() -> None:
    for fmt in ("json", "pretty"):
        stream = io.StringIO()
        setup_logging(level="info", fmt=fmt, stream=stream, worker=2)
        token = request_id_var.set("req_abc")
        try:
            logging.getLogger("kestrel.http").info("GET /health 200", extra={"http": HTTP})
        finally:
            request_id_var.reset(token)
        logging.getLogger("kestrel.serve").info("stopped")
        first, second = written(stream).splitlines()
        if fmt == "json":
            assert [json.loads(line)["worker"] for line in (first, second)] == [2, 2]
        else:
            assert " worker=2 req=req_abc " in first and second.endswith(" stopped worker=2")
    setup_logging(level="info", fmt="json", stream=stream)  # not a worker: no such key
    logging.getLogger("kestrel").info("alone")
    assert "worker" not in json.loads(written(stream).splitlines()[-1])


ENTRY = AccessEntry(method="GET", path="/health", status=200, duration_ms=1.2,
                    request_id="req_abc", client="127.0.0.1", bytes_sent=15)


def test_the_servers_access_entries_become_the_lines_a_record_would() -> None:
    # The server hands over tuples, not records; what comes out is the line an access record
    # with the same fields made, in both forms, the worker's index included.
    for fmt in ("json", "pretty"):
        stream = io.StringIO()
        setup_logging(level="info", fmt=fmt, stream=stream, worker=1)
        sink = access_log()
        assert sink is not None
        sink(ENTRY)
        logging.getLogger(ACCESS_LOGGER).info("GET /health 200", extra={"http": ENTRY._asdict()})
        from_entry, from_record = written(stream).splitlines()
        if fmt == "json":
            entry_line, record_line = json.loads(from_entry), json.loads(from_record)
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z",
                                entry_line.pop("ts"))
            del record_line["ts"]
            assert entry_line == record_line == {
                "level": "info", "logger": ACCESS_LOGGER, "msg": "GET /health 200",
                "worker": 1, "http": ENTRY._asdict()}
        else:
            assert from_entry[12:] == from_record[12:]  # all but the clock
            assert from_entry.endswith(" INFO  kestrel.access  GET /health 200 1.2ms worker=1 "
                                       "req=req_abc client=127.0.0.1 bytes=15")


@given(entry=st.builds(AccessEntry, method=st.text(), path=st.text(),
                       status=st.integers(100, 999),
                       duration_ms=st.floats(0, 1e9, allow_nan=False, allow_infinity=False),
                       request_id=st.text(), client=st.none() | st.text(),
                       bytes_sent=st.integers(0, 2**63)),
       created=st.floats(0, 4e9), worker=st.none() | st.integers(0, 64))
def test_a_json_access_line_is_the_line_a_record_with_its_fields_makes(
        entry: AccessEntry, created: float, worker: int | None) -> None:
    # The JSON formatter writes access lines straight from the entry's fields; byte for byte,
    # that must be the line its general path writes for a record (escapes, key order, numbers).
    assume(all(redact(v) == v for v in entry if isinstance(v, str)))  # secrets: tested below
    record = logging.LogRecord(ACCESS_LOGGER, logging.INFO, __file__, 0,
                               f"{entry.method} {entry.path} {entry.status}", None, None)
    record.created, record.msecs = created, int((created - int(created)) * 1000)
    record.http = entry._asdict()
    formatter = JsonFormatter(worker)
    assert formatter.format_access(created, entry) == formatter.format(record)


def test_a_long_path_takes_the_same_way_as_a_short_one() -> None:
    # Texts too long for the access line's cache are escaped and searched uncached.
    formatter = JsonFormatter()
    entry = ENTRY._replace(path="/v1/" + "a\"" * 300)
    record = logging.LogRecord(ACCESS_LOGGER, logging.INFO, __file__, 0,
                               f"{entry.method} {entry.path} {entry.status}", None, None)
    record.created, record.msecs = 1e9, 0
    record.http = entry._asdict()
    assert formatter.format_access(1e9, entry) == formatter.format(record)
    secret = "sk-ant-api03-" + "x" * 40
    line = json.loads(formatter.format_access(1e9, entry._replace(path=entry.path + secret)))
    assert line["http"]["path"] == entry.path + "sk-ant-…[redacted]"


def test_access_entries_are_redacted_and_keep_their_place_in_the_batch(
    capture: Callable[..., io.StringIO]
) -> None:
    stream = capture("json", "info")
    sink = access_log()
    assert sink is not None
    secret = "sk-ant-api03-" + "x" * 40
    sink(ENTRY._replace(path=f"/v1/{secret}", method="POST"))
    sink(ENTRY)
    assert stream.getvalue() == ""  # waiting for the writer's tick
    logging.getLogger("kestrel.app").info("after")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["msg"] for line in lines] == [
        "POST /v1/sk-ant-…[redacted] 200", "GET /health 200", "after"]
    assert lines[0]["http"]["path"] == "/v1/sk-ant-…[redacted]"
    assert secret not in stream.getvalue()


@pytest.mark.parametrize("field", ["method", "path", "request_id", "client"])
def test_a_secret_in_any_text_field_of_an_access_entry_is_redacted(
    capture: Callable[..., io.StringIO], field: str
) -> None:
    # Lines are searched once over all their text fields before any is redacted: whichever
    # field holds the secret, the search must find it.
    stream = capture("json", "info")
    sink = access_log()
    assert sink is not None
    secret = "kst_" + "s" * 40
    sink(ENTRY._replace(**{field: f"x{secret}"}))
    logging.getLogger("kestrel.app").info("after")
    (line, _) = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert line["http"][field] == "xkst_…[redacted]"
    assert secret not in stream.getvalue()


def test_no_access_entries_are_made_below_info(capture: Callable[..., io.StringIO]) -> None:
    capture("json", "warning")
    assert access_log() is None
    capture("json", "info")
    assert access_log() is not None


def test_exceptions_are_included(capture: Callable[..., io.StringIO]) -> None:
    for fmt in ("json", "pretty"):
        stream = capture(fmt)
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logging.getLogger("kestrel").exception("failed")
        text = written(stream)
        if fmt == "json":
            (line,) = json_lines(stream)
            text = line["exc"]
        assert "Traceback (most recent call last)" in text and "RuntimeError: boom" in text


def test_setup_is_idempotent_and_sets_level_and_propagation(
    capture: Callable[..., io.StringIO]
) -> None:
    capture("json", "debug")
    stream = capture("json", "WARNING")
    logger = logging.getLogger("kestrel")
    assert len(logger.handlers) == 1 and logger.propagate is False
    logging.getLogger("kestrel.x").info("quiet")
    logging.getLogger("kestrel.x").warning("loud")
    assert [line["msg"] for line in json_lines(stream)] == ["loud"]


def test_access_lines_wait_for_a_batch_and_any_other_line_writes_them_first(
    capture: Callable[..., io.StringIO]
) -> None:
    stream = capture("json", "info")
    access = logging.getLogger(ACCESS_LOGGER)
    access.info("one")
    access.info("two")
    assert stream.getvalue() == ""  # waiting for the writer's tick
    logging.getLogger("kestrel.app").info("three")
    assert [json.loads(line)["msg"] for line in stream.getvalue().splitlines()] == [
        "one", "two", "three"]


def test_waiting_lines_are_written_within_a_tick_without_help(
    capture: Callable[..., io.StringIO]
) -> None:
    stream = capture("json", "info")
    logging.getLogger(ACCESS_LOGGER).info("alone")
    deadline = time.monotonic() + 5
    while stream.getvalue() == "" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [json.loads(line)["msg"] for line in stream.getvalue().splitlines()] == ["alone"]


def test_a_full_batch_is_written_at_once(capture: Callable[..., io.StringIO]) -> None:
    stream = capture("json", "info")
    for n in range(MAX_WAITING_LINES):
        logging.getLogger(ACCESS_LOGGER).info("line %d", n)
    assert len(stream.getvalue().splitlines()) == MAX_WAITING_LINES


def test_a_line_keeps_the_request_id_it_was_logged_under(
    capture: Callable[..., io.StringIO]
) -> None:
    stream = capture("json", "info")
    access = logging.getLogger(ACCESS_LOGGER)
    first = request_id_var.set("req_first")
    access.info("in the first request")
    request_id_var.reset(first)
    access.info("between requests")
    second = request_id_var.set("req_second")
    try:
        logging.getLogger("kestrel.proxy").info("in the second, writing all three")
    finally:
        request_id_var.reset(second)
    assert [line.get("request_id") for line in json_lines(stream)] == [
        "req_first", None, "req_second"]


def test_closing_the_handler_writes_what_waits_and_stops_its_thread(
    capture: Callable[..., io.StringIO]
) -> None:
    stream = capture("json", "info")
    (handler,) = logging.getLogger("kestrel").handlers
    logging.getLogger(ACCESS_LOGGER).info("last words")
    threads = {t.name for t in threading.enumerate()}
    handler.close()
    assert [json.loads(line)["msg"] for line in stream.getvalue().splitlines()] == [
        "last words"]
    assert "kestrel-log-writer" in threads
    deadline = time.monotonic() + 5
    while handler._writer.is_alive() and time.monotonic() < deadline:  # type: ignore[attr-defined]
        time.sleep(0.01)
    assert not handler._writer.is_alive()  # type: ignore[attr-defined]


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_auto_format_is_json_off_a_terminal_and_pretty_on_one(
    capture: Callable[..., io.StringIO]
) -> None:
    assert resolve_format("auto", io.StringIO()) == "json"
    assert resolve_format("auto", _Tty()) == "pretty"
    assert resolve_format("pretty", io.StringIO()) == "pretty"
    stream = capture("auto")
    logging.getLogger("kestrel").info("hello")
    assert json_lines(stream)[0]["msg"] == "hello"


# --- redaction ----------------------------------------------------------------------------------

SECRETS = [
    pytest.param("sk-ant-api03-AbC_dEf-0123456789xyz", "sk-ant-", id="anthropic-key"),
    pytest.param("sk-ant-oat01-Zz9_Yy8-Xx7Ww6Vv5", "sk-ant-", id="anthropic-oauth-token"),
    pytest.param("kst_Q1w2E3r4T5y6U7i8", "kst_", id="kestrel-client-key"),
    pytest.param("kadm_Q1w2E3r4T5y6U7i8O9p0", "kadm_", id="admin-key"),
    pytest.param("Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln", "Bearer ", id="bearer"),
]


def _secret_part(secret: str) -> str:
    """What must never appear: everything after the recognisable family prefix."""
    return secret.split(" ", 1)[1] if secret.startswith("Bearer ") else secret[8:]


@pytest.mark.parametrize("fmt", ["json", "pretty"])
@pytest.mark.parametrize(("secret", "family"), SECRETS)
def test_secret_patterns_are_redacted_everywhere(
    capture: Callable[..., io.StringIO], secret: str, family: str, fmt: str
) -> None:
    stream = capture(fmt)
    log = logging.getLogger("kestrel.proxy")
    log.info(f"in the message {secret} end")
    log.info("in the args %s end", secret)
    log.info("in a field", extra={"upstream": {"detail": f"said {secret}", "nested": [secret]}})
    try:
        raise ValueError(f"upstream rejected {secret}")
    except ValueError:
        log.exception("in a traceback")
    text = written(stream)
    assert _secret_part(secret) not in text
    assert text.count(f"{family}…[redacted]") >= 5, text


def test_values_under_secret_names_are_redacted_whatever_they_look_like(
    capture: Callable[..., io.StringIO]
) -> None:
    stream = capture("json")
    names = ["api_key", "x-api-key", "Authorization", "x-admin-key", "access_token",
             "refresh_token", "password", "secret", "client_secret"]
    logging.getLogger("kestrel").info("headers", extra={"upstream": {
        **{name: "plain-value-123" for name in names},
        "headers": [["X-Api-Key", "plain-value-123"], ["content-type", "application/json"]],
        "input_tokens": 12, "secrets_path": "k.db.secrets",
    }})
    line = json_lines(stream)[0]["upstream"]
    assert "plain-value-123" not in json.dumps(line)
    assert {name: line[name] for name in names} == {name: "[redacted]" for name in names}
    assert line["headers"] == [["X-Api-Key", "[redacted]"], ["content-type", "application/json"]]
    assert (line["input_tokens"], line["secrets_path"]) == (12, "k.db.secrets")


def test_key_value_pairs_in_text_are_redacted_but_prose_is_not(
    capture: Callable[..., io.StringIO]
) -> None:
    stream = capture("json")
    log = logging.getLogger("kestrel")
    log.info("sent %s", {"x-api-key": "plain-value-123", "accept": "json"})
    log.info("GET /oauth?code=1&access_token=plain-value-123&state=2")
    log.info("x-api-key: invalid; a Bearer token is required; input_tokens=12")
    sent, query, prose = (line["msg"] for line in json_lines(stream))
    assert sent == "sent {'x-api-key': '[redacted]', 'accept': 'json'}"
    assert query == "GET /oauth?code=1&access_token=[redacted]&state=2"
    assert prose == "x-api-key: invalid; a Bearer token is required; input_tokens=12"


@pytest.mark.parametrize("text", [
    "AUTHORIZATION=plain-value-123",
    "authorızation=plain-value-123",  # dotless ı: IGNORECASE takes it for an i
    "ſecret=plain-value-123",  # long s: case-folds to s
    "api_\u212aey=plain-value-123",  # Kelvin sign: case-folds to k
    "BEARER plain-value-123",
])
def test_case_insensitive_look_alikes_are_redacted_too(text: str) -> None:
    # The cheap first look (one search for the patterns' words) must not let through what the
    # case-insensitive patterns themselves would catch.
    assert "plain-value-123" not in redact(text)
    assert "[redacted]" in redact(text)
