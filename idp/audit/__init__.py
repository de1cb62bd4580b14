"""The audit trail: record(event, ...) appends one row; events() reads them back for the CLI.

Vocabulary: <room>.<thing>.<past-tense verb>, e.g. authn.login.failed, oauth.consent.granted.
Never pass a password, code, token or secret in details.
"""
from __future__ import annotations

import re
import threading
import time
from datetime import datetime, timezone

from flask import g, has_request_context, request

from idp.clock import aware
from idp.extensions import db
from idp.models import AuditEvent

# A details key looks like a secret when any of its words is one of SECRET_WORDS
# ("new_password", "totp_secret") or its last word is one of SECRET_NOUNS ("refresh_token",
# "recovery_code", "api_key"), but not "token_endpoint_auth_method" or "code_challenge_method".
SECRET_WORDS = {"password", "passwd", "passphrase", "secret"}
SECRET_NOUNS = {"code", "token", "verifier", "cookie", "key", "otp", "pin", "seed", "assertion"}


def looks_secret(key: str) -> bool:
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", key).lower().replace("-", "_").split("_")
    return bool(SECRET_WORDS & set(words)) or words[-1] in SECRET_NOUNS


def _secret_keys(value) -> set[str]:
    """Every secret-looking key in a details value, however deeply nested in dicts and lists."""
    if isinstance(value, dict):
        found = {str(k) for k in value if looks_secret(str(k))}
        return found.union(*(_secret_keys(v) for v in value.values()))
    if isinstance(value, (list, tuple)):
        return set().union(*(_secret_keys(v) for v in value))
    return set()


def record(event: str, *, outcome: str = "success", user=None, client=None, **details) -> AuditEvent:
    """Add an audit event to the current unit of work; the caller commits."""
    leaked = _secret_keys(details)
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


# Events anyone can cause by the thousand without any credential (a forged client assertion naming
# a public client_id): the first per key and window is recorded, the rest only counted in process.
REPEAT_WINDOW = 60.0
MAX_REPEAT_KEYS = 10_000
_repeats: dict = {}  # key -> [window start (monotonic), left out since the last recorded one]
_repeats_lock = threading.Lock()


def record_first(event: str, *, key, outcome: str = "failure", user=None, client=None, **details) -> AuditEvent | None:
    """record(), at most once per `key` and REPEAT_WINDOW seconds in this process; the next one
    recorded carries `repeats`, how many were left out before it. None when left out (nothing to
    commit). Per process, so N instances record up to N per window; a flood costs no write."""
    moment = time.monotonic()
    with _repeats_lock:
        seen = _repeats.get(key)
        if seen is not None and moment - seen[0] < REPEAT_WINDOW:
            seen[1] += 1
            return None
        if len(_repeats) >= MAX_REPEAT_KEYS:
            _repeats.clear()  # only ever costs extra rows, never a lost first event
        _repeats[key] = [moment, 0]
    if seen is not None and seen[1]:
        details["repeats"] = seen[1]
    return record(event, outcome=outcome, user=user, client=client, **details)


def purge_old(*, blank_before: datetime | None, delete_before: datetime | None, batch: int) -> dict[str, int]:
    """Retention, for `idp purge`: events older than `delete_before` go; older than `blank_before`
    they lose their IP address and user agent (None: that step is off)."""
    from idp.models.batches import delete_in_batches, update_in_batches
    counts = {"audit_events": 0, "audit_events_anonymised": 0}
    if delete_before is not None:
        counts["audit_events"] = delete_in_batches(AuditEvent, AuditEvent.at < delete_before, batch)
    if blank_before is not None:
        identifying = (AuditEvent.ip.is_not(None)) | (AuditEvent.user_agent.is_not(None))
        counts["audit_events_anonymised"] = update_in_batches(
            AuditEvent, (AuditEvent.at < blank_before) & identifying, {"ip": None, "user_agent": None}, batch)
    return counts


def of_account(user):
    """The events of this account: its numeric id, from its creation on. SQLite gives a new row the
    id of the newest row if that was deleted, so an earlier account's events (which outlive it)
    may carry the same id; they are older than this account."""
    return db.select(AuditEvent).where(AuditEvent.user_id == user.id, AuditEvent.at >= user.created_at)


def events(*, user=None, user_id: int | None = None, type_prefix: str | None = None,
           since: datetime | None = None, limit: int = 1000) -> list[AuditEvent]:
    """Events oldest first; `user`: that account's own (of_account); `user_id`: every event under
    that numeric id."""
    query = (of_account(user) if user is not None else db.select(AuditEvent)).order_by(AuditEvent.id)
    if user_id is not None:
        query = query.where(AuditEvent.user_id == user_id)
    if type_prefix:
        query = query.where(AuditEvent.type.startswith(type_prefix, autoescape=True))  # _ and % are literal
    if since is not None:
        # SQLite stores the UTC wall time and drops the zone of a bound value, so convert first.
        query = query.where(AuditEvent.at >= aware(since).astimezone(timezone.utc))
    return list(db.session.scalars(query.limit(limit)))


def as_dict(e: AuditEvent) -> dict:
    return {"id": e.id, "at": e.at.isoformat(), "type": e.type, "outcome": e.outcome,
            "user_id": e.user_id, "client_id": e.client_id, "ip": e.ip, "user_agent": e.user_agent,
            "request_id": e.request_id, "details": e.details}
