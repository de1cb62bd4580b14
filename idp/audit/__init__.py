"""The audit trail: record(event, ...) appends one row; events() reads them back for the CLI.

Vocabulary: <room>.<thing>.<past-tense verb>, e.g. authn.login.failed, oauth.consent.granted.
Never pass a password, code, token or secret in details.
"""
from __future__ import annotations

from datetime import datetime

from flask import g, has_request_context, request

from idp.extensions import db
from idp.models import AuditEvent

FORBIDDEN_KEYS = {"password", "code", "token", "secret", "client_secret", "access_token",
                  "refresh_token", "id_token", "code_verifier"}


def record(event: str, *, outcome: str = "success", user=None, client=None, **details) -> AuditEvent:
    """Add an audit event to the current unit of work; the caller commits."""
    leaked = FORBIDDEN_KEYS & set(details)
    if leaked:
        raise ValueError(f"audit details must not carry secrets: {sorted(leaked)}")
    row = AuditEvent(type=event, outcome=outcome, details=details,
                     user_id=getattr(user, "id", user),
                     client_id=getattr(client, "client_id", client))
    if has_request_context():
        row.ip = request.remote_addr
        row.user_agent = (request.user_agent.string or "")[:512]
        row.request_id = g.get("request_id")
    db.session.add(row)
    return row


def events(*, user_id: int | None = None, type_prefix: str | None = None,
           since: datetime | None = None, limit: int = 1000) -> list[AuditEvent]:
    query = db.select(AuditEvent).order_by(AuditEvent.id)
    if user_id is not None:
        query = query.where(AuditEvent.user_id == user_id)
    if type_prefix:
        query = query.where(AuditEvent.type.startswith(type_prefix))
    if since is not None:
        query = query.where(AuditEvent.at >= since)
    return list(db.session.scalars(query.limit(limit)))


def as_dict(e: AuditEvent) -> dict:
    return {"id": e.id, "at": e.at.isoformat(), "type": e.type, "outcome": e.outcome,
            "user_id": e.user_id, "client_id": e.client_id, "ip": e.ip, "user_agent": e.user_agent,
            "request_id": e.request_id, "details": e.details}
