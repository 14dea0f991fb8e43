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

The truth is a fold over the model's append-only ledger events (given in id
order), so "what was in Production at time T" is the same fold over a prefix.
:class:`ModelState` is that fold, built once; the ledger keeps the same state
per version as a projection updated with every event (``ledger/state.py``),
so plans read a few rows instead of the history. Everything here is pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import MappingProxyType

from modelreg.domain import Action, Event, Stage, StageChange, VoteDetails
from modelreg.errors import NothingToRollBackError, TransitionNotAllowedError, VersionNotFoundError
from modelreg.policy import Role, Vote

ALLOWED: Mapping[Stage, frozenset[Stage]] = MappingProxyType(
    {
        Stage.NONE: frozenset({Stage.STAGING, Stage.ARCHIVED}),
        Stage.STAGING: frozenset({Stage.PRODUCTION, Stage.ARCHIVED, Stage.NONE}),
        Stage.PRODUCTION: frozenset({Stage.ARCHIVED}),
        Stage.ARCHIVED: frozenset({Stage.STAGING}),
    }
)

_ENTRY_ACTIONS = frozenset({Action.REGISTER, Action.ADOPT})


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
    Planned from the fold of ``events`` by :func:`plan_rollback_from`.
    """
    return plan_rollback_from(name, ModelState.fold(events), to)


# -- the typed state, folded once ------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """An open promotion request and the approvals given since it was opened."""

    id: int  # the REQUEST event's id
    actor: str  # the requester (whoever triggered the automation that opened it)
    votes: tuple[Vote, ...] = ()


@dataclass(frozen=True)
class VersionState:
    """What the events say about one version now.

    ``stage`` is None for a version that has events but never entered the
    ledger (no REGISTER/ADOPT and no stage change). ``entered_staging`` and
    ``entered_production`` are the ids of the events that last moved it into
    those stages: the staging alias follows the latest entry into Staging, and
    a rollback returns to the latest earlier Production version.
    """

    version: int
    stage: Stage | None = None
    since: datetime | None = None  # when it entered ``stage``
    entered_staging: int | None = None
    entered_production: int | None = None
    request: Request | None = None

    def after(self, event: Event) -> VersionState:
        """The version's state once ``event`` (one of its own) is applied."""
        state = self
        stage = event.to_stage
        if stage is None and event.action in _ENTRY_ACTIONS:
            stage = Stage.NONE
        # A repeated stage (e.g. a REPAIR re-applying it) is not a new entry into it.
        if stage is not None and stage is not state.stage:
            state = replace(
                state,
                stage=stage,
                since=event.at,
                entered_staging=event.id if stage is Stage.STAGING else state.entered_staging,
                entered_production=event.id
                if stage is Stage.PRODUCTION
                else state.entered_production,
            )
        return replace(state, request=_request_after(state.request, event))


def _request_after(current: Request | None, event: Event) -> Request | None:
    if event.action is Action.REQUEST:
        # A request the automation opened belongs to whoever triggered it.
        return Request(event.id, event.typed().triggered_by or event.actor)
    if current is not None and event.action is Action.APPROVE:
        details = event.typed()
        role = Role(details.role) if isinstance(details, VoteDetails) else Role.VIEWER
        return replace(current, votes=(*current.votes, Vote(event.actor, role, event.digest)))
    if event.action is Action.REJECT or event.to_stage is not None:
        return None  # rejected, or the version moved: the request is over
    return current


@dataclass(frozen=True)
class ModelState:
    """The current state of one model: every version's stage, the holders, open requests.

    Built once from the model's events (:meth:`fold`), or from the ledger's
    state projection, which may hold only the versions a caller asked about
    plus the stage holders: every question below is answered from those.
    """

    versions: Mapping[int, VersionState] = field(default_factory=dict)

    @classmethod
    def fold(cls, events: Iterable[Event]) -> ModelState:
        """The state after ``events`` (one model, id order)."""
        versions: dict[int, VersionState] = {}
        for event in events:
            before = versions.get(event.version) or VersionState(event.version)
            versions[event.version] = before.after(event)
        return cls(versions)

    def stage(self, version: int) -> Stage | None:
        """The version's stage, or None when the ledger does not know it."""
        known = self.versions.get(version)
        return known.stage if known else None

    @property
    def stages(self) -> dict[int, Stage]:
        """Stage by version, for the versions the ledger knows (what :func:`fold` returns)."""
        return {v: s.stage for v, s in self.versions.items() if s.stage is not None}

    @property
    def production(self) -> int | None:
        """The version in Production, the highest if drift left several, or None."""
        return holder(self.stages, Stage.PRODUCTION)

    @property
    def staging(self) -> int | None:
        """The version that most recently entered Staging and is still there (the alias)."""
        staged = [s for s in self.versions.values() if s.stage is Stage.STAGING]
        latest = max(staged, key=lambda s: s.entered_staging or 0, default=None)
        return latest.version if latest else None

    @property
    def production_history(self) -> list[int]:
        """Versions that have held Production, ordered by their latest entry into it."""
        held = [s for s in self.versions.values() if s.entered_production is not None]
        return [s.version for s in sorted(held, key=lambda s: s.entered_production or 0)]

    def request(self, version: int) -> Request | None:
        """The version's request that is neither rejected nor fulfilled."""
        known = self.versions.get(version)
        return known.request if known else None

    def minutes_in_staging(self, version: int, now: datetime) -> float | None:
        """Minutes since ``version`` entered Staging, or None when it is not in Staging now."""
        known = self.versions.get(version)
        if known is None or known.stage is not Stage.STAGING or known.since is None:
            return None
        return (now - known.since).total_seconds() / 60


def plan_rollback_from(name: str, state: ModelState, to: int | None = None) -> list[StageChange]:
    """:func:`plan_rollback` from a :class:`ModelState` (e.g. the ledger's projection).

    ``state`` must hold the Production holder, the previous Production
    version and ``to``; the projection's reads include exactly those.
    """
    current = state.production
    if current is None:
        raise NothingToRollBackError(name, "no version is in Production")
    history = state.production_history
    if to is None:
        target = next((v for v in reversed(history) if v != current), None)
        if target is None:
            raise NothingToRollBackError(name, "no earlier Production version")
    elif state.stage(to) is None:
        raise NothingToRollBackError(name, f"version {to} does not exist")
    elif to == current:
        raise NothingToRollBackError(name, f"version {to} is already in Production")
    elif to not in history:
        raise NothingToRollBackError(
            name, f"version {to} has never been in Production; promote it instead"
        )
    else:
        target = to
    from_stage = state.stage(target) or Stage.NONE
    return [
        StageChange(current, Stage.PRODUCTION, Stage.ARCHIVED, Action.ROLLBACK),
        StageChange(target, from_stage, Stage.PRODUCTION, Action.ROLLBACK),
    ]
