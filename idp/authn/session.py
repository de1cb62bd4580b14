"""The SSO session: a database row found through a random cookie value (stored as a digest)."""
from __future__ import annotations

from datetime import timedelta

from flask import Flask, current_app, g, request

from idp.clock import now
from idp.extensions import db
from idp.models import SsoSession, User
from idp.security.tokens import digest, random_token

TOUCH_EVERY = timedelta(seconds=60)


def cookie_name() -> str:
    settings = current_app.config["IDP_SETTINGS"]
    return "idp_session" if settings.is_loopback_http else "__Host-idp_session"


def current_session() -> SsoSession | None:
    """The live session of this browser, or None (absent, idle too long, expired, user disabled)."""
    if "idp_session" in g:
        return g.idp_session
    g.idp_session = None
    raw = request.cookies.get(cookie_name())
    if raw and len(raw) < 128:
        row = db.session.scalar(db.select(SsoSession).where(SsoSession.token_digest == digest(raw)))
        if row is not None and _is_live(row):
            g.idp_session = row
            if now() - row.last_seen_at > TOUCH_EVERY:
                row.last_seen_at = now()
                db.session.commit()
    return g.idp_session


def current_user() -> User | None:
    row = current_session()
    return row.user if row is not None else None


def _is_live(row: SsoSession) -> bool:
    settings = current_app.config["IDP_SETTINGS"]
    t = now()
    return (row.expires_at > t and row.last_seen_at + timedelta(seconds=settings.session_idle_lifetime) > t
            and not row.user.disabled)


def start(user: User, amr: list[str], acr: str) -> SsoSession:
    """Replace any session of this browser with a new one (no fixation); the caller commits."""
    settings = current_app.config["IDP_SETTINGS"]
    end()
    raw = random_token(32)
    t = now()
    row = SsoSession(token_digest=digest(raw), sid=random_token(16), user=user, auth_time=t, acr=acr,
                     amr=amr, ip=request.remote_addr, user_agent=(request.user_agent.string or "")[:512],
                     created_at=t, last_seen_at=t,
                     expires_at=t + timedelta(seconds=settings.session_absolute_lifetime))
    db.session.add(row)
    g.idp_session = row
    g.idp_cookie = raw
    return row


def elevate(row: SsoSession, amr: list[str], acr: str) -> None:
    """Record a step-up on this browser's session: more factors proved just now. The session keeps
    its sid (clients' ID tokens stay tied to it) but gets a new cookie value; the caller commits."""
    raw = random_token(32)
    row.token_digest = digest(raw)
    row.amr, row.acr, row.auth_time = amr, acr, now()
    g.idp_session = row
    g.idp_cookie = raw


def end_other_sessions(user: User) -> int:
    """Delete every session of this user except this browser's; the number ended. The caller commits."""
    keep = current_session()
    query = db.select(SsoSession).where(SsoSession.user_id == user.id)
    if keep is not None:
        query = query.where(SsoSession.id != keep.id)
    rows = db.session.scalars(query).all()
    for row in rows:
        db.session.delete(row)
    return len(rows)


def end() -> SsoSession | None:
    """Delete this browser's session row (if any) and clear the cookie; the caller commits."""
    row = current_session()
    if row is not None:
        db.session.delete(row)
    g.idp_session = None
    g.idp_cookie = ""
    return row


def init_session_cookie(app: Flask) -> None:
    @app.after_request
    def _write_cookie(response):
        raw = g.get("idp_cookie")
        if raw is None:
            return response
        settings = current_app.config["IDP_SETTINGS"]
        secure = not settings.is_loopback_http
        if raw:
            response.set_cookie(cookie_name(), raw, max_age=settings.session_absolute_lifetime,
                                secure=secure, httponly=True, samesite="Lax", path="/")
        else:
            response.delete_cookie(cookie_name(), secure=secure, httponly=True, samesite="Lax", path="/")
        return response
