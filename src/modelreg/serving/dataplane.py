"""The model server's data plane, free of any transport: route → slot → batcher → predictions.

MLServer's habit (``mlserver/handlers/dataplane.py``): the request path is a
plain class, and each transport only translates. :class:`DataPlane` picks
the variant of a request (:class:`~modelreg.serving.router.Router`), finds
its slot, reads the body only once a model is ready to score it, parses it
against the model's schema, queues it in the slot's micro-batcher and
renders the predictions, recording metrics on the way. The REST app
(:mod:`modelreg.serving.app`) turns HTTP into an :class:`InferenceRequest`
and an :class:`InferenceResponse` back into HTTP; tests, benchmarks and a
later gRPC or ``/feedback`` path drive this class directly.

Errors come back as :mod:`modelreg.errors` classes, never as status codes;
the transport maps them (``status_for``), and the same mapping gives the
``code`` label of the requests metric.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from modelreg.errors import (
    AuthenticationError,
    ModelregError,
    NotFoundError,
    PermissionDeniedError,
)
from modelreg.serving import protocol
from modelreg.serving.loader import LoadedModel
from modelreg.serving.metrics import UNKNOWN_MODEL, ServingMetrics
from modelreg.serving.router import DEFAULT_VARIANT, DefaultRouter, Router
from modelreg.serving.slots import ModelSlot, Serving, SlotSet

log = logging.getLogger("modelreg.serving")

BodyReader = Callable[[int], Awaitable[bytes]]
"""Reads a request body of at most the given number of bytes; PayloadTooLargeError past it."""


@dataclass(frozen=True)
class InferenceRequest:
    """One scoring request as a transport hands it over.

    ``read_body`` is called at most once, and only when a model is ready to
    score (a server with nothing loaded answers before reading a byte).
    ``model`` None means the default (first configured) model.
    ``routing_key`` is the stable key a variant split hashes (e.g. a user id
    header); None falls back to ``request_id``.
    """

    read_body: BodyReader
    content_type: str | None
    request_id: str
    model: str | None = None
    routing_key: str | None = None


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


class DataPlane:
    """Scoring, readiness and reload of one server's slots, for any transport.

    ``status_for`` is the transport's status of an error class (the ``code``
    label of the requests metric; 200 for predictions). ``max_body_bytes``
    bounds every body read. ``reload_token`` None disables :meth:`reload`.
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
    ) -> None:
        self.slots = slots
        self.metrics = metrics
        self.router: Router = router or DefaultRouter()
        self.status_for = status_for
        self.max_body_bytes = max_body_bytes
        self._reload_token = reload_token

    # -- scoring -------------------------------------------------------------------

    async def infer(self, request: InferenceRequest) -> InferenceResponse:
        """Score one request; errors are returned in the answer, never raised.

        A failure inside the model (not bad input) is logged with its
        traceback and answered as a plain ModelregError naming the request id.
        """
        started = time.perf_counter()
        slot: ModelSlot | None = None
        serving: Serving | None = None
        variant = DEFAULT_VARIANT
        name = request.model or self.slots.default.name
        try:
            variant = self.router.route(name, request.routing_key or request.request_id)
            slot = self.slots.get(name, variant)
            serving = slot.serving()  # not ready: answered before reading a body
            body = await request.read_body(self.max_body_bytes)
            # No await between taking the current model and submitting to its batcher:
            # a swap in between would hand the request to a batcher that is draining.
            serving = slot.serving()
            scoring = protocol.parse_request(body, request.content_type, serving.model.schema)
            predictions = await serving.batcher.submit(scoring)
            answer = InferenceResponse(
                variant, serving.model, predictions=protocol.predictions_json(predictions)
            )
        except ModelregError as exc:
            answer = InferenceResponse(variant, serving.model if serving else None, error=exc)
        except Exception:
            # A model bug, not bad input: the trace goes to the log, never to the client.
            log.exception("scoring with %s failed (request %s)", name, request.request_id)
            error = ModelregError(
                f"the model failed to score; the server log has the details ({request.request_id})"
            )
            answer = InferenceResponse(variant, serving.model if serving else None, error=error)
        code = 200 if answer.error is None else self.status_for(answer.error)
        self.metrics.observe_request(
            slot.name if slot else UNKNOWN_MODEL,
            variant,
            code,
            time.perf_counter() - started,
            answer.error_code,
        )
        return answer

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
        """What every slot serves, when it last checked and what last went wrong."""
        return self.slots.versions()

    # -- reload --------------------------------------------------------------------

    async def reload(self, token: str | None) -> dict[str, Any]:
        """Check every slot now, retrying failed versions without waiting for their back-off.

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
        results = await self.slots.check_all(force=True)
        return {
            "results": {label: str(result) for label, result in results.items()},
            **self.versions(),
        }

    async def start(self) -> None:
        """Load every model, then start the watchers (see :meth:`SlotSet.start`)."""
        await self.slots.start()

    async def stop(self) -> None:
        """Stop the watchers and finish queued requests."""
        await self.slots.stop()
