"""What the operator's commands print, checked directly (kestrel/admin_cli/render.py is pure)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from kestrel.admin_cli.render import (
    Styled,
    http_status,
    limits,
    money,
    relative,
    state,
    table,
)
from kestrel.domain import one_line

NOW = datetime(2026, 12, 4, 12, 0, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(("at", "said"), [
    (None, "never"),
    ("2026-12-04T12:00:00.400Z", "now"),
    ("2026-12-04T11:59:20Z", "40 s ago"),
    ("2026-12-04T12:00:25+00:00", "in 25 s"),
    ("2026-12-04T11:57:00Z", "3 min ago"),
    ("2026-12-04T14:00:00+01:00", "in 1 h"),  # another offset, the same moment less an hour
    ("2026-12-01T11:00:00Z", "3 d ago"),
])
def test_times_are_said_relative_to_now(at: str | None, said: str) -> None:
    assert relative(at, NOW) == said


def test_columns_line_up_whatever_colour_adds() -> None:
    rows = [["1", state("active"), "a"], ["22", state("cooldown"), "a long last column"]]
    plain = table(["ID", "STATUS", "NOTE"], rows).splitlines()
    assert plain == ["ID  STATUS    NOTE",
                     "1   active    a",
                     "22  cooldown  a long last column"]
    coloured = table(["ID", "STATUS", "NOTE"], rows, colour=True).splitlines()
    assert coloured[1] == "1   \x1b[32mactive\x1b[0m    a"
    assert coloured[0].startswith("\x1b[1mID\x1b[0m  ")
    assert [line.replace("\x1b[32m", "").replace("\x1b[33m", "").replace("\x1b[1m", "")
            .replace("\x1b[0m", "") for line in coloured] == plain


def test_states_and_statuses_have_their_colours() -> None:
    assert [state(s).style for s in ("active", "cooldown", "invalid", "revoked", "odd")] == [
        "green", "yellow", "red", "dim", None]
    assert [http_status(s) for s in (200, 429, 529, None)] == [
        Styled("200", "green"), Styled("429", "yellow"), Styled("529", "red"),
        Styled("-", "red")]


def test_money_counts_fractions_of_a_cent_below_a_dollar() -> None:
    assert [money(v) for v in (0.0, 0.00042, 0.5, 1.0, 1234.567, None)] == [
        "$0.0000", "$0.0004", "$0.5000", "$1.00", "$1,234.57", "-"]


def test_a_keys_limits_in_a_few_words() -> None:
    assert limits({}) == "-"
    assert limits({"rpm": 60, "tpm": None, "daily_budget_usd": 5, "monthly_budget_usd": 100.5,
                   "models": ["claude-haiku-*"], "allowed_ips": ["10.0.0.0/8"]}) == (
        "rpm 60 · $5.00/day · $100.50/month · claude-haiku-* · IP-limited")
    assert limits({"max_concurrency": 2, "daily_tokens": 1_000_000,
                   "models": ["a", "b", "c"]}) == "concurrency 2 · tokens/day 1,000,000 · 3 models"


def test_long_text_is_cut_on_one_line() -> None:
    assert one_line("upstream\nsaid  no", 40) == "upstream said no"
    assert one_line("x" * 50, 10) == "xxxxxxxxx…"
    assert one_line(None, 10) == ""
