"""A/B experiments in the ledger: their rows, per-replica counts, the prediction log, feedback.

An experiment's row is its current state; every change to it is made in the
same transaction as the ledger event that records the change (the caller
passes the :class:`~modelreg.ledger.store.LedgerTransaction` it appends in),
so the row and the history never disagree.

Serving replicas each replace their own cumulative counts row per variant
(keyed by replica), so a replica that flushes twice counts once and totals
are sums over replicas. The prediction log is bounded: rows past the
retention or beyond the row cap become tombstones (``expired``: feedback is
answered 410), which are deleted after twice the retention.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, cast

from sqlalchemy import CursorResult, Text, Update, delete, func, select, type_coerce, update
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql.elements import ColumnElement

from modelreg.errors import ConflictError, ExpiredError, NotFoundError, shorten
from modelreg.experiments.definition import (
    LATENCY_BOUNDS_S,
    Arm,
    CountsSample,
    ExperimentRoute,
    ExperimentState,
    Feedback,
    FeedbackResult,
    PredictionRecord,
    VariantCounts,
    epoch_minute,
)
from modelreg.ledger.rows import dialect_insert, insert_ignoring_duplicates, utc
from modelreg.ledger.store import Ledger, LedgerTransaction
from modelreg.ledger.tables import (
    CountsSampleRow,
    ExperimentCountsRow,
    ExperimentRow,
    PredictionRow,
)

_ACTIVE = (ExperimentState.RUNNING.value, ExperimentState.STOPPED.value)


@dataclass(frozen=True)
class Segment:
    """A stretch of an experiment at one traffic share, from the requests counted before it."""

    traffic: float
    from_requests: int


@dataclass(frozen=True)
class ExperimentRecord(ExperimentRoute):
    """One experiment as the ledger keeps it: its route plus who, when, what and the verdict."""

    metrics: tuple[str, ...]
    guardrails: tuple[str, ...]
    started_by: str
    started_at: datetime
    stopped_at: datetime | None = None
    concluded_at: datetime | None = None
    stop_reason: str = ""
    verdict: dict[str, Any] | None = None
    segments: tuple[Segment, ...] = ()

    @property
    def route(self) -> ExperimentRoute:
        """Only what serving needs to route this experiment's requests."""
        return ExperimentRoute(**{f.name: getattr(self, f.name) for f in fields(ExperimentRoute)})

    def shares(self) -> dict[str, float]:
        """Each variant's share of traffic now (control gets the rest; none in shadow mode)."""
        return self._split_at(0.0 if self.shadow else self.split.traffic)

    def expected_shares(self, total_requests: int) -> dict[str, float]:
        """Each variant's expected share of the ``total_requests`` counted so far.

        Ramps change the split mid-experiment, so the expectation is the mix
        of each segment's split weighted by the requests counted during it.
        In shadow mode every variant sees every request (share 1 each).
        """
        if self.shadow:
            return {arm.variant: 1.0 for arm in self.arms}
        segments = self.segments or (Segment(self.traffic, 0),)
        weights: list[tuple[float, int]] = []
        for i, segment in enumerate(segments):
            end = segments[i + 1].from_requests if i + 1 < len(segments) else total_requests
            weights.append((segment.traffic, max(0, end - segment.from_requests)))
        counted = sum(n for _, n in weights)
        if counted == 0:
            return self.shares()
        return self._split_at(sum(traffic * n for traffic, n in weights) / counted)

    def _split_at(self, treated: float) -> dict[str, float]:
        shares = {arm.variant: float(treated) for arm in self.treatments}
        return {self.control.variant: 1 - sum(shares.values()), **shares}


class OutcomeMark(NamedTuple):
    """How many live predictions of an experiment have feedback, and the newest one's time."""

    rows: int
    newest: datetime | None


@dataclass(frozen=True)
class CountsTotal(VariantCounts):
    """One variant's counts summed over the ``replicas`` that reported them."""

    replicas: int


class LoggedOutcome(NamedTuple):
    """A logged prediction with the feedback joined to it; ``at`` is the prediction's time."""

    variant: str
    prediction: float | str | None
    label: float | str | None
    value: float | None
    at: datetime


# Samples older than this are thinned to the last one of each THIN_MINUTES window.
THIN_AFTER = timedelta(days=1)
THIN_MINUTES = 15


def _record(row: ExperimentRow) -> ExperimentRecord:
    return ExperimentRecord(
        id=row.id,
        model=row.model,
        state=ExperimentState(row.state),
        control=Arm("control", row.control_version),
        control_alias=row.control_alias,
        treatments=tuple(Arm(t["variant"], int(t["version"])) for t in row.treatments),
        traffic=row.traffic,
        key_header=row.key_header,
        shadow=row.shadow,
        metrics=tuple(row.metrics),
        guardrails=tuple(row.guardrails),
        revision=row.revision,
        started_by=row.started_by,
        started_at=utc(row.started_at),
        stopped_at=utc(row.stopped_at) if row.stopped_at else None,
        concluded_at=utc(row.concluded_at) if row.concluded_at else None,
        stop_reason=row.stop_reason,
        verdict=row.verdict,
        segments=tuple(
            Segment(float(s["traffic"]), int(s["from_requests"])) for s in row.segments or []
        ),
    )


def _write(row: ExperimentRow, record: ExperimentRecord) -> None:
    row.model = record.model
    row.state = record.state.value
    row.control_version = record.control.version
    row.control_alias = record.control_alias
    row.treatments = [{"variant": a.variant, "version": a.version} for a in record.treatments]
    row.traffic = record.traffic
    row.key_header = record.key_header
    row.shadow = record.shadow
    row.metrics = list(record.metrics)
    row.guardrails = list(record.guardrails)
    row.revision = record.revision
    row.started_by = record.started_by
    row.started_at = record.started_at
    row.stopped_at = record.stopped_at
    row.concluded_at = record.concluded_at
    row.stop_reason = record.stop_reason
    row.verdict = record.verdict
    row.segments = [
        {"traffic": s.traffic, "from_requests": s.from_requests} for s in record.segments
    ]


def _latest_active(session: Session, model: str) -> ExperimentRow | None:
    query = (
        select(ExperimentRow)
        .where(ExperimentRow.model == model, ExperimentRow.state.in_(_ACTIVE))
        .order_by(ExperimentRow.started_at.desc())
        .limit(1)
    )
    return session.scalars(query).first()


def _sum_latency(rows: Sequence[Sequence[int]]) -> tuple[int, ...]:
    width = len(LATENCY_BOUNDS_S)
    totals = [0] * width
    for latency in rows:
        for i, count in enumerate(list(latency)[:width]):
            totals[i] += int(count)
    return tuple(totals)


class ExperimentStore:
    """Experiments, their counts, the prediction log and feedback, in the ledger database."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    # -- experiments (written inside a model's locked transaction) ---------------------

    def active_in(self, txn: LedgerTransaction, model: str) -> ExperimentRecord | None:
        """The model's latest running or stopped experiment, read inside ``txn``."""
        row = _latest_active(txn.session, model)
        return _record(row) if row is not None else None

    def save(self, txn: LedgerTransaction, record: ExperimentRecord) -> ExperimentRecord:
        """Insert or update ``record`` in ``txn`` (commits with the event appended there)."""
        row = txn.session.get(ExperimentRow, record.id)
        if row is None:
            row = ExperimentRow(id=record.id)
            txn.session.add(row)
        _write(row, record)
        txn.session.flush()
        return record

    # -- reads ---------------------------------------------------------------------------

    def active(self, model: str) -> ExperimentRecord | None:
        """The model's latest running or stopped experiment (what serving routes by)."""
        with self.ledger.session() as session:
            row = _latest_active(session, model)
            return _record(row) if row is not None else None

    def get(self, experiment_id: str) -> ExperimentRecord | None:
        """One experiment by id."""
        with self.ledger.session() as session:
            row = session.get(ExperimentRow, experiment_id)
            return _record(row) if row is not None else None

    def latest(self, model: str) -> ExperimentRecord | None:
        """The model's most recently started experiment, whatever its state."""
        with self.ledger.session() as session:
            query = (
                select(ExperimentRow)
                .where(ExperimentRow.model == model)
                .order_by(ExperimentRow.started_at.desc())
                .limit(1)
            )
            row = session.scalars(query).first()
            return _record(row) if row is not None else None

    def listed(
        self, *, model: str | None = None, state: ExperimentState | None = None, limit: int = 200
    ) -> list[ExperimentRecord]:
        """Experiments, newest first, optionally of one model or in one state."""
        query = select(ExperimentRow).order_by(ExperimentRow.started_at.desc()).limit(limit)
        if model is not None:
            query = query.where(ExperimentRow.model == model)
        if state is not None:
            query = query.where(ExperimentRow.state == state.value)
        with self.ledger.session() as session:
            return [_record(row) for row in session.scalars(query)]

    # -- counts --------------------------------------------------------------------------

    def put_counts(
        self, replica: str, counts: Sequence[VariantCounts], *, now: datetime | None = None
    ) -> None:
        """Replace ``replica``'s cumulative counts, one row per experiment and variant.

        They are also the sample of the minute of ``now`` (default: the
        current time; an earlier one back-fills the time series). A replica
        counts per version, so a variant whose version changed mid-experiment
        (control following a moved alias) comes twice: its counts are added
        up under the newer version (the later one in ``counts``).
        """
        if not counts:
            return
        now = now or datetime.now(UTC)
        counts = _per_variant(counts)
        rows = [
            {
                "experiment_id": c.experiment_id,
                "replica": replica,
                "variant": c.variant,
                "version": c.version,
                "requests": c.requests,
                "errors": c.errors,
                "missing_key": c.missing_key,
                "latency": list(c.latency),
                "predictions": c.predictions,
                "prediction_sum": c.prediction_sum,
                "prediction_sumsq": c.prediction_sumsq,
                "updated_at": now,
            }
            for c in counts
        ]
        minute = epoch_minute(now)
        samples = [
            {
                "experiment_id": c.experiment_id,
                "replica": replica,
                "variant": c.variant,
                "minute": minute,
                "version": c.version,
                "requests": c.requests,
                "errors": c.errors,
                "latency": list(c.latency),
            }
            for c in counts
        ]
        with self.ledger.session(write=True) as session:
            _upsert(session, ExperimentCountsRow, ("experiment_id", "replica", "variant"), rows)
            keys = ("experiment_id", "replica", "variant", "minute")
            _upsert(session, CountsSampleRow, keys, samples)

    def samples(self, experiment_id: str, as_of: Sequence[int] | None = None) -> list[CountsSample]:
        """The experiment's counts samples, oldest first (see :class:`CountsSampleRow`).

        With ``as_of`` (epoch minutes), only each replica's and variant's
        latest sample at or before each of those minutes: all a timeline
        needs, the samples being cumulative. They are found from the keys
        alone, then read whole, so a week-long experiment's thousands of
        samples are not all decoded.
        """
        sample = CountsSampleRow
        mine = sample.experiment_id == experiment_id
        # Plain rows, not ORM objects: a week-long experiment has thousands of samples.
        columns = (
            sample.replica,
            sample.variant,
            sample.minute,
            sample.requests,
            sample.errors,
            sample.latency,
        )
        with self.ledger.session() as session:
            query = select(*columns).where(mine).order_by(sample.minute)
            if as_of is not None:
                keys = select(sample.replica, sample.variant, sample.minute).where(mine)
                wanted = _latest_as_of(session.execute(keys), as_of)
                minutes = sorted({minute for _, _, minute in wanted})
                query = query.where(sample.minute.in_(minutes))
            rows = [
                CountsSample(
                    replica,
                    variant,
                    minute,
                    requests,
                    errors,
                    _sum_latency([latency]),  # the bucket count of today's bounds
                )
                for replica, variant, minute, requests, errors, latency in session.execute(query)
            ]
        if as_of is None:
            return rows
        return [row for row in rows if (row.replica, row.variant, row.minute) in wanted]

    def totals(self, experiment_id: str) -> list[CountsTotal]:
        """Each variant's counts summed over every replica that reported them."""
        query = select(ExperimentCountsRow).where(
            ExperimentCountsRow.experiment_id == experiment_id
        )
        grouped: dict[str, list[ExperimentCountsRow]] = {}
        with self.ledger.session() as session:
            for row in session.scalars(query):
                grouped.setdefault(row.variant, []).append(row)
        return [
            CountsTotal(
                experiment_id=experiment_id,
                variant=variant,
                version=rows[0].version,
                requests=sum(r.requests for r in rows),
                errors=sum(r.errors for r in rows),
                missing_key=sum(r.missing_key for r in rows),
                latency=_sum_latency([r.latency for r in rows]),
                predictions=sum(r.predictions for r in rows),
                prediction_sum=sum(r.prediction_sum for r in rows),
                prediction_sumsq=sum(r.prediction_sumsq for r in rows),
                replicas=len(rows),
            )
            for variant, rows in grouped.items()
        ]

    # -- the prediction log and feedback -------------------------------------------------

    def log_predictions(self, records: Sequence[PredictionRecord]) -> None:
        """Append predictions; one already logged (same request, experiment, variant) is skipped."""
        if not records:
            return
        rows = [
            {
                "request_id": r.request_id,
                "model": r.model,
                "experiment_id": r.experiment_id,
                "variant": r.variant,
                "version": r.version,
                "prediction": r.prediction,
                "at": r.at,
                "expired": False,
            }
            for r in records
        ]
        with self.ledger.session(write=True) as session:
            session.execute(insert_ignoring_duplicates(session, PredictionRow), rows)

    def record_feedback(self, feedback: Feedback) -> FeedbackResult:
        """Join ``feedback`` to every logged prediction of its request.

        NotFoundError when no prediction of the request was logged,
        ExpiredError when they are past retention, ConflictError when a
        different outcome was recorded before; an identical repeat changes
        nothing and is a DUPLICATE.
        """
        shown = shorten(feedback.request_id, 80)
        with self.ledger.session(write=True) as session:
            rows = list(
                session.scalars(
                    select(PredictionRow).where(PredictionRow.request_id == feedback.request_id)
                )
            )
            if not rows:
                raise NotFoundError(
                    f"no prediction with request id {shown!r} was logged; send the X-Request-ID "
                    "the prediction's answer carried (predictions outside experiments, or not "
                    "sampled into the log, take no feedback)"
                )
            live = [row for row in rows if not row.expired]
            if not live:
                raise ExpiredError(
                    f"the prediction of request {shown!r} is past the prediction log's "
                    "retention; its feedback can no longer be joined"
                )
            recorded = [row for row in live if row.feedback_at is not None]
            if recorded:
                first = recorded[0]
                if _same(first.label, feedback.label) and _same(first.value, feedback.value):
                    return FeedbackResult.DUPLICATE
                raise ConflictError(
                    f"request {shown!r} already has feedback (label {first.label!r}, value "
                    f"{first.value!r}); feedback is recorded once"
                )
            now = datetime.now(UTC)
            for row in live:
                row.label = feedback.label
                row.value = feedback.value
                row.feedback_at = now
            return FeedbackResult.RECORDED

    def outcome_mark(self, experiment_id: str) -> OutcomeMark:
        """How many live predictions of the experiment have feedback, and the newest feedback."""
        query = select(func.count(), func.max(PredictionRow.feedback_at)).where(
            *_with_feedback(experiment_id)
        )
        with self.ledger.session() as session:
            count, newest = session.execute(query).one()
        return OutcomeMark(int(count), utc(newest) if newest is not None else None)

    def outcomes(
        self,
        experiment_id: str,
        *,
        after: datetime | None = None,
        until: datetime | None = None,
    ) -> list[LoggedOutcome]:
        """The experiment's live predictions with feedback joined, in the order they were logged.

        ``after`` and ``until`` (aware UTC) narrow them to the feedback
        recorded in (``after``, ``until``].
        """
        # The JSON columns as their text, decoded by _json_value: SQLAlchemy's JSON
        # processing was most of the cost of reading an experiment's tens of thousands.
        query = (
            select(
                PredictionRow.variant,
                type_coerce(PredictionRow.prediction, Text),
                type_coerce(PredictionRow.label, Text),
                PredictionRow.value,
                PredictionRow.at,
            )
            .where(*_with_feedback(experiment_id))
            .order_by(PredictionRow.id)
        )
        if after is not None:
            query = query.where(PredictionRow.feedback_at > after)
        if until is not None:
            query = query.where(PredictionRow.feedback_at <= until)
        with self.ledger.session() as session:
            return [
                LoggedOutcome(variant, _json_value(prediction), _json_value(label), value, utc(at))
                for variant, prediction, label, value, at in session.execute(query)
            ]

    def prune(self, *, retention: timedelta, max_rows: int, now: datetime | None = None) -> int:
        """Expire predictions past ``retention`` or beyond the newest ``max_rows``; thin samples.

        Expired rows stay as tombstones (feedback for them is answered 410)
        until twice the retention has passed. Counts samples older than
        :data:`THIN_AFTER` keep only the last of each :data:`THIN_MINUTES`
        window per replica and variant (exact totals at coarser times).
        Returns the prediction rows expired now.
        """
        now = now or datetime.now(UTC)
        with self.ledger.session(write=True) as session:
            _thin_samples(session, epoch_minute(now - THIN_AFTER))
            expired = _changed(
                session,
                update(PredictionRow).where(
                    PredictionRow.expired.is_(False), PredictionRow.at < now - retention
                ),
            )
            live = session.scalar(
                select(func.count()).select_from(PredictionRow).where(~PredictionRow.expired)
            )
            if live and live > max_rows:
                cutoff = session.scalar(
                    select(PredictionRow.id)
                    .where(~PredictionRow.expired)
                    .order_by(PredictionRow.id.desc())
                    .offset(max_rows)
                    .limit(1)
                )
                if cutoff is not None:
                    expired += _changed(
                        session,
                        update(PredictionRow).where(
                            PredictionRow.expired.is_(False), PredictionRow.id <= cutoff
                        ),
                    )
            session.execute(
                delete(PredictionRow).where(
                    PredictionRow.expired.is_(True), PredictionRow.at < now - 2 * retention
                )
            )
            return expired


def _per_variant(counts: Sequence[VariantCounts]) -> list[VariantCounts]:
    """``counts`` with one entry per experiment and variant: sums, the last entry's version."""
    merged: dict[tuple[str, str], VariantCounts] = {}
    for c in counts:
        key = (c.experiment_id, c.variant)
        seen = merged.get(key)
        if seen is None:
            merged[key] = c
            continue
        merged[key] = VariantCounts(
            c.experiment_id,
            c.variant,
            c.version,
            seen.requests + c.requests,
            seen.errors + c.errors,
            seen.missing_key + c.missing_key,
            _sum_latency([seen.latency, c.latency]),
            seen.predictions + c.predictions,
            seen.prediction_sum + c.prediction_sum,
            seen.prediction_sumsq + c.prediction_sumsq,
        )
    return list(merged.values())


def _with_feedback(experiment_id: str) -> tuple[ColumnElement[bool], ...]:
    """The experiment's live (not expired) predictions that have feedback."""
    return (
        PredictionRow.experiment_id == experiment_id,
        PredictionRow.feedback_at.is_not(None),
        PredictionRow.expired.is_(False),
    )


def _latest_as_of(
    keys: Iterable[tuple[str, str, int]], as_of: Sequence[int]
) -> set[tuple[str, str, int]]:
    """Of samples' ``(replica, variant, minute)`` keys, each series' latest at or before each."""
    series: dict[tuple[str, str], list[int]] = {}
    for replica, variant, minute in keys:
        series.setdefault((replica, variant), []).append(minute)
    wanted = set()
    for (replica, variant), minutes in series.items():
        minutes.sort()
        for boundary in as_of:
            at = bisect.bisect_right(minutes, boundary)
            if at:
                wanted.add((replica, variant, minutes[at - 1]))
    return wanted


def _json_value(text: str | None) -> Any:
    """A JSON column's text decoded: numbers the fast way, anything else by ``json``."""
    if text is None:
        return None
    try:
        return float(text)  # what predictions and labels mostly are
    except ValueError:
        return json.loads(text)


def _upsert(
    session: Session, table: type[Any], keys: tuple[str, ...], rows: list[dict[str, Any]]
) -> None:
    """Insert ``rows``, replacing the non-key columns of rows whose ``keys`` exist."""
    insert = dialect_insert(session, table)
    changed = {name: getattr(insert.excluded, name) for name in rows[0] if name not in keys}
    session.execute(insert.on_conflict_do_update(index_elements=keys, set_=changed), rows)


def _thin_samples(session: Session, before_minute: int) -> None:
    """Delete samples before ``before_minute`` that a later sample of their window supersedes."""
    later = aliased(CountsSampleRow)
    sample = CountsSampleRow
    superseded = (
        select(later.minute)
        .where(
            later.experiment_id == sample.experiment_id,
            later.replica == sample.replica,
            later.variant == sample.variant,
            later.minute > sample.minute,
            later.minute // THIN_MINUTES == sample.minute // THIN_MINUTES,
        )
        .exists()
    )
    session.execute(delete(sample).where(sample.minute < before_minute, superseded))


def _same(recorded: Any, given: Any) -> bool:
    """Whether two outcomes are one: numbers and numeric strings compare as numbers."""
    if recorded is None or given is None:
        return recorded is given
    try:
        return float(recorded) == float(given)
    except (TypeError, ValueError):
        return str(recorded) == str(given)


def _changed(session: Session, expire: Update) -> int:
    """Turn the rows ``expire`` selects into tombstones; how many it changed."""
    values = expire.values(expired=True, prediction=None, label=None, value=None)
    return int(cast(CursorResult[Any], session.execute(values)).rowcount or 0)


def with_changes(record: ExperimentRecord, **changes: Any) -> ExperimentRecord:
    """``record`` with ``changes`` and its revision advanced (what serving watches)."""
    return replace(record, revision=record.revision + 1, **changes)
