"""App factory of the model server: MLflow-compatible scoring over registry-resolved slots.

Routes and their statuses:

=============================  ===========================================================
``POST /invocations``          score with the first configured model; 200, or 400 bad
                               input, 413 body over ``max_body_bytes``, 415 media type,
                               503 while no version is loaded
``POST /models/{n}/invocations``  the same for model ``n``; 404 when it is not served here
``GET /ping``, ``/health``     200 when every model has a version loaded, else 503
``GET /v2/health/live``        200 while the process runs
``GET /v2/health/ready``       200 when every model has a version loaded, even a stale one
                               (the body says ``"degraded": true`` and why); 503 otherwise
``GET /v2/models/{n}/ready``   the same for one model; 404 when it is not served here
``GET /version``               what each slot serves, last check, last error, degraded
``GET /metrics``               Prometheus text format
``POST /feedback``             join ``{"request_id", "label" and/or "value"}`` to the
                               logged prediction of a request: 200 ``recorded`` or
                               ``duplicate``, 400 bad body, 404 unknown id (or no
                               experiment source), 409 a different outcome, 410
                               expired, 413 over 16 KiB
``POST /-/reload``             check every slot now; needs ``Authorization: Bearer
                               <reload_token>``: 401 without it, 403 when wrong, and 404
                               when no token is configured (the endpoint is disabled)
=============================  ===========================================================

Scoring answers carry ``X-Model-Name``, ``X-Model-Version``, ``X-Model-Semver``
and ``X-Variant`` (``default``, or in an experiment ``control`` / the
treatment's name) once a model is resolved; every answer carries
``X-Request-ID`` (the client's, if it sent a sane one). Error bodies have
MLflow's shape ``{"error_code": ..., "message": ...}`` and never a traceback.

This module is REST only: the routes translate HTTP into calls of the
transport-free :class:`~modelreg.serving.dataplane.DataPlane` and its answers
and errors back into HTTP (statuses from :func:`modelreg.http_status.status_for`).
Models come from a :class:`~modelreg.serving.source.ModelSource`; nothing here
imports the registry package.
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import Executor, ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelreg.errors import (
    AuthenticationError,
    ModelregError,
    PayloadError,
    PayloadTooLargeError,
)
from modelreg.experiments.definition import (
    FEEDBACK_MAX_BYTES,
    REQUEST_ID_CHARACTERS,
    FeedbackBody,
    parse_feedback,
)
from modelreg.http_status import status_for
from modelreg.serving import protocol
from modelreg.serving.arms import ArmFollower
from modelreg.serving.config import ServerConfig
from modelreg.serving.dataplane import DataPlane, InferenceRequest, InferenceResponse
from modelreg.serving.loader import ModelLoader
from modelreg.serving.metrics import CONTENT_TYPE, ServingMetrics, exposition
from modelreg.serving.recording import ExperimentRecorder, replica_id
from modelreg.serving.reporting import ReplicaReporter
from modelreg.serving.router import ExperimentRouter, Router
from modelreg.serving.slots import ModelSlot, SlotSet
from modelreg.serving.source import ExperimentSource, ModelSource, ReplicaSink
from modelreg.settings import Settings

REQUEST_ID_HEADER = "X-Request-ID"

#: The ``/invocations`` body in the OpenAPI document (the routes read the raw body, so
#: FastAPI cannot infer it): MLflow's JSON formats and CSV. ``app.openapi()`` gives it
#: to schema-driven fuzzing (tests/security); the server itself publishes no schema.
INVOCATIONS_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        protocol.JSON_MEDIA_TYPE: {
            "schema": {
                "type": "object",
                "properties": {
                    "dataframe_split": {
                        "type": "object",
                        "properties": {
                            "columns": {"type": "array", "items": {"type": "string"}},
                            "data": {"type": "array", "items": {"type": "array"}},
                            "index": {"type": "array"},
                        },
                        "required": ["data"],
                    },
                    "dataframe_records": {"type": "array", "items": {"type": "object"}},
                    "instances": {"type": "array"},
                    "inputs": {},
                    "params": {"type": "object"},
                },
                "minProperties": 1,
            }
        },
        protocol.CSV_MEDIA_TYPE: {"schema": {"type": "string"}},
    },
}
_SANE_REQUEST_ID = re.compile(f"{REQUEST_ID_CHARACTERS}{{1,128}}".encode())
_CONTENT_LENGTH = re.compile(r"[0-9]{1,19}")


class RequestIdMiddleware:
    """Echo a sane ``X-Request-ID`` (or make one up) on every answer; plain ASGI, no overhead."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Tag the request and its answer with one id."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope["headers"] if k == b"x-request-id"), None)
        request_id = (
            given if given and _SANE_REQUEST_ID.fullmatch(given) else uuid.uuid4().hex.encode()
        )
        scope.setdefault("state", {})["request_id"] = request_id.decode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), (b"x-request-id", request_id)]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_id)


def resolved_cache_dir(config: ServerConfig, settings: Settings) -> Path:
    """Where verified model copies are kept: the configured dir or ``<home>/serving-cache``."""
    return (config.cache_dir or settings.home / "serving-cache").expanduser().resolve()


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with PayloadTooLargeError as soon as it exceeds ``limit``.

    A declared Content-Length over the limit is refused before reading
    anything; a chunked body is counted while it streams in.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        # ASCII digits only (str.isdigit also takes '²', which int() refuses), and few
        # enough that int() cannot choke on them; anything longer is over any limit anyway.
        if not _CONTENT_LENGTH.fullmatch(declared):
            raise PayloadError(f"invalid Content-Length header {declared[:40]!r}")
        if int(declared) > limit:
            raise PayloadTooLargeError(int(declared), limit)
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(size, limit)
        chunks.append(chunk)
    return b"".join(chunks)


def model_headers(answer: InferenceResponse) -> dict[str, str]:
    """The headers naming the model version (and variant) that produced an answer."""
    model = answer.served
    if model is None:
        return {}
    return {
        "X-Model-Name": model.name,
        "X-Model-Version": str(model.version),
        "X-Model-Semver": model.semver,
        "X-Variant": answer.variant,
    }


def _error_response(error: ModelregError) -> JSONResponse:
    # RFC 9110: a 401 names the scheme that would be accepted.
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(error, AuthenticationError) else None
    return JSONResponse(
        protocol.error_body(protocol.error_code_for(error), error.message),
        status_code=status_for(error),
        headers=headers,
    )


def _bearer_token(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, None without one."""
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return given.strip() or None


async def score(plane: DataPlane, request: Request, model: str | None) -> Response:
    """Translate one HTTP scoring request for the data plane, and its answer back."""
    answer = await plane.infer(
        InferenceRequest(
            read_body=partial(read_body, request),
            content_type=request.headers.get("content-type"),
            request_id=request.state.request_id,
            model=model,
            headers=request.headers,
        )
    )
    response: Response
    if answer.error is None:
        response = Response(answer.predictions, media_type=protocol.JSON_MEDIA_TYPE)
    else:
        response = _error_response(answer.error)
    response.headers.update(model_headers(answer))
    return response


async def feedback(request: Request) -> dict[str, str]:
    """``POST /feedback``: join a label or value to the logged prediction of a request id."""
    given = parse_feedback(await read_body(request, FEEDBACK_MAX_BYTES))
    plane: DataPlane = request.app.state.plane
    result = await plane.feedback(given)
    return {"request_id": given.request_id, "result": str(result)}


def build_plane(
    config: ServerConfig,
    source: ModelSource,
    experiments: ExperimentSource | None,
    *,
    replicas: ReplicaSink | None = None,
    cache_dir: Path,
    metrics: ServingMetrics,
    executor: Executor,
    router: Router | None = None,
) -> DataPlane:
    """The data plane of ``config``: its slots, and with ``experiments`` their A/B wiring.

    With ``experiments`` an arm follower keeps each model's experiment arms
    and an :class:`ExperimentRouter` in line with its experiment, and an
    :class:`ExperimentRecorder` keeps and flushes counts and predictions.
    With ``replicas`` a :class:`ReplicaReporter` reports the slots and their
    reloads every ``config.flush_interval`` seconds.
    """
    loader = ModelLoader(source, cache_dir)
    replica = replica_id()
    reporter = None
    if replicas is not None:
        reporter = ReplicaReporter(
            replicas, metrics, replica=replica, interval=config.flush_interval
        )
    make_slot = partial(
        ModelSlot,
        source=source,
        loader=loader,
        metrics=metrics,
        executor=executor,
        on_reload=reporter.reloaded if reporter is not None else None,
    )
    slots = SlotSet([make_slot(model) for model in config.models])
    recorder: ExperimentRecorder | None = None
    if experiments is not None:
        experiment_router = ExperimentRouter()
        router = router or experiment_router
        slots.follower = ArmFollower(
            slots,
            experiments,
            experiment_router,
            metrics,
            lambda pinned, variant: make_slot(pinned, variant=variant),
        )
        recorder = ExperimentRecorder(
            experiments,
            metrics,
            replica=replica,
            flush_interval=config.flush_interval,
            sample_rate=config.prediction_sample_rate,
            buffer=config.prediction_buffer,
        )
    return DataPlane(
        slots,
        metrics,
        status_for=status_for,
        max_body_bytes=config.max_body_bytes,
        reload_token=config.reload_token,
        router=router,
        recorder=recorder,
        reporter=reporter,
        shadow_queue=config.shadow_queue,
        shadow_concurrency=config.shadow_concurrency,
    )


def create_app(
    config: ServerConfig,
    source: ModelSource,
    *,
    experiments: ExperimentSource | None = None,
    replicas: ReplicaSink | None = None,
    settings: Settings | None = None,
    metrics_registry: CollectorRegistry | None = None,
    router: Router | None = None,
) -> FastAPI:
    """Build the model server for ``config``, loading models from ``source``.

    ``experiments`` (the registry, in ``modelreg serve``) turns on A/B
    experiments: routing by each model's experiment, arm slots, per-variant
    counts and the prediction log flushed every ``config.flush_interval``
    seconds, and ``POST /feedback``; without it every request goes to the
    default variant and ``/feedback`` answers 404. ``replicas`` (the
    registry, in ``modelreg serve``) receives this replica's report every
    ``config.flush_interval`` seconds: what each slot serves since when, and
    its reloads and refused loads (the dashboard's Serving page). ``settings`` (default:
    from the environment) give the home of the default model cache. Metrics
    go to ``metrics_registry`` (a fresh one by default); ``router`` overrides
    the variant choice (default: the experiment router, or the default
    variant without ``experiments``). The caller owns ``source`` and
    ``experiments`` and closes them after the server stops. Models load
    while the app starts up; a model that cannot load yet leaves its slot
    not ready and its watcher keeps trying.
    """
    settings = settings or Settings()
    metrics = ServingMetrics(metrics_registry or CollectorRegistry())
    executor = ThreadPoolExecutor(
        max_workers=min(8, (os.cpu_count() or 1) + 2), thread_name_prefix="modelreg-predict"
    )
    plane = build_plane(
        config,
        source,
        experiments,
        replicas=replicas,
        cache_dir=resolved_cache_dir(config, settings),
        metrics=metrics,
        executor=executor,
        router=router,
    )
    slots = plane.slots

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await plane.start()
        try:
            yield
        finally:
            await plane.stop()
            executor.shutdown(wait=True)

    app = FastAPI(
        title="modelreg model server",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.add_middleware(RequestIdMiddleware)
    app.state.plane = plane
    app.state.slots = slots
    app.state.metrics = metrics

    @app.exception_handler(ModelregError)
    async def _error(_request: Request, exc: ModelregError) -> JSONResponse:
        return _error_response(exc)

    @app.post("/invocations", openapi_extra={"requestBody": INVOCATIONS_BODY})
    async def invocations(request: Request) -> Response:
        """Score with the default (first configured) model."""
        return await score(plane, request, None)

    @app.post("/models/{name}/invocations", openapi_extra={"requestBody": INVOCATIONS_BODY})
    async def model_invocations(name: str, request: Request) -> Response:
        """Score with the named model."""
        return await score(plane, request, name)

    @app.get("/ping")
    @app.get("/health")
    async def ping() -> Response:
        """MLflow's health check: 200 once every model has a version loaded."""
        status = 200 if plane.ready else 503
        return Response("\n", status_code=status, media_type=protocol.JSON_MEDIA_TYPE)

    @app.get("/v2/health/live")
    async def live() -> dict[str, bool]:
        """Open Inference Protocol liveness."""
        return {"live": True}

    @app.get("/v2/health/ready")
    async def ready() -> JSONResponse:
        """Open Inference Protocol readiness, with degraded details."""
        body = plane.readiness()
        return JSONResponse(body, status_code=200 if body["ready"] else 503)

    @app.get("/v2/models/{name}/ready")
    async def model_ready(name: str) -> JSONResponse:
        """Open Inference Protocol readiness of one model."""
        body = plane.model_readiness(name)
        return JSONResponse(body, status_code=200 if body["ready"] else 503)

    @app.get("/version")
    async def version() -> dict[str, Any]:
        """What every slot serves, when it last checked, and what last went wrong."""
        return plane.versions()

    @app.get("/metrics")
    async def prometheus() -> Response:
        """Prometheus metrics of this server."""
        return Response(exposition(metrics.registry), media_type=CONTENT_TYPE)

    feedback_body = {
        "required": True,
        "content": {protocol.JSON_MEDIA_TYPE: {"schema": FeedbackBody.model_json_schema()}},
    }
    app.post("/feedback", openapi_extra={"requestBody": feedback_body})(feedback)

    @app.post("/-/reload")
    async def reload(request: Request) -> dict[str, Any]:
        """Check every slot now, retrying failed versions without waiting (bearer token)."""
        return await plane.reload(_bearer_token(request))

    return app
