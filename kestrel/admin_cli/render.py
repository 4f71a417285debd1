"""What the operator's commands print: aligned tables, coloured states, relative times, money.

Pure: the caller passes the time and whether colour is wanted, so all of it is tested directly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

# ANSI SGR codes by style name; only used when the output is a terminal and NO_COLOR is unset.
_SGR = {"green": "32", "yellow": "33", "red": "31", "magenta": "35", "dim": "2", "bold": "1"}

STATE_STYLES = {"active": "green", "cooldown": "yellow", "disabled": "dim", "invalid": "red",
                "exhausted": "magenta", "revoked": "dim", "expired": "red", "ok": "green",
                "failed": "red"}


@dataclass(frozen=True)
class Styled:
    """A cell with a style; its width is the text's, whatever the escape codes add."""

    text: str
    style: str | None = None


Cell = str | Styled


def paint(cell: Cell, colour: bool) -> str:
    if isinstance(cell, str):
        return cell
    if not colour or cell.style is None:
        return cell.text
    return f"\x1b[{_SGR[cell.style]}m{cell.text}\x1b[0m"


def state(name: str) -> Styled:
    return Styled(name, STATE_STYLES.get(name))


def http_status(status: int | None) -> Styled:
    if status is None:
        return Styled("-", "red")
    return Styled(str(status), "green" if status < 400 else "yellow" if status < 500 else "red")


def table(headers: Sequence[str], rows: Sequence[Sequence[Cell]], colour: bool = False) -> str:
    """Columns padded to their widest cell, two spaces apart, the last column unpadded (it may
    be long: an error message)."""
    widths = [len(h) for h in headers]
    for row in rows:
        for index, cell in enumerate(row):
            widths[index] = max(widths[index], len(_text(cell)))
    lines = []
    for row in [[Styled(h, "bold") for h in headers], *rows]:
        parts = []
        for index, cell in enumerate(row):
            pad = "" if index == len(row) - 1 else " " * (widths[index] - len(_text(cell)))
            parts.append(paint(cell, colour) + pad)
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def _text(cell: Cell) -> str:
    return cell if isinstance(cell, str) else cell.text


def parse_iso(value: str | None) -> float | None:
    return None if value is None else datetime.fromisoformat(value).timestamp()


def relative(value: str | None, now: float, never: str = "never") -> str:
    """An RFC 3339 time as people say it: `40 s ago`, `in 3 min`, `2 d ago`."""
    at = parse_iso(value)
    if at is None:
        return never
    seconds = at - now
    span = abs(seconds)
    if span < 1:
        return "now"
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60), ("s", 1)):
        if span >= size:
            amount = f"{int(span // size)} {unit}"
            return f"in {amount}" if seconds > 0 else f"{amount} ago"
    raise AssertionError("unreachable: span >= 1")


def money(usd: float | None) -> str:
    """Cents are too coarse for one request: 4 decimals under a dollar, 2 from there."""
    if usd is None:
        return "-"
    return f"${usd:,.4f}" if usd < 1 else f"${usd:,.2f}"


def count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def millis(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} ms"


def limits(key: Mapping[str, object]) -> str:
    """A key's limits in a few words, `-` for none: `rpm 60 · $5/day · 2 models`."""
    parts = []
    for name, label in (("rpm", "rpm"), ("tpm", "tpm"), ("max_concurrency", "concurrency"),
                        ("daily_tokens", "tokens/day")):
        value = key.get(name)
        if isinstance(value, int):
            parts.append(f"{label} {value:,}")
    for name, label in (("daily_budget_usd", "day"), ("monthly_budget_usd", "month")):
        value = key.get(name)
        if isinstance(value, int | float):
            parts.append(f"${value:,.2f}/{label}")
    models = key.get("models")
    if isinstance(models, list):
        parts.append(", ".join(models) if len(models) <= 2 else f"{len(models)} models")
    if key.get("allowed_ips"):
        parts.append("IP-limited")
    return " · ".join(parts) or "-"
