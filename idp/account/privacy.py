"""Privacy self-service (issue 6 item 7): download everything we hold about you, delete your
account. Routes on the account blueprint.

Both need a recent sign-in (IDP_MFA_RECENT_AUTH_SECONDS); deleting also needs the password when the
account has one. Deleting revokes every grant (so every token), ends every session (apps with
back-channel logout hear of it), tells the person by email, records one audit event and removes
the person's row with everything that hangs off it. Audit events stay, because the trail must,
under the person's former numeric id, which nothing links to a name or address any more."""
from __future__ import annotations

import json

from flask import Response, redirect, render_template, request, url_for

from idp import audit, mail
from idp.account.views import bp, reauth_url
from idp.authn import session
from idp.authn.errors import Throttled, wait_message
from idp.authn.password import confirm_password, forget_counters
from idp.clock import now
from idp.extensions import db, lock_for_update
from idp.models import (AuditEvent, Client, Consent, Grant, LinkedIdentity, RecoveryCode, TotpCredential, User,
                        UserToken, WebAuthnCredential)
from idp.web.templating import gettext as _

def _needs_fresh_login(current) -> bool:
    return not session.is_recent(current)


def _reauthenticate(current):
    """Sign in again (at least at the session's level), then back to the privacy page (both
    actions here are POSTs, which a login cannot return to)."""
    return redirect(reauth_url(current, url_for("account.privacy")), 303)


def _rows(model, user: User) -> list:
    return list(db.session.scalars(db.select(model).where(model.user_id == user.id).order_by(model.id)))


def collect(user: User) -> dict:
    """All we hold about `user`, without secrets (no password hash, no token or digest)."""
    profile = {column.name: getattr(user, column.name) for column in User.__table__.columns
               if column.name not in ("id", "password_hash", "username_key", "email_key")}
    consents = db.session.execute(db.select(Consent, Client).join(Client, Client.id == Consent.client_id)
                                  .where(Consent.user_id == user.id))
    grants = db.session.scalars(db.select(Grant).where(Grant.user_id == user.id))
    events = db.session.scalars(audit.of_account(user).order_by(AuditEvent.id))
    return json.loads(json.dumps({
        "exported_at": now(),
        "profile": profile,
        "password_set": bool(user.password_hash),
        "consents": [{"app": client.client_name, "client_id": client.client_id, "scope": c.scope,
                      "granted_at": c.granted_at} for c, client in consents],
        "grants": [{"app": g.client.client_name, "scope": g.scope, "created_at": g.created_at, "expires_at": g.expires_at,
                    "revoked_at": g.revoked_at} for g in grants],
        "sessions": [{"ip": s.ip, "user_agent": s.user_agent, "created_at": s.created_at, "last_seen_at": s.last_seen_at,
                      "auth_time": s.auth_time, "amr": s.amr} for s in session.sessions_of(user.id)],
        "linked_identities": [{"provider": i.provider_id, "subject": i.subject, "email": i.email,
                               "created_at": i.created_at, "last_used_at": i.last_used_at}
                              for i in _rows(LinkedIdentity, user)],
        "passkeys": [{"name": c.name, "device_type": c.device_type, "backed_up": c.backed_up, "aaguid": c.aaguid,
                      "created_at": c.created_at, "last_used_at": c.last_used_at}
                     for c in _rows(WebAuthnCredential, user)],
        "authenticator_apps": [{"confirmed_at": t.confirmed_at, "created_at": t.created_at, "last_used_at": t.last_used_at}
                               for t in _rows(TotpCredential, user)],
        "recovery_codes": [{"created_at": r.created_at, "used_at": r.used_at} for r in _rows(RecoveryCode, user)],
        # Emailed links not used yet, e.g. an email change waiting for its confirmation: the address, not the link.
        "emailed_links": [{"purpose": t.purpose, "email": t.email, "created_at": t.created_at, "expires_at": t.expires_at}
                          for t in _rows(UserToken, user) if t.used_at is None and t.expires_at > now()],
        "audit_events": [audit.as_dict(e) for e in events],
    }, default=lambda value: value.isoformat() if hasattr(value, "isoformat") else str(value)))


@bp.route("/account/privacy")
def privacy():
    current = session.current_session()
    if current is None:
        return redirect(url_for("authn.login", next=request.path))
    return render_template("account/privacy.html", user=current.user, errors={})


@bp.route("/account/export", methods=["POST"])
def export():
    current = session.current_session()
    if current is None:
        return redirect(url_for("authn.login"), 303)
    if _needs_fresh_login(current):
        return _reauthenticate(current)
    data = collect(current.user)
    audit.record("users.data.exported", user=current.user)
    db.session.commit()
    body = json.dumps(data, indent=2, ensure_ascii=False)
    # An ASCII name: a username may hold any letter, and a header must be Latin-1 (RFC 9110 5.5).
    return Response(body, mimetype="application/json", headers={
        "Content-Disposition": f'attachment; filename="idp-data-{now():%Y-%m-%d}.json"'})


@bp.route("/account/delete", methods=["POST"])
def delete_account():
    current = session.current_session()
    if current is None:
        return redirect(url_for("authn.login"), 303)
    user = current.user
    if _needs_fresh_login(current):
        return _reauthenticate(current)
    try:
        wrong = user.password_hash and not confirm_password(user, request.form.get("password", ""))
    except Throttled as throttled:
        return render_template("account/privacy.html", user=user, errors={"password": wait_message(throttled.retry_after)}), \
            429, {"Retry-After": str(throttled.retry_after)}
    if wrong:
        audit.record("users.user.delete_failed", outcome="failure", user=user, reason="bad_password")
        db.session.commit()  # the wrong password counts
        return render_template("account/privacy.html", user=user,
                               errors={"password": _("This is not your password.")}), 400
    if request.form.get("confirm") != "delete":
        return render_template("account/privacy.html", user=user,
                               errors={"confirm": _("Tick the box to confirm.")}), 400
    # One deletion: a double submit waits here for the first, then finds the account gone.
    user_id = user.id
    lock_for_update(User, user_id)
    db.session.expire_all()
    if db.session.get(User, user_id) is None:
        db.session.rollback()
        return redirect(url_for("account.deleted"), 303)
    erase(user)
    db.session.commit()
    return redirect(url_for("account.deleted"), 303)


def erase(user: User) -> None:
    """Everything deletion does but the commit (see the module docstring)."""
    db.session.execute(db.update(Grant).where(Grant.user_id == user.id, Grant.revoked_at.is_(None))
                       .values(revoked_at=now()))
    session.end_sessions_of(user.id, reason="account_deleted")
    mail.send(user.email, "account_deleted", user=user)
    audit.record("users.user.deleted", user=user.id)
    forget_counters(user)
    db.session.delete(user)


@bp.route("/account/deleted")
def deleted():
    return render_template("account/deleted.html")
