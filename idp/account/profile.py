"""Self-service profile: the standard claims and the email address (issue 6 item 4). Routes on the
account blueprint; the rules are in idp.users.profile. The password is changed on the security
page (idp.account.security).

Changing the email address changes where password reset links go, so it is guarded like a
password change: a recent sign-in at the person's change level (authn.session.is_recent) and the
current password when the account has one. A stolen or forgotten-open session alone cannot move
the account to another mailbox."""
from __future__ import annotations

from flask import redirect, render_template, request, url_for

from idp import audit
from idp.account.views import bp, reauth_url
from idp.authn import session
from idp.authn.errors import Throttled, wait_message
from idp.authn.password import confirm_password
from idp.extensions import db
from idp.users import notices, profile
from idp.users.errors import LinkThrottled, RegistrationRejected
from idp.web.forms import form_value
from idp.web.templating import gettext as _


def _form_values(user) -> dict:
    values = {field: getattr(user, field) or "" for field in profile.TEXT_FIELDS + profile.URL_FIELDS
              + ("birthdate", "zoneinfo", "locale", "phone_number")}
    values["preferred_username"] = user.username
    values.update({f"address_{f}": (user.address or {}).get(f, "") for f in profile.ADDRESS_FIELDS})
    return values


def _page(user, values=None, errors=None, notice=None, status=200):
    row = session.current_session()
    return render_template("account/profile.html", user=user, values=values or _form_values(user),
                           errors=errors or {}, notice=notice, recent=session.is_recent(row),
                           reauth_url=reauth_url(row, url_for("account.edit_profile"))), status


@bp.route("/account/profile", methods=["GET", "POST"])
def edit_profile():
    current = session.current_session()
    if current is None:
        return redirect(url_for("authn.login", next=request.path))
    user = current.user
    if request.method == "GET":
        return _page(user, notice=_("Saved.") if request.args.get("saved") else None)
    values = {field: form_value(field, max_length=2100) for field in profile.PROFILE_FIELDS}
    try:
        changed = profile.update_profile(user, values, may_rename=session.is_recent(current))
    except RegistrationRejected as rejected:
        db.session.rollback()
        return _page(user, values, rejected.errors, status=400)
    if "preferred_username" in changed:
        notices.notify_sign_in_change(user, notices.USERNAME_CHANGED)
    db.session.commit()
    return redirect(url_for("account.edit_profile", saved=1), 303)


@bp.route("/account/email", methods=["POST"])
def change_email():
    current = session.current_session()
    if current is None:
        return redirect(url_for("authn.login"), 303)
    if not session.is_recent(current):
        return redirect(reauth_url(current, url_for("account.edit_profile")), 303)
    user = current.user
    try:
        wrong = user.password_hash and not confirm_password(user, request.form.get("current_password", ""))
    except Throttled as throttled:
        page, status = _page(user, errors={"current_password": wait_message(throttled.retry_after)}, status=429)
        return page, status, {"Retry-After": str(throttled.retry_after)}
    if wrong:
        audit.record("account.email.change_failed", outcome="failure", user=user, reason="bad_password")
        db.session.commit()
        return _page(user, errors={"current_password": _("Your current password is not right.")}, status=400)
    try:
        profile.request_email_change(user, form_value("email", max_length=320))
    except RegistrationRejected as rejected:
        db.session.rollback()
        return _page(user, errors=rejected.errors, status=400)
    except LinkThrottled as throttled:
        return _page(user, errors={"email": _("We sent a link a moment ago. Wait %(s)s seconds before asking again.",
                                              s=throttled.retry_after)}, status=429)
    db.session.commit()
    return _page(user, notice=_("We sent a link to the new address. Your address changes when you open it."))
