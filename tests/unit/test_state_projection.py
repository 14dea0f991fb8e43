"""The ledger's state projection equals the fold over the events, whatever the events.

Events are appended through a real (SQLite) ledger, so every append updates
``version_state`` in its own transaction; the projection read back must equal
:meth:`ModelState.fold` over the same events, and the fold must agree with the
replay functions the lifecycle had before the projection (the reference).
Reads of a few rows (``Ledger.state``) must plan the same changes as the full
fold: that is the contract that lets promote and rollback stay O(1).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelreg import lifecycle
from modelreg.domain import Action, Event, NewEvent, Stage
from modelreg.errors import ModelregError
from modelreg.ledger import Ledger
from modelreg.lifecycle import ModelState

VERSIONS = st.integers(min_value=1, max_value=5)
STAGES = st.sampled_from(list(Stage))
ROLES = st.sampled_from(["viewer", "contributor", "approver", "admin"])


@st.composite
def new_events(draw: st.DrawFn) -> NewEvent:
    """Any event a ledger may hold: entries, moves, requests, votes, repairs, in any order."""
    action = draw(st.sampled_from(list(Action)))
    version = draw(VERSIONS)
    to_stage = draw(st.none() | STAGES)
    details: dict[str, object] = {}
    if action is Action.REQUEST and draw(st.booleans()):
        details["triggered_by"] = draw(st.sampled_from(["ci", "alice"]))
    if action in {Action.APPROVE, Action.REJECT}:
        details.update(request=1, role=draw(ROLES))
    if action is Action.DECLINE:
        details["refused"] = "request"
    return NewEvent(
        model="m",
        version=version,
        action=action,
        actor=draw(st.sampled_from(["alice", "bob", "carol"])),
        to_stage=to_stage,
        digest=draw(st.sampled_from(["", "sha256:a", "sha256:b"])),
        details=details,
    )


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledger]:
    found = Ledger(f"sqlite:///{tmp_path_factory.mktemp('ledger') / 'ledger.db'}")
    yield found
    found.dispose()


def _append(ledger: Ledger, events: list[NewEvent]) -> tuple[str, list[Event]]:
    name = f"m-{uuid.uuid4().hex[:8]}"
    # Several transactions, as real writes come: the projection must carry across them.
    for _key, batch in itertools.groupby(enumerate(events), key=lambda pair: pair[0] // 3):
        with ledger.locked(name) as txn:
            for _i, new in batch:
                txn.append(NewEvent(**{**new.__dict__, "model": name}))
    return name, ledger.events(name)


def _last_entries(history: list[int]) -> list[int]:
    """The reference history (repeats included) reduced to each version's latest entry."""
    last = {version: i for i, version in enumerate(history)}
    return sorted(last, key=last.__getitem__)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(new_events(), max_size=25))
def test_projection_equals_fold_and_reference(ledger: Ledger, events: list[NewEvent]) -> None:
    name, stored = _append(ledger, events)
    folded = ModelState.fold(stored)
    assert ledger.model_state(name) == folded
    assert ledger.state_disagreements(name) == []
    # The fold answers what the replay functions answered.
    assert folded.stages == lifecycle.fold(stored)
    assert folded.staging == lifecycle.staging_holder(stored)
    assert folded.production == lifecycle.holder(lifecycle.fold(stored), Stage.PRODUCTION)
    assert folded.production_history == _last_entries(lifecycle.production_history(stored))


def _outcome(plan: object) -> object:
    try:
        return plan() if callable(plan) else plan
    except ModelregError as exc:
        return type(exc), exc.message


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(new_events(), max_size=25), VERSIONS, st.none() | VERSIONS, STAGES)
def test_few_rows_plan_like_the_whole_history(
    ledger: Ledger, events: list[NewEvent], version: int, to: int | None, target: Stage
) -> None:
    name, stored = _append(ledger, events)
    full = lifecycle.fold(stored)
    few = ledger.state(name, [version] if to is None else [version, to])
    assert _outcome(lambda: lifecycle.plan_rollback(name, stored, to)) == _outcome(
        lambda: lifecycle.plan_rollback_from(name, ledger.state(name, [to] if to else []), to)
    )
    assert _outcome(lambda: lifecycle.plan_transition(name, full, version, target)) == _outcome(
        lambda: lifecycle.plan_transition(name, few.stages, version, target)
    )
    assert few.staging == lifecycle.staging_holder(stored)


def test_rebuild_restores_a_damaged_projection(ledger: Ledger, tmp_path: Path) -> None:
    name, stored = _append(
        ledger,
        [
            NewEvent(model="m", version=1, action=Action.REGISTER, actor="a"),
            NewEvent(
                model="m", version=1, action=Action.TRANSITION, actor="a", to_stage=Stage.STAGING
            ),
        ],
    )
    with ledger.session(write=True) as session:
        from sqlalchemy import update

        from modelreg.ledger.tables import VersionStateRow

        session.execute(
            update(VersionStateRow).where(VersionStateRow.model == name).values(stage="Archived")
        )
    assert ledger.state_disagreements(name) == [1]
    assert ledger.rebuild_state(name) == 1
    assert ledger.model_state(name) == ModelState.fold(stored)


def test_event_details_are_checked_per_action() -> None:
    from pydantic import ValidationError

    from modelreg.domain import DeclineDetails, VoteDetails

    vote = NewEvent(
        model="m",
        version=1,
        action=Action.APPROVE,
        actor="a",
        details={"request": 7, "role": "admin"},
    )
    assert vote.details == {"request": 7, "role": "admin"}  # stored as given
    assert vote.typed() == VoteDetails(request=7, role="admin")
    typed = NewEvent(
        model="m",
        version=1,
        action=Action.DECLINE,
        actor="a",
        details=DeclineDetails(refused="rollback", failures=["digest"]),  # type: ignore[arg-type]
    )
    assert typed.details == {"refused": "rollback", "failures": ["digest"]}
    with pytest.raises(ValidationError, match="previous_versoin"):
        NewEvent(
            model="m",
            version=1,
            action=Action.TRANSITION,
            actor="a",
            details={"previous_versoin": 1},
        )
    with pytest.raises(ValidationError, match="request"):
        NewEvent(
            model="m", version=1, action=Action.APPROVE, actor="a", details={"request": "seven"}
        )
