"""Pending authorization requests: validated parameters kept server-side while a person signs
in or consents, referenced by an opaque id and bound to this browser. A page whose form resumes
one (the login's `next`) may send that form on to the client, so it has no CSP form-action
(web.headers)."""
from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

from flask import Flask, current_app, session, url_for
from sqlalchemy import delete

from idp.clock import now
from idp.extensions import db
from idp.models import PendingAuthorization
from idp.security.tokens import constant_time_equal, digest, random_token
from idp.web.headers import init_forms_leave_origin_after


def init_pending(app: Flask) -> None:
    init_forms_leave_origin_after(app, resumes_live_request)


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
    if not pending_id or len(pending_id) > 64 or "bid" not in session:  # a browser that saved none: no query
        return None
    row = db.session.get(PendingAuthorization, digest(pending_id))
    if row is None or row.expires_at <= now():
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


def resumes_live_request(path: str) -> bool:
    """Whether a local path is /authorize/resume/<id> of a live request of this browser: going
    there may answer the client at its redirect URI (validated when the request was saved), and on
    wherever the client redirects next. One lookup by primary key; False for any other path.
    The terms page with such a `next` counts too: when the terms were accepted meanwhile, it goes
    straight on to its `next` (a sign-in sent to /terms?next=/authorize/resume/<id>)."""
    parts = urlsplit(path)
    if parts.scheme or parts.netloc:
        return False
    if parts.path == url_for("authn.accept_terms"):
        nexts = parse_qs(parts.query).get("next", [])
        return len(nexts) == 1 and not urlsplit(nexts[0]).query and resumes_live_request(nexts[0])
    prefix = url_for("oauth.resume", pending_id="")
    if parts.query or not parts.path.startswith(prefix):
        return False
    return load(parts.path[len(prefix):]) is not None
