"""The outbox: each ledger event as webhook subscribers see it, written in its transaction.

An event and its outbox row commit together or not at all, so a notification
can neither announce a change that was rolled back nor be lost for one that
committed.

Subscribers read the outbox in id order behind a cursor, which is only sound if
ids become visible in id order. PostgreSQL hands out sequence values at insert,
not at commit, so two promotions of different models could commit their rows
out of order and a cursor could step over the slower one for good. Rows are
therefore inserted as the transaction commits, under a global advisory lock
that is held only from that insert to the commit; SQLite serialises writers
anyway.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy import insert, text
from sqlalchemy.orm import Session

from modelreg.domain import Event
from modelreg.ledger.tables import OutboxRow

_PENDING = "modelreg.outbox.pending"
# Distinct from the migration lock (727274); per-model keys are sha256-derived.
_OUTBOX_LOCK = 727275


def payload(event: Event) -> dict[str, Any]:
    """The JSON form of ``event`` that webhook subscribers receive."""
    return {
        "event_id": event.id,
        "model": event.model,
        "version": event.version,
        "action": event.action.value,
        "actor": event.actor,
        "at": event.at.isoformat(),
        "from_stage": event.from_stage.value if event.from_stage else None,
        "to_stage": event.to_stage.value if event.to_stage else None,
        "semver": event.semver,
        "digest": event.digest,
        "reason": event.reason,
        "previous_version": event.details.get("previous_version"),
        "new_version": event.version if event.to_stage else None,
        "details": event.details,
    }


def queue(session: Session, event: Event) -> None:
    """Queue ``event``'s outbox row; it is written as ``session``'s transaction commits."""
    pending: list[dict[str, Any]] | None = session.info.get(_PENDING)
    if pending is None:
        pending = session.info[_PENDING] = []
        sa_event.listen(session, "before_commit", _write_pending)
        sa_event.listen(session, "after_rollback", _drop_pending)
    pending.append(
        {
            "event_id": event.id,
            "model": event.model,
            "action": event.action.value,
            "payload": payload(event),
            "created_at": event.at,
        }
    )


def _write_pending(session: Session) -> None:
    pending: list[dict[str, Any]] = session.info.get(_PENDING, [])
    if not pending:
        return
    if session.get_bind().dialect.name == "postgresql":
        # Released by the commit that follows: outbox ids become visible in id order.
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _OUTBOX_LOCK})
    session.execute(insert(OutboxRow), list(pending))
    pending.clear()


def _drop_pending(session: Session) -> None:
    session.info.get(_PENDING, []).clear()
