"""The model-version lifecycle: which stage changes are allowed, and state folded from events.

Allowed transitions (anything else raises TransitionNotAllowedError)::

    from / to     None  Staging  Production  Archived
    None           -      yes      -           yes
    Staging        yes    -        yes         yes
    Production     -      -        -           yes
    Archived       -      yes      -           -

Promoting a version to Production first archives the version that holds it, so
at most one version is ever in Production. An Archived version returns to
Production only through :func:`plan_rollback`, which needs it to have held
Production before.

The current state is never stored: it is a fold over the model's append-only
ledger events (given in id order), so "what was in Production at time T" is
the same fold over a prefix. Everything here is pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from types import MappingProxyType

from modelreg.domain import Action, Event, Stage, StageChange
from modelreg.errors import NothingToRollBackError, TransitionNotAllowedError, VersionNotFoundError

ALLOWED: Mapping[Stage, frozenset[Stage]] = MappingProxyType(
    {
        Stage.NONE: frozenset({Stage.STAGING, Stage.ARCHIVED}),
        Stage.STAGING: frozenset({Stage.PRODUCTION, Stage.ARCHIVED, Stage.NONE}),
        Stage.PRODUCTION: frozenset({Stage.ARCHIVED}),
        Stage.ARCHIVED: frozenset({Stage.STAGING}),
    }
)

_ENTRY_ACTIONS = frozenset({Action.REGISTER, Action.ADOPT})


def allowed_targets(stage: Stage) -> frozenset[Stage]:
    """Return the stages a version in ``stage`` may move to with a plain transition."""
    return ALLOWED[stage]


def _changes(events: Iterable[Event]) -> Iterator[tuple[int, Stage]]:
    """Replay ``events``, yielding (version, new stage) whenever a version's stage changes."""
    state: dict[int, Stage] = {}
    for event in events:
        stage = event.to_stage
        if stage is None and event.action in _ENTRY_ACTIONS:
            stage = Stage.NONE
        # A repeated stage (e.g. a REPAIR re-applying it) is not a new entry into it.
        if stage is not None and state.get(event.version) is not stage:
            state[event.version] = stage
            yield event.version, stage


def fold(events: Iterable[Event]) -> dict[int, Stage]:
    """Return the current stage of every version known to ``events`` (one model, id order)."""
    return dict(_changes(events))  # later pairs overwrite earlier ones


def state_at(events: Iterable[Event], at: datetime) -> dict[int, Stage]:
    """Return the stage of every version as it was at time ``at``."""
    return fold(event for event in events if event.at <= at)


def holder(state: Mapping[int, Stage], stage: Stage) -> int | None:
    """Return the version in ``stage``, the highest if drift left several, or None."""
    return max((version for version, current in state.items() if current is stage), default=None)


def staging_holder(events: Iterable[Event]) -> int | None:
    """Return the version that most recently entered Staging and is still there (the alias)."""
    state: dict[int, Stage] = {}
    entered: list[int] = []
    for version, stage in _changes(events):
        state[version] = stage
        if stage is Stage.STAGING:
            entered.append(version)
    return next((v for v in reversed(entered) if state[v] is Stage.STAGING), None)


def production_history(events: Iterable[Event]) -> list[int]:
    """Return versions in the order they entered Production, repeats included."""
    return [version for version, stage in _changes(events) if stage is Stage.PRODUCTION]


def plan_transition(
    name: str, state: Mapping[int, Stage], version: int, target: Stage
) -> list[StageChange]:
    """Plan moving ``version`` of model ``name`` to ``target``, or raise why it is refused.

    A promotion to Production first archives the version(s) holding Production
    (AUTO_ARCHIVE), then moves ``version`` (TRANSITION); apply them in order.
    """
    current = state.get(version)
    if current is None:
        raise VersionNotFoundError(name, str(version))
    allowed = ALLOWED[current]
    if target not in allowed:
        raise TransitionNotAllowedError(
            name,
            version,
            current.value,
            target.value,
            allowed=", ".join(sorted(stage.value for stage in allowed)),
        )
    changes = []
    if target is Stage.PRODUCTION:
        # Archive every holder, not only holder(): a promotion also heals drift that left two.
        changes = [
            StageChange(other, Stage.PRODUCTION, Stage.ARCHIVED, Action.AUTO_ARCHIVE)
            for other, stage in sorted(state.items())
            if stage is Stage.PRODUCTION
        ]
    changes.append(StageChange(version, current, target, Action.TRANSITION))
    return changes


def plan_governed_promotion(
    name: str, state: Mapping[int, Stage], version: int
) -> list[StageChange]:
    """Plan a policy-approved move to Production, passing through Staging from None.

    Approvals and auto-promotion vouch for Production directly; making the
    caller stage the version first would add a step without adding a check.
    """
    if state.get(version) is not Stage.NONE:
        return plan_transition(name, state, version, Stage.PRODUCTION)
    staged = plan_transition(name, state, version, Stage.STAGING)
    return staged + plan_transition(
        name, {**state, version: Stage.STAGING}, version, Stage.PRODUCTION
    )


def plan_rollback(name: str, events: Sequence[Event], to: int | None = None) -> list[StageChange]:
    """Plan returning Production of model ``name`` to an earlier Production version.

    Without ``to`` the target is the version that held Production most recently
    before the current one; with ``to`` it must have held Production before.
    The current version is archived, then the target promoted (both ROLLBACK).
    """
    state = fold(events)
    current = holder(state, Stage.PRODUCTION)
    if current is None:
        raise NothingToRollBackError(name, "no version is in Production")
    history = production_history(events)
    if to is None:
        target = next((v for v in reversed(history) if v != current), None)
        if target is None:
            raise NothingToRollBackError(name, "no earlier Production version")
    elif to not in state:
        raise NothingToRollBackError(name, f"version {to} does not exist")
    elif to == current:
        raise NothingToRollBackError(name, f"version {to} is already in Production")
    elif to not in history:
        raise NothingToRollBackError(
            name, f"version {to} has never been in Production; promote it instead"
        )
    else:
        target = to
    return [
        StageChange(current, Stage.PRODUCTION, Stage.ARCHIVED, Action.ROLLBACK),
        StageChange(target, state[target], Stage.PRODUCTION, Action.ROLLBACK),
    ]
