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
from rich.measure import Measurement
from rich.table import Column, Table

from modelreg.domain import Stage
from modelreg.views import DecisionView, EventView, VersionView

#: Model names up to this long are never wrapped in a table.
NAME_WIDTH = 20
#: Hex digits of a sha256 digest shown in tables; `show` and `--json` print it whole.
DIGEST_CHARS = 8


#: What CompactTable puts between two columns: one space of padding and a blank rule.
COLUMN_GAP = 2


class CompactTable(Table):
    """A table without side borders, two spaces between columns, and optional columns.

    The layout is chosen when the table is printed, for the console it is
    printed on. ``optional`` names column headers in the order they are left
    out while the table cannot fit with every word of its text columns and
    every value of its key (``no_wrap``) columns whole. Spare width goes to
    the text columns in proportion to what they still need; rich's own
    squeeze shrinks the widest column first and would split a short word
    (a stage name) in a narrower one.
    """

    def __init__(self, *columns: Column | str, optional: Sequence[str] = ()) -> None:
        """Columns as for :class:`~rich.table.Table`; ``optional`` headers, first to go first."""
        super().__init__(
            *columns, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True
        )
        self.optional = tuple(optional)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        """Render the widest variant that fits ``options.max_width`` with every word whole."""
        columns = list(self.columns)
        widths = _fitted_widths(console, options, columns)
        for header in self.optional:
            if widths is not None:
                break
            columns = [c for c in columns if c.header != header]
            widths = _fitted_widths(console, options, columns)
        copies = [column.copy() for column in columns]
        # With no fitting variant rich squeezes what is left as best it can.
        for copy, width in zip(copies, widths or [], strict=False):
            copy.width = width
        laid_out = Table(
            *copies,
            box=self.box,
            show_edge=self.show_edge,
            pad_edge=self.pad_edge,
            collapse_padding=self.collapse_padding,
        )
        for cells in zip(*(list(c.cells) for c in columns), strict=True):
            laid_out.add_row(*cells)
        yield laid_out


def _fitted_widths(
    console: Console, options: ConsoleOptions, columns: Sequence[Column]
) -> list[int] | None:
    """Column widths that fit with no word split, or None when the words alone are too wide."""
    lows: list[int] = []
    highs: list[int] = []
    for column in columns:
        sizes = [Measurement.get(console, options, cell) for cell in (column.header, *column.cells)]
        highs.append(max(size.maximum for size in sizes))
        lows.append(highs[-1] if column.no_wrap else max(size.minimum for size in sizes))
    spare = options.max_width - COLUMN_GAP * (len(columns) - 1) - sum(lows)
    if spare < 0:
        return None
    wants = [high - low for low, high in zip(lows, highs, strict=True)]
    if sum(wants) <= spare:
        return highs
    return [low + want * spare // sum(wants) for low, want in zip(lows, wants, strict=True)]


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
    # Wraps only at the spaces around the arrow: stage names stay whole.
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
