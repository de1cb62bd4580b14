"""The passkey pages of a login: passwordless sign-in (the button and the browser's passkey
autofill on the sign-in page), a passkey as the second factor, and setting one up during a
login that must reach two factors. Like every step, each asks the login in progress
(authn.flow) whether it is due; the JSON options endpoints are POSTs with the CSRF token, and
the passwordless one, open to anyone who has read a sign-in page, is rate limited
(authn.rate_limits)."""
from __future__ import annotations

from flask import Response, current_app, redirect, render_template, request, url_for

from idp.authn import flow, passkeys, rate_limits, steps
from idp.authn.errors import PasskeyFailed, RateLimited, TooManyPasskeys
from idp.authn.step_views import NOT_IN_PROGRESS, _others, after_enrolment
from idp.authn.views import _next_target, bp
from idp.extensions import db
from idp.users import notices
from idp.web.errors import PageError
from idp.web.forms import form_value
from idp.web.headers import let_forms_leave_origin_after
from idp.web.templating import N_
from idp.web.templating import gettext as _

PASSKEY_FAILED = N_("That passkey did not work here. Try again, or sign in with your password.")
SECOND_FACTOR_FAILED = N_("That passkey did not work. Try again, or use another way to sign in.")
ENROL_FAILED = N_("That passkey could not be set up. Try again, or use another one.")
NO_PASSKEY = N_("You have no passkey to sign in with. Use your password instead.")
TOO_MANY_TRIES = N_("Too many passkey sign-ins were started from your network. Wait %(s)s seconds and try again, "
                    "or sign in with your password.")


@bp.app_context_processor
def _passkeys_available() -> dict:
    """Templates offer passkeys (sign-in button, autofill, account page) only where they can work."""
    return {"passkeys_available": passkeys.is_available()}


def _options(options: str) -> Response:
    db.session.commit()  # the challenge row
    return Response(options, mimetype="application/json")


def _credential() -> str:
    return request.form.get("credential", "")[:passkeys.MAX_CREDENTIAL]


def _attempt_for(*, enrol: bool = False):
    """The login in progress when a known person is due to prove (or set up) a passkey."""
    attempt = flow.current_attempt()
    due = flow.is_enrolling(attempt, steps.WEBAUTHN) if enrol else flow.is_asking(attempt, steps.WEBAUTHN)
    if not due or attempt.user_id is None:
        raise PageError(_(NOT_IN_PROGRESS), 400)
    let_forms_leave_origin_after(attempt.next)  # this step's form may finish the login
    return attempt


def _no_passkey(attempt) -> bool:
    """Whether the person this login is about has no passkey to prove. A step-up that starts
    again from the first factor asks for a password or a passkey (steps.PRIMARY) whatever the
    person set up; one who has no passkey (or removed the last one meanwhile) is sent to the
    password instead."""
    return not passkeys.has_credentials(attempt.user)


# --- passwordless ------------------------------------------------------------------------------

@bp.route("/login/passwordless/options", methods=["POST"])
def passwordless_options():
    """Each call writes a challenge row, so it is counted first (per address and network)."""
    try:
        rate_limits.count_passwordless(request.remote_addr or "-")
    except RateLimited as limited:
        raise PageError(_(TOO_MANY_TRIES, s=limited.retry_after), 429,
                        {"Retry-After": str(limited.retry_after)}) from None  # RFC 6585 4
    return _options(passkeys.authentication_options(None))


@bp.route("/login/passwordless", methods=["POST"])
def passwordless():
    """A passkey alone (discoverable, user-verified) starts a login and usually completes it."""
    attempt = flow.current_attempt()
    if attempt is None or attempt.proofs or not flow.is_asking(attempt, steps.WEBAUTHN):
        attempt = flow.begin(attempt.next, acr=attempt.target, required=attempt.target if attempt.must else None) \
            if attempt is not None else flow.begin(_next_target())
    next_path = attempt.next  # read now: a racing request may finish this login and delete the row
    try:
        credential, proof = passkeys.authenticate(_credential(), None)
        return flow.proved(attempt, credential.user, proof, spent=True)  # the challenge stays spent
    except (PasskeyFailed, flow.WrongUser):
        # WrongUser: a step-up that starts again is for the session's person, not another's passkey
        db.session.commit()  # the challenge is spent and the failure audited
        settings = current_app.config["IDP_SETTINGS"]
        let_forms_leave_origin_after(next_path)
        return render_template("authn/login.html", next=next_path, login="", errors={"form": _(PASSKEY_FAILED)},
                               registration=settings.registration_enabled), 400


# --- second factor -----------------------------------------------------------------------------

@bp.route("/login/passkey/options", methods=["POST"])
def passkey_options():
    attempt = _attempt_for()
    try:
        return _options(passkeys.authentication_options(attempt.user))
    except PasskeyFailed:  # no passkey to list (_no_passkey)
        raise PageError(_(NO_PASSKEY), 400) from None


@bp.route("/login/passkey", methods=["GET", "POST"])
def passkey():
    attempt = _attempt_for()
    if _no_passkey(attempt):
        if request.method == "GET" and flow.is_asking(attempt, steps.PASSWORD):
            return redirect(url_for(flow.ASK_ENDPOINTS[steps.PASSWORD], resume=1), 303)
        raise PageError(_(NO_PASSKEY), 400)
    context = {"others": _others(attempt, steps.WEBAUTHN)}
    if request.method == "GET":
        return render_template("authn/passkey.html", errors={}, **context)
    try:
        proof = passkeys.authenticate(_credential(), attempt.user)[1]
    except PasskeyFailed:
        # Audited, but not counted against the login like a wrong code: a signature cannot be
        # guessed, and a racing request may already have finished (and deleted) this login.
        db.session.commit()
        return render_template("authn/passkey.html", errors={"form": _(SECOND_FACTOR_FAILED)}, **context), 400
    return flow.proved(attempt, attempt.user, proof, spent=True)  # the challenge stays spent


# --- set up during a login -----------------------------------------------------------------------

@bp.route("/login/passkey/enrol/options", methods=["POST"])
def passkey_enrol_options():
    attempt = _attempt_for(enrol=True)
    try:
        return _options(passkeys.registration_options(attempt.user))
    except TooManyPasskeys:
        raise PageError(_(passkeys.FULL, n=passkeys.MAX_PER_ACCOUNT), 409) from None


@bp.route("/login/passkey/enrol", methods=["GET", "POST"])
def passkey_enrol():
    """Set up a passkey as the second factor; like TOTP set-up it ends with recovery codes (when
    the person has none left)."""
    attempt = _attempt_for(enrol=True)
    context = {"totp_url": url_for(flow.ENROL_ENDPOINTS[steps.TOTP])
               if flow.is_enrolling(attempt, steps.TOTP) else None}
    if request.method == "GET":
        return render_template("authn/passkey_enrol.html", errors={}, **context)
    try:
        proof = passkeys.register(attempt.user, _credential(), form_value("name", max_length=passkeys.NAME_MAX))[1]
    except TooManyPasskeys:  # only when passkeys were added meanwhile: a person with one is asked for it
        db.session.commit()
        full = _(passkeys.FULL, n=passkeys.MAX_PER_ACCOUNT)
        return render_template("authn/passkey_enrol.html", errors={"form": full}, **context), 409
    except PasskeyFailed:
        db.session.commit()
        return render_template("authn/passkey_enrol.html", errors={"form": _(ENROL_FAILED)}, **context), 400
    flow.record(attempt, attempt.user, proof)
    return after_enrolment(attempt, notices.PASSKEY_ADDED)
