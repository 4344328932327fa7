"""Jinja2 templates, one set per notification kind: `<kind>.subject.j2`, `<kind>.txt.j2`, `<kind>.html.j2`.

They live in files (settings.templates_dir) so wording can change without touching code (and is read when the
service starts: each template is compiled once, at its first use, and never looked at on disk again). Filters:
`money(currency)` (150000, "USD" -> "1,500.00 USD") and `when` (a UTC timestamp for people).
"""

from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, Template, select_autoescape

from ..domain.money import format_amount


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


def when(value: datetime | date | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, str):  # as kept in JSON (a notification waiting for names): a day or a moment
        value = date.fromisoformat(value) if len(value) == 10 else datetime.fromisoformat(value.replace("Z", "+00:00"))
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
            auto_reload=False,  # no stat of the files on every mail
        )
        self.env.filters["money"] = format_amount
        self.env.filters["when"] = when
        self._compiled: dict[str, tuple[Template, Template, Template]] = {}

    def render(self, kind: str, context: dict[str, Any]) -> Rendered:
        subject, text, html = self._templates(kind)
        return Rendered(
            subject=" ".join(subject.render(context).split()),  # a header is one line
            text=text.render(context).strip() + "\n",
            html=html.render(context),
        )

    def _templates(self, kind: str) -> tuple[Template, Template, Template]:
        """A kind's three templates, compiled at their first use and kept (not looked up in the cache each time)."""
        compiled = self._compiled.get(kind)
        if compiled is None:
            compiled = self._compiled[kind] = tuple(self.env.get_template(f"{kind}.{part}.j2")
                                                    for part in ("subject", "txt", "html"))
        return compiled
