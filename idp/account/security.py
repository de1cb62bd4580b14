"""Self-service security: the authenticator app (TOTP), recovery codes and the password.

Each change needs a recent sign-in (IDP_MFA_RECENT_AUTH_SECONDS), is an audit event and a mail to
the person (users.notices), and can end the person's other sessions; a new password (the box is
ticked at first) also revokes every grant not issued in this browser's session, offline_access
included, so nothing signed in elsewhere outlives the old password. Removing the last second
factor is refused under IDP_MFA_REQUIRED and while an app that requires two factors is connected
(account.second_factor), atomically: a removal racing the removal of the last passkey is refused,
never both done."""
from __future__ import annotations

from functools import partial

from flask import current_app, redirect, render_template, request, url_for

from idp import audit
from idp.account.second_factor import hold_factors, second_factor_requirement
from idp.account.views import bp, reauth_url, sign_out_elsewhere
from idp.authn import recovery, session, steps, totp
from idp.authn.errors import Throttled, wait_message
from idp.authn.password import confirm_password
from idp.authn.factors import enrolled_factors, has_second_factor
from idp.extensions import db
from idp.models import SsoSession
from idp.oauth import logout
from idp.users import directory, notices
from idp.users.errors import RegistrationRejected
from idp.web.errors import PageError
from idp.web.forms import form_value
from idp.web.templating import N_
from idp.web.templating import gettext as _

SIGN_IN_AGAIN = N_("Sign in again to change how you sign in, then try once more.")
LAST_FACTOR = N_("Two-step sign-in is required here. Add a passkey before you remove your authenticator app.")
LAST_FACTOR_APP = N_("%(app)s requires two-step sign-in. Add a passkey before you remove your authenticator app, "
                     "or disconnect the app first.")
WRONG_CODE = N_("That code is not right. Check your authenticator app and try again.")
WRONG_PASSWORD = N_("Your current password is not right.")


def _recently_signed_in() -> SsoSession:
    row = session.current_session()
    if row is None or not session.is_recent(row):
        raise PageError(_(SIGN_IN_AGAIN), 403)
    return row


def _after_change(row: SsoSession, event: str, *changes: str, take_back: bool = False) -> None:
    """Audit the change, tell the person by mail (changes: users.notices keys) and, when they
    asked for it, end their other sessions; with take_back (a new password) also revoke every
    grant not issued in this session, offline_access included (logout.revoke_grants); commits."""
    ended = revoked = 0
    if request.form.get("end_other_sessions"):
        if take_back:
            revoked = logout.revoke_grants(row.user, "password_changed", keep_sid=row.sid)
        ended = sign_out_elsewhere(row)
    counts = {"other_sessions_ended": ended, **({"grants_revoked": revoked} if take_back else {})}
    audit.record(event, user=row.user, **counts)
    notices.notify_sign_in_change(row.user, *changes, *([notices.OTHER_SESSIONS_ENDED] if ended else []),
                                  *([notices.APPS_DISCONNECTED] if revoked else []))
    db.session.commit()


@bp.route("/account/security")
def security():
    row = session.current_session()
    if row is None:
        return redirect(url_for("authn.login", next=request.path))
    user = row.user
    return render_template("account/security.html", user=user, recent=session.is_recent(row),
                           totp_on=totp.confirmed_totp(user) is not None,
                           codes_left=recovery.remaining_codes(user), warn_at=recovery.WARN_AT,
                           has_second_factor=has_second_factor(user),
                           passkeys_url=url_for("account.passkeys_page")
                           if "account.passkeys_page" in current_app.view_functions else None,
                           reauth_url=reauth_url(row, request.path))


@bp.route("/account/security/totp", methods=["GET", "POST"])
def totp_setup():
    row = _recently_signed_in()
    pending = totp.begin_enrolment(row.user)
    context = {"qr": totp.qr_svg(totp.provisioning_uri(row.user, pending)), "secret": totp.secret_of(pending),
               "action": url_for("account.totp_setup")}
    if request.method == "GET":
        db.session.commit()
        return render_template("account/totp.html", errors={}, **context)
    if not totp.confirm_enrolment(row.user, pending, form_value("code", max_length=16)):
        db.session.commit()  # the pending secret stays for the next try
        return render_template("account/totp.html", errors={"code": _(WRONG_CODE)}, **context), 400
    codes = recovery.issue_recovery_codes(row.user) if recovery.remaining_codes(row.user) == 0 else None
    session.add_factor(row, steps.totp_proof())  # the code proved the app: the session counts it
    _after_change(row, "account.totp.enrolled", notices.TOTP_ADDED, *([notices.RECOVERY_CODES_MADE] if codes else []))
    if codes:
        return render_template("authn/recovery_codes.html", codes=codes, continue_url=None)
    return redirect(url_for("account.security"), 303)


@bp.route("/account/security/totp/remove", methods=["POST"])
def totp_remove():
    row = _recently_signed_in()
    user = row.user
    hold_factors(user)  # a racing removal of the last passkey waits, then finds this one done
    need = second_factor_requirement(user)
    if need is not None and not _has_other_second_factor(user):
        audit.record("account.totp.remove_refused", outcome="failure", user=user, reason="last_factor",
                     required_by=need.client_id or "mfa_required")
        db.session.commit()
        raise PageError(_(LAST_FACTOR) if need.app is None else _(LAST_FACTOR_APP, app=need.app), 409)
    if not totp.remove_totp(user):  # none was on, or a racing request (a double click) removed it
        db.session.commit()
        return redirect(url_for("account.security"), 303)
    discarded = 0
    if not has_second_factor(user):
        discarded = recovery.discard_recovery_codes(user)  # they stand in for a second factor that is gone
    _after_change(row, "account.totp.removed", notices.TOTP_REMOVED,
                  *([notices.RECOVERY_CODES_REMOVED] if discarded else []))
    return redirect(url_for("account.security"), 303)


def _has_other_second_factor(user) -> bool:
    return steps.WEBAUTHN in enrolled_factors(user)


@bp.route("/account/security/recovery-codes", methods=["POST"])
def recovery_regenerate():
    row = _recently_signed_in()
    if not has_second_factor(row.user):
        raise PageError(_("Recovery codes come with two-step sign-in. Set up an authenticator app first."), 409)
    codes = recovery.issue_recovery_codes(row.user)  # the old ones stop working now
    _after_change(row, "account.recovery.regenerated", notices.RECOVERY_CODES_MADE)
    return render_template("authn/recovery_codes.html", codes=codes, continue_url=None)


@bp.route("/account/security/password", methods=["GET", "POST"])
def password_change():
    row = _recently_signed_in()
    # Signing out everywhere else is ticked at first: a new password is usually meant to shut
    # someone out, and their sessions and apps must not outlive it. After a refused try, the box
    # stays as the person left it.
    page = partial(render_template, "account/password.html",
                   end_others=request.method == "GET" or bool(request.form.get("end_other_sessions")))
    if request.method == "GET":
        return page(errors={})
    user = row.user
    try:
        wrong = not user.password_hash or not confirm_password(user, request.form.get("current_password", ""))
    except Throttled as throttled:
        return page(errors={"current_password": wait_message(throttled.retry_after)}), \
            429, {"Retry-After": str(throttled.retry_after)}
    if wrong:
        audit.record("account.password.change_failed", outcome="failure", user=user, reason="bad_password")
        db.session.commit()
        return page(errors={"current_password": _(WRONG_PASSWORD)}), 400
    try:
        directory.set_password(user, request.form.get("new_password", ""))
    except RegistrationRejected as rejected:
        db.session.rollback()
        return page(errors={"new_password": rejected.errors.get("password")}), 400
    _after_change(row, "account.password.changed", notices.PASSWORD_CHANGED, take_back=True)
    return redirect(url_for("account.security"), 303)
