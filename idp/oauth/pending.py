"""Pending authorization requests: validated parameters kept server-side while a person signs
in or consents, referenced by an opaque id and bound to this browser. A page whose form resumes
one (the login's `next`) may send that form on to the request's redirect URI (web.headers)."""
from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

from flask import Flask, current_app, session, url_for
from sqlalchemy import delete

from idp.clock import now
from idp.extensions import db
from idp.models import PendingAuthorization
from idp.oauth.server import query_client
from idp.security.tokens import constant_time_equal, digest, random_token
from idp.web.headers import init_form_destinations


def init_pending(app: Flask) -> None:
    init_form_destinations(app, redirect_uris_after)


def _browser_id() -> str:
    if "bid" not in session:
        session["bid"] = random_token(16)
    return session["bid"]


def save(params: dict, *, step_up_acr: str | None = None) -> str:
    """Store the request and return its opaque id; the caller commits."""
    settings = current_app.config["IDP_SETTINGS"]
    pending_id = random_token(24)
    db.session.add(PendingAuthorization(id_digest=digest(pending_id), browser_digest=digest(_browser_id()),
                                        params=params, step_up_acr=step_up_acr, created_at=now(),
                                        expires_at=now() + timedelta(seconds=settings.pending_ttl)))
    return pending_id


def load(pending_id: str) -> PendingAuthorization | None:
    """The live request for this id and this browser, or None."""
    if not pending_id or len(pending_id) > 64:
        return None
    row = db.session.get(PendingAuthorization, digest(pending_id))
    if row is None or row.expires_at <= now() or "bid" not in session:
        return None
    if not constant_time_equal(row.browser_digest, digest(session["bid"])):
        return None
    return row


def drop(row: PendingAuthorization) -> bool:
    """Use up the request (one DELETE); True for the one request that did, False when a racing
    one (a double click, two tabs) already had, which must then issue nothing. The caller commits."""
    result = db.session.execute(delete(PendingAuthorization).where(PendingAuthorization.id_digest == row.id_digest),
                                execution_options={"synchronize_session": False})
    if row in db.session:
        db.session.expunge(row)  # gone: nothing may flush it again
    return result.rowcount == 1


def redirect_uris_after(path: str) -> list[str]:
    """Where a local path leads outside our origin: for /authorize/resume/<id> of a live request
    of this browser, its redirect URI (or its client's only one), checked again against the
    client's registered redirect URIs. Nothing for any other path."""
    prefix = url_for("oauth.resume", pending_id="")
    parts = urlsplit(path)
    if parts.scheme or parts.netloc or not parts.path.startswith(prefix):
        return []
    row = load(parts.path[len(prefix):])
    client = query_client(row.params.get("client_id")) if row is not None else None
    if client is None:
        return []
    redirect_uri = row.params.get("redirect_uri") or client.get_default_redirect_uri()
    return [redirect_uri] if redirect_uri and client.check_redirect_uri(redirect_uri) else []
