"""Webhook deliveries: fanning outbox rows out to subscribers, leasing and recording sends.

Every replica of the API may run a dispatcher at once. Fan-out locks each
subscriber's cursor row (``FOR UPDATE SKIP LOCKED``) so one replica advances
it while others skip it, and the unique (subscriber, outbox_id) constraint
makes a duplicate delivery impossible anyway. Sending leases due rows the same
way and pushes ``next_attempt_at`` past the lease before any HTTP call, so no
transaction stays open while a subscriber answers and no other replica sends
the same delivery meanwhile. SQLite ignores ``FOR UPDATE`` and serialises
writers, which is all a single process needs.

Incoming, :class:`ReceivedDeliveries` remembers which MLflow webhook requests
were acted on; the delivery id is the primary key, so of two replicas given
the same request exactly one inserts it and acts.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from modelreg.domain import DeliveryStatus
from modelreg.errors import ConflictError, NotFoundError
from modelreg.ledger.rows import insert_ignoring_duplicates, utc
from modelreg.ledger.store import Ledger
from modelreg.ledger.tables import (
    MlflowDeliveryRow,
    OutboxRow,
    WebhookCursorRow,
    WebhookDeliveryRow,
)
from modelreg.views import DeliveryView

_Row = WebhookDeliveryRow


@dataclass(frozen=True)
class Claim:
    """A due delivery leased to one dispatcher: what to send, to whom, and when it was due."""

    delivery_id: int
    subscriber: str
    action: str
    payload: dict[str, Any]
    attempts: int
    due_at: datetime


def _delivery(row: Any) -> DeliveryView:
    return DeliveryView(
        id=row.id,
        subscriber=row.subscriber,
        outbox_id=row.outbox_id,
        event_id=row.event_id,
        model=row.model,
        action=row.action,
        status=DeliveryStatus(row.status),
        attempts=row.attempts,
        next_attempt_at=utc(row.next_attempt_at),
        last_status_code=row.last_status_code,
        last_error=row.last_error,
        delivered_at=utc(row.delivered_at) if row.delivered_at else None,
        created_at=utc(row.created_at),
    )


_LISTED = select(
    *_Row.__table__.columns, OutboxRow.event_id, OutboxRow.model, OutboxRow.action
).join(OutboxRow, OutboxRow.id == _Row.outbox_id)


class DeliveryStore:
    """The ledger tables behind webhook delivery: cursors, deliveries and their outbox rows."""

    def __init__(self, ledger: Ledger) -> None:
        # The ledger's own sessions: migrations applied, errors mapped, and on
        # SQLite write sessions BEGIN IMMEDIATE (this module is part of the ledger).
        self._session = ledger.session

    def fan_out(
        self, subscribers: Mapping[str, frozenset[str]], *, now: datetime, batch: int = 1000
    ) -> int:
        """Create pending deliveries of new outbox rows for each subscriber; return how many.

        ``subscribers`` maps a name to the actions it wants (empty: all). A
        subscriber seen for the first time starts at the newest outbox row, so
        it is not flooded with the whole history.
        """
        created = 0
        with self._session(write=True) as session:
            newest = session.execute(select(func.coalesce(func.max(OutboxRow.id), 0))).scalar_one()
            for name, actions in subscribers.items():
                session.execute(
                    insert_ignoring_duplicates(session, WebhookCursorRow).values(
                        subscriber=name, last_outbox_id=newest
                    )
                )
                created += self._fan_out_one(session, name, actions, now, batch)
        return created

    @staticmethod
    def _fan_out_one(
        session: Session, name: str, actions: frozenset[str], now: datetime, batch: int
    ) -> int:
        cursor = session.execute(
            select(WebhookCursorRow.last_outbox_id)
            .where(WebhookCursorRow.subscriber == name)
            .with_for_update(skip_locked=True)
        ).scalar_one_or_none()
        if cursor is None:  # another replica is fanning out to this subscriber right now
            return 0
        rows = session.execute(
            select(OutboxRow.id, OutboxRow.action)
            .where(OutboxRow.id > cursor)
            .order_by(OutboxRow.id)
            .limit(batch)
        ).all()
        if not rows:
            return 0
        wanted = [
            {
                "subscriber": name,
                "outbox_id": outbox_id,
                "status": DeliveryStatus.PENDING.value,
                "attempts": 0,
                "next_attempt_at": now,
                "last_error": "",
                "created_at": now,
            }
            for outbox_id, action in rows
            if not actions or action in actions
        ]
        if wanted:
            session.execute(insert_ignoring_duplicates(session, _Row), wanted)
        session.execute(
            update(WebhookCursorRow)
            .where(WebhookCursorRow.subscriber == name)
            .values(last_outbox_id=rows[-1].id)
        )
        return len(wanted)

    def claim(
        self, subscribers: Collection[str], *, now: datetime, lease_until: datetime, limit: int
    ) -> list[Claim]:
        """Lease up to ``limit`` due pending deliveries of ``subscribers`` until ``lease_until``."""
        if not subscribers:
            return []
        with self._session(write=True) as session:
            due = session.execute(
                select(
                    _Row.id, _Row.subscriber, _Row.outbox_id, _Row.attempts, _Row.next_attempt_at
                )
                .where(
                    _Row.status == DeliveryStatus.PENDING.value,
                    _Row.next_attempt_at <= now,
                    _Row.subscriber.in_(list(subscribers)),
                )
                .order_by(_Row.next_attempt_at, _Row.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            ).all()
            if not due:
                return []
            session.execute(
                update(_Row)
                .where(_Row.id.in_([row.id for row in due]))
                .values(next_attempt_at=lease_until)
            )
            outbox = {
                row.id: row
                for row in session.execute(
                    select(OutboxRow.id, OutboxRow.action, OutboxRow.payload).where(
                        OutboxRow.id.in_({row.outbox_id for row in due})
                    )
                )
            }
        return [
            Claim(
                delivery_id=row.id,
                subscriber=row.subscriber,
                action=outbox[row.outbox_id].action,
                payload=dict(outbox[row.outbox_id].payload),
                attempts=row.attempts,
                due_at=utc(row.next_attempt_at),
            )
            for row in due
        ]

    def record(
        self,
        delivery_id: int,
        *,
        status: DeliveryStatus,
        at: datetime,
        status_code: int | None,
        error: str = "",
        next_attempt_at: datetime | None = None,
    ) -> None:
        """Record one attempt's outcome: counts the attempt and sets the new status."""
        values: dict[str, Any] = {
            "status": status.value,
            "attempts": _Row.attempts + 1,
            "last_status_code": status_code,
            "last_error": error,
        }
        if status is DeliveryStatus.DELIVERED:
            values["delivered_at"] = at
        if next_attempt_at is not None:
            values["next_attempt_at"] = next_attempt_at
        with self._session(write=True) as session:
            session.execute(update(_Row).where(_Row.id == delivery_id).values(**values))

    def release(self, delivery_ids: Collection[int], *, until: datetime) -> None:
        """Hand leased deliveries back untried, due again at ``until``."""
        if not delivery_ids:
            return
        with self._session(write=True) as session:
            session.execute(
                update(_Row).where(_Row.id.in_(list(delivery_ids))).values(next_attempt_at=until)
            )

    def deliveries(
        self,
        *,
        subscriber: str | None = None,
        status: DeliveryStatus | None = None,
        limit: int = 100,
    ) -> list[DeliveryView]:
        """The newest deliveries first, optionally of one subscriber or in one status."""
        query = _LISTED.order_by(_Row.id.desc()).limit(limit)
        if subscriber is not None:
            query = query.where(_Row.subscriber == subscriber)
        if status is not None:
            query = query.where(_Row.status == status.value)
        with self._session() as session:
            return [_delivery(row) for row in session.execute(query)]

    def retry(self, delivery_id: int, *, now: datetime) -> DeliveryView:
        """Put a failed delivery back to pending with a fresh set of attempts, due ``now``."""
        with self._session(write=True) as session:
            row = session.execute(
                _LISTED.where(_Row.id == delivery_id).with_for_update(of=_Row)
            ).first()
            if row is None:
                raise NotFoundError(
                    f"webhook delivery {delivery_id} does not exist; "
                    "run `modelreg webhooks` to list deliveries"
                )
            if row.status == DeliveryStatus.DELIVERED.value:
                raise ConflictError(
                    f"webhook delivery {delivery_id} was already delivered; nothing to retry"
                )
            session.execute(
                update(_Row)
                .where(_Row.id == delivery_id)
                .values(status=DeliveryStatus.PENDING.value, attempts=0, next_attempt_at=now)
            )
            row = session.execute(_LISTED.where(_Row.id == delivery_id)).one()
            return _delivery(row)


class ReceivedDeliveries:
    """MLflow webhook delivery ids already acted on, kept while a replay could still pass."""

    def __init__(self, ledger: Ledger) -> None:
        self._session = ledger.session

    def first_time(self, delivery_id: str, *, now: datetime, expires_at: datetime) -> bool:
        """Record ``delivery_id`` and say whether it is new; forget ids expired by ``now``.

        ``expires_at`` is when the request's signature stops being fresh: after
        it a replay is refused anyway, so the id need not be kept.
        """
        with self._session(write=True) as session:
            session.execute(delete(MlflowDeliveryRow).where(MlflowDeliveryRow.expires_at < now))
            inserted = session.execute(
                insert_ignoring_duplicates(session, MlflowDeliveryRow)
                .values(delivery_id=delivery_id, received_at=now, expires_at=expires_at)
                .returning(MlflowDeliveryRow.delivery_id)
            ).scalar_one_or_none()
            return inserted is not None
