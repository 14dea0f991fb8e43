"""Approvals, validation gates and automated promotion over the registry's lifecycle.

The policy (:mod:`modelreg.policy`) decides; this module gathers the evidence
(MLflow run metrics and tags, ledger facts, a fresh artifact hash, the current
Production version), records requests, approvals, rejections and refusals in
the ledger, and promotes through the lifecycle's one write path
(:meth:`modelreg.registry.lifecycle.Lifecycle.apply`) when the policy is
satisfied. Approvals are bound to the artifact digest observed when they were
given: if the artifacts change, they no longer count.

Everything that moves a stage or counts approvals runs under the model's
ledger lock, with the champion read inside it, so two concurrent requests
cannot both promote against the same, stale Production version.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from modelreg import lifecycle, policy
from modelreg.domain import Action, Event, Outcome, Stage
from modelreg.errors import (
    ApprovalError,
    GateFailedError,
    InvalidInputError,
    PermissionDeniedError,
)
from modelreg.ledger import Ledger, LedgerTransaction, NewEvent, VersionRecord
from modelreg.lifecycle import ModelState, Request
from modelreg.mlflow_gateway import MlflowGateway, VersionInfo
from modelreg.policy import Decision, Evidence, Permission, Role, Vote
from modelreg.registry.access import Access
from modelreg.registry.adoption import Adoption
from modelreg.registry.artifacts import Artifacts
from modelreg.registry.lifecycle import Lifecycle
from modelreg.registry.reads import Reads
from modelreg.settings import Settings
from modelreg.views import DecisionView, EventView, GateView

APPROVAL_TAG = "modelreg.approval"
_MAX_COMMENT = 2000


def open_request(events: Sequence[Event], version: int) -> Request | None:
    """The version's request that is neither rejected nor fulfilled, from its events.

    Decisions read it from the ledger's state projection
    (:meth:`ModelState.request`); this is the same fold over given events.
    """
    return ModelState.fold(e for e in events if e.version == version).request(version)


@dataclass(frozen=True)
class _Candidate:
    """What is known about a version before the lock is taken (hashing is slow)."""

    info: VersionInfo
    record: VersionRecord | None
    evidence: Evidence
    digest: str  # the digest observed now; "" when not hashed
    registrants: frozenset[str]


def _comment(text: str) -> str:
    if len(text) > _MAX_COMMENT:
        raise InvalidInputError(
            f"comment is {len(text)} characters long; keep it under {_MAX_COMMENT}"
        )
    return text.strip()


class Governance:
    """Validate, request, approve, reject and auto-promote versions of a registry."""

    def __init__(
        self,
        settings: Settings,
        gateway: MlflowGateway,
        ledger: Ledger,
        access: Access,
        reads: Reads,
        adoption: Adoption,
        artifacts: Artifacts,
        writes: Lifecycle,
    ) -> None:
        self.settings = settings
        self.gateway = gateway
        self.ledger = ledger
        self.access = access
        self.reads = reads
        self.adoption = adoption
        self.artifacts = artifacts
        self.writes = writes

    # -- evidence ------------------------------------------------------------------

    def _candidate(self, name: str, ref: str | int, *, hash_artifacts: bool) -> _Candidate:
        info = self.reads.resolve_info(name, ref)
        self.adoption.ensure_adopted(name, info.version)
        record = self.ledger.version_record(name, info.version)
        run = self.gateway.run(info.run_id) if info.run_id else None
        metadata = {**(run.params if run else {}), **(run.tags if run else {}), **info.tags}
        problems: list[str] | None = None
        digest = ""
        if hash_artifacts and record is not None:
            verified = self.artifacts.verify_one(name, info.version)
            problems, digest = verified.problems, verified.actual_digest or ""
        evidence = Evidence(
            name=name,
            version=info.version,
            semver=record.semver if record else None,
            metrics=run.metrics if run else {},
            metadata=metadata,
            description=info.description,
            facts=record.facts if record else None,
            lineage_missing=list(record.lineage_missing) if record else None,
            digest_problems=problems,
            data_fingerprinted=bool(
                record and record.lineage and record.lineage.data_fingerprinted
            ),
        )
        registrants = {record.registered_by if record else "", info.user_id}
        registrants.add(run.user_id if run else "")
        return _Candidate(info, record, evidence, digest, frozenset(r for r in registrants if r))

    def _with_champion(
        self, candidate: _Candidate, state: ModelState, txn: LedgerTransaction | None
    ) -> Evidence:
        """The candidate's evidence plus the Production version ``state`` names.

        Decisions that act pass the transaction, so Production is read inside
        the lock; ``validate`` reads without taking the write lock.
        """
        name = candidate.info.name
        minutes = state.minutes_in_staging(candidate.info.version, datetime.now(UTC))
        evidence = dataclasses.replace(candidate.evidence, staging_minutes=minutes)
        holder = state.production
        if holder is None or holder == candidate.info.version:
            return evidence
        info = self.gateway.version(name, holder)
        run = self.gateway.run(info.run_id) if info.run_id else None
        reader = txn.version_record if txn is not None else self.ledger.version_record
        record = reader(name, holder)
        champion = policy.ChampionEvidence(
            version=holder,
            semver=record.semver if record else None,
            metrics=run.metrics if run else {},
            facts=record.facts if record else None,
        )
        return dataclasses.replace(evidence, champion=champion)

    def _approver(
        self, rules: policy.ModelPolicy, actor: str | None, action: str
    ) -> tuple[str, Role]:
        """The acting approver: the approver role, then the policy's narrower list."""
        who, role = self.access.authorize(actor, Permission.APPROVE, action)
        if not policy.may_approve(rules.approvals, who, role):
            raise PermissionDeniedError(who, action, _eligibility(rules.approvals, role))
        return who, role

    @contextlib.contextmanager
    def _locked(
        self, name: str, ref: str | int
    ) -> Iterator[tuple[_Candidate, LedgerTransaction, ModelState]]:
        """The hashed candidate (hashed before the lock: it is slow), then the lock and state.

        The state is the projection's few rows (the candidate and the stage
        holders), read inside the lock.
        """
        candidate = self._candidate(name, ref, hash_artifacts=True)
        with self.ledger.locked(name) as txn:
            yield candidate, txn, txn.state(name, [candidate.info.version])

    def _unverified_registrant(
        self, rules: policy.ModelPolicy, candidate: _Candidate, txn: LedgerTransaction, who: str
    ) -> str:
        """Why ``who`` may not approve a version whose registrant is only a claim, or "".

        A version adopted from plain MLflow names whoever its client claimed to
        be, so under MLflow auth the approver must be someone who could not
        have created it: not an MLflow admin, and without EDIT/MANAGE on the
        registered model. (Without auth every name is a claim anyway.)
        """
        if not rules.approvals.separation_of_duties or self.settings.auth != "mlflow":
            return ""
        number = candidate.info.version
        events = txn.events(candidate.info.name, version=number)
        adopted = any(e.action is Action.ADOPT for e in events)
        if adopted and self.gateway.may_write_model(candidate.info.name, who):
            return (
                f"the version was registered outside modelreg, so its registrant is "
                f"unverified, and {who} could have registered it (they may write to the "
                "model in MLflow)"
            )
        return ""

    def _rules(self, name: str) -> policy.ModelPolicy:
        return self.access.policy().for_model(name)

    def _view(
        self,
        candidate: _Candidate,
        outcome: Outcome,
        decision: Decision,
        *,
        events: Sequence[Event] = (),
        approvers: Sequence[str] = (),
        message: str = "",
    ) -> DecisionView:
        rules = self._rules(candidate.info.name)
        return DecisionView(
            name=candidate.info.name,
            version=candidate.info.version,
            semver=str(candidate.evidence.semver) if candidate.evidence.semver else None,
            outcome=outcome,
            passed=decision.passed,
            promoted=any(e.to_stage is Stage.PRODUCTION for e in events),
            gates=[GateView.of(r) for r in decision.results],
            approvers=list(approvers),
            required_approvals=rules.approvals.required,
            policy=self.access.policy().source or "(none: open policy)",
            message=message,
            events=[EventView.of(e) for e in events],
        )

    # -- operations ----------------------------------------------------------------

    def validate(self, name: str, ref: str | int, *, actor: str | None = None) -> DecisionView:
        """Every gate of the model's policy, with observed and required values."""
        self.access.authorize(actor, Permission.READ, "validate versions")
        rules = self._rules(name)
        candidate = self._candidate(name, ref, hash_artifacts=rules.gates.require_verified_digest)
        state = self.ledger.state(name, [candidate.info.version])
        evidence = self._with_champion(candidate, state, None)
        decision = policy.evaluate(rules, evidence)
        return self._view(
            candidate, Outcome.VALID if decision.passed else Outcome.INVALID, decision
        )

    def request(
        self,
        name: str,
        ref: str | int,
        *,
        stage: Stage | str = Stage.PRODUCTION,
        comment: str = "",
        actor: str | None = None,
    ) -> DecisionView:
        """Open a request to promote a version to Production; gates must pass first.

        With no approvals required by the policy, the version is promoted at once.
        A request refused by the gates is recorded (DECLINE) and raises GateFailedError.
        """
        target = stage if isinstance(stage, Stage) else Stage.parse(stage)
        if target is not Stage.PRODUCTION:
            raise InvalidInputError(
                f"requests are for Production, not {target.value}; "
                "move versions to Staging with `modelreg promote`"
            )
        who, _role = self.access.authorize(actor, Permission.CONTRIBUTE, "request promotions")
        note = _comment(comment)
        rules = self._rules(name)
        with self._locked(name, ref) as (candidate, txn, state):
            number = candidate.info.version
            lifecycle.plan_governed_promotion(name, state.stages, number)
            if (pending := state.request(number)) is not None:
                raise ApprovalError(
                    f"{name} version {number} already has an open request (#{pending.id} by "
                    f"{pending.actor}); approve or reject it with `modelreg approve|reject`"
                )
            decision = policy.evaluate(rules, self._with_champion(candidate, state, txn))
            if not decision.passed:
                txn.append(self._decline(candidate, who, decision, "request"))
            else:
                opened = txn.append(
                    self._event(candidate, Action.REQUEST, who, note, {"target": "Production"})
                )
                done = [opened]
                if rules.approvals.required == 0:
                    done += self._promote(txn, candidate, state, who, f"request #{opened.id}", [])
                else:
                    self.gateway.set_version_tags(
                        name, number, {APPROVAL_TAG: f"requested by {who}"}
                    )
                outcome = Outcome.PROMOTED if len(done) > 1 else Outcome.REQUESTED
                return self._view(candidate, outcome, decision, events=done)
        raise GateFailedError(name, number, [r.explain() for r in decision.failures])

    def approve(
        self, name: str, ref: str | int, *, comment: str = "", actor: str | None = None
    ) -> DecisionView:
        """Approve a version's open request; promote it when enough approvals count."""
        note = _comment(comment)
        rules = self._rules(name)
        who, role = self._approver(rules, actor, "approve")
        with self._locked(name, ref) as (candidate, txn, state):
            number = candidate.info.version
            pending = state.request(number)
            requester = pending.actor if pending else ""
            conflict = policy.conflicts_of_interest(
                rules.approvals, who, candidate.registrants, requester
            ) or self._unverified_registrant(rules, candidate, txn, who)
            if conflict:
                raise PermissionDeniedError(
                    who, f"approve {name} version {number}", f"separation of duties ({conflict})"
                )
            decision = policy.evaluate(rules, self._with_champion(candidate, state, txn))
            if not decision.passed:
                raise GateFailedError(name, number, [r.explain() for r in decision.failures])
            if pending is None:
                raise ApprovalError(
                    f"{name} version {number} has no open promotion request; open one with "
                    f"`modelreg request {name} {number} --stage production`"
                )
            if any(v.actor == who and v.digest == candidate.digest for v in pending.votes):
                raise ApprovalError(f"{who} has already approved {name} version {number}")
            vote = txn.append(
                self._event(candidate, Action.APPROVE, who, note, {"request": pending.id}, role)
            )
            votes = [*pending.votes, Vote(who, role, candidate.digest)]
            counted = policy.counted_approvers(
                rules.approvals, votes, candidate.digest, candidate.registrants, requester
            )
            done = [vote]
            if len(counted) >= rules.approvals.required:
                why = f"request #{pending.id} approved by {', '.join(counted)}"
                done += self._promote(txn, candidate, state, who, why, counted)
            # Tags follow the promotion: a failed promotion leaves no "approved" tag behind.
            self.gateway.set_version_tags(
                name,
                number,
                {
                    "approved_by": ",".join(counted),
                    "approved_at": vote.at.isoformat(timespec="seconds"),
                    "comment": note,
                    APPROVAL_TAG: f"approved {len(counted)}/{rules.approvals.required}",
                },
            )
            outcome = Outcome.PROMOTED if len(done) > 1 else Outcome.PENDING
            return self._view(candidate, outcome, decision, events=done, approvers=counted)

    def reject(
        self, name: str, ref: str | int, *, comment: str, actor: str | None = None
    ) -> DecisionView:
        """Reject a version's open request with a comment; nothing but the ledger changes."""
        note = _comment(comment)
        if not note:
            raise InvalidInputError("a rejection needs a comment saying why it was rejected")
        rules = self._rules(name)
        who, role = self._approver(rules, actor, "reject")
        candidate = self._candidate(name, ref, hash_artifacts=False)
        number = candidate.info.version
        with self.ledger.locked(name) as txn:
            pending = txn.state(name, [number]).request(number)
            if pending is None:
                raise ApprovalError(f"{name} version {number} has no open promotion request")
            event = txn.append(
                self._event(candidate, Action.REJECT, who, note, {"request": pending.id}, role)
            )
            self.gateway.set_version_tags(
                name,
                number,
                {
                    "rejected_by": who,
                    "rejected_at": event.at.isoformat(timespec="seconds"),
                    "comment": note,
                    APPROVAL_TAG: f"rejected by {who}",
                },
            )
            return self._view(candidate, Outcome.REJECTED, Decision(), events=[event])

    def auto_promote(self, name: str, ref: str | int, *, actor: str | None = None) -> DecisionView:
        """Promote when the gates pass and the candidate beats Production by the margin.

        The promotion is recorded with the automation's actor and who triggered
        it. When the policy still wants a human, a request is opened instead.
        """
        who, _role = self.access.authorize(actor, Permission.CONTRIBUTE, "run auto-promotion")
        bot = self.settings.automation_actor
        rules = self._rules(name)
        with self._locked(name, ref) as (candidate, txn, state):
            number = candidate.info.version
            lifecycle.plan_governed_promotion(name, state.stages, number)
            decision = policy.auto_promotion(rules, self._with_champion(candidate, state, txn))
            trigger = {"triggered_by": who}
            if not decision.passed:
                declined = txn.append(
                    self._decline(candidate, bot, decision, "auto-promotion", trigger)
                )
                message = "; ".join(r.explain() for r in decision.failures)
                return self._view(
                    candidate, Outcome.DECLINED, decision, events=[declined], message=message
                )
            if rules.auto_promote.require_approval:
                if state.request(number) is not None:
                    return self._view(
                        candidate, Outcome.REQUESTED, decision, message="already open"
                    )
                opened = txn.append(
                    self._event(candidate, Action.REQUEST, bot, "auto-promotion passed", trigger)
                )
                self.gateway.set_version_tags(
                    name, number, {APPROVAL_TAG: "requested by auto-promotion"}
                )
                return self._view(candidate, Outcome.REQUESTED, decision, events=[opened])
            why = f"auto-promotion triggered by {who}"
            done = self._promote(txn, candidate, state, bot, why, [], trigger)
            return self._view(candidate, Outcome.PROMOTED, decision, events=done)

    def override(self, name: str, number: int, *, reason: str, actor: str) -> list[EventView]:
        """An admin's direct promotion to Production under a policy (``promote --stage``).

        The gates are evaluated and recorded, not enforced: failing ones are
        listed in an OVERRIDE event before the moves. Gates no one may override
        (:data:`policy.BINDING_GATES`: changed artifacts, a required time in
        Staging) refuse the promotion; the refusal is recorded (DECLINE).
        The caller has checked the admin role.
        """
        rules = self._rules(name)
        with self._locked(name, number) as (candidate, txn, state):
            lifecycle.plan_governed_promotion(name, state.stages, number)
            decision = policy.evaluate(rules, self._with_champion(candidate, state, txn))
            binding = [r for r in decision.failures if r.gate in policy.BINDING_GATES]
            if binding:
                txn.append(self._decline(candidate, actor, decision, "direct promotion"))
            else:
                done: list[Event] = []
                if decision.failures:
                    failed = [
                        {"gate": r.gate, "required": r.required, "observed": r.observed}
                        for r in decision.failures
                    ]
                    listed = "; ".join(r.explain() for r in decision.failures)
                    note = NewEvent(
                        model=name,
                        version=number,
                        action=Action.OVERRIDE,
                        actor=actor,
                        reason=f"{reason} (override: {listed})"
                        if reason
                        else f"override: {listed}",
                        semver=str(candidate.record.semver) if candidate.record else "",
                        digest=candidate.digest,
                        details={"failed_gates": failed, "policy": self.access.policy().source},
                    )
                    done.append(txn.append(note))
                changes = lifecycle.plan_governed_promotion(name, state.stages, number)
                extra = {"override": True} if done else {}
                done += self.writes.apply(txn, name, state, changes, actor, reason, extra)
                return [EventView.of(e) for e in done]
        raise GateFailedError(
            name, number, [r.explain() for r in binding] + ["no override can skip these gates"]
        )

    # -- ledger records --------------------------------------------------------------

    def _event(
        self,
        candidate: _Candidate,
        action: Action,
        actor: str,
        comment: str,
        details: Mapping[str, object],
        role: Role | None = None,
    ) -> NewEvent:
        extra: dict[str, object] = {**details, "comment": comment} if comment else dict(details)
        if role is not None:
            extra["role"] = role.value
        return NewEvent(
            model=candidate.info.name,
            version=candidate.info.version,
            action=action,
            actor=actor,
            reason=comment,
            semver=str(candidate.record.semver) if candidate.record else "",
            digest=candidate.digest or (candidate.record.digest if candidate.record else ""),
            details=extra,
        )

    def _decline(
        self,
        candidate: _Candidate,
        actor: str,
        decision: Decision,
        what: str,
        extra: Mapping[str, object] | None = None,
    ) -> NewEvent:
        failures = [r.explain() for r in decision.failures]
        return dataclasses.replace(
            self._event(candidate, Action.DECLINE, actor, "", {"refused": what}),
            reason=f"{what} refused: " + "; ".join(failures),
            details={**(extra or {}), "refused": what, "failures": failures},
        )

    def _promote(
        self,
        txn: LedgerTransaction,
        candidate: _Candidate,
        state: ModelState,
        actor: str,
        reason: str,
        approvers: Sequence[str],
        extra: Mapping[str, object] | None = None,
    ) -> list[Event]:
        # ``state`` was read under this lock; what was appended since (a request, a
        # vote) moves no stage, so the plan and the projection start from it.
        name, number = candidate.info.name, candidate.info.version
        changes = lifecycle.plan_governed_promotion(name, state.stages, number)
        details = {**(extra or {}), **({"approvers": list(approvers)} if approvers else {})}
        return self.writes.apply(txn, name, state, changes, actor, reason, details)


def _eligibility(rules: policy.Approvals, role: Role) -> str:
    if not rules.approvers and not rules.roles:
        return f"approving needs the approver or admin role (you are {role.value})"
    allowed = [*rules.approvers, *(f"role {r.value}" for r in rules.roles)]
    return "the policy lets only these approve: " + ", ".join(allowed)
