"""Refused client keys tell a caller nothing: not whether the key was revoked, nor how close it was.

How Kestrel checks a key (kestrel/store/keys.py, kestrel/api/client_auth.py): a key without the
public `kst_` prefix is refused at once; any other is hashed (SHA-256) and the hash looked up in
the indexed `key_hash` column, then compared with `hmac.compare_digest`; a revoked row is refused
after that lookup; live keys are cached after their first success. So every `kst_` key that is
refused, whether unknown, revoked, sharing the live key's display prefix, or one character off,
costs the same: one hash and one database read. Hashing before the lookup also means the index
sees no prefix of the key, so a near miss is as far from a match as a random key.

Two ways to hold that:

1. Structure: every class of refused key gets the very same answer (status, headers, body) on
   every proxy surface, and none reaches the upstream.
2. Time: the refusal latency of each class over a few hundred requests, interleaved so that
   the machine's drift affects every class alike (`support.timing`). Individual requests vary
   by far more than a database read costs, so each class is summed up by its 20th percentile:
   scheduling noise only ever adds time, and on a busy machine it moves medians by more than a
   database read, while the fast end stays steady to a few hundredths of a millisecond.
   The yardstick is measured in the same run: keys without the `kst_` prefix skip the database,
   so the gap to them shows what one database round trip is worth here. The refused `kst_`
   classes must lie within half of that of each other: a leak of the kind that matters (a
   revoked key taking a database read that unknown keys skip, or the reverse) puts one class a
   whole round trip away. Noise can still spoil one measurement, while a real leak shows every
   time, so the test measures up to three times and passes on the first clean one.
"""

from __future__ import annotations

import secrets
import statistics
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from kestrel.store.keys import DISPLAY_PREFIX_LENGTH

from support.figures import report
from support.stack import Stack, message_body, running_stack
from support.timing import interleaved, quantile

ROUNDS = 200
ATTEMPTS = 3
QUANTILE = 0.2
# The structural classes: every one must be refused identically.
REFUSED = ("unknown", "revoked", "display prefix of a live key", "live key, last char changed")
FOREIGN = "no kst_ prefix"
VOLATILE = {"date", "x-request-id"}


@dataclass
class Keys:
    stack: Stack
    classes: dict[str, str]
    live: str


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keys]:
    workdir: Path = tmp_path_factory.mktemp("keys")
    with running_stack(workdir, accounts=("a",)) as stack:
        with stack.admin() as admin:
            doomed = admin.post("/admin/keys", json={"name": "doomed"}).json()
            assert admin.delete(f"/admin/keys/{doomed['id']}").status_code == 200
        live = stack.key
        last = "A" if live[-1] != "A" else "B"
        classes = {
            "unknown": "kst_" + secrets.token_urlsafe(32),
            "revoked": doomed["key"],
            "display prefix of a live key": live[:DISPLAY_PREFIX_LENGTH]
            + secrets.token_urlsafe(32)[:len(live) - DISPLAY_PREFIX_LENGTH],
            "live key, last char changed": live[:-1] + last,
            FOREIGN: "sk-ant-api03-" + secrets.token_urlsafe(30),
        }
        assert all(len(key) == len(live) for name, key in classes.items() if name != FOREIGN)
        yield Keys(stack, classes, live)


def _surfaces(key: str) -> list[tuple[str, str, dict[str, str], Any]]:
    """Every way a client presents a key, on every proxy surface."""
    anthropic = {"anthropic-version": "2023-06-01"}
    return [
        ("POST", "/v1/messages", {"x-api-key": key, **anthropic}, message_body()),
        ("POST", "/v1/messages", {"Authorization": f"Bearer {key}", **anthropic},
         message_body()),
        ("POST", "/v1/messages/count_tokens", {"x-api-key": key, **anthropic}, message_body()),
        ("GET", "/v1/models", {"x-api-key": key, **anthropic}, None),
        ("GET", "/v1/models", {"Authorization": f"Bearer {key}"}, None),
        ("POST", "/v1/chat/completions", {"Authorization": f"Bearer {key}"},
         {"model": "claude-sonnet-4-6", "messages": [{"role": "user", "content": "hi"}]}),
    ]


def _answer(response: httpx.Response) -> tuple[int, list[tuple[str, str]], bytes]:
    headers = sorted((k, v) for k, v in response.headers.items() if k not in VOLATILE)
    return response.status_code, headers, response.content


def test_every_refused_key_gets_the_same_answer(keys: Keys) -> None:
    upstream_before = len(keys.stack.up.requests)
    with keys.stack.kestrel.client() as client:
        for surface in range(len(_surfaces(""))):
            answers = {}
            for name in (*REFUSED, FOREIGN):
                method, path, headers, body = _surfaces(keys.classes[name])[surface]
                answers[name] = _answer(client.request(method, path, headers=headers,
                                                       json=body))
            status, _, content = answers["unknown"]
            assert status == 401, (path, content)
            assert b"authentication_error" in content
            different = {name: a for name, a in answers.items() if a != answers["unknown"]}
            assert not different, (method, path, answers["unknown"], different)
        # the live key does get through, so the refusals above are about the keys
        method, path, headers, body = _surfaces(keys.live)[0]
        assert client.request(method, path, headers=headers, json=body).status_code == 200
    assert len(keys.stack.up.requests) == upstream_before + 1


def _refusals(client: httpx.Client, classes: dict[str, str]) -> dict[str, Callable[[], None]]:
    """One refused request per class, ready to be timed."""
    def refuse(key: str) -> Callable[[], None]:
        def call() -> None:
            headers = {"x-api-key": key, "anthropic-version": "2023-06-01"}
            assert client.get("/v1/models", headers=headers).status_code == 401
        return call
    return {name: refuse(key) for name, key in classes.items()}


def test_refusal_time_does_not_tell_revoked_from_unknown(keys: Keys) -> None:
    verdicts = []
    with keys.stack.kestrel.client() as client:
        calls = _refusals(client, keys.classes)
        interleaved(calls, 20)  # warm-up: connection, caches, the read pool's threads
        for attempt in range(1, ATTEMPTS + 1):
            samples = interleaved(calls, ROUNDS)
            fast = {name: quantile(times, QUANTILE) for name, times in samples.items()}
            refused = [fast[name] for name in REFUSED]
            round_trip = statistics.median(refused) - fast[FOREIGN]
            spread = max(refused) - min(refused)
            for name, times in samples.items():
                report("Key refusal timing",
                       ("attempt", "class", "n", "p20 ms", "median ms", "p90 ms"),
                       (attempt, name, len(times), f"{fast[name]:.3f}",
                        f"{quantile(times, 0.5):.3f}", f"{quantile(times, 0.9):.3f}"))
            report("Key refusal verdict",
                   ("attempt", "one db round trip ms", "spread of kst_ classes ms", "bound ms"),
                   (attempt, f"{round_trip:.3f}", f"{spread:.3f}", f"{round_trip / 2:.3f}"))
            verdicts.append((round_trip, spread))
            if round_trip > 0 and spread < round_trip / 2:
                return
    pytest.fail(f"refusal times differ by class (db round trip, spread) per attempt: {verdicts}")
