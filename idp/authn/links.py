"""Pages for emailed links: verify an address, forgot password, reset password. Routes on the
authn blueprint; the rules are in idp.users.recovery.

Links open a page with a button rather than acting on GET, because mail scanners fetch links:
a GET never uses up a link or changes anything. The button of a link that confirms an address
(a new account's, or a new address's) works only for a browser that proves it can enter the
account: see authn.link_proof for why and how."""
from __future__ import annotations

from flask import Flask, current_app, redirect, render_template, request, url_for

from idp import audit
from idp.authn import flow, link_proof, rate_limits, session
from idp.authn.errors import LinkRefused, OtherAccount, RateLimited, Throttled, WrongPassword, wait_message
from idp.authn.throttle import client_network
from idp.authn.views import bp
from idp.extensions import db
from idp.models import User
from idp.outbox import register_handler
from idp.users import email_links, profile, recovery
from idp.users.errors import LinkInvalid, LinkThrottled, RegistrationRejected
from idp.web.errors import PageError
from idp.web.forms import form_value
from idp.web.templating import N_
from idp.web.templating import gettext as _

LINK_INVALID = N_("This link is not valid any more: it expired or was already used. Ask for a new one.")
RESET_LINK_KEY_PREFIX = "reset-link"  # rate_limits key of one network's reset links to one account
BAD_PASSWORD = N_("This is not the account's password. If you did not create the account, do not confirm it.")


@bp.route("/forgot-password", methods=["GET", "POST"])
def forgot_password():
    """Counted per address and network first; then the same work for any login: one queued job,
    no wait for a delivery (users.recovery's docstring says why)."""
    if request.method == "GET":
        return render_template("authn/forgot.html", login=request.args.get("login_hint", "")[:320])
    ip = request.remote_addr or "-"
    login = form_value("login", max_length=320)
    try:
        rate_limits.count_password_reset(ip, current_app.config["IDP_SETTINGS"])
    except RateLimited as limited:
        message = _("Too many requests came from your network. Try again later (in %(n)s min).",
                    n=-(-limited.retry_after // 60))
        page = render_template("authn/forgot.html", login=login, errors={"form": message})
        return page, 429, {"Retry-After": str(limited.retry_after)}  # RFC 6585 4
    recovery.request_password_reset(login, rate_limits.wider_network(ip) or client_network(ip))
    db.session.commit()
    return render_template("authn/forgot_sent.html")


def _reset_links_allowed(user: User, network: str) -> bool:
    """One more reset link from `network` to `user` within the day's allowance (users.recovery)."""
    return rate_limits.allow_one(f"{RESET_LINK_KEY_PREFIX}:{user.id}:{network}", recovery.RESET_LINKS_PER_NETWORK,
                                 recovery.DAY)


def init_reset_requests(app: Flask) -> None:
    """The worker delivers queued /forgot-password requests (users.recovery), with the per-network
    allowance counted in authn's rate_limits table."""
    register_handler(app, recovery.RESET_REQUEST_KIND,
                     lambda payload: recovery.deliver_reset_request(payload, _reset_links_allowed))


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
    return _confirm_address(token, email_links.VERIFY_EMAIL)


@bp.route("/verify-email", methods=["POST"])
def resend_verification():
    """Another verification mail: for the signed-in person, or for the person who just proved
    their password but may not sign in before verifying (remembered in the browser session)."""
    current = session.current_user()
    user = current or db.session.get(User, flow.unverified_user_id() or 0)
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
    return _confirm_address(token, email_links.CHANGE_EMAIL)


# What a link that confirms an address does once the browser proved it may: the rule, and the
# audit event of a refusal.
CONFIRMS = {email_links.VERIFY_EMAIL: (recovery.confirm_email, "users.email.verification_failed"),
            email_links.CHANGE_EMAIL: (profile.confirm_email_change, "users.email.change_failed")}


def _confirm_address(token: str, purpose: str):
    """The page of a link that confirms an address: its button works only for a browser that
    proves it can enter the link's account (authn.link_proof); a refusal leaves the link usable."""
    row = email_links.find(token, purpose)
    if row is None:
        raise PageError(_(LINK_INVALID), 410)
    user = db.session.get(User, row.user_id)
    if request.method == "GET":
        try:
            proof = link_proof.proof_in_browser(user)
        except OtherAccount:
            return render_template("authn/verify_other_account.html"), 403
        return _confirm_page(token, purpose, ask_password=proof is None)
    confirm, refused_event = CONFIRMS[purpose]
    try:
        link_proof.prove(user, request.form.get("password", ""))
    except (LinkRefused, Throttled) as refused:
        return _refused(token, purpose, user, refused, refused_event)
    try:
        user = confirm(token)
    except LinkInvalid as invalid:
        if invalid.spent:
            db.session.commit()
        else:
            db.session.rollback()
        raise PageError(_(LINK_INVALID), 410) from None
    db.session.commit()
    return render_template("authn/verified.html", user=user)


def _refused(token: str, purpose: str, user: User, refused: LinkRefused | Throttled, event: str):
    """Audit a refused button press (committed: a wrong password counts on the account's back-off)
    and answer it: the page again with the error, or the other-account page."""
    details = {"reason": refused.reason if isinstance(refused, LinkRefused) else "throttled"}
    if isinstance(refused, OtherAccount):
        details["signed_in_as"] = refused.signed_in_as
    audit.record(event, outcome="failure", user=user, **details)
    db.session.commit()
    if isinstance(refused, OtherAccount):
        return render_template("authn/verify_other_account.html"), 403
    if isinstance(refused, Throttled):
        message = wait_message(refused.retry_after)
        return _confirm_page(token, purpose, ask_password=True, error=message, status=429,
                             headers={"Retry-After": str(refused.retry_after)})  # RFC 6585 4
    message = _(BAD_PASSWORD) if isinstance(refused, WrongPassword) else _("Enter the account's password.")
    return _confirm_page(token, purpose, ask_password=True, error=message, status=400)


def _confirm_page(token: str, purpose: str, *, ask_password: bool, error: str | None = None, status: int = 200,
                  headers: dict | None = None):
    page = render_template("authn/verify.html", token=token, change=purpose == email_links.CHANGE_EMAIL,
                           ask_password=ask_password, errors={"password": error} if error else {})
    return page, status, headers or {}
