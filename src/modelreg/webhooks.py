"""Webhooks in both directions: ledger events out to subscribers, MLflow's events in.

Outgoing: every ledger event has an outbox row (written in the event's own
transaction, see :mod:`modelreg.ledger.outbox`). A :class:`Dispatcher` fans
new outbox rows out into one delivery per interested :class:`Subscriber`, then
POSTs due deliveries, signed with HMAC-SHA256, retrying failures with
exponential backoff. Delivery state lives in the ledger, so a restart resumes
where the last process stopped; delivery is at least once, and receivers
deduplicate by the ``X-Modelreg-Delivery`` header. Targets are held to the
rules of :mod:`modelreg.ssrf` when the subscriber is built and again on the
address each connection reaches; a failed attempt records the status code and
its standard reason phrase, never the receiver's answer, which may hold an
internal service's secrets and is shown to every viewer.

::

    POST <subscriber url>
    Content-Type: application/json
    X-Modelreg-Delivery: 42
    X-Modelreg-Event: transition
    X-Modelreg-Timestamp: 1767225600
    X-Modelreg-Signature: sha256=<hex HMAC-SHA256(secret, b"<timestamp>." + body)>

    {"delivery_id": 42, "event": {...payload(event)...}, "subscriber": "ci"}

Incoming: MLflow's registry webhooks (version created, alias set or deleted)
tell modelreg to sync; :func:`verify_mlflow_signature` and :func:`mlflow_event`
check and read them the way MLflow 3.17 signs them
(``mlflow/webhooks/delivery.py``, ``_generate_hmac_signature``);
:func:`mlflow_delivery` names a verified request's delivery, which the service
acts on once (MLflow's own retries and any replay reuse it).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http
import json
import logging
import random
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

import httpx

from modelreg.domain import Action, DeliveryStatus
from modelreg.errors import InvalidInputError
from modelreg.ledger import Ledger
from modelreg.ledger.deliveries import Claim, DeliveryStore
from modelreg.ledger.outbox import payload
from modelreg.ssrf import peer_refusal, url_refusal

__all__ = [
    "DELIVERY_HEADER",
    "EVENT_HEADER",
    "MLFLOW_DELIVERY_ID_HEADER",
    "MLFLOW_SIGNATURE_HEADER",
    "MLFLOW_TIMESTAMP_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "DeliveryStatus",
    "Dispatcher",
    "Subscriber",
    "mlflow_delivery",
    "mlflow_event",
    "payload",
    "sign",
    "verify_mlflow_signature",
    "verify_signature",
]

log = logging.getLogger(__name__)

DELIVERY_HEADER = "X-Modelreg-Delivery"
EVENT_HEADER = "X-Modelreg-Event"
TIMESTAMP_HEADER = "X-Modelreg-Timestamp"
SIGNATURE_HEADER = "X-Modelreg-Signature"

# MLflow 3.17, mlflow/webhooks/constants.py.
MLFLOW_SIGNATURE_HEADER = "X-MLflow-Signature"
MLFLOW_TIMESTAMP_HEADER = "X-MLflow-Timestamp"
MLFLOW_DELIVERY_ID_HEADER = "X-MLflow-Delivery-Id"
_MLFLOW_SIGNATURE_VERSION = "v1"
# Registry entities whose payload ``data.name`` is a registered model; prompts
# are registered models inside MLflow too, but modelreg does not govern them.
_MLFLOW_MODEL_ENTITIES = frozenset(
    {"registered_model", "model_version", "model_version_tag", "model_version_alias"}
)
_MLFLOW_WORD = re.compile(r"^[a-z_]{1,64}$")
# MLflow sends a uuid4; anything much longer is not one of its ids.
_MLFLOW_MAX_DELIVERY_ID = 128
# MLflow's payloads are a few hundred bytes; anything near this is not one.
_MLFLOW_MAX_BODY = 1 << 20

_SUBSCRIBER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# Up to 10% extra on each backoff, so deliveries that failed together do not
# all come back in the same instant.
_JITTER = 0.1


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Subscriber:
    """A webhook receiver: where to POST, the shared secret, and which actions (empty: all).

    ``allow_private`` lets the url be (or resolve to) a private or loopback
    address; link-local and cloud-metadata addresses are refused regardless.
    """

    name: str
    url: str
    secret: bytes = field(repr=False)
    actions: frozenset[str] = frozenset()
    allow_private: bool = False

    def __post_init__(self) -> None:
        if not _SUBSCRIBER_NAME.match(self.name):
            raise InvalidInputError(
                f"invalid webhook subscriber name {self.name[:60]!r}: use letters, digits, "
                "'-', '_' and '.', at most 128 characters"
            )
        try:
            url = httpx.URL(self.url)
        except httpx.InvalidURL as exc:
            raise InvalidInputError(f"webhook {self.name}: invalid url: {exc}") from exc
        if url.scheme not in {"http", "https"} or not url.host:
            raise InvalidInputError(
                f"webhook {self.name}: url {self.url[:80]!r} must be http:// or https:// "
                "with a host"
            )
        if refusal := url_refusal(url.host, allow_private=self.allow_private):
            raise InvalidInputError(f"webhook {self.name}: {refusal}")
        if not self.secret:
            raise InvalidInputError(f"webhook {self.name}: the secret is empty; set one")
        known = {action.value for action in Action}
        if unknown := sorted(set(self.actions) - known):
            raise InvalidInputError(
                f"webhook {self.name}: unknown actions {', '.join(unknown)}; "
                f"use any of: {', '.join(sorted(known))}"
            )


class _RefusedTargetError(Exception):
    """A connection reached an address the subscriber may not be sent to."""


def _connection_guard(subscriber: Subscriber) -> Callable[[str, dict[str, Any]], None]:
    """An httpcore ``trace`` hook that checks each new connection's peer before any data is sent.

    The peer is the address the socket actually reached, after DNS and
    without a second lookup, so a name that resolves (or is rebound) to a
    forbidden address is refused as surely as the address itself. TLS starts
    after this check, so certificates are still verified against the name.
    """

    def guard(name: str, info: dict[str, Any]) -> None:
        if name != "connection.connect_tcp.complete":
            return
        stream = info["return_value"]
        try:
            peer = str(stream.get_extra_info("socket").getpeername()[0])
        except (AttributeError, OSError) as exc:
            peer = f"<unknown: {exc}>"
        if refusal := peer_refusal(peer, allow_private=subscriber.allow_private):
            stream.close()
            raise _RefusedTargetError(f"{httpx.URL(subscriber.url).host}: {refusal}")

    return guard


def _status_text(status_code: int) -> str:
    """``HTTP 503 Service Unavailable``: what a failed attempt records instead of the answer."""
    try:
        phrase = http.HTTPStatus(status_code).phrase
    except ValueError:
        phrase = "Unknown Status"
    return f"HTTP {status_code} {phrase}"


def _canonical(value: Any) -> bytes:
    """Compact, key-sorted UTF-8 JSON: one body per value, whatever the dict order."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The ``X-Modelreg-Signature`` value of ``body`` sent at ``timestamp`` (unix seconds)."""
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def _timestamp(text: str | int) -> int | None:
    """A unix-seconds header value as an int, or None if it is not one."""
    if isinstance(text, int):
        return text
    stripped = text.strip()
    return (
        int(stripped) if stripped.isascii() and stripped.isdigit() and len(stripped) < 16 else None
    )


def _fresh(timestamp: int, tolerance: float, now: float | None) -> bool:
    # A captured request replayed later carries its old timestamp, and the
    # timestamp is inside the signature, so refusing old ones stops replays.
    return abs((time.time() if now is None else now) - timestamp) <= tolerance


def verify_signature(
    secret: bytes,
    timestamp: str | int,
    body: bytes,
    header: str,
    *,
    tolerance: float = 300,
    now: float | None = None,
) -> bool:
    """Whether ``header`` is our signature of ``body`` at a ``timestamp`` within ``tolerance``."""
    sent_at = _timestamp(timestamp)
    if sent_at is None or not _fresh(sent_at, tolerance, now):
        return False
    expected = sign(secret, sent_at, body).encode()
    # compare_digest takes as long whatever the mismatch, so timing leaks nothing.
    return hmac.compare_digest(expected, header.strip().encode("utf-8", "replace"))


def verify_mlflow_signature(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance: float = 300,
    now: float | None = None,
) -> bool:
    """Whether an MLflow webhook request is signed with ``secret`` and recent.

    MLflow signs ``f"{delivery_id}.{timestamp}.{body}"`` with HMAC-SHA256 and
    sends ``v1,<base64 digest>``; as in Standard Webhooks, several
    space-separated signatures may be sent and one match suffices.
    """
    lowered = {key.lower(): value for key, value in headers.items()}
    delivery_id = lowered.get(MLFLOW_DELIVERY_ID_HEADER.lower(), "")
    timestamp = lowered.get(MLFLOW_TIMESTAMP_HEADER.lower(), "")
    signatures = lowered.get(MLFLOW_SIGNATURE_HEADER.lower(), "")
    sent_at = _timestamp(timestamp)
    if not (secret and delivery_id and signatures) or sent_at is None:
        return False
    if len(delivery_id) > _MLFLOW_MAX_DELIVERY_ID:
        return False
    if not _fresh(sent_at, tolerance, now):
        return False
    signed = f"{delivery_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).digest()
    expected = base64.b64encode(digest)
    matched = False
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        # No early exit: every candidate is compared, so timing says nothing.
        matched |= version == _MLFLOW_SIGNATURE_VERSION and hmac.compare_digest(
            expected, value.encode("utf-8", "replace")
        )
    return matched


def mlflow_delivery(headers: Mapping[str, str]) -> tuple[str, int]:
    """The delivery id and unix send time of an MLflow webhook request already verified.

    A replay of a captured request carries the same id and time; so does
    MLflow's own retry after a 5xx or a timeout.
    """
    lowered = {key.lower(): value for key, value in headers.items()}
    sent_at = _timestamp(lowered.get(MLFLOW_TIMESTAMP_HEADER.lower(), ""))
    delivery_id = lowered.get(MLFLOW_DELIVERY_ID_HEADER.lower(), "")
    if sent_at is None or not delivery_id:
        raise InvalidInputError("MLflow webhook request has no delivery id or timestamp")
    return delivery_id, sent_at


def mlflow_event(body: bytes) -> tuple[str, str | None]:
    """The ``entity.action`` of an MLflow webhook body and its registered model's name.

    The name is None for entities that are not registered models or their
    versions (prompts, budget policies). Raises InvalidInputError for a body
    that is not an MLflow webhook payload.
    """
    shape = 'MLflow sends {"entity": ..., "action": ..., "timestamp": ..., "data": {...}}'
    if len(body) > _MLFLOW_MAX_BODY:
        raise InvalidInputError(
            f"MLflow webhook body of {len(body)} bytes is too large; {shape} of a few hundred"
        )
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise InvalidInputError(f"MLflow webhook body is not JSON ({exc}); {shape}") from exc
    if not isinstance(document, dict):
        raise InvalidInputError(f"MLflow webhook body is not a JSON object; {shape}")
    entity, action, data = document.get("entity"), document.get("action"), document.get("data")
    for key, value in (("entity", entity), ("action", action)):
        if not isinstance(value, str) or not _MLFLOW_WORD.match(value):
            raise InvalidInputError(f"MLflow webhook body has no valid {key!r}; {shape}")
    if not isinstance(data, dict):
        raise InvalidInputError(f"MLflow webhook body has no 'data' object; {shape}")
    if entity not in _MLFLOW_MODEL_ENTITIES:
        return f"{entity}.{action}", None
    name = data.get("name")
    if not isinstance(name, str) or not name or len(name) > 256:
        raise InvalidInputError(
            f"MLflow webhook {entity}.{action} has no valid registered model 'name' in 'data'"
        )
    return f"{entity}.{action}", name


class Dispatcher:
    """Delivers outbox events to webhook subscribers: fan-out, signed POSTs, retries.

    Safe to run in several replicas against one PostgreSQL ledger: deliveries
    are leased before sending, so each attempt is made by one replica.
    """

    def __init__(
        self,
        ledger: Ledger,
        subscribers: Sequence[Subscriber],
        *,
        max_attempts: int = 8,
        base_delay: float = 1.0,
        max_delay: float = 300.0,
        timeout: float = 5.0,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], datetime] = _utcnow,
        batch: int = 100,
    ) -> None:
        names = [subscriber.name for subscriber in subscribers]
        if duplicates := sorted({name for name in names if names.count(name) > 1}):
            raise InvalidInputError(f"webhook subscriber names repeat: {', '.join(duplicates)}")
        if (
            min(max_attempts, batch) < 1
            or base_delay <= 0
            or max_delay < base_delay
            or timeout <= 0
        ):
            raise InvalidInputError(
                "webhook delivery needs max_attempts >= 1, batch >= 1, base_delay > 0, "
                "max_delay >= base_delay and timeout > 0"
            )
        self._store = DeliveryStore(ledger)
        self._subscribers = {subscriber.name: subscriber for subscriber in subscribers}
        self._max_attempts = max_attempts
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._clock = clock
        self._batch = batch
        # httpx applies the timeout to connect, write, read and pool separately;
        # the lease must outlast all four or another replica could send again.
        self._lease = timedelta(seconds=4 * timeout + 30)
        # One pool per subscriber: a connection opened under one subscriber's
        # address rules is never reused for another's. No proxies from the
        # environment: the address check must see the real target.
        self._clients = {
            name: httpx.Client(
                transport=transport, timeout=timeout, follow_redirects=False, trust_env=False
            )
            for name in self._subscribers
        }

    def _now(self) -> datetime:
        return self._clock().astimezone(UTC)

    def enqueue(self) -> int:
        """Create pending deliveries of new outbox rows; return how many were created."""
        wanted = {name: subscriber.actions for name, subscriber in self._subscribers.items()}
        if not wanted:
            return 0
        return self._store.fan_out(wanted, now=self._now())

    def deliver_due(self) -> int:
        """Send every due pending delivery once; return how many were attempted."""
        now = self._now()
        claims = self._store.claim(
            self._subscribers, now=now, lease_until=now + self._lease, limit=self._batch
        )
        # After a failure the rest of that subscriber's batch waits with it:
        # a dead receiver costs one timeout per round, not one per delivery.
        held: dict[str, tuple[datetime, list[int]]] = {}
        attempted = 0
        for claim in claims:
            if claim.subscriber in held:
                held[claim.subscriber][1].append(claim.delivery_id)
                continue
            attempted += 1
            retry_at = self._attempt(self._subscribers[claim.subscriber], claim)
            if retry_at is not None:
                held[claim.subscriber] = (retry_at, [])
        for until, delivery_ids in held.values():
            self._store.release(delivery_ids, until=until)
        return attempted

    def _attempt(self, subscriber: Subscriber, claim: Claim) -> datetime | None:
        """POST one delivery and record the outcome; return when to try again after a failure."""
        try:
            status_code, error = self._post(subscriber, claim)
        except _RefusedTargetError as exc:
            # Trying again would reach the same address: fail now, with the reason.
            log.warning(
                "webhook %s delivery %d refused: %s", subscriber.name, claim.delivery_id, exc
            )
            self._store.record(
                claim.delivery_id,
                status=DeliveryStatus.FAILED,
                at=self._now(),
                status_code=None,
                error=f"refused: {exc}",
            )
            return None
        now = self._now()
        if not error:
            self._store.record(
                claim.delivery_id, status=DeliveryStatus.DELIVERED, at=now, status_code=status_code
            )
            return None
        attempts = claim.attempts + 1
        retry_at = now + timedelta(seconds=self._backoff(attempts))
        gave_up = attempts >= self._max_attempts
        log.warning(
            "webhook %s delivery %d attempt %d/%d failed: %s",
            subscriber.name,
            claim.delivery_id,
            attempts,
            self._max_attempts,
            error,
        )
        self._store.record(
            claim.delivery_id,
            status=DeliveryStatus.FAILED if gave_up else DeliveryStatus.PENDING,
            at=now,
            status_code=status_code,
            error=error,
            next_attempt_at=now if gave_up else retry_at,
        )
        return retry_at

    def _backoff(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th failure: doubling, capped, jittered."""
        # The exponent is capped so a large max_attempts cannot overflow a float.
        delay = min(self._max_delay, self._base_delay * 2.0 ** min(attempts - 1, 32))
        jitter = 1 + _JITTER * random.random()  # noqa: S311 (spreads load; not a secret)
        return min(self._max_delay, delay * jitter)

    def _post(self, subscriber: Subscriber, claim: Claim) -> tuple[int | None, str]:
        """Send one delivery; return the status code (if any) and an error ('' on 2xx)."""
        body = _canonical(
            {
                "delivery_id": claim.delivery_id,
                "subscriber": subscriber.name,
                "event": claim.payload,
            }
        )
        timestamp = int(self._now().timestamp())
        headers = {
            "Content-Type": "application/json",
            DELIVERY_HEADER: str(claim.delivery_id),
            EVENT_HEADER: claim.action,
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(subscriber.secret, timestamp, body),
        }
        try:
            response = self._clients[subscriber.name].post(
                subscriber.url,
                content=body,
                headers=headers,
                extensions={"trace": _connection_guard(subscriber)},
            )
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}".rstrip(": ")
        if response.is_success:
            return response.status_code, ""
        return response.status_code, _status_text(response.status_code)

    def run_once(self) -> int:
        """Fan out new events, then send what is due; return how many sends were attempted."""
        self.enqueue()
        return self.deliver_due()

    def close(self) -> None:
        """Close the HTTP connection pools."""
        for client in self._clients.values():
            client.close()

    def __enter__(self) -> Dispatcher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
