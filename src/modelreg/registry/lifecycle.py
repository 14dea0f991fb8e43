"""Lifecycle writes: transitions, rollbacks and the one write path every stage change takes.

Every state change happens under the model's ledger lock: plan it from the
state projection (a few rows: the version and the stage holders), append the
events (the projection moves with them, in the same transaction), then
project the new state onto MLflow (aliases, stage tags, the deprecated native
stage) in :meth:`Lifecycle.apply`. If MLflow refuses half-way, MLflow is put
back and the ledger transaction rolls back, so a failed change leaves no
trace. Governance and drift repair write through the same public
:meth:`Lifecycle.apply` and :meth:`Lifecycle.project`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from modelreg import lifecycle
from modelreg.domain import Action, Event, Stage, StageChange, check_model_name
from modelreg.errors import (
    ConflictError,
    IntegrityError,
    InvalidInputError,
    ModelregError,
    VersionNotFoundError,
)
from modelreg.ledger import Ledger, LedgerTransaction, NewEvent
from modelreg.lifecycle import ModelState
from modelreg.mlflow_gateway import MlflowGateway
from modelreg.policy import Permission
from modelreg.registry.access import Access
from modelreg.registry.adoption import Adoption
from modelreg.registry.artifacts import Artifacts
from modelreg.registry.projection import STAGE_TAG, alias_holders
from modelreg.registry.reads import Reads
from modelreg.views import EventView

log = logging.getLogger("modelreg.registry")

_MAX_REASON = 2000


class Override(Protocol):
    """An admin's direct promotion to Production under a policy, gates recorded, not enforced."""

    def __call__(self, name: str, number: int, *, reason: str, actor: str) -> list[EventView]:
        """Promote ``number`` of ``name`` as ``actor`` (already authorised as admin)."""
        ...


def bounded_reason(text: str) -> str:
    """``text`` when it fits the ledger's reason column; InvalidInputError otherwise."""
    if len(text) > _MAX_REASON:
        raise InvalidInputError(
            f"reason is {len(text)} characters long; keep it under {_MAX_REASON}"
        )
    return text


class Lifecycle:
    """Move versions between stages through the one write path: plan, project, append."""

    def __init__(
        self,
        gateway: MlflowGateway,
        ledger: Ledger,
        access: Access,
        reads: Reads,
        adoption: Adoption,
        artifacts: Artifacts,
    ) -> None:
        self.gateway = gateway
        self.ledger = ledger
        self.access = access
        self.reads = reads
        self.adoption = adoption
        self.artifacts = artifacts

    def transition(
        self,
        name: str,
        ref: str | int,
        stage: Stage | str,
        *,
        reason: str = "",
        actor: str | None = None,
        override: Override,
    ) -> list[EventView]:
        """Move a version to ``stage``; promoting to Production archives the previous one.

        Production from None passes through Staging in the same operation (both
        moves are recorded), as the course's one-step ``transition`` expects.
        Under a policy, moving a version to Production directly is an admin's
        ``override`` (governance decides and records it).
        """
        target = stage if isinstance(stage, Stage) else Stage.parse(stage)
        number = self.reads.resolve(name, ref)
        current = self.ledger.state(name, [number]).stage(number)
        needed = Permission.CONTRIBUTE
        if current is Stage.PRODUCTION:
            needed = Permission.APPROVE  # taking Production away weighs like a rollback
        if target is Stage.PRODUCTION:
            needed = Permission.ADMINISTER
        who, _role = self.access.authorize(actor, needed, f"move versions to {target.value}")
        why = bounded_reason(reason)
        self.adoption.ensure_adopted(name, number)
        if target is Stage.PRODUCTION and self.access.governed():
            return override(name, number, reason=why, actor=who)
        with self.ledger.locked(name) as txn:
            # A few projected rows (this version and the holders), not the whole history.
            state = txn.state(name, [number])
            if target is Stage.PRODUCTION:
                changes = lifecycle.plan_governed_promotion(name, state.stages, number)
            else:
                changes = lifecycle.plan_transition(name, state.stages, number, target)
            return [EventView.of(e) for e in self.apply(txn, name, state, changes, who, why)]

    def rollback(
        self, name: str, to: str | int | None = None, *, reason: str = "", actor: str | None = None
    ) -> list[EventView]:
        """Return Production to the previous Production version (or to ``to``).

        Under a policy that requires verified digests the target's artifacts are
        re-hashed first: a rollback never points Production at changed files
        (the refusal is recorded as a DECLINE and raises IntegrityError).
        """
        who, _role = self.access.authorize(actor, Permission.APPROVE, "roll back Production")
        why = bounded_reason(reason)
        target = self.reads.resolve(name, to) if to is not None else None
        check_model_name(name)
        self.gateway.model(name)
        wanted = [target] if target is not None else []
        planned = lifecycle.plan_rollback_from(name, self.ledger.state(name, wanted), target)
        back = planned[-1].version
        problems: list[str] = []
        rules = self.access.policy()
        if rules.source and rules.for_model(name).gates.require_verified_digest:
            problems = self.artifacts.verify_one(name, back).problems  # slow: before the lock
        with self.ledger.locked(name) as txn:
            state = txn.state(name, wanted)
            changes = lifecycle.plan_rollback_from(name, state, target)
            if changes[-1].version != back:
                raise ConflictError(
                    f"Production of {name} changed during the rollback; run it again"
                )
            if problems:
                txn.append(
                    NewEvent(
                        model=name,
                        version=back,
                        action=Action.DECLINE,
                        actor=who,
                        reason="rollback refused: the artifacts changed since registration: "
                        + "; ".join(problems[:5]),
                        details={"refused": "rollback", "failures": problems},
                    )
                )
            else:
                return [EventView.of(e) for e in self.apply(txn, name, state, changes, who, why)]
        raise IntegrityError(name, back, problems)

    def apply(
        self,
        txn: LedgerTransaction,
        name: str,
        state: ModelState,
        changes: list[StageChange],
        actor: str,
        reason: str,
        details: Mapping[str, Any] | None = None,
    ) -> list[Event]:
        """Append ``changes`` and project them onto MLflow; undo MLflow if that fails.

        ``txn`` holds the model's lock and ``state`` was read under it (at least
        the changed versions and the stage holders, as ``txn.state`` reads
        them); the appended events are returned. A ModelregError from MLflow
        propagates after MLflow was put back, and the ledger rolls back as it
        leaves the lock.
        """
        # Subscribers of a promotion want to know what it replaced.
        previous = next((c.version for c in changes if c.from_stage is Stage.PRODUCTION), None)
        records = {
            change.version: record
            for change in changes
            if (record := txn.version_record(name, change.version)) is not None
        }
        appended = [
            txn.append(
                NewEvent(
                    model=name,
                    version=change.version,
                    action=change.action,
                    actor=actor,
                    from_stage=change.from_stage,
                    to_stage=change.to_stage,
                    reason=reason,
                    semver=str(records[change.version].semver) if change.version in records else "",
                    digest=records[change.version].digest if change.version in records else "",
                    details={**(details or {}), "previous_version": previous}
                    if change.to_stage is Stage.PRODUCTION
                    else dict(details or {}),
                )
            )
            for change in changes
        ]
        touched = {change.version for change in changes}
        # The projection moved with the appends; the new holders are read from it
        # (the next Staging holder may be a version ``state`` did not include).
        after = txn.state(name, touched)
        try:
            self.project(name, after, touched, unchanged_from=state)
        except ModelregError:
            # Put MLflow back as it was; the ledger rolls back as the error leaves the lock.
            # Whatever cannot be restored now, doctor finds and repairs later.
            with contextlib.suppress(ModelregError):
                self.project(name, state, touched)
            raise
        return appended

    def project(
        self,
        name: str,
        state: ModelState,
        versions: Iterable[int],
        unchanged_from: ModelState | None = None,
    ) -> None:
        """Make MLflow show ``state`` for ``versions`` and the managed aliases.

        With ``unchanged_from`` (the state before a change, whose projection
        MLflow already shows) only aliases whose holder changed are written.
        A version deleted in MLflow behind modelreg's back has nothing left to
        project onto: it is skipped, and an alias meant for it stays unset (a
        rollback away from a deleted Production version must still complete).
        """
        holders = alias_holders(state)
        before = None if unchanged_from is None else alias_holders(unchanged_from)
        moved = {
            alias: holder
            for alias, holder in holders.items()
            if before is None or before[alias] != holder
        }
        # The alias is what serving and clients resolve, so it moves first.
        gone: set[int] = set()
        for alias, holder in moved.items():
            if not self._move_alias(name, alias, holder) and holder is not None:
                gone.add(holder)
        for version in sorted(set(versions) - gone):
            self._show_stage(name, version, state)

    def _move_alias(self, name: str, alias: str, holder: int | None) -> bool:
        """Point ``alias`` at ``holder`` (or remove it); False when MLflow deleted the holder."""
        if holder is None:
            self.gateway.delete_alias(name, alias)
            return True
        try:
            self.gateway.set_alias(name, alias, holder)
        except VersionNotFoundError:
            self.gateway.delete_alias(name, alias)
            return False
        return True

    def _show_stage(self, name: str, version: int, state: ModelState) -> None:
        stage = state.stage(version) or Stage.NONE
        try:
            self.gateway.set_native_stage(name, version, stage)
        except VersionNotFoundError:
            log.warning("%s v%d was deleted in MLflow; nothing to project onto", name, version)
            return
        self.gateway.set_version_tags(name, version, {STAGE_TAG: stage.value})
