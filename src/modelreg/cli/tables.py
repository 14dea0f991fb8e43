"""Rich tables for the facade's views, shared by the CLI commands and the demo."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table

from modelreg.views import EventView, VersionView


def versions_table(found: Sequence[VersionView]) -> Table:
    """Versions with semver, stage, aliases, digest prefix and lineage status."""
    table = Table("model", "version", "semver", "stage", "aliases", "digest", "lineage")
    for v in found:
        lineage = "-" if v.lineage_complete is None else "complete"
        if v.lineage_complete is False:
            lineage = "missing " + ", ".join(v.lineage_missing)
        table.add_row(
            v.name,
            str(v.version),
            v.semver or "(not adopted)",
            v.stage.value,
            ",".join(v.aliases) or "-",
            (v.digest or "-")[:19],
            lineage,
        )
    return table


def events_table(events: Sequence[EventView], *, with_time: bool = True) -> Table:
    """Ledger events in append order."""
    columns = ["#", "time", "version", "semver", "action", "from", "to", "actor", "reason"]
    table = Table(*(c for c in columns if with_time or c != "time"))
    for e in events:
        cells = [str(e.id), e.at.isoformat(timespec="seconds"), str(e.version), e.semver]
        cells += [e.action, e.from_stage or "", e.to_stage or "", e.actor, e.reason]
        table.add_row(*(cell for i, cell in enumerate(cells) if with_time or i != 1))
    return table
