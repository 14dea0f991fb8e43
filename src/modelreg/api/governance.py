"""Governance routes of the API: policy, validate, request, approve, reject, auto-promote."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query
from pydantic import BaseModel, Field

from modelreg.api.identity import Actor
from modelreg.registry import Registry


class CommentBody(BaseModel):
    """Body of a request, approval or rejection."""

    comment: str = Field(default="", max_length=2000)


def governance_router(reg: Registry) -> APIRouter:
    """Routes over the facade's governance operations."""
    router = APIRouter()

    @router.get("/api/v1/policy")
    def show_policy(
        actor: Actor, model: Annotated[str | None, Query(max_length=200)] = None
    ) -> dict[str, Any]:
        """The effective policy for a model (or the default) and the caller's role."""
        return reg.policy_view(model, actor=actor).as_json()

    @router.get("/api/v1/models/{name}/versions/{ref}/validate")
    def validate(name: str, ref: str, actor: Actor) -> dict[str, Any]:
        """Every policy gate with observed and required values."""
        return reg.validate(name, ref, actor=actor).as_json()

    @router.post("/api/v1/models/{name}/versions/{ref}/request")
    def request_promotion(
        name: str, ref: str, actor: Actor, body: Annotated[CommentBody | None, Body()] = None
    ) -> dict[str, Any]:
        """Open a Production request (gates must pass)."""
        comment = body.comment if body else ""
        return reg.request(name, ref, comment=comment, actor=actor).as_json()

    @router.post("/api/v1/models/{name}/versions/{ref}/approve")
    def approve(
        name: str, ref: str, actor: Actor, body: Annotated[CommentBody | None, Body()] = None
    ) -> dict[str, Any]:
        """Approve the open request; promotes when enough approvals count."""
        comment = body.comment if body else ""
        return reg.approve(name, ref, comment=comment, actor=actor).as_json()

    @router.post("/api/v1/models/{name}/versions/{ref}/reject")
    def reject(
        name: str, ref: str, body: Annotated[CommentBody, Body()], actor: Actor
    ) -> dict[str, Any]:
        """Reject the open request with a comment."""
        return reg.reject(name, ref, comment=body.comment, actor=actor).as_json()

    @router.post("/api/v1/models/{name}/versions/{ref}/auto-promote")
    def auto_promote(name: str, ref: str, actor: Actor) -> dict[str, Any]:
        """Promote without a human when the policy allows it."""
        return reg.auto_promote(name, ref, actor=actor).as_json()

    return router
