"""The SSO session: a database row found through a random cookie value (stored as a digest).

Every way a session ends (logout, an admin action, the expiry sweep, another person signing in
in the same browser) goes through _ended(), which tells the callbacks registered with
on_session_end() in the same transaction; oauth uses that for back-channel logout without authn
knowing about OAuth."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from flask import Flask, current_app, g, request
from flask import session as browser
from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm.attributes import set_committed_value

from idp import audit
from idp.authn import steps
from idp.authn.factors import has_second_factor
from idp.clock import now
from idp.extensions import db
from idp.models import SsoSession, User
from idp.security.tokens import digest, random_token

TOUCH_EVERY = timedelta(seconds=60)


@dataclass(frozen=True)
class EndedSession:
    """What is left of a session once its row is gone: enough to tell the apps that used it."""
    sid: str
    user_id: int


SessionEndCallback = Callable[[list[EndedSession], str], None]


def on_session_end(app: Flask, callback: SessionEndCallback) -> None:
    """Call callback(ended, reason) whenever sessions end, before the caller commits. reason is
    one of: logout, admin, expired, replaced."""
    app.extensions.setdefault("idp.session_end", []).append(callback)


def _ended(rows: list[EndedSession], reason: str) -> None:
    if not rows:
        return
    if reason != "logout":  # a logout is recorded by the page that did it, with its own event
        for row in rows:
            audit.record("authn.session.ended", user=row.user_id, sid=row.sid, reason=reason)
    for callback in current_app.extensions.get("idp.session_end", []):
        callback(rows, reason)


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
                _note_use(row)
    return g.idp_session


def _note_use(row: SsoSession) -> None:
    """Note that the session is in use (last_seen_at, at most once a minute), written after the
    page by _commit_touch. Not now: an UPDATE here would hold the session row's lock (on SQLite,
    the one writer's lock) for the rest of the request, outbound fetches included, and a commit
    here would also commit whatever the request did before and split its unit of work in two."""
    t = now()
    set_committed_value(row, "last_seen_at", t)
    g.idp_touch = (row.id, t)


def _commit_touch(response):
    """After the page: the noted use in a short transaction of its own, one UPDATE (a session a
    racing request ended meanwhile stays ended: nothing matches). Whatever the view left
    uncommitted is rolled back first, as the end of the request would. A failed page (5xx) skips
    it: the next page notes it again."""
    touch = g.pop("idp_touch", None)
    if touch is None or response.status_code >= 500:
        return response
    session_id, t = touch
    db.session.rollback()
    db.session.execute(update(SsoSession).where(SsoSession.id == session_id).values(last_seen_at=t),
                       execution_options={"synchronize_session": False})
    db.session.commit()
    return response


def current_user() -> User | None:
    row = current_session()
    return row.user if row is not None else None


def _is_live(row: SsoSession) -> bool:
    settings = current_app.config["IDP_SETTINGS"]
    t = now()
    return (row.expires_at > t and row.last_seen_at + timedelta(seconds=settings.session_idle_lifetime) > t
            and not row.user.disabled)


def start(user: User, amr: list[str], acr: str, proofs: list[steps.Proof]) -> SsoSession:
    """Sign this browser in with a new cookie value (no fixation); the caller commits.

    The same person signing in again (prompt=login, max_age, a step-up) keeps the session's sid,
    so the apps that joined it stay attached and a later logout still reaches them; another
    person signing in ends the previous person's session (reason "replaced")."""
    settings = current_app.config["IDP_SETTINGS"]
    previous = current_session()
    sid = previous.sid if previous is not None and previous.user_id == user.id else None
    if previous is not None:
        end(reason="replaced" if sid is None else None)
        db.session.flush()  # the old row (and its sid) is gone before the new one arrives
    raw = random_token(32)
    t = now()
    row = SsoSession(token_digest=digest(raw), sid=sid or random_token(16), user=user, auth_time=t, acr=acr,
                     amr=amr, proofs=steps.dump_proofs(proofs), ip=request.remote_addr, user_agent=(request.user_agent.string or "")[:512],
                     created_at=t, last_seen_at=t,
                     expires_at=t + timedelta(seconds=settings.session_absolute_lifetime))
    db.session.add(row)
    g.idp_session = row
    g.idp_cookie = raw
    _new_csrf_token()
    return row


def _new_csrf_token() -> None:
    """A new CSRF token from the next form on: one read off this browser before a sign-in (a
    shared computer) must not be good for the signed-in person's forms, nor one of theirs after
    they signed out (Flask-WTF keeps it in the browser's session, cached per request in g)."""
    browser.pop("csrf_token", None)
    g.pop("csrf_token", None)


def elevate(row: SsoSession, amr: list[str], acr: str, proofs: list[steps.Proof]) -> bool:
    """Record a step-up on this browser's session: more factors proved just now. The session keeps
    its sid (clients' ID tokens stay tied to it) but gets a new cookie value; the caller commits.
    One UPDATE: False (and nothing changed) when the session ended meanwhile."""
    raw = random_token(32)
    values = {"token_digest": digest(raw), "amr": amr, "acr": acr, "proofs": steps.dump_proofs(proofs),
              "auth_time": now()}
    result = db.session.execute(update(SsoSession).where(SsoSession.id == row.id).values(**values),
                                execution_options={"synchronize_session": False})
    if result.rowcount != 1:
        return False
    for name, value in values.items():
        set_committed_value(row, name, value)
    g.idp_session = row
    g.idp_cookie = raw
    return True


def change_level(user: User) -> str:
    """The level a session needs for sensitive changes (is_recent): urn:idp:acr:mfa for a person
    who has a second factor, so that a fresh one-factor sign-in (a password alone, or an
    upstream's) cannot remove that factor, add another or export the account."""
    return steps.ACR_MFA if has_second_factor(user) else steps.ACR_PASSWORD


def signed_in_lately(row: SsoSession) -> bool:
    """Signed in (or stepped up) within IDP_MFA_RECENT_AUTH_SECONDS, whatever the level."""
    window = current_app.config["IDP_SETTINGS"].mfa_recent_auth_seconds
    return row.auth_time + timedelta(seconds=window) > now()


def is_recent(row: SsoSession) -> bool:
    """Signed in lately at the person's change_level: recent and strong enough to change how one
    signs in, download one's data or delete the account. The time alone is not enough: any
    sign-in sets it."""
    return signed_in_lately(row) and steps.meets(row.acr, change_level(row.user))


def add_factor(row: SsoSession, proof: steps.Proof) -> bool:
    """A factor proved on an account page (an authenticator app or passkey set up just now, with
    its code or ceremony) joins the session's proofs as a step-up's would, when that raises the
    level; the caller commits. False when nothing changed."""
    proofs = steps.load_proofs(row.proofs or []) + [proof]
    acr = steps.acr_of(proofs)
    if steps.rank(acr) <= steps.rank(row.acr):
        return False
    return elevate(row, steps.amr_for(proofs), acr, proofs)


def end(reason: str | None = "logout") -> SsoSession | None:
    """Delete this browser's session row (if any), tell the callbacks (unless reason is None: the
    same person is signing in again) and clear the cookie; the caller commits. Returns the row
    when this request ended it (None when there was none, or a racing request ended it first)."""
    row = current_session()
    if row is not None:
        _ = row.sid, row.user_id  # load them now: the caller reads them once the row is gone
    # DELETE ... RETURNING: a session a racing request ended already is not announced twice.
    ended = row is not None and _delete_returning(SsoSession.id == row.id, None, reason) == 1
    if row is not None and row in db.session:
        db.session.expunge(row)
    g.idp_session = None
    g.idp_cookie = ""
    if row is not None:
        _new_csrf_token()
    return row if ended else None


def end_sessions_of(user_id: int, reason: str = "admin") -> int:
    """End every session of one person (account disabled, "sign out everywhere"); the caller
    commits. Returns how many ended."""
    return _delete_returning(SsoSession.user_id == user_id, None, reason)


def sessions_of(user_id: int) -> list[SsoSession]:
    """The person's live sessions, newest first (for the sessions page)."""
    rows = db.session.scalars(db.select(SsoSession).where(SsoSession.user_id == user_id)
                              .order_by(SsoSession.last_seen_at.desc()))
    return [row for row in rows if _is_live(row)]


def end_session_of(user_id: int, session_id: int, reason: str = "ended_by_user") -> bool:
    """End one session, only if it belongs to `user_id`; the caller commits."""
    return _delete_returning((SsoSession.id == session_id) & (SsoSession.user_id == user_id), None, reason) == 1


def end_other_sessions(user_id: int, keep_session_id: int, reason: str = "ended_by_user") -> int:
    """End every session of the person but the one they are using; the caller commits."""
    return _delete_returning((SsoSession.user_id == user_id) & (SsoSession.id != keep_session_id), None, reason)


def end_expired_sessions(limit: int = 500) -> int:
    """End up to `limit` sessions past their absolute or idle lifetime, through the same path as
    logout (so the apps hear of it), and commit. Safe with several instances at once: each row is
    deleted, and so announced, by exactly one of them. Returns how many ended."""
    settings = current_app.config["IDP_SETTINGS"]
    t = now()
    expired = or_(SsoSession.expires_at <= t,
                  SsoSession.last_seen_at <= t - timedelta(seconds=settings.session_idle_lifetime))
    count = _delete_returning(expired, limit, "expired")
    db.session.commit()
    return count


def _delete_returning(condition, limit: int | None, reason: str | None) -> int:
    """DELETE ... RETURNING sid, user_id: only the transaction that really deleted a row gets it
    back (PostgreSQL re-checks a row another transaction deleted first; SQLite has one writer).
    With a limit, rows locked by a concurrent sweep are skipped rather than waited for."""
    chosen = select(SsoSession.id).where(condition).order_by(SsoSession.id)
    if limit is not None:
        chosen = chosen.limit(limit)
        if db.session.get_bind().dialect.name == "postgresql":
            chosen = chosen.with_for_update(skip_locked=True)
    result = db.session.execute(delete(SsoSession).where(SsoSession.id.in_(chosen))
                                .returning(SsoSession.sid, SsoSession.user_id),
                                execution_options={"synchronize_session": False})
    rows = [EndedSession(sid, user_id) for sid, user_id in result]
    if reason is not None:
        _ended(rows, reason)
    return len(rows)


def init_session_cookie(app: Flask) -> None:
    """Write the session cookie and commit a pending touch (_commit_touch) after each page. Call it
    after every other after_request hook is registered (Flask runs them in reverse), so the touch
    is committed before another hook waits on the database (the outbox's deliveries)."""
    app.after_request(_commit_touch)

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
