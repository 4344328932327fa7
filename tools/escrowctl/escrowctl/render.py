"""Tables (rich) or JSON on standard output; messages for people on standard error."""

import json
from typing import Any

from rich.console import Console
from rich.table import Table

out = Console(soft_wrap=True)
err = Console(stderr=True)


def as_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    return str(value)


def table(title: str, rows: list[dict], columns: list[str] | None = None) -> None:
    columns = columns or list(dict.fromkeys(k for row in rows for k, v in row.items()
                                            if not isinstance(v, (dict, list)) or k in ("totals",)))
    grid = Table(title=title, show_lines=False)
    for column in columns:
        grid.add_column(column, overflow="fold")
    for row in rows:
        grid.add_row(*(cell(row.get(c)) for c in columns))
    out.print(grid)


def fields(title: str, record: dict, skip: tuple[str, ...] = ()) -> None:
    grid = Table(title=title, show_header=False)
    grid.add_column("field", style="bold")
    grid.add_column("value", overflow="fold")
    for key, value in record.items():
        if key not in skip:
            grid.add_row(key, cell(value))
    out.print(grid)
