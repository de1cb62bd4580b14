"""The one way out for side effects: enqueue() adds a row in the caller's transaction; the
worker claims due rows, delivers them through the handler registered for their kind, and retries
failures with exponential back-off. Rows survive restarts; several workers can run at once
(claims use FOR UPDATE SKIP LOCKED on PostgreSQL and a lease on every backend)."""
from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from flask import current_app
from sqlalchemy import select, update

from idp.clock import now
from idp.extensions import db
from idp.models.outbox import OutboxMessage

log = logging.getLogger("idp.outbox")

LEASE = timedelta(seconds=120)       # a claimed row is retried after this if its worker died
MAX_ATTEMPTS = 10                    # about 17 hours of back-off in total
BASE_DELAY = 10                      # seconds before the first retry; doubles each time


class DeliveryFailed(Exception):
    """A handler could not deliver; the message (no secrets) is kept as last_error."""


def register_handler(app, kind: str, handler: Callable[[dict], None]) -> None:
    """Rooms above the outbox say how to deliver their kinds (create_app wires them)."""
    app.extensions.setdefault("idp.outbox", {})[kind] = handler


def enqueue(kind: str, payload: dict) -> OutboxMessage:
    """Add a message to the current unit of work; the caller commits."""
    row = OutboxMessage(kind=kind, payload=payload, status="pending", attempts=0, next_attempt_at=now())
    db.session.add(row)
    return row


def claim(limit: int = 20, ids: list[int] | None = None) -> list[OutboxMessage]:
    """Take up to `limit` due messages (optionally only these ids) for this worker; commits."""
    query = (select(OutboxMessage.id).where(OutboxMessage.status == "pending",
                                            OutboxMessage.next_attempt_at <= now())
             .order_by(OutboxMessage.id).limit(limit))
    if ids is not None:
        query = query.where(OutboxMessage.id.in_(ids))
    if db.session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    claimed_ids = list(db.session.scalars(query))
    if not claimed_ids:
        db.session.commit()
        return []
    lease_until = now() + LEASE
    db.session.execute(update(OutboxMessage).where(OutboxMessage.id.in_(claimed_ids),
                                                   OutboxMessage.status == "pending")
                       .values(next_attempt_at=lease_until, attempts=OutboxMessage.attempts + 1))
    db.session.commit()
    return list(db.session.scalars(select(OutboxMessage).where(OutboxMessage.id.in_(claimed_ids))))


def deliver(message: OutboxMessage) -> bool:
    """Run the handler for one claimed message and record the outcome; commits."""
    handler = current_app.extensions.get("idp.outbox", {}).get(message.kind)
    try:
        if handler is None:
            raise DeliveryFailed(f"no handler for {message.kind}")
        handler(message.payload)
    except DeliveryFailed as failure:
        _retry_later(message, str(failure))
        return False
    message.status = "delivered"
    message.delivered_at = now()
    message.last_error = None
    db.session.commit()
    return True


def _retry_later(message: OutboxMessage, error: str) -> None:
    message.last_error = error[:500]
    if message.attempts >= MAX_ATTEMPTS:
        message.status = "failed"
        log.warning("outbox message %s (%s) failed for good: %s", message.id, message.kind, message.last_error)
    else:
        message.next_attempt_at = now() + timedelta(seconds=BASE_DELAY * 2 ** (message.attempts - 1))
    db.session.commit()


def run_once(limit: int = 20, ids: list[int] | None = None) -> tuple[int, int]:
    """Deliver what is due now; returns (delivered, failed attempts)."""
    delivered = failed = 0
    for message in claim(limit, ids):
        if deliver(message):
            delivered += 1
        else:
            failed += 1
    return delivered, failed
