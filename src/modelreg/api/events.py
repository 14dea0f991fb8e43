"""Events in and out of the API service: the delivery log, and MLflow's webhooks as a trigger.

Outgoing deliveries are sent by the webhook worker (:mod:`modelreg.workers`);
here they can be listed and retried. Incoming: MLflow registry webhooks
(version created, alias set or deleted) are accepted only with a valid
signature and make the service adopt the model's new versions at once and
put back (under a policy) or report any alias moved behind the ledger's back,
instead of waiting for the next periodic sync. The body is refused past 1 MiB
before it is read, and each delivery id is acted on once across replicas: a
replayed or retried request is answered 200 "duplicate" and does nothing.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Path, Query, Request
from fastapi.responses import JSONResponse

from modelreg.api.identity import Actor
from modelreg.domain import MAX_LEDGER_ID
from modelreg.errors import AuthenticationError, ModelregError, NotFoundError
from modelreg.registry import Registry
from modelreg.webhooks import mlflow_delivery, mlflow_event, verify_mlflow_signature

log = logging.getLogger("modelreg.api.events")
# MLflow's payloads are a few hundred bytes; larger bodies are refused (413)
# before they are read, signed or not.
_MAX_BODY = 1 << 20
# How old (or early) a signed MLflow request may be; its id is remembered as long.
_MLFLOW_FRESHNESS = 300


def _react(registry: Registry, event: str, name: str) -> None:
    """Let the core react to an MLflow change and log it; runs after the response is sent.

    The reaction is modelreg's own work, not a caller's: the sender proved itself
    with the signature, and the core adopts and repairs as the system actor.
    """
    try:
        adopted, drifts = registry.react_to_mlflow_change(name)
    except ModelregError as exc:
        log.warning("%s: sync of %s failed (periodic sync retries): %s", event, name, exc.message)
        return
    if adopted:
        log.info("%s: adopted %d version(s) of %s", event, len(adopted), name)
    for drift in drifts:
        log.warning(
            "%s: %s v%s %s was %s in MLflow but %s in the ledger; %s",
            event,
            name,
            drift.version,
            drift.kind,
            drift.actual,
            drift.expected,
            "repaired" if drift.fixed else "run `modelreg doctor --fix`",
        )


def events_router(registry: Registry) -> APIRouter:
    """The MLflow webhook receiver and the webhook delivery log."""
    router = APIRouter()

    @router.get("/api/v1/webhooks/deliveries")
    def deliveries(
        _actor: Actor,
        subscriber: Annotated[str | None, Query(max_length=128)] = None,
        status: Annotated[str | None, Query(max_length=16)] = None,
        limit: Annotated[int, Query(ge=1, le=10000)] = 100,
    ) -> list[dict[str, Any]]:
        """Webhook deliveries, newest first, with attempts and the last error."""
        found = registry.deliveries(subscriber=subscriber, status=status, limit=limit)
        return [d.as_json() for d in found]

    @router.post("/api/v1/webhooks/deliveries/{delivery_id}/retry")
    def retry(
        delivery_id: Annotated[int, Path(ge=1, le=MAX_LEDGER_ID)], actor: Actor
    ) -> dict[str, Any]:
        """Queue a failed delivery again (admins)."""
        return registry.retry_delivery(delivery_id, actor=actor).as_json()

    @router.post("/api/v1/mlflow-webhook", status_code=202, max_body_size=_MAX_BODY)
    async def mlflow_webhook(request: Request, background: BackgroundTasks) -> JSONResponse:
        """Accept a signed MLflow registry webhook and sync the model it names, once."""
        secret = registry.settings.mlflow_webhook_secret
        if not secret:
            raise NotFoundError(
                "MLflow webhooks are not enabled here; set MODELREG_MLFLOW_WEBHOOK_SECRET to the "
                "secret the MLflow webhook was created with"
            )
        body = await request.body()  # 413 past _MAX_BODY, from Content-Length or while read
        # The signature is checked before the body is parsed: forged input is never read.
        verified = verify_mlflow_signature(
            secret, request.headers, body, tolerance=_MLFLOW_FRESHNESS
        )
        if not verified:
            raise AuthenticationError("MLflow webhook signature is missing, stale or wrong")
        delivery_id, sent_at = mlflow_delivery(request.headers)
        now = datetime.now(UTC)
        expires_at = datetime.fromtimestamp(sent_at, UTC) + timedelta(seconds=_MLFLOW_FRESHNESS)
        first = await asyncio.to_thread(
            registry.accept_mlflow_delivery, delivery_id, expires_at=expires_at, now=now
        )
        if not first:
            # 2xx, so MLflow does not retry; a replay gets the same answer and acts on nothing.
            return JSONResponse({"delivery": delivery_id, "duplicate": True, "sync": False})
        event, name = mlflow_event(body)
        answer: dict[str, Any] = {
            "delivery": delivery_id,
            "event": event,
            "model": name,
            "sync": name is not None,
        }
        if name is not None:
            background.add_task(_react, registry, event, name)
        return JSONResponse(answer, status_code=202)

    return router
