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
from collections.abc import AsyncIterable, AsyncIterator
from concurrent.futures import Executor, ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CollectorRegistry
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect
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
from modelreg.serving.group import WorkerGroup
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
#: ``/models/{name}/invocations`` as Starlette matches it: a name is one path segment.
_MODEL_INVOCATIONS = re.compile(r"/models/([^/]+)/invocations")
_JSON_HEADER = (b"content-type", protocol.JSON_MEDIA_TYPE.encode())


def request_id_of(scope: Scope) -> bytes:
    """The client's ``X-Request-ID`` when it is sane (1-128 safe characters), else a new one."""
    given = next((v for k, v in scope["headers"] if k == b"x-request-id"), None)
    # 32 random hex digits, the shape of uuid4().hex at a third of its cost.
    return given if given and _SANE_REQUEST_ID.fullmatch(given) else os.urandom(16).hex().encode()


class RequestIdMiddleware:
    """Echo a sane ``X-Request-ID`` (or make one up) on every answer; plain ASGI, no overhead."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Tag the request and its answer with one id."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope)
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
    return await _read_limited(request.headers.get("content-length"), request.stream(), limit)


async def _read_limited(declared: str | None, chunks: AsyncIterable[bytes], limit: int) -> bytes:
    """Join ``chunks`` into a body of at most ``limit`` bytes (see :func:`read_body`)."""
    _check_declared(declared, limit)
    chunks_read = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(size, limit)
        chunks_read.append(chunk)
    return b"".join(chunks_read)


def _check_declared(declared: str | None, limit: int) -> None:
    """Refuse a malformed Content-Length, or one over ``limit``, before reading the body."""
    if declared is not None:
        # ASCII digits only (str.isdigit also takes '²', which int() refuses), and few
        # enough that int() cannot choke on them; anything longer is over any limit anyway.
        if not _CONTENT_LENGTH.fullmatch(declared):
            raise PayloadError(f"invalid Content-Length header {declared[:40]!r}")
        if int(declared) > limit:
            raise PayloadTooLargeError(int(declared), limit)


async def _asgi_chunks(receive: Receive) -> AsyncIterator[bytes]:
    """The body chunks of an ASGI request, as Starlette's ``Request.stream`` yields them."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        if message["type"] == "http.request":
            yield message.get("body", b"")
            if not message.get("more_body", False):
                return


async def _read_asgi(receive: Receive, declared: str | None, limit: int) -> bytes:
    """:func:`read_body` over ASGI ``receive``; a body in one message skips the generator."""
    _check_declared(declared, limit)
    message = await receive()
    if message["type"] == "http.request" and not message.get("more_body", False):
        body: bytes = message.get("body", b"")
        if len(body) > limit:
            raise PayloadTooLargeError(len(body), limit)
        return body

    async def chunks() -> AsyncIterator[bytes]:
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        if message["type"] == "http.request":
            yield message.get("body", b"")
        async for chunk in _asgi_chunks(receive):
            yield chunk

    return await _read_limited(None, chunks(), limit)


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


async def score(plane: DataPlane, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer one ``POST /invocations`` (or ``/models/{name}/invocations``) as plain ASGI.

    What the FastAPI routes did, byte for byte (status, body, headers and
    their order, ``X-Request-ID`` last), without their per-request machinery:
    routing, dependency solving, Request and Response objects and five
    middlewares cost several times what parsing a one-row body does.
    ``scope["path_params"]["name"]`` names the model, absent for the default.
    """
    # Set by RequestIdMiddleware when FastAPI routed the request (routed_score).
    known = scope.get("state", {}).get("request_id")
    request_id = known.encode() if known else request_id_of(scope)
    headers = Headers(scope=scope)
    started = False

    async def respond(
        status: int, body: bytes | memoryview, extra: list[tuple[bytes, bytes]]
    ) -> None:
        nonlocal started
        raw = [(b"content-length", str(len(body)).encode()), *extra, (b"x-request-id", request_id)]
        started = True
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})

    try:
        answer = await plane.infer(
            InferenceRequest(
                read_body=partial(_read_asgi, receive, headers.get("content-length")),
                content_type=headers.get("content-type"),
                request_id=request_id.decode(),
                model=scope.get("path_params", {}).get("name"),
                headers=headers,
            )
        )
        named = [
            (key.lower().encode("latin-1"), value.encode("latin-1"))
            for key, value in model_headers(answer).items()
        ]
        if answer.error is None:
            await respond(200, answer.predictions or b"", [_JSON_HEADER, *named])
            return
        error = _error_response(answer.error)
        await respond(error.status_code, error.body, [*error.raw_headers[1:], *named])
    except Exception:
        # As Starlette's ServerErrorMiddleware: a bug answers a bare 500, then propagates.
        if not started:
            fallback = PlainTextResponse("Internal Server Error", status_code=500)
            await respond(500, fallback.body, fallback.raw_headers[1:])
        raise


async def routed_score(plane: DataPlane, request: Request) -> Response:
    """:func:`score` as a FastAPI route's Response (under a ``root_path`` only, see ModelServer)."""
    messages: list[Message] = []

    async def capture(message: Message) -> None:
        messages.append(message)

    await score(plane, request.scope, request.receive, capture)
    start, body = messages
    response = Response(body["body"], status_code=start["status"])
    # RequestIdMiddleware, around this route, adds the X-Request-ID header itself.
    response.raw_headers = [pair for pair in start["headers"] if pair[0] != b"x-request-id"]
    return response


class ModelServer(FastAPI):
    """The FastAPI app of a model server, whose scoring routes skip FastAPI's machinery.

    ``POST /invocations`` and ``POST /models/{name}/invocations`` are answered
    by :func:`score` before FastAPI sees them; every other request, and any
    request under a ``root_path``, goes through FastAPI as usual (where the
    two routes are also registered, for the OpenAPI document and as the
    fallback).
    """

    plane: DataPlane

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection scope."""
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            path = scope["path"]
            if path == "/invocations":
                await score(self.plane, scope, receive, send)
                return
            match = _MODEL_INVOCATIONS.fullmatch(path) if path.startswith("/models/") else None
            if match is not None:
                scope["path_params"] = {"name": match[1]}
                await score(self.plane, scope, receive, send)
                return
        await super().__call__(scope, receive, send)


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
    worker_group: Path | None = None,
) -> DataPlane:
    """The data plane of ``config``: its slots, and with ``experiments`` their A/B wiring.

    With ``experiments`` an arm follower keeps each model's experiment arms
    and an :class:`ExperimentRouter` in line with its experiment, and an
    :class:`ExperimentRecorder` keeps and flushes counts and predictions.
    With ``replicas`` a :class:`ReplicaReporter` reports the slots and their
    reloads every ``config.flush_interval`` seconds. With ``worker_group`` (a
    directory shared by the server's worker processes) a forced reload asked
    of this worker reaches the others (:mod:`modelreg.serving.group`).
    """
    replica = replica_id()
    loader = ModelLoader(source, cache_dir, replica=replica, max_bytes=config.cache_max_bytes)
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
    loader.in_use = slots.digests
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
        group=WorkerGroup(worker_group, replica) if worker_group is not None else None,
        replica=replica,
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
) -> ModelServer:
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
        worker_group=settings.serving.worker_group,
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

    app = ModelServer(
        title="modelreg model server",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.add_middleware(RequestIdMiddleware)
    app.plane = plane
    app.state.plane = plane
    app.state.slots = slots
    app.state.metrics = metrics

    @app.exception_handler(ModelregError)
    async def _error(_request: Request, exc: ModelregError) -> JSONResponse:
        return _error_response(exc)

    @app.post("/invocations", openapi_extra={"requestBody": INVOCATIONS_BODY})
    async def invocations(request: Request) -> Response:
        """Score with the default (first configured) model."""
        return await routed_score(plane, request)

    @app.post("/models/{name}/invocations", openapi_extra={"requestBody": INVOCATIONS_BODY})
    async def model_invocations(name: str, request: Request) -> Response:
        """Score with the named model."""
        return await routed_score(plane, request)

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
