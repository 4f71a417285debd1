"""Figures that hardening tests measure, printed as tables at the end of the pytest run.

Tests call `report(title, columns, row)`; the `pytest_terminal_summary` hook in conftest prints
every table once the run is over, so the numbers show in CI output without `-s` and survive
pytest's output capture.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class Table:
    columns: tuple[str, ...]
    rows: list[tuple[str, ...]] = field(default_factory=list)

    def render(self, title: str) -> list[str]:
        cells = [self.columns, *self.rows]
        widths = [max(len(row[i]) for row in cells) for i in range(len(self.columns))]

        def line(row: tuple[str, ...]) -> str:
            return "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()

        return [title, line(self.columns), line(tuple("-" * w for w in widths)),
                *map(line, self.rows)]


TABLES: dict[str, Table] = {}


def report(title: str, columns: Sequence[str], row: Sequence[object]) -> None:
    """Add one row to the table called `title` (created with `columns` on first use)."""
    table = TABLES.setdefault(title, Table(tuple(columns)))
    assert table.columns == tuple(columns), f"table {title!r} reported with other columns"
    table.rows.append(tuple(str(v) for v in row))


# What crosses from an xdist worker: title → (columns, rows), lists and strings only.
Exported = dict[str, tuple[list[str], list[list[str]]]]


def exported() -> Exported:
    """The tables as plain data, to cross from an xdist worker to the controller."""
    return {title: (list(t.columns), [list(r) for r in t.rows]) for title, t in TABLES.items()}


def merge(tables: Exported) -> None:
    for title, (columns, rows) in tables.items():
        for row in rows:
            report(title, columns, row)


def rendered() -> list[str]:
    lines: list[str] = []
    for title, table in TABLES.items():
        lines += ["", *table.render(title)]
    return lines
