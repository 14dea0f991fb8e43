"""A/B experiment routes of the API: the same operations as ``modelreg ab``, and feedback.

=============================================  =====================================
``GET  /api/v1/experiments``                   list (``?model=``, ``?state=``)
``POST /api/v1/models/{name}/experiment``      start (body: :class:`StartBody`)
``GET  /api/v1/models/{name}/experiment``      status with the statistics report
``GET  /api/v1/models/{name}/experiment/timeline``  over time (``?points=60``)
``POST /api/v1/models/{name}/experiment/ramp``      ramp (body: ``{"traffic": 0.5}``)
``POST /api/v1/models/{name}/experiment/stop``      stop
``POST /api/v1/models/{name}/experiment/conclude``  conclude (``{"promote": true}``)
``POST /api/v1/feedback``                      join an outcome to a logged prediction
``GET  /api/v1/serving/replicas``              what each serving replica serves (``?model=``)
``GET  /api/v1/serving/reloads``               replicas' reloads and refused loads (paged)
=============================================  =====================================

Statuses come from the one error table: 400 bad input, 404 unknown model,
version or request id, 409 a second experiment or nothing to ramp, 410 an
expired prediction, 403 a role too low.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from modelreg.api.identity import Actor
from modelreg.experiments.definition import (
    DEFAULT_KEY_HEADER,
    FEEDBACK_MAX_BYTES,
    FeedbackBody,
    parse_feedback,
)
from modelreg.registry import Registry

_Reason = Annotated[str, Field(default="", max_length=2000)]
_FEEDBACK_BODY = {
    "required": True,
    "content": {"application/json": {"schema": FeedbackBody.model_json_schema()}},
}


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StartBody(_Body):
    """Body of a start: the fields of ``modelreg ab start``."""

    treatments: list[StrictStr | StrictInt] = Field(min_length=1, max_length=16)
    traffic: float  # the range is the core's rule (400 with the allowed range)
    control: StrictStr | StrictInt = "production"
    key_header: str = Field(default=DEFAULT_KEY_HEADER, max_length=64)
    shadow: bool = False
    metrics: list[Annotated[str, Field(max_length=32)]] = Field(default=[], max_length=8)
    guardrails: list[Annotated[str, Field(max_length=64)]] = Field(default=[], max_length=8)
    reason: _Reason = ""


class RampBody(_Body):
    """Body of a ramp."""

    traffic: float  # the range is the core's rule (400 with the allowed range)
    reason: _Reason = ""


class StopBody(_Body):
    """Body of a stop."""

    reason: _Reason = ""


class ConcludeBody(_Body):
    """Body of a conclusion."""

    promote: bool = False
    reason: _Reason = ""


def experiments_router(reg: Registry) -> APIRouter:
    """Routes over the facade's A/B experiment operations."""
    router = APIRouter()

    @router.get("/api/v1/experiments")
    def list_experiments(
        actor: Actor,
        model: Annotated[str | None, Query(max_length=256)] = None,
        state: Annotated[str | None, Query(max_length=16)] = None,
    ) -> list[dict[str, Any]]:
        """Experiments, newest first."""
        return [v.as_json() for v in reg.ab_list(model=model, state=state, actor=actor)]

    @router.post("/api/v1/models/{name}/experiment")
    def start(name: str, body: Annotated[StartBody, Body()], actor: Actor) -> dict[str, Any]:
        """Start an experiment on ``name``."""
        return reg.ab_start(
            name,
            body.treatments,
            traffic=body.traffic,
            control=body.control,
            key_header=body.key_header,
            shadow=body.shadow,
            metrics=body.metrics,
            guardrails=body.guardrails,
            reason=body.reason,
            actor=actor,
        ).as_json()

    @router.get("/api/v1/models/{name}/experiment")
    def status(name: str, actor: Actor) -> dict[str, Any]:
        """The model's experiment with its statistics report."""
        return reg.ab_status(name, actor=actor).as_json()

    @router.get("/api/v1/models/{name}/experiment/timeline")
    def timeline(
        name: str,
        actor: Actor,
        points: int = 60,  # the range is the core's rule (400 with the allowed range)
    ) -> dict[str, Any]:
        """The experiment over time: per variant and interval, traffic, errors, p99, metrics."""
        return reg.ab_timeline(name, points=points, actor=actor).to_json()

    @router.get("/api/v1/serving/replicas")
    def replicas(
        actor: Actor, model: Annotated[str | None, Query(max_length=256)] = None
    ) -> list[dict[str, Any]]:
        """What every serving replica serves (of ``model``), as each last reported."""
        return [s.as_json() for s in reg.replicas(model, actor=actor)]

    @router.get("/api/v1/serving/reloads")
    def reloads(
        actor: Actor,
        model: Annotated[str | None, Query(max_length=256)] = None,
        limit: int = 50,  # paging ranges are the core's rule (400 with the allowed range)
        offset: int = 0,
    ) -> dict[str, Any]:
        """Serving replicas' reloads and refused loads, newest first, one page."""
        return reg.reloads(model, limit=limit, offset=offset, actor=actor).as_json()

    @router.post("/api/v1/models/{name}/experiment/ramp")
    def ramp(name: str, body: Annotated[RampBody, Body()], actor: Actor) -> dict[str, Any]:
        """Change each treatment's share."""
        return reg.ab_ramp(name, body.traffic, reason=body.reason, actor=actor).as_json()

    @router.post("/api/v1/models/{name}/experiment/stop")
    def stop(
        name: str, actor: Actor, body: Annotated[StopBody | None, Body()] = None
    ) -> dict[str, Any]:
        """Stop the experiment: everyone gets control."""
        return reg.ab_stop(name, reason=body.reason if body else "", actor=actor).as_json()

    @router.post("/api/v1/models/{name}/experiment/conclude")
    def conclude(
        name: str, actor: Actor, body: Annotated[ConcludeBody | None, Body()] = None
    ) -> dict[str, Any]:
        """Record the decision; ``promote`` promotes the winner through the gates."""
        given = body or ConcludeBody()
        return reg.ab_conclude(
            name, promote=given.promote, reason=given.reason, actor=actor
        ).as_json()

    @router.post(
        "/api/v1/feedback",
        max_body_size=FEEDBACK_MAX_BYTES,
        openapi_extra={"requestBody": _FEEDBACK_BODY},
    )
    async def feedback(request: Request, _actor: Actor) -> dict[str, str]:
        """Join a label or value to a logged prediction (400 bad body, 404 unknown, 410 expired).

        The body is the model server's ``POST /feedback`` body, parsed by the same code.
        """
        given = parse_feedback(await request.body())  # 413 past FEEDBACK_MAX_BYTES
        result = await asyncio.to_thread(reg.record_feedback, given)
        return {"request_id": given.request_id, "result": result.value}

    return router
