"""What a request cost in dollars, from the model and its final usage. Pure: the table is data,
an operator's PRICES file is parsed here and read by the settings.

Anthropic bills per million tokens, per model: input, output, prompt-cache writes (5 minutes at
1.25× input, 1 hour at 2×) and cache reads (0.1×). A few models bill a whole request at higher
"long context" rates once its input (uncached, cache writes and cache reads together) passes
200,000 tokens. Source and date of the shipped table: README, "Cost".
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

PER_MILLION = 1_000_000
LONG_CONTEXT_THRESHOLD = 200_000
# A model id is its name, or its name with a release date (`claude-haiku-4-5-20251001`).
_DATED = re.compile(r"-[0-9]{8}$")


@dataclass(frozen=True)
class Price:
    """Dollars per million tokens."""

    input: float
    output: float
    cache_write_5m: float
    cache_write_1h: float
    cache_read: float
    # The rates of a request whose input passes LONG_CONTEXT_THRESHOLD (None: same rates).
    long_context: Price | None = None


def standard(input: float, output: float, long_context: tuple[float, float] | None = None
             ) -> Price:
    """A price with Anthropic's cache multipliers (5 minutes 1.25×, 1 hour 2×, reads 0.1×)."""
    return Price(input, output, input * 1.25, input * 2, input * 0.1,
                 None if long_context is None else standard(*long_context))


# Anthropic's price list, by model name. Models older than the Claude 3 family are retired.
PRICES: dict[str, Price] = {
    "claude-opus-4-8": standard(5, 25),
    "claude-opus-4-7": standard(5, 25),
    "claude-opus-4-6": standard(5, 25),
    "claude-opus-4-5": standard(5, 25),
    "claude-opus-4-1": standard(15, 75),
    "claude-opus-4-0": standard(15, 75),
    "claude-opus-4": standard(15, 75),
    "claude-sonnet-4-6": standard(3, 15),
    "claude-sonnet-4-5": standard(3, 15, long_context=(6, 22.5)),
    "claude-sonnet-4-0": standard(3, 15, long_context=(6, 22.5)),
    "claude-sonnet-4": standard(3, 15, long_context=(6, 22.5)),
    "claude-3-7-sonnet": standard(3, 15),
    "claude-haiku-4-5": standard(1, 5),
    "claude-3-5-haiku": standard(0.8, 4),
    "claude-3-opus": standard(15, 75),
    "claude-3-haiku": Price(0.25, 1.25, 0.30, 0.50, 0.03),
}


class Tokens(NamedTuple):
    """A request's final usage as Anthropic bills it. `cache_write_1h` is the part of
    `cache_write` written for an hour; the rest was written for five minutes. A named tuple,
    as `Cost`: both are made for every request (see `kestrel.domain.RequestLog`)."""

    input: int = 0
    output: int = 0
    cache_write: int = 0
    cache_write_1h: int = 0
    cache_read: int = 0


class Cost(NamedTuple):
    usd: float
    priced: bool
    """False: the model is not in the table, and `usd` is 0, not the request's cost."""


def price_of(table: Mapping[str, Price], model: str | None) -> Price | None:
    if model is None:
        return None
    found = table.get(model)
    if found is None and (dated := _DATED.search(model)):
        found = table.get(model[:dated.start()])
    return found


def cost(table: Mapping[str, Price], model: str | None, tokens: Tokens) -> Cost:
    """The request's cost. A request that used no tokens (refused, failed) costs 0 and is
    priced, whatever its model: nothing was billed."""
    # Unpacked once: a named tuple's fields are slow to read one by one (see `Tokens`).
    input_, output, cache_write, cache_write_1h, cache_read = tokens
    if not (input_ or output or cache_write or cache_read):
        return Cost(0.0, True)
    price = price_of(table, model)
    if price is None:
        return Cost(0.0, False)
    if (price.long_context is not None
            and input_ + cache_write + cache_read > LONG_CONTEXT_THRESHOLD):
        price = price.long_context
    hour = min(cache_write_1h, cache_write)
    return Cost((input_ * price.input + output * price.output
                 + (cache_write - hour) * price.cache_write_5m
                 + hour * price.cache_write_1h + cache_read * price.cache_read)
                / PER_MILLION, True)


_FIELDS = ("input", "output", "cache_write_5m", "cache_write_1h", "cache_read")


def parse_prices(text: str) -> dict[str, Price]:
    """An operator's PRICES file: `{"model": {"input": 3, "output": 15, ...}}`, dollars per
    million tokens. `input` and `output` are required; cache rates default to Anthropic's
    multipliers of `input`; `long_context` is an object of the same shape. Raises ValueError
    with a message naming the model and the field."""
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise ValueError("must be a JSON object of model names")
    return {model: _price(model, entry) for model, entry in raw.items()}


def _price(model: str, entry: object, *, nested: bool = False) -> Price:
    if not isinstance(entry, dict):
        raise ValueError(f"{model}: must be an object of prices")
    unknown = set(entry) - set(_FIELDS) - (set() if nested else {"long_context"})
    if unknown:
        raise ValueError(f"{model}: unknown field {sorted(unknown)[0]!r}")
    rates: dict[str, float] = {}
    for name in _FIELDS:
        value = entry.get(name)
        if value is None:
            if name in ("input", "output"):
                raise ValueError(f"{model}: {name} is required")
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or not math.isfinite(value) or value < 0:
            raise ValueError(f"{model}: {name} must be a number of dollars ≥ 0")
        rates[name] = float(value)
    base = standard(rates["input"], rates["output"])
    long_context = entry.get("long_context")
    return Price(rates["input"], rates["output"],
                 rates.get("cache_write_5m", base.cache_write_5m),
                 rates.get("cache_write_1h", base.cache_write_1h),
                 rates.get("cache_read", base.cache_read),
                 None if long_context is None
                 else _price(f"{model}.long_context", long_context, nested=True))
