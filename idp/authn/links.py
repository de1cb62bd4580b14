"""Pages for emailed links: verify an address, forgot password, reset password. Routes on the
authn blueprint; the rules are in idp.users.recovery.

Links open a page with a button rather than acting on GET, because mail scanners fetch links:
a GET never uses up a link or changes anything."""
from __future__ import annotations

from flask import redirect, render_template, request, session as browser, url_for

from idp.authn import session
from idp.authn.flow import VERIFY_USER_KEY
from idp.authn.views import bp
from idp.extensions import db
from idp.models import User
from idp.users import email_links, profile, recovery
from idp.users.errors import LinkInvalid, LinkThrottled, RegistrationRejected
from idp.web.errors import PageError
from idp.web.forms import form_value
from idp.web.templating import N_
from idp.web.templating import gettext as _

LINK_INVALID = N_("This link is not valid any more: it expired or was already used. Ask for a new one.")


@bp.route("/forgot-password", methods=["GET", "POST"])
def forgot_password():
    if request.method == "GET":
        return render_template("authn/forgot.html", login=request.args.get("login_hint", "")[:320])
    recovery.request_password_reset(form_value("login", max_length=320))
    db.session.commit()
    return render_template("authn/forgot_sent.html")


@bp.route("/reset-password/<token>", methods=["GET", "POST"])
def reset_password(token):
    if email_links.find(token, email_links.RESET_PASSWORD) is None:
        raise PageError(_(LINK_INVALID), 410)
    if request.method == "GET":
        return render_template("authn/reset.html", token=token, errors={})
    try:
        user = recovery.reset_password(token, request.form.get("password", ""))
    except RegistrationRejected as rejected:
        db.session.rollback()
        return render_template("authn/reset.html", token=token, errors=rejected.errors), 400
    except LinkInvalid:
        db.session.rollback()
        raise PageError(_(LINK_INVALID), 410) from None
    session.end_sessions_of(user.id, reason="password_reset")  # every session, this browser's too
    db.session.commit()
    return render_template("authn/reset_done.html")


@bp.route("/verify-email/<token>", methods=["GET", "POST"])
def verify_email(token):
    if request.method == "GET":
        if email_links.find(token, email_links.VERIFY_EMAIL) is None:
            raise PageError(_(LINK_INVALID), 410)
        return render_template("authn/verify.html", token=token)
    try:
        user = recovery.confirm_email(token)
    except LinkInvalid:
        db.session.rollback()
        raise PageError(_(LINK_INVALID), 410) from None
    db.session.commit()
    return render_template("authn/verified.html", user=user)


@bp.route("/verify-email", methods=["POST"])
def resend_verification():
    """Another verification mail: for the signed-in person, or for the person who just proved
    their password but may not sign in before verifying (remembered in the browser session)."""
    current = session.current_user()
    user = current or db.session.get(User, browser.get(VERIFY_USER_KEY, 0))
    if user is None:
        return redirect(url_for("authn.login"), 303)
    if user.email_verified:
        return redirect(url_for("account.home"), 303)
    try:
        recovery.send_verification(user)
    except LinkThrottled as throttled:
        message = _("We sent you a link a moment ago. Wait %(s)s seconds before asking again.", s=throttled.retry_after)
        return render_template("authn/verify_sent.html", user=user, message=message), 429, \
            {"Retry-After": str(throttled.retry_after)}
    db.session.commit()
    return render_template("authn/verify_sent.html", user=user, message=None)


@bp.route("/confirm-email-change/<token>", methods=["GET", "POST"])
def confirm_email_change(token):
    if request.method == "GET":
        if email_links.find(token, email_links.CHANGE_EMAIL) is None:
            raise PageError(_(LINK_INVALID), 410)
        return render_template("authn/verify.html", token=token, change=True)
    try:
        user = profile.confirm_email_change(token)
    except LinkInvalid:
        db.session.rollback()
        raise PageError(_(LINK_INVALID), 410) from None
    db.session.commit()
    return render_template("authn/verified.html", user=user)
