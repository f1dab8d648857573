"""Mail bodies from Jinja2 templates (``services/notifier/templates``): each mail a text part and an HTML
part, HTML autoescaped (a customer's or an agent's words never become markup)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "templates"


def _paragraphs(text: str) -> list[str]:
    return [p.strip() for p in re.split(r"\n[ \t]*\n+", text or "") if p.strip()]


class MailTemplates:
    def __init__(self, directory: Path = TEMPLATE_DIR) -> None:
        self.env = Environment(
            loader=FileSystemLoader(str(directory)),
            autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        self.env.filters["paragraphs"] = _paragraphs

    def render(self, name: str, **context: Any) -> tuple[str, str]:
        """The text and the HTML body of template ``name`` (``name.txt`` and ``name.html``)."""
        text = self.env.get_template(f"{name}.txt").render(**context)
        html = self.env.get_template(f"{name}.html").render(**context)
        return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n", html
