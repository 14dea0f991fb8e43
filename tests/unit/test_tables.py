"""The CLI's tables at terminal widths: nothing cut at 80 columns, key values whole below."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from rich.console import Console

from modelreg.cli.tables import events_table, gates_table, versions_table
from modelreg.domain import Action, Outcome, Stage
from modelreg.views import DecisionView, EventView, GateView, VersionView

DIGEST = "sha256:" + "ab12" * 16


def _version(number: int, stage: Stage, aliases: list[str]) -> VersionView:
    return VersionView(
        name="fraud-detection",
        version=number,
        semver=f"1.{number}.0",
        stage=stage,
        aliases=aliases,
        digest=DIGEST,
        run_id="r",
        source="s",
        description="",
        tags={},
        lineage_complete=number > 2,
        lineage_missing=[] if number > 2 else ["data fingerprint"],
        registered_at=None,
        registered_by=None,
        adopted=True,
        metrics={"test_auc": 0.8348},
    )


VERSIONS = [
    _version(1, Stage.NONE, []),
    _version(2, Stage.ARCHIVED, []),
    _version(3, Stage.PRODUCTION, ["production"]),
    _version(4, Stage.STAGING, ["staging", "champion"]),
]
EVENTS = [
    EventView(
        id=number,
        model="fraud-detection",
        version=2,
        action=action,
        actor=actor,
        at=datetime(2026, 11, 30, 14, 0, 39, tzinfo=UTC),
        from_stage=from_stage,
        to_stage=to_stage,
        reason=reason,
        semver="1.1.0",
        digest=DIGEST,
        details={},
    )
    for number, (action, from_stage, to_stage, actor, reason) in enumerate(
        [
            (Action.ADOPT, None, Stage.NONE, "root", "registered outside modelreg; adopted"),
            (Action.AUTO_ARCHIVE, Stage.PRODUCTION, Stage.ARCHIVED, "alice", "cost experiment"),
            (Action.APPROVE, None, None, "reviewer", "checked the evaluation"),
        ],
        start=1,
    )
]
DECISION = DecisionView(
    name="fraud-detection",
    version=2,
    semver="1.1.0",
    outcome=Outcome.INVALID,
    passed=False,
    promoted=False,
    approvers=[],
    required_approvals=1,
    policy="policy.toml",
    gates=[
        GateView(
            gate="metric test_auc", passed=False, required="test_auc >= 0.85", observed="0.83"
        ),
        GateView(
            gate="lineage",
            passed=True,
            required="complete lineage (git commit, data, params, environment)",
            observed="complete",
        ),
    ],
)


def _render(table: object, width: int) -> list[str]:
    console = Console(width=width, highlight=False)
    with console.capture() as captured:
        console.print(table)
    return captured.get().splitlines()


@pytest.mark.parametrize("width", [80, 60, 50])
def test_stage_names_and_versions_stay_whole_and_lines_fit(width: int) -> None:
    for table in (
        versions_table(VERSIONS),
        versions_table(VERSIONS, with_model=False, metric="test_auc"),
        events_table(EVENTS),
        events_table(EVENTS, with_time=False),
        gates_table(DECISION),
    ):
        lines = _render(table, width)
        assert max(len(line) for line in lines) <= width
        text = "\n".join(lines)
        assert "…" not in text
        if table.columns[0].header != "gate":
            assert "Production" in text
            assert "Archived" in text
            assert "1.1.0" in text
    assert "test_auc >= 0.85" in " ".join(" ".join(_render(gates_table(DECISION), width)).split())


def test_at_80_columns_every_column_shows() -> None:
    header = _render(versions_table(VERSIONS), 80)[0].split()
    assert header == ["model", "version", "semver", "stage", "aliases", "sha256", "lineage"]
    assert "fraud-detection" in _render(versions_table(VERSIONS), 80)[2]
    assert _render(events_table(EVENTS), 80)[0].split() == [
        "#",
        "time",
        "(UTC)",
        "version",
        "action",
        "change",
        "actor",
        "reason",
    ]


def test_narrow_consoles_leave_out_the_optional_columns_first() -> None:
    header = _render(versions_table(VERSIONS), 60)[0].split()
    assert header == ["model", "version", "semver", "stage", "lineage"]
    events = "\n".join(_render(events_table(EVENTS), 50))
    assert "alice" not in events  # the actor goes before the change and the reason
    assert "Production" in events
