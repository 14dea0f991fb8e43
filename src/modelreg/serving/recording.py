"""Per-variant experiment counts and the prediction log of one replica, flushed to the ledger.

Every request an experiment counts adds to an in-memory tally per
``(experiment id, variant, version)``: requests, errors, requests without
the routing header, latency in :data:`~modelreg.experiments.definition.LATENCY_BOUNDS_S`
buckets, and the count, sum and sum of squares of numeric predictions. A
sampled share of requests also leaves a
:class:`~modelreg.experiments.definition.PredictionRecord` in a bounded
buffer, so feedback can later join the prediction it follows.

:meth:`ExperimentRecorder.run` writes both every ``flush_interval`` seconds,
one call of each per round (a bounded write rate however busy the replica
is), in a worker thread. Counts are cumulative since the process started and
replace the replica's previous row, so a failed round loses nothing: the next
one writes the newer totals. Records that failed to be written go back into
the buffer (dropped and counted only if it is full).
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import math
import random
import socket
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from modelreg.errors import NotFoundError
from modelreg.experiments.definition import (
    LATENCY_BOUNDS_S,
    Feedback,
    FeedbackResult,
    PredictionRecord,
    VariantCounts,
)
from modelreg.serving.metrics import ServingMetrics
from modelreg.serving.source import ExperimentSource

log = logging.getLogger("modelreg.serving")


def replica_id() -> str:
    """The name of this server process in the ledger's counts: ``<hostname>/<random uuid>``."""
    return f"{socket.gethostname()}/{uuid.uuid4()}"


def first_output(predictions: Any) -> float | str | None:
    """The first output of the first row: a finite number, a label, or None.

    Handles what pyfunc models return: numpy arrays, DataFrames, Series and
    lists (nested or not).
    """
    value: Any = predictions
    for _ in range(4):  # rows, then columns; deeper nesting is not a single output
        if hasattr(value, "iloc"):  # DataFrame or Series
            if len(value) == 0:
                return None
            value = value.iloc[0]
        elif isinstance(value, list | tuple) or getattr(value, "ndim", 0) > 0:  # numpy arrays
            if len(value) == 0:
                return None
            value = value[0]
        else:
            break
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()  # numpy scalars
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        return value
    return None


_FEEDBACK_RETRY_CAP = 3.0
"""Seconds, at most, that feedback for an unknown request id waits for other workers' flush."""


@dataclass
class _Tally:
    requests: int = 0
    errors: int = 0
    missing_key: int = 0
    latency: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BOUNDS_S))
    predictions: int = 0
    prediction_sum: float = 0.0
    prediction_sumsq: float = 0.0


class ExperimentRecorder:
    """Tallies experiment requests and buffers prediction records; flushes both to ``experiments``.

    ``flush_interval`` is in seconds; ``sample_rate`` (0 to 1) is the share
    of counted requests whose prediction is logged; ``buffer`` bounds the
    records held between flushes.
    """

    def __init__(
        self,
        experiments: ExperimentSource,
        metrics: ServingMetrics,
        *,
        replica: str,
        flush_interval: float = 2.0,
        sample_rate: float = 1.0,
        buffer: int = 10_000,
    ) -> None:
        self.experiments = experiments
        self.metrics = metrics
        self.replica = replica
        self.flush_interval = flush_interval
        self.sample_rate = sample_rate
        self._tallies: dict[tuple[str, str, int], _Tally] = {}
        self._records: deque[PredictionRecord] = deque()
        self._buffer = buffer
        self._changed = False
        self._random = random.Random()  # noqa: S311 - sampling, not security
        self._write_lock = asyncio.Lock()

    # -- the request path (no I/O, no awaits) --------------------------------------------

    def observe(
        self,
        *,
        experiment_id: str,
        model: str,
        variant: str,
        version: int,
        request_id: str,
        seconds: float,
        error: bool,
        missing_key: bool,
        prediction: float | str | None,
    ) -> None:
        """Count one request of ``variant`` (at ``version``) and maybe log its prediction."""
        tally = self._tallies.get((experiment_id, variant, version))
        if tally is None:
            tally = self._tallies[(experiment_id, variant, version)] = _Tally()
        tally.requests += 1
        tally.errors += error
        tally.missing_key += missing_key
        tally.latency[bisect.bisect_left(LATENCY_BOUNDS_S, seconds)] += 1
        if isinstance(prediction, float):
            tally.predictions += 1
            tally.prediction_sum += prediction
            tally.prediction_sumsq += prediction * prediction
        self._changed = True
        if error or (self.sample_rate < 1 and self._random.random() >= self.sample_rate):
            return
        if len(self._records) >= self._buffer:
            self.metrics.predictions_dropped.inc()
            return
        self._records.append(
            PredictionRecord(
                request_id, model, experiment_id, variant, version, prediction, datetime.now(UTC)
            )
        )

    def counts(self) -> list[VariantCounts]:
        """A snapshot of every tally, cumulative since this process started."""
        return [
            VariantCounts(
                experiment_id,
                variant,
                version,
                tally.requests,
                tally.errors,
                tally.missing_key,
                tuple(tally.latency),
                tally.predictions,
                tally.prediction_sum,
                tally.prediction_sumsq,
            )
            for (experiment_id, variant, version), tally in self._tallies.items()
        ]

    @property
    def pending(self) -> int:
        """Prediction records waiting to be written."""
        return len(self._records)

    # -- writing ---------------------------------------------------------------------

    async def flush(self) -> bool:
        """Write the counts (when they changed) and the buffered records; True when both worked.

        Failures are logged and counted; what failed is written next round
        (also when the flush is cancelled, e.g. by shutdown, mid-write).
        """
        async with self._write_lock:
            ok = True
            if self._changed:
                self._changed = False
                try:
                    await asyncio.to_thread(
                        self.experiments.record_variant_counts, self.replica, self.counts()
                    )
                except BaseException as exc:
                    self._changed = True
                    if not isinstance(exc, Exception):
                        raise
                    ok = False
                    self._failed("counts", exc)
            records = self._take(lambda _record: True)
            if records:
                try:
                    await asyncio.to_thread(self.experiments.log_predictions, records)
                except BaseException as exc:
                    self._put_back(records)
                    if not isinstance(exc, Exception):
                        raise
                    ok = False
                    self._failed("predictions", exc)
            return ok

    async def feedback(self, feedback: Feedback) -> FeedbackResult:
        """Write the prediction records of ``feedback.request_id`` first, then the feedback.

        A request id this process never logged is looked up once more after
        1.5 flush intervals (at most 3 s): behind one address several workers (or replicas)
        keep their own buffers, and another one may not have written it yet.
        Errors are those of :meth:`ExperimentSource.record_feedback` (and
        BackendError when the pending records cannot be written).
        """
        async with self._write_lock:
            records = self._take(lambda record: record.request_id == feedback.request_id)
            if records:
                try:
                    await asyncio.to_thread(self.experiments.log_predictions, records)
                except BaseException:
                    self._put_back(records)
                    raise
        try:
            return await asyncio.to_thread(self.experiments.record_feedback, feedback)
        except NotFoundError:
            if records:
                raise
            # The prediction may sit in another worker's or replica's buffer (several
            # processes behind one address): they write theirs every flush_interval.
            await asyncio.sleep(min(self.flush_interval * 1.5, _FEEDBACK_RETRY_CAP))
            return await asyncio.to_thread(self.experiments.record_feedback, feedback)

    async def run(self) -> None:
        """Flush every ``flush_interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(self.flush_interval)
            await self.flush()

    def _take(self, wanted: Any) -> list[PredictionRecord]:
        taken = [record for record in self._records if wanted(record)]
        if len(taken) == len(self._records):
            self._records.clear()
        elif taken:
            self._records = deque(record for record in self._records if not wanted(record))
        return taken

    def _put_back(self, records: Sequence[PredictionRecord]) -> None:
        room = self._buffer - len(self._records)
        kept = list(records[:room]) if room > 0 else []
        if len(kept) < len(records):
            self.metrics.predictions_dropped.inc(len(records) - len(kept))
        self._records.extendleft(reversed(kept))

    def _failed(self, what: str, error: BaseException) -> None:
        self.metrics.flush_failures.labels(what).inc()
        message = getattr(error, "message", None) or str(error)
        log.warning("writing experiment %s failed (retried next round): %s", what, message)
