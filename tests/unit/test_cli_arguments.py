"""The CLI's argument handling and output rules that need no running service."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
import typer.main

from modelreg.cli import app, hoist_global_options
from modelreg.cli.app import emit, warn_overrides
from modelreg.errors import InvalidInputError
from modelreg.views import EventView


@pytest.fixture(scope="module")
def root() -> Any:
    return typer.main.get_command(app)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("up --home D", "--home D up"),
        ("up --home=D --port 1", "--home=D up --port 1"),
        ("versions N --home D --json", "--home D versions N --json"),
        ("--home A models --actor=x", "--home A --actor=x models"),
        ("policy show M --ledger-uri L", "--ledger-uri L policy show M"),
        (
            "webhooks list --tracking-uri U --status failed",
            "--tracking-uri U webhooks list --status failed",
        ),
        # A value of the command's own option stays its value, whatever it looks like.
        (
            "promote N 1 --stage Production --reason --home",
            "promote N 1 --stage Production --reason --home",
        ),
        ("serve m --host h --home D", "--home D serve m --host h"),
        ("demo --no-keep-running --actor a", "--actor a demo --no-keep-running"),
        # After `--` everything is an argument.
        ("search -- --home", "search -- --home"),
        # The value of a global option before the command is not taken for the command.
        ("--actor policy show", "--actor policy show"),
        ("models", "models"),
        ("--help", "--help"),
    ],
)
def test_global_options_move_in_front_of_the_command(root: Any, given: str, expected: str) -> None:
    assert hoist_global_options(root, given.split()) == expected.split()


def test_a_command_keeps_its_own_option_of_a_global_name(root: Any) -> None:
    @app.command("clash-test")
    def _clash(home: str = "") -> None:  # pragma: no cover - never invoked
        """A command with its own --home."""

    try:
        clashing = typer.main.get_command(app)
        assert hoist_global_options(clashing, ["clash-test", "--home", "x"]) == [
            "clash-test",
            "--home",
            "x",
        ]
    finally:
        app.registered_commands.pop()
    assert "clash-test" not in typer.main.get_command(app).commands  # type: ignore[attr-defined]


def test_a_global_option_without_its_value_is_a_clear_error(root: Any) -> None:
    with pytest.raises(InvalidInputError, match="option --home needs a value"):
        hoist_global_options(root, ["models", "--home"])


def _event(action: str, details: dict[str, Any]) -> EventView:
    return EventView(
        id=7,
        model="churn",
        version=3,
        action=action,  # type: ignore[arg-type]
        actor="ann",
        at=datetime(2026, 11, 30, tzinfo=UTC),
        from_stage=None,
        to_stage=None,
        reason="hotfix",
        semver="1.2.0",
        digest="sha256:ab",
        details=details,
    )


def test_each_override_prints_one_warning_line(capsys: pytest.CaptureFixture[str]) -> None:
    gates = [
        {"gate": "metric test_auc", "required": "test_auc >= 0.85", "observed": "0.8"},
        {"gate": "description", "required": "a description", "observed": "none"},
    ]
    warn_overrides([_event("override", {"failed_gates": gates}), _event("transition", {})])
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "warning: override: churn v3 promoted to Production although these gates fail: "
        "metric test_auc (required test_auc >= 0.85, observed 0.8); "
        "description (required a description, observed none)\n"
    )


@pytest.mark.parametrize(
    "details",
    [{}, {"failed_gates": "test_auc"}, {"failed_gates": [None, 3]}, {"failed_gates": [{}]}],
)
def test_an_override_with_odd_details_still_warns(
    details: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    warn_overrides([_event("override", details)])
    err = capsys.readouterr().err
    assert err.startswith("warning: override: churn v3 promoted to Production although")
    assert len(err.splitlines()) == 1


def test_an_empty_listing_says_so_and_json_stays_a_list(capsys: pytest.CaptureFixture[str]) -> None:
    emit([], False)
    emit([], False, empty="no models yet")
    emit([], True)
    out = capsys.readouterr().out
    first, second, rest = out.split("\n", 2)
    assert (first, second) == ("no matches", "no models yet")
    assert json.loads(rest) == []


def test_up_leaves_a_ledger_uri_it_was_given_as_it_is() -> None:
    """Only the ledger `--postgres` derives lives in schema modelreg; a given one is not touched."""
    from modelreg.stores import production_stores

    given = production_stores(
        postgres=None, s3=None, backend_store_uri=None, artifacts_destination=None,
        ledger_uri="sqlite:////nonexistent/ledger.db",
    )  # fmt: skip
    given.prepare()  # no CREATE SCHEMA on SQLite, no connection at all
    assert not given.ledger_in_schema
    derived = production_stores(
        postgres="postgresql://u:p@db/registry", s3=None, backend_store_uri=None,
        artifacts_destination=None, ledger_uri=None,
    )  # fmt: skip
    assert derived.ledger_in_schema and "search_path" in str(derived.ledger_uri)
    explicit = production_stores(
        postgres="postgresql://u:p@db/registry", s3=None, backend_store_uri=None,
        artifacts_destination=None, ledger_uri="postgresql://l:p@db/ledger",
    )  # fmt: skip
    assert not explicit.ledger_in_schema
