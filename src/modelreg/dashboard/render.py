"""Rendering helpers of the dashboard: the Jinja2 environment, paging and form fields.

Templates live in ``templates/`` (package data) and escape everything by
default; nothing here decides what a user may do (the facade does).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, time
from typing import Any
from urllib.parse import quote, urlencode

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.datastructures import FormData

from modelreg.errors import InvalidInputError

PER_PAGE = 25
MAX_PAGE_NUMBER = 100_000
MAX_COMMENT = 2000


def environment() -> Environment:
    """The templates' environment: autoescaped, strict about undefined names."""
    env = Environment(
        loader=PackageLoader("modelreg.dashboard", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = when
    env.filters["part"] = part
    env.filters["number"] = number
    return env


def when(value: datetime | str | None) -> str:
    """A time as ``2026-11-30 20:31:05 UTC`` (empty for None)."""
    if value is None:
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def part(value: str | int) -> str:
    """``value`` quoted for one URL path segment."""
    return quote(str(value), safe="")


def number(value: float | None, digits: int = 4) -> str:
    """A number with up to ``digits`` significant decimals; a dash for None."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "\N{EN DASH}"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}g}"


@dataclass(frozen=True)
class Pager:
    """Page ``page`` of ``total`` rows, ``per_page`` at a time, with links keeping ``query``."""

    page: int
    total: int
    per_page: int = PER_PAGE
    query: tuple[tuple[str, str], ...] = ()
    param: str = "page"

    @property
    def offset(self) -> int:
        """Rows before this page."""
        return (self.page - 1) * self.per_page

    @property
    def pages(self) -> int:
        """How many pages there are (at least one)."""
        return max(1, math.ceil(self.total / self.per_page))

    def link(self, page: int) -> str:
        """The query string of another page, keeping the other parameters."""
        kept = [(k, v) for k, v in self.query if k != self.param and v]
        return "?" + urlencode([*kept, (self.param, str(page))])

    def check(self) -> Pager:
        """The pager itself, or InvalidInputError when the page is past the last one."""
        if self.page > self.pages:
            raise InvalidInputError(f"page {self.page} does not exist; there are {self.pages}")
        return self


def text_field(form: FormData, name: str, limit: int = MAX_COMMENT) -> str:
    """The form's text field ``name`` ('' when absent), or InvalidInputError when too long."""
    value: Any = form.get(name, "")
    if not isinstance(value, str):
        raise InvalidInputError(f"{name} must be text")
    if len(value) > limit:
        raise InvalidInputError(f"{name} must be at most {limit} characters")
    return value


def parse_time(text: str, *, end_of_day: bool = False) -> datetime | None:
    """``2026-11-30`` or ``2026-11-30T20:31`` as aware UTC (a bare date: its start or end)."""
    text = text.strip()
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInputError(
            f"time {text[:40]!r} must look like 2026-11-30 or 2026-11-30T20:31"
        ) from None
    if end_of_day and len(text) == 10:
        value = datetime.combine(value.date(), time.max)
    return value if value.tzinfo else value.replace(tzinfo=UTC)
