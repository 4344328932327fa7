"""Jinja2 templates, one set per notification kind: `<kind>.subject.j2`, `<kind>.txt.j2`, `<kind>.html.j2`.

They live in files (settings.templates_dir) so wording can change without touching code. Filters:
`money(currency)` (150000, "USD" -> "1,500.00 USD") and `when` (a UTC timestamp for people).
"""

from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from ..domain.money import format_amount


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


def when(value: datetime | date | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).strftime("%d %b %Y, %H:%M UTC")
    return value.strftime("%d %b %Y")


class Templates:
    def __init__(self, directory: Path) -> None:
        self.env = Environment(
            loader=FileSystemLoader(str(directory)),
            autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False, default=False),
            undefined=StrictUndefined,  # a typo in a template fails loudly instead of sending a blank
            trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
        )
        self.env.filters["money"] = format_amount
        self.env.filters["when"] = when

    def render(self, kind: str, context: dict[str, Any]) -> Rendered:
        subject = self.env.get_template(f"{kind}.subject.j2").render(context)
        return Rendered(
            subject=" ".join(subject.split()),  # a header is one line
            text=self.env.get_template(f"{kind}.txt.j2").render(context).strip() + "\n",
            html=self.env.get_template(f"{kind}.html.j2").render(context),
        )
