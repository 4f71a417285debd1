"""Looking for secrets where they must never be: log lines, HTTP answers, database files.

A leak is rarely the whole secret verbatim: a log may keep the tail of a key, a debug dump may
hex- or base64-encode the bytes it holds, a URL may percent-encode them. So a `Secret` is found
when any `WINDOW`-byte slice of it shows up, raw or in one of those encodings. Twelve bytes is
far more than any hint Kestrel shows by design (`sk-ant-…` + 4 characters) and far less than
what would let anyone use the secret, yet still long enough that random bytes never match.

What a secret shows publicly by design is declared with `public`: its leading bytes (a family
prefix such as `sk-ant-api03-`, a client key's 12-character display prefix). Only slices with at
least half their bytes past that head count: a slice that adds one character to a public prefix
tells nothing, and would match every other secret of the family starting with that character.

Searching is a single pass over each haystack: needles are indexed by their first `WINDOW`
bytes, and text needles can only occur inside runs of the characters they are made of, which a
regular expression finds at C speed, so megabytes of database pages take a fraction of a second.
"""

from __future__ import annotations

import base64
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import quote_from_bytes

import httpx

WINDOW = 12

# Every byte a text needle can hold: base64 (both alphabets), hex, URL escapes, key punctuation.
_TEXT_BYTES = rb"A-Za-z0-9+/=_%.~-"
_TEXT_RUN = re.compile(rb"[" + _TEXT_BYTES + rb"]{%d,}" % WINDOW)
_TEXT_ONLY = re.compile(rb"[" + _TEXT_BYTES + rb"]+")


@dataclass(frozen=True)
class Secret:
    name: str
    value: bytes
    public: int = 0
    """Leading bytes that are public by design; only slices mostly past them count."""

    @classmethod
    def of(cls, name: str, value: str, public: int = 0) -> Secret:
        return cls(name, value.encode(), public)

    def __post_init__(self) -> None:
        assert len(self.value) - self.public >= WINDOW, f"{self.name} is too short to search"


def windows(secret: Secret) -> list[bytes]:
    """Every `WINDOW`-byte slice of the secret with at least half of it past the public head."""
    first = max(0, secret.public - WINDOW // 2)
    return [secret.value[i:i + WINDOW] for i in range(first, len(secret.value) - WINDOW + 1)]


ENCODINGS: dict[str, Callable[[bytes], bytes]] = {
    "raw": lambda b: b,
    "hex": lambda b: b.hex().encode(),
    "HEX": lambda b: b.hex().upper().encode(),
    "base64": base64.b64encode,
    "base64url": base64.urlsafe_b64encode,
    "url-encoded": lambda b: quote_from_bytes(b, safe="").encode(),
}
"""How a slice might be written down. Twelve bytes are four whole base64 groups, so the encoding
of a slice that starts on the enclosing text's group boundary appears verbatim in it; with every
offset tried, some slice of a 14+ byte secret always does."""


@dataclass(frozen=True)
class Hit:
    place: str
    secret: str
    encoding: str
    offset: int
    context: bytes

    def __str__(self) -> str:
        return (f"{self.secret} ({self.encoding}) in {self.place} at byte {self.offset}: "
                f"{self.context!r}")


@dataclass
class Needles:
    """Every encoded slice of every secret, indexed for one pass over a haystack."""

    text: dict[bytes, list[tuple[bytes, str, str]]] = field(
        default_factory=lambda: defaultdict(list))
    binary: list[tuple[bytes, str, str]] = field(default_factory=list)
    count: int = 0

    @classmethod
    def of(cls, secrets: Iterable[Secret]) -> Needles:
        needles = cls()
        seen: set[tuple[bytes, str]] = set()
        for secret in secrets:
            for piece in windows(secret):
                for encoding, encode in ENCODINGS.items():
                    needle = encode(piece)
                    if (needle, secret.name) in seen:
                        continue  # e.g. url-encoding changes nothing in a plain key
                    seen.add((needle, secret.name))
                    needles.count += 1
                    if _TEXT_ONLY.fullmatch(needle):
                        needles.text[needle[:WINDOW]].append((needle, secret.name, encoding))
                    else:
                        needles.binary.append((needle, secret.name, encoding))
        return needles

    def search(self, place: str, haystack: bytes) -> list[Hit]:
        hits: list[Hit] = []

        def hit(offset: int, needle: bytes, secret: str, encoding: str) -> None:
            context = haystack[max(0, offset - 40):offset + len(needle) + 40]
            hits.append(Hit(place, secret, encoding, offset, context))

        for run in _TEXT_RUN.finditer(haystack):
            start, text = run.start(), run.group()
            for i in range(len(text) - WINDOW + 1):
                for needle, secret, encoding in self.text.get(text[i:i + WINDOW], ()):
                    if text.startswith(needle, i):
                        hit(start + i, needle, secret, encoding)
        for needle, secret, encoding in self.binary:
            offset = haystack.find(needle)
            while offset >= 0:
                hit(offset, needle, secret, encoding)
                offset = haystack.find(needle, offset + 1)
        return hits


def scan(places: Mapping[str, bytes], secrets: Iterable[Secret]) -> list[Hit]:
    """Every place where a slice of a secret shows, in any of `ENCODINGS`."""
    needles = Needles.of(secrets)
    return [hit for place, haystack in places.items() for hit in needles.search(place, haystack)]


def summary(hits: Iterable[Hit]) -> str:
    """One line per secret and place, with the first hit's surroundings: a leak shows up as
    dozens of overlapping slices, which say no more than the first."""
    first: dict[tuple[str, str], tuple[Hit, int]] = {}
    for hit in hits:
        seen, count = first.get((hit.secret, hit.place), (hit, 0))
        first[(hit.secret, hit.place)] = (seen, count + 1)
    return "\n".join(f"{hit} ({count} slices)" for hit, count in first.values())


def response_bytes(response: httpx.Response) -> bytes:
    """Status line, headers and (decoded) body: everything a client of this answer sees."""
    head = f"{response.status_code} {response.reason_phrase}\r\n" + "".join(
        f"{name}: {value}\r\n" for name, value in response.headers.multi_items())
    return head.encode() + b"\r\n" + response.read()


class Transcript:
    """Every answer the session's clients got, kept to be searched afterwards.

    Pass `hooks()` as httpx's `event_hooks`. `exclude` names answers that show a secret by
    design (the one-time display of a new client key); they are counted, not kept.
    """

    def __init__(self, exclude: Callable[[httpx.Response], bool] = lambda _: False) -> None:
        self.responses: list[tuple[httpx.Request, int, bytes]] = []
        self.excluded: list[str] = []
        self._exclude = exclude

    def hooks(self) -> dict[str, list[Callable[[httpx.Response], None]]]:
        return {"response": [self.record]}

    def record(self, response: httpx.Response) -> None:
        request = response.request
        if self._exclude(response):
            self.excluded.append(f"{request.method} {request.url.path} {response.status_code}")
            return
        self.responses.append((request, response.status_code, response_bytes(response)))

    def joined(self, keep: Callable[[httpx.Request, int], bool]) -> tuple[int, bytes]:
        """How many answers `keep` selects, and all of them in one haystack."""
        chosen = [raw for request, status, raw in self.responses if keep(request, status)]
        return len(chosen), b"\n\n".join(chosen)
