"""The terms acceptance page, asked after sign-in (and before an app gets a code) whenever the
person has not accepted the current IDP_TERMS_VERSION. Routes on the authn blueprint."""
from __future__ import annotations

from flask import current_app, redirect, render_template, request, url_for

from idp.authn import session
from idp.authn.views import bp
from idp.extensions import db
from idp.users import terms
from idp.web.forms import is_local_path
from idp.web.headers import let_forms_leave_origin_after


def _target() -> str:
    target = request.values.get("next", "")
    return target if is_local_path(target) else url_for("account.home")


@bp.route("/terms", methods=["GET", "POST"])
def accept_terms():
    user = session.current_user()
    if user is None:
        return redirect(url_for("authn.login", next=request.full_path if request.method == "GET" else None), 303)
    if not terms.needs_acceptance(user):
        return redirect(_target(), 303)
    settings = current_app.config["IDP_SETTINGS"]
    if request.method == "GET":
        let_forms_leave_origin_after(_target())  # accepting goes on to `next`
        return render_template("authn/terms.html", next=_target(), terms_url=settings.terms_url,
                               version=settings.terms_version, privacy_url=settings.privacy_url)
    if request.form.get("decision") != "accept":
        session.end()  # declining means not using the service: sign out
        db.session.commit()
        return redirect(url_for("authn.logged_out"), 303)
    terms.accept(user)
    db.session.commit()
    return redirect(_target(), 303)
