"""Rich tables for the facade's views, shared by the CLI commands and the demo.

They are laid out for an 80-column terminal: light rules instead of boxes,
key columns (numbers, semvers, stages, actions) never wrap or shorten, digests
and times are abbreviated, and free text (reasons, lineage gaps, gate
requirements, names) wraps, folding words longer than its column. On a
narrower console the less important columns are left out.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich import box
from rich.console import Console, ConsoleOptions, RenderResult
from rich.table import Column, Table

from modelreg.domain import Stage
from modelreg.views import DecisionView, EventView, VersionView

#: Model names up to this long are never wrapped in a table.
NAME_WIDTH = 20
#: Hex digits of a sha256 digest shown in tables; `show` and `--json` print it whole.
DIGEST_CHARS = 8


class CompactTable(Table):
    """A table without side borders, two spaces between columns, and optional columns.

    ``optional`` names column headers in the order they are left out when the
    console is too narrow. The choice is made when the table is printed,
    against the console it is printed on: a column goes only while the others
    cannot be shown without cutting a key value.
    """

    def __init__(self, *columns: Column | str, optional: Sequence[str] = ()) -> None:
        """Columns as for :class:`~rich.table.Table`; ``optional`` headers, first to go first."""
        super().__init__(
            *columns, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True
        )
        self.optional = tuple(optional)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        """Render the widest variant whose narrowest layout fits ``options.max_width``."""
        hidden: set[str] = set()
        table: Table = self
        for header in self.optional:
            if table.__rich_measure__(console, options).minimum <= options.max_width:
                break
            hidden.add(header)
            table = self._without(hidden)
        if table is self:
            yield from super().__rich_console__(console, options)
        else:
            yield table

    def _without(self, hidden: set[str]) -> Table:
        kept = [c for c in self.columns if c.header not in hidden]
        table = CompactTable(*(c.copy() for c in kept))
        for cells in zip(*(list(c.cells) for c in kept), strict=True):
            table.add_row(*cells)
        return table


def key(header: str) -> Column:
    """A column whose values must be read whole: never wrapped or shortened."""
    return Column(header, no_wrap=True)


def text(header: str) -> Column:
    """A column of free text: wraps at spaces and folds words longer than the column."""
    return Column(header, overflow="fold")


def short_digest(digest: str | None) -> str:
    """The first hex digits of a ``sha256:`` digest, like a short git commit id."""
    if not digest:
        return "-"
    return digest.removeprefix("sha256:")[:DIGEST_CHARS]


def versions_table(
    found: Sequence[VersionView], *, with_model: bool = True, metric: str | None = None
) -> Table:
    """Versions with semver, stage, aliases, digest and lineage; ``metric`` adds that metric."""
    # Names as short as most are read whole; a very long one folds rather than crowd others out.
    short_names = all(len(v.name) <= NAME_WIDTH for v in found)
    columns = [(key if short_names else text)("model")] if with_model else []
    columns += [key("version"), key("semver"), key("stage"), text("aliases")]
    columns += [key(metric)] if metric else []
    columns += [key("sha256"), text("lineage")]
    # `show` and --json carry the digest; aliases mostly repeat the stage.
    table = CompactTable(*columns, optional=("sha256", "aliases"))
    for v in found:
        lineage = "-" if v.lineage_complete is None else "complete"
        if v.lineage_complete is False:
            lineage = "missing " + ", ".join(v.lineage_missing)
        cells = [v.name] if with_model else []
        cells += [str(v.version), v.semver or "(not adopted)", v.stage.value]
        cells.append(", ".join(v.aliases) or "-")
        if metric:
            value = v.metrics.get(metric)
            cells.append("-" if value is None else f"{value:.4f}")
        cells += [short_digest(v.digest), lineage]
        table.add_row(*cells)
    return table


def _change(from_stage: Stage | None, to_stage: Stage | None) -> str:
    # Breaks only at the spaces around the arrow, so a stage name is never split.
    return " → ".join(stage for stage in (from_stage, to_stage) if stage is not None)


def events_table(events: Sequence[EventView], *, with_time: bool = True) -> Table:
    """Ledger events in append order; times are UTC."""
    columns = [key("#")] + ([text("time (UTC)")] if with_time else [])
    columns += [key("version"), key("action"), text("change"), text("actor"), text("reason")]
    table = CompactTable(*columns, optional=("#", "actor", "time (UTC)"))
    for e in events:
        cells = [str(e.id)] + ([f"{e.at:%Y-%m-%d %H:%M:%S}"] if with_time else [])
        cells += [f"{e.version} ({e.semver})" if e.semver else str(e.version), e.action]
        cells += [_change(e.from_stage, e.to_stage), e.actor, e.reason]
        table.add_row(*cells)
    return table


def gates_table(view: DecisionView) -> Table:
    """The policy gates of a decision: what each required, what it observed, pass or FAIL."""
    table = CompactTable(text("gate"), key("result"), text("required"), text("observed"))
    for gate in view.gates:
        verdict = "[green]pass[/green]" if gate.passed else "[red]FAIL[/red]"
        table.add_row(gate.gate, verdict, gate.required, gate.observed)
    return table
