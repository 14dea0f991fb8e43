"""A/B experiments on registry versions: start, ramp, stop, conclude, status, guardrails.

Every decision is a ledger event (``AB_*``) appended in the same transaction
as the experiment's row, under the model's lock, so one model never runs two
experiments and the history tells the whole story. The experiment is also
projected onto MLflow tags of the versions involved (``ab_traffic`` as the
course stores it, and ``modelreg.ab.*``) before the transaction commits; if
MLflow refuses, the tags already written are put back and nothing is
recorded.

Serving replicas read an experiment's route (:meth:`Experiments.experiment`)
each time they check their aliases, report cumulative per-variant counts and
log predictions; feedback joins outcomes to those predictions. ``status``
builds the statistics report (:mod:`modelreg.experiments.report`) from the
counts summed over replicas and the joined outcomes; ``conclude --promote``
promotes the winner through the governance request path, gates and approvals
included, never around them.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import threading
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from modelreg.domain import Action, check_model_name
from modelreg.errors import (
    ConflictError,
    InvalidInputError,
    ModelregError,
    NotFoundError,
    VersionNotFoundError,
    shorten,
)
from modelreg.experiments.assignment import BUCKETS, CONTROL, Split
from modelreg.experiments.definition import (
    DEFAULT_KEY_HEADER,
    LATENCY_BOUNDS_S,
    Arm,
    ExperimentRoute,
    ExperimentState,
    Feedback,
    FeedbackResult,
    PredictionRecord,
    VariantCounts,
    treatment_names,
)
from modelreg.ledger import Ledger, LedgerTransaction, NewEvent
from modelreg.ledger.experiments import (
    ExperimentRecord,
    ExperimentStore,
    OutcomeMark,
    Segment,
    with_changes,
)
from modelreg.mlflow_gateway import MlflowGateway
from modelreg.policy import Permission
from modelreg.registry.access import SYSTEM, Access, Caller
from modelreg.registry.adoption import Adoption
from modelreg.registry.governance import Governance
from modelreg.registry.lifecycle import bounded_reason
from modelreg.registry.reads import Reads
from modelreg.settings import Settings
from modelreg.views import ArmView, EventView, ExperimentView

if TYPE_CHECKING:
    from modelreg.experiments.report import Metric, Report
    from modelreg.experiments.timeline import TimedOutcome, Timeline

log = logging.getLogger("modelreg.experiments")

EXPERIMENT_TAG = "modelreg.ab.experiment"
VARIANT_TAG = "modelreg.ab.variant"
STATE_TAG = "modelreg.ab.state"
TRAFFIC_TAG = "ab_traffic"  # the course's tag: the version's share of traffic
MAX_TIMELINE_POINTS = 500
_HEADER = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-]{0,63}")
# Headers whose value is about the message or the connection, not the caller: keying on
# them would split traffic by body size or client library, never by user.
_NOT_KEYS = frozenset(
    {
        "accept",
        "accept-encoding",
        "accept-language",
        "authorization",
        "connection",
        "content-encoding",
        "content-length",
        "content-type",
        "cookie",
        "expect",
        "host",
        "keep-alive",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "",
    }
)
_SMALLEST_SHARE = 1 / BUCKETS  # one bucket: anything less routes nobody


def _traffic(value: float) -> float:
    if not isinstance(value, int | float) or not math.isfinite(value) or not 0 < value <= 1:
        raise InvalidInputError(f"traffic must be a share in (0, 1], e.g. 0.10; got {value!r}")
    if value < _SMALLEST_SHARE:
        raise InvalidInputError(
            f"traffic {value!r} is less than one bucket in {BUCKETS:,}; the smallest share "
            f"is {_SMALLEST_SHARE:g}"
        )
    return float(value)


def _key_header(name: str) -> str:
    shown = shorten(name, 64)
    if not _HEADER.fullmatch(name):
        raise InvalidInputError(
            f"--key-header must be an HTTP header name such as X-User-ID; got {shown!r}"
        )
    if name.lower() in _NOT_KEYS:
        raise InvalidInputError(
            f"--key-header {shown} describes the request, not who sent it; use a header "
            "that identifies the user, such as X-User-ID"
        )
    return name


def _share(value: float) -> str:
    return f"{value:.4f}".rstrip("0").rstrip(".") or "0"


class Experiments:
    """A/B experiments of a registry: decisions in the ledger, counts and feedback from serving."""

    def __init__(
        self,
        settings: Settings,
        gateway: MlflowGateway,
        ledger: Ledger,
        access: Access,
        reads: Reads,
        adoption: Adoption,
        governance: Governance,
    ) -> None:
        self.settings = settings
        self.gateway = gateway
        self.ledger = ledger
        self.access = access
        self.reads = reads
        self.adoption = adoption
        self.governance = governance
        self.store = ExperimentStore(ledger)
        self.outcome_cache = OutcomeCache(self.store)

    # -- decisions -------------------------------------------------------------------

    def start(
        self,
        name: str,
        treatments: Sequence[str | int],
        *,
        traffic: float,
        control: str | int = "production",
        key_header: str = DEFAULT_KEY_HEADER,
        shadow: bool = False,
        metrics: Sequence[str] = (),
        guardrails: Sequence[str] = (),
        reason: str = "",
        actor: str | None = None,
    ) -> ExperimentView:
        """Start an experiment of ``treatments`` (numbers or semvers) against ``control``.

        ``control`` is an alias (``production``, followed as it moves) or a
        version. ``traffic`` is each treatment's share in (0, 1]. Raises
        InvalidInputError for a bad share, header, metric or guardrail, or a
        treatment equal to control; VersionNotFoundError for unknown versions;
        ConflictError when the model already has an experiment running or
        stopped but not concluded.
        """
        who, _ = self.access.authorize(actor, Permission.CONTRIBUTE, "start experiments")
        check_model_name(name)
        share = _traffic(traffic)
        note = bounded_reason(reason)
        _key_header(key_header)
        from modelreg.experiments import report as reports  # scipy: only where statistics run

        chosen = [reports.parse_metric(m) for m in metrics] or [reports.Metric.ACCURACY]
        limits = [reports.parse_guardrail(g) for g in guardrails] or list(
            reports.DEFAULT_GUARDRAILS
        )
        if not treatments:
            raise InvalidInputError("name at least one --treatment VERSION")
        control_alias, control_version = self._control(name, control)
        versions = [self.reads.resolve(name, ref) for ref in treatments]
        if len(set(versions)) != len(versions):
            raise InvalidInputError(f"each treatment must be a different version: {versions}")
        if control_version in versions:
            raise InvalidInputError(
                f"treatment v{control_version} is the control version; compare a different one"
            )
        for version in (control_version, *versions):
            self.adoption.ensure_adopted(name, version)
        arms = tuple(
            Arm(variant, v)
            for variant, v in zip(treatment_names(len(versions)), versions, strict=True)
        )
        Split(tuple(a.variant for a in arms), share)  # refuses a share over 1/len(treatments)
        record = ExperimentRecord(
            id=uuid.uuid4().hex,
            model=name,
            state=ExperimentState.RUNNING,
            control=Arm(CONTROL, control_version),
            control_alias=control_alias,
            treatments=arms,
            traffic=share,
            key_header=key_header,
            shadow=shadow,
            metrics=tuple(m.value for m in chosen),
            guardrails=tuple(str(g) for g in limits),
            revision=1,
            started_by=who,
            started_at=datetime.now(UTC),
            segments=(Segment(share, 0),),
        )
        with self.ledger.locked(name) as txn:
            current = self.store.active_in(txn, name)
            if current is not None:
                raise ConflictError(
                    f"model {name!r} already has experiment {current.id} ({current.state}); "
                    f"conclude it first with `modelreg ab conclude {name}`"
                )
            event = self._record(txn, record, Action.AB_START, who, note)
        return self._view(record, events=[event])

    def ramp(
        self, name: str, traffic: float, *, reason: str = "", actor: str | None = None
    ) -> ExperimentView:
        """Change the running experiment's treatment share; treated keys stay treated."""
        who, _ = self.access.authorize(actor, Permission.CONTRIBUTE, "ramp experiments")
        share = _traffic(traffic)
        note = bounded_reason(reason)
        with self.ledger.locked(name) as txn:
            current = self._running(txn, name, "ramp")
            Split(tuple(a.variant for a in current.treatments), share)
            if share == current.traffic:
                return self._view(current)  # already there: nothing to record
            counted = sum(t.requests for t in self.store.totals(current.id))
            ramped = with_changes(
                current, traffic=share, segments=(*current.segments, Segment(share, counted))
            )
            event = self._record(txn, ramped, Action.AB_RAMP, who, note)
        return self._view(ramped, events=[event])

    def stop(
        self,
        name: str,
        *,
        reason: str = "",
        actor: Caller = None,
        breaches: Sequence[str] = (),
        evidence: dict[str, Any] | None = None,
    ) -> ExperimentView:
        """Stop the running experiment: everyone gets control, counting ends.

        With ``breaches`` (the workers' guardrail check, as :data:`SYSTEM`) the
        stop is recorded as AB_AUTO_STOP by the automation actor.
        """
        automatic = actor is SYSTEM
        if isinstance(actor, str) or actor is None:
            who, _ = self.access.authorize(actor, Permission.CONTRIBUTE, "stop experiments")
        else:
            who = self.settings.automation_actor
        note = bounded_reason(reason)
        with self.ledger.locked(name) as txn:
            current = self._running(txn, name, "stop")
            stopped = with_changes(
                current,
                state=ExperimentState.STOPPED,
                stopped_at=datetime.now(UTC),
                stop_reason=note or ("guardrail breached" if automatic else "stopped"),
            )
            action = Action.AB_AUTO_STOP if automatic else Action.AB_STOP
            event = self._record(
                txn,
                stopped,
                action,
                who,
                note,
                {"breaches": list(breaches), "evidence": evidence or {}},
            )
        return self._view(stopped, events=[event])

    def conclude(
        self, name: str, *, promote: bool = False, reason: str = "", actor: str | None = None
    ) -> ExperimentView:
        """Record the decision on the model's experiment (running or stopped) and end it.

        The report's evidence goes on the AB_CONCLUDE event. With ``promote``
        (approver role) the winner is promoted through the governance request
        path: gates must pass and the policy's approvals still apply (a
        request is opened when they are pending). ConflictError when there is
        no winner to promote; GateFailedError when the winner fails its gates
        (the refusal is recorded and the experiment stays open).
        """
        needed = Permission.APPROVE if promote else Permission.CONTRIBUTE
        what = "conclude experiments with a promotion" if promote else "conclude experiments"
        who, _ = self.access.authorize(actor, needed, what)
        note = bounded_reason(reason)
        current = self._active(name)
        report = self._report(current, self._outcomes(current))
        extra: dict[str, Any] = {
            "decision": str(report.decision),
            "winner": report.winner,
            "evidence": report.to_json(),
        }
        events: list[EventView] = []
        if promote:
            if report.winner is None:
                raise ConflictError(
                    f"experiment {current.id} has no winner to promote ({report.decision}: "
                    f"{report.reason}); conclude without --promote to record the result"
                )
            winner = next(a for a in current.treatments if a.variant == report.winner)
            decision = self.governance.request(
                name, winner.version, comment=_evidence_line(current, report), actor=who
            )
            events += decision.events
            extra["promoted"] = winner.version
        with self.ledger.locked(name) as txn:
            latest = self.store.active_in(txn, name)
            if latest is None or latest.id != current.id:
                raise ConflictError(f"experiment {current.id} changed meanwhile; look again")
            concluded = with_changes(
                latest,
                state=ExperimentState.CONCLUDED,
                concluded_at=datetime.now(UTC),
                stopped_at=latest.stopped_at or datetime.now(UTC),
                verdict={k: v for k, v in extra.items() if k != "evidence"},
            )
            events.append(self._record(txn, concluded, Action.AB_CONCLUDE, who, note, extra))
        return self._view(concluded, report=report.to_json(), events=events)

    # -- reads -----------------------------------------------------------------------

    def status(self, name: str, *, actor: str | None = None) -> ExperimentView:
        """The model's current experiment (or its last one) with the statistics report."""
        self.access.authorize(actor, Permission.READ, "read experiments")
        record = self._current(name)
        report = self._report(record, self._outcomes(record))
        return self._view(record, report=report.to_json())

    def timeline(self, name: str, *, points: int = 60, actor: str | None = None) -> Timeline:
        """The model's current (or last) experiment over time, in at most ``points`` intervals.

        Per variant and interval: requests per minute, error rate and p99
        latency; at each interval's end, every online metric over the
        feedback so far (:func:`modelreg.experiments.timeline.build_timeline`).
        The span runs from the start to the conclusion, or to now. Raises
        InvalidInputError unless 1 <= ``points`` <= 500, NotFoundError
        without an experiment.
        """
        self.access.authorize(actor, Permission.READ, "read experiments")
        _check_points(points)
        record = self._current(name)
        return self._timeline(record, self._outcomes(record), points)

    def overview(
        self, name: str, *, points: int = 60, actor: str | None = None
    ) -> tuple[ExperimentView, Timeline]:
        """:meth:`status` and :meth:`timeline` together, reading the prediction log once."""
        self.access.authorize(actor, Permission.READ, "read experiments")
        _check_points(points)
        record = self._current(name)
        outcomes = self._outcomes(record)
        view = self._view(record, report=self._report(record, outcomes).to_json())
        return view, self._timeline(record, outcomes, points)

    def listed(
        self, *, model: str | None = None, state: str | None = None, actor: str | None = None
    ) -> list[ExperimentView]:
        """Experiments, newest first, optionally of one model or in one state."""
        self.access.authorize(actor, Permission.READ, "list experiments")
        if model is not None:
            check_model_name(model)
        wanted = None
        if state is not None:
            try:
                wanted = ExperimentState(state.lower())
            except ValueError:
                choices = ", ".join(s.value for s in ExperimentState)
                raise InvalidInputError(f"state must be one of {choices}; got {state!r}") from None
        return [self._view(r) for r in self.store.listed(model=model, state=wanted)]

    # -- what serving reads and writes (ExperimentSource) ------------------------------

    def experiment(self, name: str) -> ExperimentRoute | None:
        """The route of ``name``'s running or stopped experiment; None without one."""
        record = self.store.active(name)
        return record.route if record is not None else None

    def record_variant_counts(self, replica: str, counts: Sequence[VariantCounts]) -> None:
        """Store one replica's cumulative counts (replacing what it stored before)."""
        self.store.put_counts(replica, counts)

    def log_predictions(self, records: Sequence[PredictionRecord]) -> None:
        """Append predictions to the prediction log."""
        self.store.log_predictions(records)

    def record_feedback(self, feedback: Feedback) -> FeedbackResult:
        """Join an outcome to a logged prediction (see ExperimentStore.record_feedback)."""
        if feedback.label is None and feedback.value is None:
            raise InvalidInputError("feedback needs a label or a value")
        return self.store.record_feedback(feedback)

    # -- the workers' round ------------------------------------------------------------

    def guard(self) -> list[ExperimentView]:
        """Stop every running experiment whose guardrails are breached; prune the log.

        Returns the experiments stopped. One experiment failing to evaluate
        is logged and does not keep the others from being checked.
        """
        stopped = []
        for record in self.store.listed(state=ExperimentState.RUNNING):
            try:
                # Guardrails read counts only: skip loading the prediction log every round.
                report = self._report(record, ())
                if report.breaches:
                    breaches = [
                        f"{b.treatment} {b.guardrail} (observed {b.observed:.4g})"
                        if b.observed is not None
                        else f"{b.treatment} {b.guardrail}"
                        for b in report.breaches
                    ]
                    why = "guardrail breached: " + "; ".join(breaches)
                    stopped.append(
                        self.stop(
                            record.model,
                            reason=why,
                            actor=SYSTEM,
                            breaches=breaches,
                            evidence=report.to_json(),
                        )
                    )
                    log.warning("experiment %s on %s stopped: %s", record.id, record.model, why)
            except ModelregError as exc:
                log.warning("checking experiment %s failed: %s", record.id, exc.message)
        self.store.prune(
            retention=timedelta(days=self.settings.prediction_log_retention_days),
            max_rows=self.settings.prediction_log_max_rows,
        )
        return stopped

    # -- internals ---------------------------------------------------------------------

    def _current(self, name: str) -> ExperimentRecord:
        """The model's running or stopped experiment, else its last one; NotFoundError if none."""
        check_model_name(name)
        record = self.store.active(name) or self.store.latest(name)
        if record is None:
            self.gateway.model(name)  # ModelNotFoundError for an unknown model
            raise NotFoundError(
                f"model {name!r} has no experiment; start one with "
                f"`modelreg ab start {name} --treatment VERSION --traffic 0.10`"
            )
        return record

    def _control(self, name: str, control: str | int) -> tuple[str | None, int]:
        text = str(control).strip()
        if isinstance(control, int) or text.isdigit() or "." in text:
            return None, self.reads.resolve(name, control)
        try:
            return text, self.reads.alias_version(name, text)
        except VersionNotFoundError:
            raise VersionNotFoundError(name, f"@{text}") from None

    def _active(self, name: str) -> ExperimentRecord:
        check_model_name(name)
        record = self.store.active(name)
        if record is None:
            raise self._none(name)
        return record

    def _none(self, name: str) -> NotFoundError:
        """ModelNotFoundError for an unknown model, else NotFoundError: no experiment."""
        self.gateway.model(name)
        return NotFoundError(
            f"model {name!r} has no running or stopped experiment; start one with "
            f"`modelreg ab start {name} --treatment VERSION --traffic 0.10`"
        )

    def _running(self, txn: LedgerTransaction, name: str, verb: str) -> ExperimentRecord:
        check_model_name(name)
        current = self.store.active_in(txn, name)
        if current is None:
            raise self._none(name)
        if current.state is not ExperimentState.RUNNING:
            raise ConflictError(
                f"cannot {verb}: experiment {current.id} on {name!r} is {current.state}, not "
                f"running; record its result with `modelreg ab conclude {name}`"
            )
        return current

    def _record(
        self,
        txn: LedgerTransaction,
        record: ExperimentRecord,
        action: Action,
        who: str,
        reason: str,
        extra: dict[str, Any] | None = None,
    ) -> EventView:
        details = {
            "experiment": record.id,
            "control_version": record.control.version,
            "treatments": {a.variant: a.version for a in record.treatments},
            "traffic": record.traffic if record.state is ExperimentState.RUNNING else 0.0,
            "shadow": record.shadow,
            **(extra or {}),
        }
        self.store.save(txn, record)
        event = txn.append(
            NewEvent(
                model=record.model,
                version=record.treatments[0].version,
                action=action,
                actor=who,
                reason=reason,
                details=details,
            )
        )
        # Inside the lock, before commit: if MLflow refuses, the event and row roll back.
        self._project_tags(record)
        return EventView.of(event)

    def _project_tags(self, record: ExperimentRecord) -> None:
        """Project the experiment onto its versions' tags; put written ones back on failure."""
        shares = record.shares()
        written: list[tuple[int, dict[str, str]]] = []
        try:
            for arm in record.arms:
                before = self.gateway.version(record.model, arm.version).tags
                wanted = {
                    EXPERIMENT_TAG: record.id,
                    VARIANT_TAG: arm.variant,
                    STATE_TAG: record.state.value,
                    TRAFFIC_TAG: _share(shares[arm.variant]),
                }
                written.append((arm.version, {k: before.get(k, "") for k in wanted}))
                self.gateway.set_version_tags(record.model, arm.version, wanted, current=before)
        except ModelregError:
            for version, previous in written:
                with contextlib.suppress(ModelregError):
                    self.gateway.set_version_tags(record.model, version, previous)
            raise

    def _outcomes(self, record: ExperimentRecord) -> list[TimedOutcome]:
        """The record's predictions that have feedback, as the report and timeline take them."""
        return self.outcome_cache.outcomes(record.id)

    def _report(self, record: ExperimentRecord, timed: Sequence[TimedOutcome]) -> Report:
        """The report over the counts and ``timed`` (the record's outcomes, or none)."""
        from modelreg.experiments import report as reports

        totals = {t.variant: t for t in self.store.totals(record.id)}
        outcomes: dict[str, list[reports.Outcome]] = {}
        for o in timed:
            outcomes.setdefault(o.variant, []).append(o.outcome)
        requests = sum(t.requests for t in totals.values())
        expected = record.expected_shares(requests)
        variants = []
        for arm in record.arms:
            total = totals.get(arm.variant)
            variants.append(
                reports.VariantData(
                    variant=arm.variant,
                    version=arm.version,
                    expected_share=expected[arm.variant],
                    requests=total.requests if total else 0,
                    errors=total.errors if total else 0,
                    missing_key=total.missing_key if total else 0,
                    latency=total.latency if total else (0,) * len(LATENCY_BOUNDS_S),
                    outcomes=tuple(outcomes.get(arm.variant, ())),
                )
            )
        return reports.build_report(
            variants,
            metrics=[_metric(m) for m in record.metrics],
            guardrails=[reports.parse_guardrail(g) for g in record.guardrails],
        )

    def _timeline(
        self, record: ExperimentRecord, outcomes: Sequence[TimedOutcome], points: int
    ) -> Timeline:
        from modelreg.experiments import timeline as timelines

        end = record.concluded_at or datetime.now(UTC)
        _, boundaries = timelines.interval_boundaries(record.started_at, end, points)
        return timelines.build_timeline(
            [arm.variant for arm in record.arms],
            self.store.samples(record.id, as_of=boundaries),
            outcomes,
            metrics=[_metric(m) for m in record.metrics],
            start=record.started_at,
            end=end,
            points=points,
        )

    def _view(
        self,
        record: ExperimentRecord,
        *,
        report: dict[str, Any] | None = None,
        events: Sequence[EventView] = (),
    ) -> ExperimentView:
        shares = record.shares()
        return ExperimentView(
            id=record.id,
            model=record.model,
            state=record.state.value,
            control=ArmView(variant=CONTROL, version=record.control.version, share=shares[CONTROL]),
            control_alias=record.control_alias,
            treatments=[
                ArmView(variant=a.variant, version=a.version, share=shares[a.variant])
                for a in record.treatments
            ],
            traffic=record.traffic,
            key_header=record.key_header,
            shadow=record.shadow,
            metrics=list(record.metrics),
            guardrails=list(record.guardrails),
            revision=record.revision,
            started_by=record.started_by,
            started_at=record.started_at,
            stopped_at=record.stopped_at,
            concluded_at=record.concluded_at,
            stop_reason=record.stop_reason,
            verdict=record.verdict,
            report=report,
            events=list(events),
        )


class OutcomeCache:
    """The outcomes of the last few experiments read, kept in step with the ledger.

    A week-long experiment has tens of thousands of predictions with
    feedback; reading and decoding them all took most of its report's time.
    Each read first asks the ledger how many live ones there are and the
    newest feedback's time (one indexed query), then reads only the feedback
    recorded since the cached newest. When the cached ones plus the new ones
    are not the ledger's count (rows expired by pruning, or feedback that
    committed out of order), everything is read again, so a read always
    equals a full read, in possibly another order. Thread-safe; holds at
    most ``size`` experiments (least recently read dropped first).
    """

    def __init__(self, store: ExperimentStore, size: int = 8) -> None:
        self.store = store
        self.size = size
        self._kept: OrderedDict[str, tuple[OutcomeMark, list[TimedOutcome]]] = OrderedDict()
        self._lock = threading.Lock()

    def outcomes(self, experiment_id: str) -> list[TimedOutcome]:
        """The experiment's live predictions with feedback (a new list each call)."""
        with self._lock:
            mark = self.store.outcome_mark(experiment_id)
            kept = self._kept.get(experiment_id)
            found: list[TimedOutcome] | None = None
            if kept is not None:
                before, cached = kept
                if before == mark:
                    found = cached
                elif before.newest is not None and mark.rows > before.rows:
                    new = self._read(experiment_id, after=before.newest, until=mark.newest)
                    if before.rows + len(new) == mark.rows:
                        found = cached + new
            if found is None:
                found = self._read(experiment_id, after=None, until=mark.newest)
                if len(found) != mark.rows:  # feedback recorded meanwhile: not a snapshot
                    mark = OutcomeMark(len(found), None)
            self._kept[experiment_id] = (mark, found)
            self._kept.move_to_end(experiment_id)
            while len(self._kept) > self.size:
                self._kept.popitem(last=False)
            return list(found)

    def _read(
        self, experiment_id: str, *, after: datetime | None, until: datetime | None
    ) -> list[TimedOutcome]:
        # Imported here: scipy adds half a second to every process that imports the registry.
        from modelreg.experiments.report import Outcome
        from modelreg.experiments.timeline import TimedOutcome

        return [
            TimedOutcome(o.variant, Outcome(o.prediction, o.label, o.value), o.at)
            for o in self.store.outcomes(experiment_id, after=after, until=until)
        ]


def _check_points(points: int) -> None:
    if not 1 <= points <= MAX_TIMELINE_POINTS:
        raise InvalidInputError(f"points must be 1 to {MAX_TIMELINE_POINTS}; got {points}")


def _metric(text: str) -> Metric:
    from modelreg.experiments.report import parse_metric

    return parse_metric(text)


def _evidence_line(record: ExperimentRecord, report: Report) -> str:
    """The comment a promotion request carries: which experiment, what it showed."""
    return f"A/B experiment {record.id}: {report.decision} ({report.reason})"[:1900]
