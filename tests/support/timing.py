"""Comparing how long kinds of request take, on a machine that other work keeps busy.

A single request's time says little: scheduling noise is many times the differences that matter
(a database read, a hash). Two habits make the comparison hold anyway. Interleave: each round
runs every kind once, in a fresh random order, so a slow spell of the machine hits all kinds
alike. Read the fast end: noise only ever adds time, so a low quantile of each kind moves with
what the server does, while the median drifts with the load.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping


def interleaved(calls: Mapping[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Milliseconds per call, by name: `rounds` calls of each, interleaved."""
    samples: dict[str, list[float]] = {name: [] for name in calls}
    order = list(calls)
    for _ in range(rounds):
        random.shuffle(order)
        for name in order:
            start = time.perf_counter()
            calls[name]()
            samples[name].append((time.perf_counter() - start) * 1000)
    return samples


def quantile(values: list[float], fraction: float) -> float:
    return sorted(values)[min(len(values) - 1, int(len(values) * fraction))]
