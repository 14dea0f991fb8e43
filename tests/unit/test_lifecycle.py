"""Unit and property tests of modelreg.lifecycle."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelreg.domain import Action, Event, Stage, StageChange
from modelreg.errors import NothingToRollBackError, TransitionNotAllowedError, VersionNotFoundError
from modelreg.lifecycle import (
    ALLOWED,
    fold,
    holder,
    plan_rollback,
    plan_transition,
    production_history,
    staging_holder,
)

T0 = datetime(2024, 1, 1, tzinfo=UTC)
NONE, STAGING, PRODUCTION, ARCHIVED = Stage.NONE, Stage.STAGING, Stage.PRODUCTION, Stage.ARCHIVED

EXPECTED_ALLOWED = {
    (NONE, STAGING),
    (NONE, ARCHIVED),
    (STAGING, PRODUCTION),
    (STAGING, ARCHIVED),
    (STAGING, NONE),
    (PRODUCTION, ARCHIVED),
    (ARCHIVED, STAGING),
}


class Log:
    """Builds a model's event log one minute apart, the way the ledger would store it."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def add(
        self,
        version: int,
        action: Action,
        to_stage: Stage | None = None,
        from_stage: Stage | None = None,
    ) -> Event:
        event = Event(
            id=len(self.events) + 1,
            model="m",
            version=version,
            action=action,
            actor="alice",
            at=T0 + timedelta(minutes=len(self.events)),
            from_stage=from_stage,
            to_stage=to_stage,
        )
        self.events.append(event)
        return event

    def register(self, *versions: int) -> Log:
        for version in versions:
            self.add(version, Action.REGISTER)
        return self

    def apply(self, changes: list[StageChange]) -> Log:
        for change in changes:
            self.add(change.version, change.action, change.to_stage, change.from_stage)
        return self

    def move(self, version: int, target: Stage) -> Log:
        return self.apply(plan_transition("m", fold(self.events), version, target))

    def rollback(self, to: int | None = None) -> Log:
        return self.apply(plan_rollback("m", self.events, to))


# -- the transition table ----------------------------------------------------------------------


@pytest.mark.parametrize(("current", "target"), list(itertools.product(Stage, Stage)))
def test_every_pair_of_stages(current: Stage, target: Stage) -> None:
    state = {1: current}
    if (current, target) in EXPECTED_ALLOWED:
        assert target in ALLOWED[current]
        assert plan_transition("m", state, 1, target) == [
            StageChange(1, current, target, Action.TRANSITION)
        ]
    else:
        assert target not in ALLOWED[current]
        with pytest.raises(TransitionNotAllowedError) as caught:
            plan_transition("m", state, 1, target)
        error = caught.value
        assert (error.current, error.target) == (current.value, target.value)
        assert ", ".join(sorted(s.value for s in ALLOWED[current])) in error.message


def test_table_is_complete() -> None:
    assert set(ALLOWED) == set(Stage)
    assert {(a, b) for a, targets in ALLOWED.items() for b in targets} == EXPECTED_ALLOWED


def test_refusal_message_lists_allowed_targets() -> None:
    with pytest.raises(TransitionNotAllowedError, match=r"may go to: Archived, None, Production\)"):
        plan_transition("m", {3: NONE, 4: STAGING}, 4, STAGING)


def test_unknown_version_is_not_found() -> None:
    with pytest.raises(VersionNotFoundError, match="no version '9'"):
        plan_transition("m", {1: NONE}, 9, STAGING)


def test_promotion_archives_previous_production_first() -> None:
    state = {1: PRODUCTION, 2: STAGING, 3: NONE}
    assert plan_transition("m", state, 2, PRODUCTION) == [
        StageChange(1, PRODUCTION, ARCHIVED, Action.AUTO_ARCHIVE),
        StageChange(2, STAGING, PRODUCTION, Action.TRANSITION),
    ]


def test_promotion_archives_every_holder_after_drift() -> None:
    changes = plan_transition("m", {1: PRODUCTION, 2: PRODUCTION, 3: STAGING}, 3, PRODUCTION)
    assert [(c.version, c.action) for c in changes] == [
        (1, Action.AUTO_ARCHIVE),
        (2, Action.AUTO_ARCHIVE),
        (3, Action.TRANSITION),
    ]


@given(
    st.integers(1, 5),
    st.lists(st.tuples(st.integers(1, 5), st.sampled_from(Stage)), max_size=40),
)
def test_random_transitions_keep_at_most_one_production(
    versions: int, moves: list[tuple[int, Stage]]
) -> None:
    log = Log().register(*range(1, versions + 1))
    for version, target in moves:
        state = fold(log.events)
        try:
            changes = plan_transition("m", state, version, target)
        except VersionNotFoundError:
            assert version not in state
            continue
        except TransitionNotAllowedError:
            assert target not in ALLOWED[state[version]]
            continue
        for change in changes:
            assert state[change.version] is change.from_stage
        log.apply(changes)
        after = fold(log.events)
        assert after[version] is target
        assert sum(stage is PRODUCTION for stage in after.values()) <= 1


# -- folding events ----------------------------------------------------------------------------


def test_fold_register_adopt_and_stage_changes() -> None:
    log = Log().register(1, 2)
    log.add(3, Action.ADOPT, to_stage=PRODUCTION)
    log.move(1, STAGING)
    log.add(2, Action.REPAIR)  # no stage: changes nothing
    assert fold(log.events) == {1: STAGING, 2: NONE, 3: PRODUCTION}
    log.add(2, Action.REPAIR, to_stage=ARCHIVED)
    assert fold(log.events) == {1: STAGING, 2: ARCHIVED, 3: PRODUCTION}
    assert fold([]) == {}


def state_at(events: list[Event], at: datetime) -> dict[int, Stage]:
    """The state at time ``at``: the fold over the events up to it (what history --at does)."""
    return fold(e for e in events if e.at <= at)


def test_state_at_replays_a_prefix_by_time() -> None:
    log = Log().register(1, 2).move(1, STAGING).move(1, PRODUCTION).move(2, STAGING)
    log.move(2, PRODUCTION)
    at = {event.id: event.at for event in log.events}
    assert state_at(log.events, T0 - timedelta(seconds=1)) == {}
    assert state_at(log.events, at[1]) == {1: NONE}
    assert state_at(log.events, at[4] + timedelta(seconds=30)) == {1: PRODUCTION, 2: NONE}
    assert state_at(log.events, at[6]) == {1: ARCHIVED, 2: STAGING}  # mid-promotion
    assert state_at(log.events, at[7]) == fold(log.events) == {1: ARCHIVED, 2: PRODUCTION}
    assert holder(state_at(log.events, at[4]), PRODUCTION) == 1


def test_holder() -> None:
    assert holder({1: STAGING, 2: PRODUCTION}, PRODUCTION) == 2
    assert holder({1: PRODUCTION, 3: PRODUCTION, 2: PRODUCTION}, PRODUCTION) == 3
    assert holder({1: STAGING}, PRODUCTION) is None
    assert holder({1: STAGING, 2: STAGING}, STAGING) == 2


def test_staging_holder_is_latest_entry_still_in_staging() -> None:
    log = Log().register(1, 2, 3)
    assert staging_holder(log.events) is None
    log.move(2, STAGING).move(1, STAGING)
    assert staging_holder(log.events) == 1
    log.move(1, PRODUCTION)
    assert staging_holder(log.events) == 2
    log.move(3, STAGING)
    assert staging_holder(log.events) == 3
    # A repair re-applying Staging to version 2 is not a new entry into Staging.
    log.add(2, Action.REPAIR, to_stage=STAGING)
    assert staging_holder(log.events) == 3
    log.move(3, NONE).move(2, ARCHIVED)
    assert staging_holder(log.events) is None


def test_production_history_counts_entries_only() -> None:
    log = Log().register(1, 2).move(1, STAGING).move(1, PRODUCTION)
    log.add(1, Action.REPAIR, to_stage=PRODUCTION)
    log.move(2, STAGING).move(2, PRODUCTION).rollback()
    assert production_history(log.events) == [1, 2, 1]


# -- rollback ----------------------------------------------------------------------------------


def three_releases() -> Log:
    """Versions 1, 2, 3 promoted in turn; 3 is in Production, 4 was only staged."""
    log = Log().register(1, 2, 3, 4)
    for version in (1, 2, 3):
        log.move(version, STAGING).move(version, PRODUCTION)
    return log.move(4, STAGING)


def test_rollback_defaults_to_previous_production() -> None:
    log = three_releases()
    assert plan_rollback("m", log.events) == [
        StageChange(3, PRODUCTION, ARCHIVED, Action.ROLLBACK),
        StageChange(2, ARCHIVED, PRODUCTION, Action.ROLLBACK),
    ]
    log.rollback()
    assert holder(fold(log.events), PRODUCTION) == 2
    # Rolling back again returns to the version that held Production just before 2 did.
    log.rollback()
    assert holder(fold(log.events), PRODUCTION) == 3


def test_rollback_to_an_explicit_earlier_version() -> None:
    log = three_releases().move(1, STAGING)  # an old release may sit in any stage
    assert plan_rollback("m", log.events, to=1) == [
        StageChange(3, PRODUCTION, ARCHIVED, Action.ROLLBACK),
        StageChange(1, STAGING, PRODUCTION, Action.ROLLBACK),
    ]


@pytest.mark.parametrize(
    ("to", "why"),
    [
        (9, "version 9 does not exist"),
        (3, "version 3 is already in Production"),
        (4, "version 4 has never been in Production"),
    ],
)
def test_rollback_refuses_bad_explicit_target(to: int, why: str) -> None:
    with pytest.raises(NothingToRollBackError, match=why):
        plan_rollback("m", three_releases().events, to=to)


def test_rollback_needs_a_production_version() -> None:
    log = Log().register(1).move(1, STAGING)
    with pytest.raises(NothingToRollBackError, match="no version is in Production"):
        plan_rollback("m", log.events)
    log.move(1, PRODUCTION).move(1, ARCHIVED)
    with pytest.raises(NothingToRollBackError, match="no version is in Production"):
        plan_rollback("m", log.events)


def test_rollback_needs_an_earlier_production_version() -> None:
    log = Log().register(1, 2).move(1, STAGING).move(1, PRODUCTION)
    with pytest.raises(NothingToRollBackError, match="no earlier Production version"):
        plan_rollback("m", log.events)
