"""The pages after the password: a TOTP code, a recovery code, and setting up TOTP when a login
must reach two factors and the person has none. Each page first asks the login in progress
(authn.flow) whether this step is the one due, so none can be reached out of turn."""
from __future__ import annotations

from flask import current_app, render_template, request, url_for

from idp import audit
from idp.authn import flow, recovery, steps, throttle, totp
from idp.authn.errors import LoginGone, wait_message
from idp.authn.views import bp
from idp.extensions import db
from idp.users import notices
from idp.web.errors import PageError
from idp.web.forms import form_value
from idp.web.headers import keep_forms_on_origin, let_forms_leave_origin_after
from idp.web.templating import N_
from idp.web.templating import gettext as _

NOT_IN_PROGRESS = N_("There is no sign-in in progress in this browser for this step. Start again.")
STARTED_OVER = N_("Too many wrong codes. Sign in again.")
WRONG_CODE = N_("That code is not right. Check your authenticator app and try again.")
WRONG_RECOVERY = N_("That recovery code is not right, or it was already used.")


def _attempt_for(factor: str, *, enrol: bool = False):
    attempt = flow.current_attempt()
    due = flow.is_enrolling(attempt, factor) if enrol else flow.is_asking(attempt, factor)
    if not due:
        raise PageError(_(NOT_IN_PROGRESS), 400)
    let_forms_leave_origin_after(attempt.next)  # this step's form may finish the login
    return attempt


def _others(attempt, factor: str) -> list[tuple[str, str]]:
    """Links to the other factors the login would accept instead."""
    step = flow.next_step(attempt)
    names = {steps.TOTP: _("Use your authenticator app"), steps.RECOVERY: _("Use a recovery code"),
             steps.WEBAUTHN: _("Use a passkey"), steps.PASSWORD: _("Use your password")}
    return [(url_for(flow.ASK_ENDPOINTS[f], **({"resume": 1} if f == steps.PASSWORD else {})), names[f])
            for f in step.choices if f != factor and _has_endpoint(flow.ASK_ENDPOINTS[f])]


def _check_code(attempt, verify, template: str, message: str, reason: str, **context):
    """Throttle, verify, and on failure count it against this login; a response or None (passed)."""
    keys = throttle.keys_for(f"second-factor:{attempt.user_id}", request.remote_addr or "-")
    throttle.hold(keys)  # parallel guesses wait their turn and see each other's counts
    wait = throttle.retry_after(keys)
    if wait:
        audit.record("authn.second_factor.failed", outcome="failure", user=attempt.user, reason="throttled")
        db.session.commit()
        page = render_template(template, errors={"form": wait_message(wait)},
                               **context)
        return page, 429, {"Retry-After": str(wait)}
    if verify():
        throttle.record_success(keys)
        return None
    throttle.record_failure(keys)
    audit.record("authn.second_factor.failed", outcome="failure", user=attempt.user, reason=reason)
    next_path = attempt.next  # read now: the login may be gone after the commit
    outcome = flow.failed(attempt)
    db.session.commit()  # the wrong code counts (throttle, audit) even when the login is over
    if outcome == flow.TOO_MANY:
        raise PageError(_(STARTED_OVER), 400)
    if outcome == flow.GONE:
        raise LoginGone(next_path)
    return render_template(template, errors={"code": _(message)}, **context), 400


@bp.route("/login/totp", methods=["GET", "POST"], endpoint="totp")
def totp_step():
    attempt = _attempt_for(steps.TOTP)
    context = {"others": _others(attempt, steps.TOTP)}
    if request.method == "GET":
        return render_template("authn/totp.html", errors={}, **context)
    row = totp.confirmed_totp(attempt.user)
    code = form_value("code", max_length=16)
    # row is None when the app was removed since this login began: the code cannot be right.
    refused = _check_code(attempt, lambda: row is not None and totp.verify(row, code), "authn/totp.html",
                          WRONG_CODE, "bad_totp", **context)
    return refused or flow.proved(attempt, attempt.user, steps.totp_proof(), spent=True)


@bp.route("/login/recovery", methods=["GET", "POST"], endpoint="recovery")
def recovery_code():
    attempt = _attempt_for(steps.RECOVERY)
    context = {"others": _others(attempt, steps.RECOVERY)}
    if request.method == "GET":
        return render_template("authn/recovery.html", errors={}, **context)
    left: list[int] = []

    def spend() -> bool:
        remaining = recovery.use_recovery_code(attempt.user, form_value("code", max_length=64))
        left.append(remaining)
        return remaining is not None

    refused = _check_code(attempt, spend, "authn/recovery.html", WRONG_RECOVERY, "bad_recovery_code",
                          **context)
    if refused:
        return refused
    response = flow.proved(attempt, attempt.user, steps.recovery_proof(), spent=True)
    if left[0] > recovery.WARN_AT:
        return response
    # Few codes left: say so before going on (the login is already complete; a link, not a form).
    keep_forms_on_origin()
    return render_template("authn/recovery_low.html", left=left[0], target=response.location)


@bp.route("/login/totp/enrol", methods=["GET", "POST"])
def totp_enrol():
    """Set up an authenticator app during a login that must reach two factors (then recovery
    codes, when the person has none left)."""
    attempt = _attempt_for(steps.TOTP, enrol=True)
    row = totp.begin_enrolment(attempt.user)
    uri = totp.provisioning_uri(attempt.user, row)
    context = {"qr": totp.qr_svg(uri), "secret": totp.secret_of(row), "action": url_for("authn.totp_enrol"),
               "passkey_url": url_for(flow.ENROL_ENDPOINTS[steps.WEBAUTHN])
               if flow.is_enrolling(attempt, steps.WEBAUTHN) and _has_endpoint(flow.ENROL_ENDPOINTS[steps.WEBAUTHN])
               else None}
    if request.method == "GET":
        db.session.commit()
        return render_template("authn/totp_enrol.html", errors={}, **context)
    code = form_value("code", max_length=16)
    refused = _check_code(attempt, lambda: totp.confirm_enrolment(attempt.user, row, code),
                          "authn/totp_enrol.html", WRONG_CODE, "bad_enrolment_code", **context)
    if refused:
        return refused
    flow.record(attempt, attempt.user, steps.totp_proof())
    return after_enrolment(attempt, notices.TOTP_ADDED)


def after_enrolment(attempt, change: str):
    """After a factor was set up during a login (change: its users.notices key, mailed to the
    person): recovery codes, shown once, when the person has none left (as on the account pages:
    codes they hold are never replaced, nor shown to whoever is at this browser), then on with the
    login."""
    if recovery.remaining_codes(attempt.user):
        notices.notify_sign_in_change(attempt.user, change)
        return flow.advance(attempt)  # commits
    codes = recovery.issue_recovery_codes(attempt.user)
    notices.notify_sign_in_change(attempt.user, change, notices.RECOVERY_CODES_MADE)
    db.session.commit()
    return render_template("authn/recovery_codes.html", codes=codes, continue_url=url_for("authn.login_continue"))


@bp.route("/login/continue", methods=["POST"])
def login_continue():
    """Go on with the login in progress (after the recovery codes were shown)."""
    attempt = flow.current_attempt()
    if attempt is None:
        raise PageError(_(NOT_IN_PROGRESS), 400)
    return flow.advance(attempt)


def _has_endpoint(endpoint: str) -> bool:
    return endpoint in current_app.view_functions


@bp.route("/recovery-codes.txt", methods=["POST"])
def recovery_codes_download():
    """The codes just shown, as a text file: the page posts them back (we keep only digests)."""
    codes = [c for c in request.form.getlist("code")[:recovery.COUNT] if recovery.looks_like_code(c)]
    body = _("Recovery codes for your account. Each works once.") + "\n\n" + "\n".join(codes) + "\n"
    return body, 200, {"Content-Type": "text/plain; charset=utf-8",
                       "Content-Disposition": 'attachment; filename="recovery-codes.txt"'}

