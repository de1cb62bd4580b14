"""Self-service: the person's sessions and connected apps (issue 6 items 5 and 6). Routes on the
account blueprint."""
from __future__ import annotations

from flask import redirect, render_template, request, url_for

from idp.account.devices import describe_user_agent
from idp.account.views import bp, sign_out_elsewhere
from idp.authn import session
from idp.extensions import db
from idp.models import Client
from idp.oauth import consent
from idp.web.errors import PageError
from idp.web.templating import gettext as _


@bp.route("/account/sessions")
def sessions():
    current = session.current_session()
    if current is None:
        return redirect(url_for("authn.login", next=request.path))
    rows = [{"id": row.id, "device": describe_user_agent(row.user_agent), "ip": row.ip, "created_at": row.created_at,
             "last_seen_at": row.last_seen_at, "current": row.id == current.id}
            for row in session.sessions_of(current.user_id)]
    return render_template("account/sessions.html", sessions=rows)


@bp.route("/account/sessions/<int(max=2147483647):session_id>/end", methods=["POST"])
def end_session(session_id: int):
    current = session.current_session()
    if current is None:
        return redirect(url_for("authn.login"), 303)
    if session_id == current.id:
        return redirect(url_for("authn.logout"), 303)
    if not session.end_session_of(current.user_id, session_id):
        raise PageError(_("That session has already ended."), 404)
    db.session.commit()
    return redirect(url_for("account.sessions"), 303)


@bp.route("/account/sessions/end-others", methods=["POST"])
def end_other_sessions():
    current = session.current_session()
    if current is None:
        return redirect(url_for("authn.login"), 303)
    sign_out_elsewhere(current)
    db.session.commit()
    return redirect(url_for("account.sessions"), 303)


@bp.route("/account/apps")
def apps():
    current = session.current_session()
    if current is None:
        return redirect(url_for("authn.login", next=request.path))
    listed = [{"client": app.client, "scopes": consent.describe(app.scope), "granted_at": app.since}
              for app in consent.connected_apps(current.user_id)]
    return render_template("account/apps.html", apps=listed)


@bp.route("/account/apps/<client_id>/revoke", methods=["POST"])
def revoke_app(client_id: str):
    current = session.current_session()
    if current is None:
        return redirect(url_for("authn.login"), 303)
    client = db.session.scalar(db.select(Client).where(Client.client_id == client_id[:64]))
    if client is None or not consent.has_access(current.user_id, client.id):
        raise PageError(_("That app has no access to your account."), 404)
    consent.revoke(current.user, client)
    db.session.commit()
    return redirect(url_for("account.apps"), 303)
