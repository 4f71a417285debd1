"""A finished request's tokens as Anthropic bills them, and their cost from the price table.

Kept beside the forwarder rather than in it: it is the one place that knows how the usage read
from an answer maps onto billed token kinds, and that a model without a price is worth one
warning, not one per request.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from kestrel.prices import Cost, Price, Tokens, cost
from kestrel.proxy.usage import Usage

log = logging.getLogger("kestrel.proxy")

# Models without a price are logged once each; past this many names, no more are remembered.
MAX_UNPRICED_NAMES = 100


class Costing:
    def __init__(self, prices: Mapping[str, Price]) -> None:
        self._prices = prices
        self._unpriced: set[str] = set()

    def __call__(self, model: str | None, usage: Usage | None) -> tuple[Tokens, Cost]:
        # By position (input, output, cache_write, cache_write_1h, cache_read): a named tuple
        # made by keywords costs half as much again.
        tokens = Tokens() if usage is None else Tokens(
            usage.input_tokens, usage.output_tokens, usage.cache_creation_input_tokens,
            usage.cache_creation_1h_tokens, usage.cache_read_input_tokens)
        spent = cost(self._prices, model, tokens)
        if not spent.priced and str(model) not in self._unpriced \
                and len(self._unpriced) < MAX_UNPRICED_NAMES:
            self._unpriced.add(str(model))
            log.warning("model %r is not in the price table: its requests are costed at $0 "
                        "(add it to a PRICES file)", model,
                        extra={"event": {"name": "model_unpriced", "model": model}})
        return tokens, spent
