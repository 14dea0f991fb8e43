"""The model server's data plane, free of any transport: route → slot → batcher → predictions.

MLServer's habit (``mlserver/handlers/dataplane.py``): the request path is a
plain class, and each transport only translates. :class:`DataPlane` picks
the variant of a request (:class:`~modelreg.serving.router.Router`), finds
its slot, reads the body only once a model is ready to score it, parses it
against the model's schema, queues it in the slot's micro-batcher and
renders the predictions, recording metrics on the way. In an experiment it
also tallies the request for its variant and logs its prediction
(:mod:`~modelreg.serving.recording`), mirrors it to a shadow treatment
(:mod:`~modelreg.serving.shadow`), and joins feedback to logged predictions. The REST app
(:mod:`modelreg.serving.app`) turns HTTP into an :class:`InferenceRequest`
and an :class:`InferenceResponse` back into HTTP; tests, benchmarks and a
later gRPC transport drive this class directly.

Errors come back as :mod:`modelreg.errors` classes, never as status codes;
the transport maps them (``status_for``), and the same mapping gives the
``code`` label of the requests metric.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from modelreg.errors import (
    AuthenticationError,
    ModelregError,
    NotFoundError,
    PermissionDeniedError,
)
from modelreg.experiments.definition import Feedback, FeedbackResult
from modelreg.serving import protocol
from modelreg.serving.group import GroupAnswer, WorkerGroup
from modelreg.serving.loader import LoadedModel
from modelreg.serving.metrics import NO_VERSION, UNKNOWN_MODEL, ServingMetrics
from modelreg.serving.protocol import InputSchema
from modelreg.serving.recording import ExperimentRecorder, first_output
from modelreg.serving.reporting import ReplicaReporter
from modelreg.serving.router import DEFAULT_DECISION, DefaultRouter, Router
from modelreg.serving.shadow import ShadowJob, ShadowQueue
from modelreg.serving.slots import ModelSlot, Serving, SlotSet

log = logging.getLogger("modelreg.serving")

BodyReader = Callable[[int], Awaitable[bytes]]
"""Reads a request body of at most the given number of bytes; PayloadTooLargeError past it."""


def _body_of(data: bytes) -> BodyReader:
    """A body reader over bytes already read (a mirrored request's copy)."""

    async def read(_limit: int) -> bytes:
        return data

    return read


@dataclass(frozen=True)
class InferenceRequest:
    """One scoring request as a transport hands it over.

    ``read_body`` is called at most once, and only when a model is ready to
    score (a server with nothing loaded answers before reading a byte).
    ``model`` None means the default (first configured) model. ``headers``
    are the request's headers, looked up case-insensitively or lower-case
    keys (an experiment reads its routing key header from them; without it
    the ``request_id`` is the key).
    """

    read_body: BodyReader
    content_type: str | None
    request_id: str
    model: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class InferenceResponse:
    """The data plane's answer: predictions (JSON bytes) or the error, and who answered.

    ``served`` is the version that answered, or would have (None when no
    model was resolved); ``variant`` the variant the request was routed to.
    """

    variant: str
    served: LoadedModel | None
    predictions: bytes | None = None
    error: ModelregError | None = None

    @property
    def error_code(self) -> str | None:
        """MLflow's ``error_code`` of the error, None for predictions."""
        return None if self.error is None else protocol.error_code_for(self.error)


LARGE_BODY_BYTES = 64 * 1024
"""Bodies larger than this (about 150 rows of 20 numbers) are parsed off the event loop."""


@dataclass(frozen=True)
class _Parsed:
    """A body parsed off the event loop, and the schema it was parsed against."""

    parsed: protocol.ScoringInput
    schema: InputSchema | None


@dataclass(frozen=True)
class _Scored:
    """What scoring one request produced, for the answer and the bookkeeping after it."""

    answer: InferenceResponse
    body: bytes
    prediction: float | str | None


class DataPlane:
    """Scoring, feedback, readiness and reload of one server's slots, for any transport.

    ``status_for`` is the transport's status of an error class (the ``code``
    label of the requests metric; 200 for predictions). ``max_body_bytes``
    bounds every body read. ``reload_token`` None disables :meth:`reload`.
    ``recorder`` (None: no experiment source) keeps experiment counts and the
    prediction log; ``shadow`` scores mirrored requests of shadow experiments.
    ``reporter`` (None: nobody to report to) reports the slots and reloads.
    ``group`` (None: this process serves alone) carries a forced reload to the
    other worker processes of the same server; ``replica`` names this one.
    """

    def __init__(
        self,
        slots: SlotSet,
        metrics: ServingMetrics,
        *,
        status_for: Callable[[ModelregError], int],
        max_body_bytes: int,
        reload_token: str | None = None,
        router: Router | None = None,
        recorder: ExperimentRecorder | None = None,
        reporter: ReplicaReporter | None = None,
        shadow_queue: int = 256,
        shadow_concurrency: int = 2,
        group: WorkerGroup | None = None,
        replica: str = "this process",
    ) -> None:
        self.slots = slots
        self.group = group
        self.replica = replica
        self._following: asyncio.Task[None] | None = None
        self.metrics = metrics
        self.router: Router = router or DefaultRouter()
        self.status_for = status_for
        self.max_body_bytes = max_body_bytes
        self.recorder = recorder
        self.reporter = reporter
        self._reporting: asyncio.Task[None] | None = None
        self.shadow = ShadowQueue(
            self._score_shadow,
            self._shadow_dropped,
            capacity=shadow_queue,
            concurrency=shadow_concurrency,
        )
        self._reload_token = reload_token
        self._flusher: asyncio.Task[None] | None = None

    # -- scoring -------------------------------------------------------------------

    async def infer(self, request: InferenceRequest) -> InferenceResponse:
        """Score one request; errors are returned in the answer, never raised.

        A failure inside the model (not bad input) is logged with its
        traceback and answered as a plain ModelregError naming the request id.
        """
        started = time.perf_counter()
        name = request.model or self.slots.default.name
        decision = DEFAULT_DECISION
        slot: ModelSlot | None = None
        try:
            decision = self.router.decide(name, request.headers, request.request_id)
            slot = self.slots.get(name, decision.variant)
        except ModelregError as exc:
            scored = _Scored(InferenceResponse(decision.variant, None, error=exc), b"", None)
        else:
            scored = await self._score(slot, decision.variant, request)
        answer = scored.answer
        seconds = time.perf_counter() - started
        model = slot.name if slot else UNKNOWN_MODEL
        version = str(answer.served.version) if answer.served else NO_VERSION
        code = 200 if answer.error is None else self.status_for(answer.error)
        self.metrics.observe_request(
            model, decision.variant, version, code, seconds, answer.error_code
        )
        if isinstance(scored.prediction, float):
            self.metrics.predictions.labels(model, decision.variant, version).observe(
                scored.prediction
            )
        route = decision.experiment
        if route is not None and self.recorder is not None:
            if decision.missing_key:
                self.metrics.missing_key.labels(model).inc()
            self.recorder.observe(
                experiment_id=route.id,
                model=model,
                variant=decision.variant,
                version=answer.served.version if answer.served else route.control.version,
                request_id=request.request_id,
                seconds=seconds,
                error=answer.error is not None,
                missing_key=decision.missing_key,
                prediction=scored.prediction,
            )
            if decision.shadow is not None and answer.error is None:
                self.shadow.offer(
                    ShadowJob(
                        model,
                        decision.shadow,
                        route,
                        scored.body,
                        request.content_type,
                        request.request_id,
                        decision.missing_key,
                    )
                )
        return answer

    async def _score(self, slot: ModelSlot, variant: str, request: InferenceRequest) -> _Scored:
        serving: Serving | None = None
        body = b""
        # Counted from picking the slot to queuing in it: an arm retired by an
        # experiment change in between waits for this request before closing.
        slot.inflight += 1
        try:
            serving = slot.serving()  # not ready: answered before reading a body
            body = await request.read_body(self.max_body_bytes)
            early = await self._parse_large(body, request.content_type, slot)
            # No await between taking the current model and submitting to its batcher:
            # a swap in between would hand the request to a batcher that is draining.
            serving = slot.serving()
            schema = serving.model.schema
            if early is not None and early.schema is schema:
                scoring = early.parsed
            else:
                scoring = protocol.parse_request(body, request.content_type, schema)
            predictions = await serving.batcher.submit(scoring)
            answer = InferenceResponse(
                variant, serving.model, predictions=protocol.predictions_json(predictions)
            )
            return _Scored(answer, body, first_output(predictions))
        except ModelregError as exc:
            answer = InferenceResponse(variant, serving.model if serving else None, error=exc)
        except Exception:
            # A model bug, not bad input: the trace goes to the log, never to the client.
            log.exception("scoring with %s failed (request %s)", slot.name, request.request_id)
            error = ModelregError(
                f"the model failed to score; the server log has the details ({request.request_id})"
            )
            answer = InferenceResponse(variant, serving.model if serving else None, error=error)
        finally:
            slot.inflight -= 1
        return _Scored(answer, body, None)

    async def _parse_large(
        self, body: bytes, content_type: str | None, slot: ModelSlot
    ) -> _Parsed | None:
        """Parse a body over :data:`LARGE_BODY_BYTES` in a thread; None for smaller ones.

        Parsing a 1,000-row body takes milliseconds, during which the event loop
        would answer nobody else; in a thread, small requests keep being
        served (the GIL is handed over every few milliseconds). The caller
        parses again if a reload changed the schema meanwhile.
        """
        if len(body) <= LARGE_BODY_BYTES:
            return None
        schema = slot.serving().model.schema
        parsed = await asyncio.to_thread(protocol.parse_request, body, content_type, schema)
        return _Parsed(parsed, schema)

    async def _score_shadow(self, job: ShadowJob) -> None:
        """Score a mirrored request on its treatment; counted, logged, never answered."""
        started = time.perf_counter()
        arm = next(a for a in job.route.treatments if a.variant == job.variant)
        try:
            slot = self.slots.get(job.model, job.variant)
        except ModelregError:
            return  # the experiment changed since the request was mirrored
        scored = await self._score(slot, job.variant, InferenceRequest(
            _body_of(job.body), job.content_type, job.request_id, job.model
        ))  # fmt: skip
        seconds = time.perf_counter() - started
        served = scored.answer.served
        version = served.version if served else arm.version
        ok = scored.answer.error is None
        self.metrics.shadow_requests.labels(
            job.model, job.variant, str(version), "ok" if ok else "error"
        ).inc()
        if isinstance(scored.prediction, float):
            self.metrics.predictions.labels(job.model, job.variant, str(version)).observe(
                scored.prediction
            )
        if self.recorder is not None:
            self.recorder.observe(
                experiment_id=job.route.id,
                model=job.model,
                variant=job.variant,
                version=version,
                request_id=job.request_id,
                seconds=seconds,
                error=not ok,
                missing_key=job.missing_key,
                prediction=scored.prediction,
            )

    def _shadow_dropped(self, job: ShadowJob) -> None:
        self.metrics.shadow_dropped.labels(job.model).inc()

    # -- feedback ------------------------------------------------------------------

    async def feedback(self, feedback: Feedback) -> FeedbackResult:
        """Join ``feedback`` to its logged prediction (pending records are written first).

        NotFoundError when this server has no experiment source (or the
        request id is unknown), ExpiredError past the log's retention,
        ConflictError for an outcome different from the one recorded.
        """
        if self.recorder is None:
            raise NotFoundError(
                "this model server runs without an experiment source, so it keeps no "
                "prediction log to join feedback to; send feedback to a server started "
                "with `modelreg serve` against the registry"
            )
        return await self.recorder.feedback(feedback)

    # -- health --------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Whether every slot has a version loaded (possibly a stale one)."""
        return self.slots.ready

    def readiness(self) -> dict[str, Any]:
        """Ready and degraded flags of the server and of each slot, with reasons."""
        return self.slots.readiness()

    def model_readiness(self, name: str) -> dict[str, Any]:
        """Readiness of the default variant of ``name``; NotFoundError when not served here."""
        slot = self.slots.get(name)
        return {"name": name, **self.slots.readiness()["models"][slot.label]}

    def versions(self) -> dict[str, Any]:
        """What every slot of this worker serves, when it last checked and what last went wrong.

        ``replica`` names the worker process that answers (with several workers
        each has its own slots, and a connection stays with one of them).
        """
        return {"replica": self.replica, **self.slots.versions()}

    # -- reload --------------------------------------------------------------------

    async def reload(self, token: str | None) -> dict[str, Any]:
        """Check every slot of every worker now, retrying failed versions without back-off.

        The answer has this worker's ``results`` by slot label, ``workers``
        (replica id → results, every worker of the group that answered, this
        one included) and ``workers_pending`` (replica ids of workers that did
        not answer within :data:`~modelreg.serving.group.ANSWER_SECONDS`),
        then what :meth:`versions` shows.
        ``token`` is what the caller presented. NotFoundError when no reload
        token is configured (the operation is disabled), AuthenticationError
        without a token, PermissionDeniedError for a wrong one.
        """
        configured = self._reload_token
        if configured is None:
            raise NotFoundError(
                "POST /-/reload is disabled; set reload_token in the serving config "
                "or MODELREG_RELOAD_TOKEN to enable it"
            )
        if not token:
            raise AuthenticationError("send Authorization: Bearer <reload token>")
        if not hmac.compare_digest(token.encode(), configured.encode()):
            raise PermissionDeniedError(
                "the caller", "reload the model server", "the reload token is not valid"
            )
        generation = self.group.ask() if self.group is not None else 0
        results = await self._check_all()
        if self.group is None:
            answer = GroupAnswer({self.replica: results})
        else:
            self.group.answer(generation, results)
            answer = await self.group.gather(generation)
        return {
            "results": results,
            "workers": answer.answered,
            "workers_pending": answer.pending,
            **self.versions(),
        }

    async def _check_all(self) -> dict[str, str]:
        """Check every slot now (force); the results by slot label."""
        results = await self.slots.check_all(force=True)
        return {label: str(result) for label, result in results.items()}

    async def start(self) -> None:
        """Load every model, then start the watchers and the experiment flusher."""
        await self.slots.start()
        if self.recorder is not None:
            self._flusher = asyncio.create_task(self.recorder.run())
        if self.reporter is not None:
            self._reporting = asyncio.create_task(self.reporter.run(self.slots.served))
        if self.group is not None:
            self.group.join()
            self._following = asyncio.create_task(self.group.follow(self._check_all))

    async def stop(self) -> None:
        """Stop the watchers, finish queued requests and flush experiment counts once more."""
        if self._following is not None and self.group is not None:
            self._following.cancel()
            await asyncio.gather(self._following, return_exceptions=True)
            self._following = None
            self.group.leave()
        await self.shadow.stop()
        await self.slots.stop()
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
            self._flusher = None
        if self.recorder is not None:
            await self.recorder.flush()
        if self._reporting is not None:
            self._reporting.cancel()
            await asyncio.gather(self._reporting, return_exceptions=True)
            self._reporting = None
        if self.reporter is not None:
            await self.reporter.report(())  # gone: no slots, and the last reloads
