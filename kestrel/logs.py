"""Structured logging on the stdlib: one JSON object per line, or a human line on a terminal.

Log calls carry their data as dicts in a few known `extra` groups, for example
`log.info("GET /health 200", extra={"http": {"method": "GET", "status": 200, ...}})`. JSON lines
keep each group as a nested object beside the core keys; pretty lines flatten them to key=value.
While a request is handled, `request_id_var` holds its id and every line carries it; in a worker
process (WORKERS) every line carries the worker's index too. A
redacting filter on the handler scrubs anything that looks like a credential from messages,
fields and tracebacks before any formatter sees them.
"""

from __future__ import annotations

import abc
import functools
import json
import json.encoder
import logging
import math
import re
import sys
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from datetime import datetime
from typing import Any, NamedTuple, TextIO

from kestrel.http import AccessEntry, AccessLog
from kestrel.jsontext import encoder

request_id_var: ContextVar[str | None] = ContextVar("kestrel_request_id", default=None)

STRUCTURED_GROUPS = ("http", "event", "account", "upstream")
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR}

# --- redaction ----------------------------------------------------------------------------------

REDACTED = "[redacted]"

# Order matters: `Bearer sk-ant-…` must be taken whole by the Bearer rule first.
_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # RFC 6750 token characters; 8+ so that prose like "a Bearer token" stays readable.
    (re.compile(r"\b(Bearer)\s+[A-Za-z0-9._~+/-]{8,}=*", re.IGNORECASE), rf"\1 …{REDACTED}"),
    (re.compile(r"sk-ant-[A-Za-z0-9_-]{8,}"), f"sk-ant-…{REDACTED}"),
    (re.compile(r"kst_[A-Za-z0-9_-]{8,}"), f"kst_…{REDACTED}"),
    (re.compile(r"kadm_[A-Za-z0-9_-]{8,}"), f"kadm_…{REDACTED}"),
    # `api_key=…` (query strings, repr) and `'x-api-key': '…'` (dict reprs, JSON) in free text;
    # a bare `x-api-key: invalid` is left alone, it is how error messages talk about headers.
    (re.compile(r"""(?ix)
        ( (?:x[-_])?api[-_]?key | x[-_]admin[-_]key | authorization | access[-_]token
        | refresh[-_]token | password | secret )
        ( ['"] \s* : \s* ['"]? | \s* = \s* ['"]? )
        (?! Bearer\b | [^\s'"]*…\[redacted\] | \[redacted\] )
        [^\s'",;&}]+
     """), rf"\1\2{REDACTED}"),
]

# Every pattern above needs one of these words, in the case-folded text: text without any is
# returned as it is, after one search instead of a substitution per pattern (an access line has
# several values). Case-folding covers what IGNORECASE matches, but for the dotless ı, which
# IGNORECASE takes for an i.
_ANY_WORD = re.compile("bearer|sk-ant-|kst_|kadm_|key|author[iı]zat[iı]on|token|password|secret")

# Structured keys whose values are secrets whatever they look like (compared after lowercasing
# and turning `-` into `_`, by suffix: `x_api_key`, `client_secret`, `oauth_refresh_token`).
_SECRET_KEY_SUFFIXES = ("api_key", "authorization", "admin_key", "access_token", "refresh_token",
                        "password", "secret", "encryption_key", "cookie")


def _has_secret_word(text: str) -> bool:
    """Whether `text` has a word some redaction pattern needs: text without one is clean."""
    return _ANY_WORD.search(text.casefold()) is not None


def redact(text: str) -> str:
    """`text` with every credential-looking part replaced by a mask."""
    if not _has_secret_word(text):
        return text
    for pattern, mask in _PATTERNS:
        text = pattern.sub(mask, text)
    return text


@functools.lru_cache(maxsize=1024)  # keys are the few names the code logs under
def _is_secret_name(key: str) -> bool:
    return key.lower().replace("-", "_").endswith(_SECRET_KEY_SUFFIXES)


def _is_secret_key(key: object) -> bool:
    return isinstance(key, str) and _is_secret_name(key)


def _redact_value(value: object) -> object:
    if type(value) is str:  # the common case first: every line has a few
        return redact(str(value))
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, dict):
        return {k: REDACTED if _is_secret_key(k) else _redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        if len(value) == 2 and _is_secret_key(value[0]):  # a header pair
            return [value[0], REDACTED]
        return [_redact_value(v) for v in value]
    return redact(value if isinstance(value, str) else str(value))


class RedactingFilter(logging.Filter):
    """Defence in depth: callers should not log secrets, and if one does, it never gets out.

    Works on the record in place (the message with its arguments merged, the structured groups,
    the traceback text), so every formatter downstream sees only the scrubbed version.
    """

    def __init__(self) -> None:
        super().__init__()
        self._tracebacks = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # arguments that do not fit the format: drop them, they may be secret
            message = f"{record.msg} (log arguments did not fit the message)"
        record.msg, record.args = redact(message), None
        for group in STRUCTURED_GROUPS:
            value = getattr(record, group, None)
            if isinstance(value, dict):
                setattr(record, group, _redact_value(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = self._tracebacks.formatException(record.exc_info)
        if record.exc_text:
            # Formatters reuse exc_text when it is set, so the raw traceback is never rendered.
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


# --- formatters ---------------------------------------------------------------------------------


# The record attribute that keeps a line's request id until the line is written.
_REQUEST_ID = "kestrel_request_id"


def _request_id(record: logging.LogRecord) -> str | None:
    """The id of the request a line was logged in: taken when the line was logged (handlers
    that write later keep it on the record), else the one in force now."""
    return getattr(record, _REQUEST_ID) if hasattr(record, _REQUEST_ID) else request_id_var.get()


def _groups(record: logging.LogRecord) -> dict[str, dict[str, Any]]:
    return {group: value for group in STRUCTURED_GROUPS
            if isinstance(value := getattr(record, group, None), dict)}


def _pairs(request_id: str | None, worker: int | None, groups: dict[str, dict[str, Any]],
           skip_http: tuple[str, ...]) -> list[tuple[str, Any]]:
    """The worker and request ids, then every field of every group, flattened for the
    one-line form."""
    pairs: list[tuple[str, Any]] = [] if request_id is None else [("request_id", request_id)]
    if worker is not None:
        pairs.insert(0, ("worker", worker))
    for group, fields in groups.items():
        pairs.extend((str(k), v) for k, v in fields.items()
                     if not (k == "request_id" and v == request_id)
                     and not (group == "http" and k in skip_http))
    return pairs


class _Line(NamedTuple):
    """What a line says, whichever form it is written in."""

    created: float
    msecs: int
    level: str  # logging's name: INFO, WARNING
    logger: str
    message: str
    worker: int | None
    request_id: str | None
    groups: dict[str, dict[str, Any]]
    exc: str | None


def _may_hold_secret(entry: AccessEntry) -> bool:
    """Whether any text field of an access entry may hold a credential (the method and path
    are the client's text): one search over all of them finds nearly every entry clean."""
    # Joined by NUL, which no word of the search holds: no match spans two fields.
    return _has_secret_word("\0".join([v for v in entry if type(v) is str]))


def _access_line(created: float, worker: int | None, entry: AccessEntry) -> _Line:
    """An access entry's line, redacted as the filter redacts a record; only a line that may
    hold a secret is redacted, field by field."""
    message = f"{entry.method} {entry.path} {entry.status}"
    fields: dict[str, Any] = entry._asdict()
    if _may_hold_secret(entry):
        message, fields = redact(message), _redact_value(fields)  # type: ignore[assignment]
    return _Line(created, _msecs(created), "INFO", ACCESS_LOGGER, message, worker, None,
                 {"http": fields}, None)


def _msecs(created: float) -> int:
    return int((created - int(created)) * 1000)


def _exception_text(formatter: logging.Formatter, record: logging.LogRecord) -> str | None:
    if record.exc_info and not record.exc_text:
        record.exc_text = formatter.formatException(record.exc_info)
    parts = [p for p in (record.exc_text, record.stack_info) if p]
    return "\n".join(parts) if parts else None


_json_line = encoder(ensure_ascii=False, default=str)
_json_text = json.encoder.encode_basestring  # a str as a JSON string, as `_json_line` writes it


def _clean_text(text: str) -> str:
    """`text` as a JSON string (escaped character by character, so the text of two strings
    joined is their texts joined), or "" when it may hold a secret."""
    return "" if _has_secret_word(text) else _json_text(text)


# For the texts an access line repeats (a method, a path, a client's address). A client chooses
# its paths, so the cache is bounded in entries and takes only short texts: at most about a
# megabyte, where a path may be as long as a request head.
_cached_text = functools.lru_cache(maxsize=1024)(_clean_text)
_CACHED_CHARS = 256


def _repeated_text(text: str) -> str:
    return _cached_text(text) if len(text) <= _CACHED_CHARS else _clean_text(text)


class _KestrelFormatter(logging.Formatter, abc.ABC):
    """A formatter that writes log records and the server's access entries alike; in a worker
    process (WORKERS) every line names the `worker`."""

    def __init__(self, worker: int | None = None) -> None:
        super().__init__()
        self._worker = worker

    def format(self, record: logging.LogRecord) -> str:
        return self.render(_Line(record.created, int(record.msecs), record.levelname,
                                 record.name, record.getMessage(), self._worker,
                                 _request_id(record), _groups(record),
                                 _exception_text(self, record)))

    def format_access(self, created: float, entry: AccessEntry) -> str:
        return self.render(_access_line(created, self._worker, entry))

    @abc.abstractmethod
    def render(self, line: _Line) -> str:
        """The line in this formatter's form."""


class JsonFormatter(_KestrelFormatter):
    """`{"ts", "level", "logger", "msg", "worker", "request_id", "http": {...}, ..., "exc"}`.

    The groups stay nested (`record["http"]["status"]`), so no field can clash with another
    group's or overwrite a core key.
    """

    def __init__(self, worker: int | None = None) -> None:
        super().__init__(worker)
        self._second = -1
        self._second_text = ""

    def render(self, line: _Line) -> str:
        out: dict[str, Any] = {
            "ts": self._timestamp(line.created, line.msecs),
            "level": line.level.lower(),
            "logger": line.logger,
            "msg": line.message,
        }
        if line.worker is not None:
            out["worker"] = line.worker
        if line.request_id is not None:
            out["request_id"] = line.request_id
        out.update(line.groups)
        if line.exc is not None:
            out["exc"] = line.exc
        return _json_line(out)

    def format_access(self, created: float, entry: AccessEntry) -> str:
        """The line `render` writes for the entry, written straight from its fields: a line
        per request, and building the line's dicts first cost twice the line (5.9 against
        2.3 µs, bench/RESULTS.md run 11). An entry that may hold a secret, or whose numbers
        are not plain finite numbers, takes the general way, which redacts."""
        method, path, status, duration_ms, request_id, client, bytes_sent = entry
        if (type(status) is int and type(duration_ms) is float and math.isfinite(duration_ms)
                and type(bytes_sent) is int and type(method) is str and type(path) is str
                and type(request_id) is str and (client is None or type(client) is str)):
            # The method, path and client repeat from line to line: their JSON text (and
            # whether they may hold a secret) is kept; the request id is new every time.
            method_text, path_text = _repeated_text(method), _repeated_text(path)
            id_text = _clean_text(request_id)
            client_text = "null" if client is None else _repeated_text(client)
            if method_text and path_text and id_text and client_text:
                worker = "" if self._worker is None else f', "worker": {self._worker!r}'
                return (f'{{"ts": "{self._timestamp(created, _msecs(created))}", '
                        f'"level": "info", "logger": "{ACCESS_LOGGER}", '
                        f'"msg": "{method_text[1:-1]} {path_text[1:-1]} {status}"{worker}, '
                        f'"http": {{"method": {method_text}, "path": {path_text}, '
                        f'"status": {status!r}, "duration_ms": {duration_ms!r}, '
                        f'"request_id": {id_text}, "client": {client_text}, '
                        f'"bytes_sent": {bytes_sent!r}}}}}')
        return super().format_access(created, entry)

    def _timestamp(self, created: float, msecs: int) -> str:
        second = int(created)
        if second != self._second:  # a busy server logs many lines a second: format it once
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second))
            self._second = second
        return f"{self._second_text}{msecs:03d}Z"


_PRETTY_LEVELS = {"WARNING": "WARN", "CRITICAL": "CRIT"}
_PRETTY_NAMES = {"request_id": "req", "bytes_sent": "bytes"}
_HTTP_SUMMARY = ("method", "path", "status", "duration_ms")


class PrettyFormatter(_KestrelFormatter):
    """`19:31:02.123 INFO  kestrel.http  GET /health 200 1.2ms req=req_abc client=127.0.0.1`.

    Local time, for a person at a terminal. A request line is summed up from its `http` fields
    (the message follows only if it adds something); other fields follow as key=value.
    """

    def render(self, line: _Line) -> str:
        clock = datetime.fromtimestamp(line.created).strftime("%H:%M:%S")
        level = _PRETTY_LEVELS.get(line.level, line.level)
        text = line.message
        http = line.groups.get("http")
        summed_up: tuple[str, ...] = ()
        if http is not None and all(k in http for k in _HTTP_SUMMARY):
            summary = (f"{http['method']} {http['path']} {http['status']} "
                       f"{_number(http['duration_ms'])}ms")
            text = summary if summary.startswith(text) else f"{summary} {text}"
            summed_up = _HTTP_SUMMARY
        pairs = " ".join(f"{_PRETTY_NAMES.get(k, k)}={_pretty_value(v)}"
                         for k, v in _pairs(line.request_id, line.worker, line.groups,
                                            summed_up))
        out = f"{clock}.{line.msecs:03d} {level:<5} {line.logger}  {text}"
        out = f"{out} {pairs}" if pairs else out
        return f"{out}\n{line.exc}" if line.exc else out


def _number(value: object) -> str:
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def _pretty_value(value: object) -> str:
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    text = _number(value)
    if not text or any(c in text for c in ' "=\n\t'):
        return json.dumps(text, ensure_ascii=False)
    return text


# --- setup --------------------------------------------------------------------------------------


def resolve_format(fmt: str, stream: TextIO) -> str:
    """`json` or `pretty`; `auto` is pretty on a terminal and JSON everywhere else."""
    if fmt in ("json", "pretty"):
        return fmt
    if fmt != "auto":
        raise ValueError(f"log format {fmt!r} is not one of json, pretty, auto")
    isatty: Callable[[], bool] | None = getattr(stream, "isatty", None)
    try:
        return "pretty" if isatty is not None and isatty() else "json"
    except ValueError:  # a closed stream
        return "json"


# The logger of the line per request (kestrel.http names the access logger it is given).
ACCESS_LOGGER = "kestrel.access"
# An access line waits at most this long to be written, ...
FLUSH_SECONDS = 0.1
# ... and at most this many wait.
MAX_WAITING_LINES = 256


class _KestrelHandler(logging.StreamHandler[TextIO]):
    """Writes access lines in batches: every `FLUSH_SECONDS`, or once `MAX_WAITING_LINES` wait;
    any other line is written at once, after the access lines before it.

    Why: a busy server logs an access line per request, and redacting, formatting and writing
    each on its own, between two requests, goes slow (the code and data of the formatter go cold
    in between); the same work done for a batch in one go, as one system call, took a request's
    CPU from 523 to 472 µs at 16 connections (bench/RESULTS.md, run 6). The server hands its
    access lines over as `AccessEntry` tuples (`access`), not log records: a record costs more
    to make than the line it becomes (run 9). The price: an access line appears up to 0.1 s
    late, and a process killed outright loses the access lines of its last 0.1 s (an orderly
    exit writes them).

    Redaction and formatting happen when the batch is written, so a log call must hand over
    values, not objects it goes on changing; the request id is taken when the call is made.
    setup_logging also marks with this class the handler it owns, so a second call replaces it
    instead of adding one.
    """

    def __init__(self, stream: TextIO, lines: _KestrelFormatter) -> None:
        super().__init__(stream)
        self._lines = lines  # records and access entries alike
        # Log records, and (time, entry) pairs from the server, in the order they came.
        self._waiting: list[logging.LogRecord | tuple[float, AccessEntry]] = []
        self._batch = threading.Lock()  # over the waiting lines
        self._writing = threading.RLock()  # over formatting and writing a batch
        self._wake = threading.Event()  # set: lines wait, or the handler is closing
        self._closed = False
        self._writer = threading.Thread(target=self._write_every_tick, daemon=True,
                                        name="kestrel-log-writer")
        self._writer.start()

    def handle(self, record: logging.LogRecord) -> bool:
        setattr(record, _REQUEST_ID, request_id_var.get())
        self._wait(record, now=record.name != ACCESS_LOGGER)
        return True

    def access(self, entry: AccessEntry) -> None:
        """The server's access line for one exchange (an `AccessLog`)."""
        self._wait((time.time(), entry), now=False)

    def _wait(self, item: logging.LogRecord | tuple[float, AccessEntry], *, now: bool) -> None:
        with self._batch:
            self._waiting.append(item)
            now = now or len(self._waiting) >= MAX_WAITING_LINES
        if now or self._closed:
            self.flush()
        elif not self._wake.is_set():
            self._wake.set()

    def flush(self) -> None:
        # The waiting lines are taken under `_batch` alone, so that the event loop, adding the
        # next line, never waits for a batch being formatted; `_writing` keeps batches in order.
        with self._writing:
            with self._batch:
                items, self._waiting = self._waiting, []
            lines = []
            for item in items:
                try:  # as StreamHandler.emit: a line that fails is reported, the rest go out
                    if isinstance(item, tuple):
                        lines.append(self._lines.format_access(*item))
                    elif self.filter(item):
                        lines.append(self._lines.format(item))
                except Exception:
                    if isinstance(item, logging.LogRecord):
                        self.handleError(item)
            try:
                if lines:
                    self.stream.write("\n".join(lines) + "\n")
                self.stream.flush()
            except Exception:
                records = [item for item in items if isinstance(item, logging.LogRecord)]
                if records:
                    self.handleError(records[-1])

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        self.flush()
        super().close()

    def _write_every_tick(self) -> None:
        while not self._closed:
            self._wake.wait()
            time.sleep(FLUSH_SECONDS)  # lines that come meanwhile join the batch
            self._wake.clear()
            self.flush()


def setup_logging(*, level: str, fmt: str, stream: TextIO | None = None,
                  worker: int | None = None) -> None:
    """Send the `kestrel` loggers to `stream` (stderr by default) at `level`, in `fmt`; in a
    worker process, every line names the `worker`."""
    if level.lower() not in LEVELS:
        raise ValueError(f"log level {level!r} is not one of {', '.join(LEVELS)}")
    stream = sys.stderr if stream is None else stream
    pretty = resolve_format(fmt, stream) == "pretty"
    lines = PrettyFormatter(worker) if pretty else JsonFormatter(worker)
    handler = _KestrelHandler(stream, lines)
    handler.addFilter(RedactingFilter())

    # Nothing Kestrel writes names the thread or process of a line; skipping them makes every
    # record cheaper (the knobs the logging HOWTO gives for this, under "Optimization").
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False

    logger = logging.getLogger("kestrel")
    for old in [h for h in logger.handlers if isinstance(h, _KestrelHandler)]:
        logger.removeHandler(old)
        old.close()
    logger.addHandler(handler)
    logger.setLevel(LEVELS[level.lower()])
    logger.propagate = False


def access_log() -> AccessLog | None:
    """Where the server hands its access lines: the handler `setup_logging` installed, when
    the access logger is on (`LOG_LEVEL=info` or `debug`); None otherwise, and the server then
    makes no entries at all. Asked once, when the server is built, after logging is set up."""
    if not logging.getLogger(ACCESS_LOGGER).isEnabledFor(logging.INFO):
        return None
    handler = next((h for h in logging.getLogger("kestrel").handlers
                    if isinstance(h, _KestrelHandler)), None)
    return handler.access if handler is not None else None
