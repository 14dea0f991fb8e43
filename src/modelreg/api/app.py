"""App factory of the modelreg API service: JSON routes over the Registry facade.

Routes parse input, call the facade and return its views; errors map to
status codes in the web layer's one table (:mod:`modelreg.http_status`), looked up
along the class hierarchy. Unless ``api_runs_workers`` is off, the service also runs the
background workers (:mod:`modelreg.workers`: periodic sync, webhook delivery) in its event
loop; /health and /metrics report them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import Body, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel, Field

from modelreg.api.events import events_router
from modelreg.api.experiments import experiments_router
from modelreg.api.governance import governance_router
from modelreg.api.identity import Actor, Identifier
from modelreg.dashboard.app import create_dashboard
from modelreg.errors import ModelregError
from modelreg.http_status import status_for
from modelreg.registry import Registry
from modelreg.settings import Settings
from modelreg.workers import LoopCollector, LoopHealth, Workers, health_report


class PromoteBody(BaseModel):
    """Body of a promotion request."""

    stage: str = Field(max_length=32)
    reason: str = Field(default="", max_length=2000)


class RollbackBody(BaseModel):
    """Body of a rollback request."""

    to: str | None = Field(default=None, max_length=64)
    reason: str = Field(default="", max_length=2000)


def _install_error_handlers(app: FastAPI) -> None:
    """Map modelreg errors through the one status table, and render validation errors safely.

    FastAPI's own 422 echoes the offending input; a body holding a bare ``NaN``
    (which Python's JSON parser accepts) then cannot be rendered as strict JSON
    and surfaced as a 500. The input is left out: location, message and type say
    what is wrong.
    """

    @app.exception_handler(ModelregError)
    async def _error(_request: Request, exc: ModelregError) -> JSONResponse:
        status = status_for(exc)
        headers = {"WWW-Authenticate": 'Basic realm="modelreg"'} if status == 401 else None
        return JSONResponse(
            {"error_code": type(exc).__name__, "message": exc.message},
            status_code=status,
            headers=headers,
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = [
            {
                "loc": [str(part) for part in error.get("loc", ())],
                "msg": str(error.get("msg", "")),
                "type": str(error.get("type", "")),
            }
            for error in exc.errors()
        ]
        first = detail[0] if detail else {"loc": [], "msg": "invalid request"}
        where = ".".join(first["loc"]) or "request"
        return JSONResponse(
            {
                "error_code": "RequestValidationError",
                "message": f"{where}: {first['msg']}",
                "detail": detail,
            },
            status_code=422,
        )


def _install_ops_routes(app: FastAPI, reg: Registry, loops: list[LoopHealth]) -> None:
    """/health (MLflow, the ledger and the background loops) and /metrics (the loops)."""
    metrics = CollectorRegistry()  # the app's own: no process-global Prometheus state
    metrics.register(LoopCollector(loops))

    @app.get("/health")
    def health() -> JSONResponse:
        """Liveness, reachability of MLflow and the ledger, and the background loops."""
        ok, body = health_report(reg, loops)
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics", include_in_schema=False)
    def prometheus() -> Response:
        """Prometheus metrics of the service's background loops."""
        return Response(generate_latest(metrics), media_type=CONTENT_TYPE_LATEST)


# The route table: each nested route function counts towards the complexity.
def create_app(  # noqa: C901
    settings: Settings | None = None, registry: Registry | None = None
) -> FastAPI:
    """Build the API for ``settings`` (from the environment by default).

    With ``settings.api_runs_workers`` (the default) the background workers run
    in the app's event loop from startup to shutdown; otherwise /health reports
    no loops and ``modelreg worker`` is expected to run them elsewhere.
    """
    settings = settings or Settings()
    reg = registry or Registry(settings)
    workers = Workers(settings, reg) if settings.api_runs_workers else None

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(workers.run()) if workers is not None else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            reg.close()

    # /docs and /redoc with Swagger UI and ReDoc served from the package, not a CDN,
    # so the API docs work on machines without internet access.
    app = FastAPIOffline(title="modelreg", version="0.1.0", lifespan=lifespan, max_body_size=2**20)
    app.state.registry = reg
    app.state.identifier = Identifier(reg)

    _install_error_handlers(app)

    _install_ops_routes(app, reg, workers.loops if workers is not None else [])

    @app.get("/api/v1/models")
    def models(_actor: Actor) -> list[dict[str, Any]]:
        """Registered models with their Production and Staging versions."""
        return [m.as_json() for m in reg.models()]

    @app.get("/api/v1/models/{name}/versions")
    def versions(name: str, _actor: Actor) -> list[dict[str, Any]]:
        """Every version of a model."""
        return [v.as_json() for v in reg.versions(name)]

    @app.get("/api/v1/models/{name}/versions/{ref}")
    def show(name: str, ref: str, _actor: Actor) -> dict[str, Any]:
        """One version (by number or semver)."""
        return reg.show(name, ref).as_json()

    @app.get("/api/v1/models/{name}/versions/{ref}/lineage")
    def lineage(name: str, ref: str, _actor: Actor) -> dict[str, Any]:
        """Lineage of one version."""
        return reg.lineage(name, ref).as_json()

    @app.get("/api/v1/models/{name}/versions/{ref}/verify")
    def verify(name: str, ref: str, _actor: Actor) -> dict[str, Any]:
        """Re-hash one version's artifacts against its manifest."""
        return reg.verify(name, ref)[0].as_json()

    @app.get("/api/v1/models/{name}/history")
    def history(name: str, _actor: Actor, at: datetime | None = None) -> dict[str, Any]:
        """Audit history; with ``at``, the state at that time."""
        return reg.history(name, at).as_json()

    @app.get("/api/v1/search")
    def search(
        filter_text: Annotated[str, Query(alias="filter", max_length=2000)], _actor: Actor
    ) -> list[Any]:
        """Versions matching a filter."""
        return [v.as_json() for v in reg.search(filter_text)]

    @app.post("/api/v1/models/{name}/versions/{ref}/promote")
    def promote(
        name: str, ref: str, body: Annotated[PromoteBody, Body()], actor: Actor
    ) -> list[dict[str, Any]]:
        """Move a version to a stage."""
        return [
            e.as_json() for e in reg.promote(name, ref, body.stage, reason=body.reason, actor=actor)
        ]

    @app.post("/api/v1/models/{name}/rollback")
    def rollback(
        name: str, body: Annotated[RollbackBody, Body()], actor: Actor
    ) -> list[dict[str, Any]]:
        """Return Production to the previous (or given) version."""
        return [e.as_json() for e in reg.rollback(name, body.to, reason=body.reason, actor=actor)]

    @app.post("/api/v1/sync")
    def sync(actor: Actor) -> list[dict[str, Any]]:
        """Adopt versions registered by plain MLflow clients now."""
        return [v.as_json() for v in reg.sync(actor=actor)]

    @app.get("/api/v1/doctor")
    def doctor(actor: Actor) -> list[dict[str, Any]]:
        """Drift between the ledger and MLflow."""
        return [d.as_json() for d in reg.doctor(actor=actor)]

    @app.post("/api/v1/doctor")
    def doctor_fix(actor: Actor) -> list[dict[str, Any]]:
        """Repair drift by re-applying the ledger state to MLflow."""
        return [d.as_json() for d in reg.doctor(fix=True, actor=actor)]

    app.include_router(governance_router(reg))
    app.include_router(events_router(reg))
    app.include_router(experiments_router(reg))

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        """The dashboard (the API itself lives under /api/v1, its docs at /docs)."""
        return RedirectResponse("/ui/", status_code=307)

    # The dashboard's pages, sessions and error pages (HTML) are its own sub-app.
    app.mount("/ui", create_dashboard(reg))
    return app
