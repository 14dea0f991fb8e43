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
``POST /-/reload``             check every slot now; needs ``Authorization: Bearer
                               <reload_token>``: 401 without it, 403 when wrong, and 404
                               when no token is configured (the endpoint is disabled)
=============================  ===========================================================

Scoring answers carry ``X-Model-Name``, ``X-Model-Version``, ``X-Model-Semver``
and ``X-Variant`` once a model is resolved; every answer carries
``X-Request-ID`` (the client's, if it sent a sane one). Error bodies have
MLflow's shape ``{"error_code": ..., "message": ...}`` and never a traceback.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import os
import re
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelreg.errors import ModelregError, PayloadError, PayloadTooLargeError
from modelreg.http_status import status_for
from modelreg.registry import Registry
from modelreg.serving import protocol
from modelreg.serving.config import ServerConfig
from modelreg.serving.loader import LoadedModel, ModelLoader
from modelreg.serving.metrics import CONTENT_TYPE, UNKNOWN_MODEL, ServingMetrics, exposition
from modelreg.serving.slots import DEFAULT_VARIANT, ModelSlot, Serving, SlotSet
from modelreg.settings import Settings

log = logging.getLogger("modelreg.serving")

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
_SANE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:/+=\-]{1,128}")
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


def resolved_cache_dir(config: ServerConfig, registry: Registry) -> Path:
    """Where verified model copies are kept: the configured dir or ``<home>/serving-cache``."""
    return (config.cache_dir or registry.settings.home / "serving-cache").expanduser().resolve()


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


def model_headers(model: LoadedModel, variant: str) -> dict[str, str]:
    """The headers naming the model version that produced an answer."""
    return {
        "X-Model-Name": model.name,
        "X-Model-Version": str(model.version),
        "X-Model-Semver": model.semver,
        "X-Variant": variant,
    }


def _error_response(error: ModelregError) -> JSONResponse:
    return JSONResponse(
        protocol.error_body(protocol.error_code_for(error), error.message),
        status_code=status_for(error),
    )


async def score(
    request: Request, slots: SlotSet, name: str, limit: int, metrics: ServingMetrics
) -> Response:
    """Answer one scoring request with model ``name``, recording metrics and model headers."""
    started = time.perf_counter()
    slot: ModelSlot | None = None
    serving: Serving | None = None
    error_code: str | None = None
    try:
        slot = slots.get(name)
        serving = slot.serving()  # 503 before reading a body no model could score
        body = await read_body(request, limit)
        # No await between taking the current model and submitting to its batcher:
        # a swap in between would hand the request to a batcher that is draining.
        serving = slot.serving()
        scoring = protocol.parse_request(
            body, request.headers.get("content-type"), serving.model.schema
        )
        predictions = await serving.batcher.submit(scoring)
        response: Response = Response(
            protocol.predictions_json(predictions), media_type=protocol.JSON_MEDIA_TYPE
        )
    except ModelregError as exc:
        error_code = protocol.error_code_for(exc)
        response = _error_response(exc)
    except Exception:
        # A model bug, not bad input: the trace goes to the log, never to the client.
        request_id = request.state.request_id
        log.exception("scoring with %s failed (request %s)", name, request_id)
        error_code = "INTERNAL_ERROR"
        message = f"the model failed to score; the server log has the details ({request_id})"
        response = JSONResponse(protocol.error_body(error_code, message), status_code=500)
    variant = slot.variant if slot else DEFAULT_VARIANT
    if serving is not None:
        response.headers.update(model_headers(serving.model, variant))
    elapsed = time.perf_counter() - started
    label = slot.name if slot else UNKNOWN_MODEL
    metrics.observe_request(label, variant, response.status_code, elapsed, error_code)
    return response


def create_app(
    config: ServerConfig,
    registry: Registry,
    *,
    metrics_registry: CollectorRegistry | None = None,
) -> FastAPI:
    """Build the model server for ``config``, resolving models through ``registry``.

    Metrics go to ``metrics_registry`` (a fresh one by default). The caller
    owns ``registry`` and closes it after the server stops. Models load while
    the app starts up; a model that cannot load yet leaves its slot not ready
    and its watcher keeps trying.
    """
    metrics = ServingMetrics(metrics_registry or CollectorRegistry())
    loader = ModelLoader(registry, resolved_cache_dir(config, registry))
    executor = ThreadPoolExecutor(
        max_workers=min(8, (os.cpu_count() or 1) + 2), thread_name_prefix="modelreg-predict"
    )
    slots = SlotSet(
        [ModelSlot(model, registry, loader, metrics, executor=executor) for model in config.models]
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await slots.start()
        try:
            yield
        finally:
            await slots.stop()
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
    app.state.slots = slots
    app.state.metrics = metrics

    @app.exception_handler(ModelregError)
    async def _error(_request: Request, exc: ModelregError) -> JSONResponse:
        return _error_response(exc)

    @app.post("/invocations", openapi_extra={"requestBody": INVOCATIONS_BODY})
    async def invocations(request: Request) -> Response:
        """Score with the default (first configured) model."""
        return await score(request, slots, slots.default.name, config.max_body_bytes, metrics)

    @app.post("/models/{name}/invocations", openapi_extra={"requestBody": INVOCATIONS_BODY})
    async def model_invocations(name: str, request: Request) -> Response:
        """Score with the named model."""
        return await score(request, slots, name, config.max_body_bytes, metrics)

    @app.get("/ping")
    @app.get("/health")
    async def ping() -> Response:
        """MLflow's health check: 200 once every model has a version loaded."""
        status = 200 if slots.ready else 503
        return Response("\n", status_code=status, media_type=protocol.JSON_MEDIA_TYPE)

    @app.get("/v2/health/live")
    async def live() -> dict[str, bool]:
        """Open Inference Protocol liveness."""
        return {"live": True}

    @app.get("/v2/health/ready")
    async def ready() -> JSONResponse:
        """Open Inference Protocol readiness, with degraded details."""
        body = slots.readiness()
        return JSONResponse(body, status_code=200 if body["ready"] else 503)

    @app.get("/v2/models/{name}/ready")
    async def model_ready(name: str) -> JSONResponse:
        """Open Inference Protocol readiness of one model."""
        body = slots.readiness()["models"][slots.get(name).name]
        return JSONResponse({"name": name, **body}, status_code=200 if body["ready"] else 503)

    @app.get("/version")
    async def version() -> dict[str, Any]:
        """What every slot serves, when it last checked, and what last went wrong."""
        return slots.versions()

    @app.get("/metrics")
    async def prometheus() -> Response:
        """Prometheus metrics of this server."""
        return Response(exposition(metrics.registry), media_type=CONTENT_TYPE)

    @app.post("/-/reload")
    async def reload(request: Request) -> JSONResponse:
        """Check every slot now, retrying failed versions without waiting (bearer token)."""
        denied = _denied(request, config.reload_token)
        if denied is not None:
            return denied
        results = await slots.check_all(force=True)
        return JSONResponse(
            {
                "results": {name: str(result) for name, result in results.items()},
                **slots.versions(),
            }
        )

    return app


def _denied(request: Request, token: str | None) -> JSONResponse | None:
    """None when the request carries the reload token, else the answer refusing it."""
    if token is None:
        return JSONResponse(
            protocol.error_body(
                "ENDPOINT_NOT_FOUND",
                "POST /-/reload is disabled; set reload_token in the serving config "
                "or MODELREG_RELOAD_TOKEN to enable it",
            ),
            status_code=404,
        )
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return JSONResponse(
            protocol.error_body("UNAUTHENTICATED", "send Authorization: Bearer <reload token>"),
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        return JSONResponse(
            protocol.error_body("PERMISSION_DENIED", "the reload token is not valid"),
            status_code=403,
        )
    return None


CONFIG_ENV = "MODELREG_SERVE_CONFIG"


def create_app_from_env() -> FastAPI:
    """Build the server from ``MODELREG_SERVE_CONFIG`` (JSON) and ``MODELREG_*`` settings.

    This is the factory each uvicorn worker process calls when ``modelreg serve
    --workers N`` runs several processes: one Python process holds the GIL for
    routing and for ``predict``, so a second process is what uses a second core.
    """
    text = os.environ.get(CONFIG_ENV)
    if not text:
        raise RuntimeError(f"{CONFIG_ENV} is not set; start workers with `modelreg serve`")
    return create_app(ServerConfig.model_validate_json(text), Registry(Settings()))
