"""Sign-in, registration and sign-out pages. authn never sees OAuth parameters: it receives a
local `next` path (and a `login_hint` to pre-fill) and sends the person back there."""
from __future__ import annotations

from flask import Blueprint, current_app, redirect, render_template, request, session as browser, url_for

from idp import audit
from idp.authn import flow, rate_limits, session, steps
from idp.authn import password as password_step
from idp.authn.errors import LoginFailed, LoginGone, RateLimited, Throttled, wait_message
from idp.extensions import commit_keeping_loaded, db
from idp.models import UpstreamProvider
from idp.users import directory, recovery, terms
from idp.users.errors import RegistrationRejected
from idp.web.errors import PageError
from idp.web.forms import form_value, is_local_path
from idp.web.headers import let_forms_leave_origin_after
from idp.web.templating import N_
from idp.web.templating import gettext as _

bp = Blueprint("authn", __name__)

LOGIN_FAILED = N_("The username, email or password is not right.")
LOGIN_GONE = N_("This sign-in has already ended, perhaps in another tab. Sign in again if you need to.")


def _upstreams() -> list[UpstreamProvider]:
    """Enabled upstream providers for the "Continue with ..." buttons (links to federation.start)."""
    return list(db.session.scalars(db.select(UpstreamProvider).where(UpstreamProvider.enabled.is_(True))
                                   .order_by(UpstreamProvider.display_name)))


def _next_target() -> str:
    target = request.values.get("next", "")
    return target if is_local_path(target) else url_for("account.home")


@bp.errorhandler(LoginGone)
def _login_gone(gone: LoginGone):
    """A racing request (a double click, another tab) ended the login this request was working on:
    undo what this request did (what must stay was committed on purpose before: a wrong code's
    count, a spent one-time factor) and offer the sign-in page again, never an error page."""
    db.session.rollback()
    browser.pop(flow.SESSION_KEY, None)
    settings = current_app.config["IDP_SETTINGS"]
    target = gone.next_path if gone.next_path and is_local_path(gone.next_path) else url_for("account.home")
    let_forms_leave_origin_after(target)
    return render_template("authn/login.html", next=target, login="", errors={"form": _(LOGIN_GONE)},
                           registration=settings.registration_enabled, upstreams=_upstreams()), 409


@bp.route("/login", methods=["GET", "POST"])
def login():
    """The first step of every login (and the password step after a passkey without user
    verification): GET starts a login in progress, POST proves the password for it."""
    settings = current_app.config["IDP_SETTINGS"]
    attempt = flow.current_attempt()
    if request.method == "GET":
        # resume: the password step of this login (after a first factor, or a step-up that
        # starts again from the password), not a new login
        if not (request.args.get("resume") and attempt is not None and (attempt.proofs or attempt.step_up)
                and flow.is_asking(attempt, steps.PASSWORD)):
            attempt = flow.begin(_next_target(), acr=request.args.get("acr"), required=request.args.get("required"),
                                 step_up=request.args.get("step_up") == "1")
            if attempt.step_up:
                return flow.advance(attempt)  # signed in already: only the missing factors
            commit_keeping_loaded()  # the page reads the attempt just written
        hint = request.args.get("login_hint", "")[:320]
        if attempt.step_up and not hint:
            hint = attempt.user.username  # a step-up that starts again: the session's own person
        let_forms_leave_origin_after(attempt.next)  # signing in may end at the client it resumes
        return render_template("authn/login.html", next=attempt.next, login=hint, errors={},
                               registration=settings.registration_enabled, upstreams=_upstreams())
    if not flow.is_asking(attempt, steps.PASSWORD):
        attempt = flow.begin(attempt.next, acr=attempt.target, required=attempt.target if attempt.must else None) \
            if attempt is not None else flow.begin(_next_target())
    if "next" in request.form:
        flow.retarget(attempt, _next_target())  # the form's own (local) target, as before the state machine
    login_value = form_value("login", max_length=320)
    try:
        user = password_step.authenticate(login_value, request.form.get("password", ""))
        return flow.proved(attempt, user, steps.password_proof())
    except (LoginFailed, Throttled, flow.WrongUser) as failure:
        next_path = attempt.next  # read before the commit: a racing request may end this login
        db.session.commit()  # keep the throttle counters and the audit event (nothing changed the login)
        message = _(LOGIN_FAILED) if not isinstance(failure, Throttled) else \
            wait_message(failure.retry_after)
        status = 429 if isinstance(failure, Throttled) else 400
        let_forms_leave_origin_after(next_path)
        page = render_template("authn/login.html", next=next_path, login=login_value,
                               errors={"form": message}, registration=settings.registration_enabled, upstreams=_upstreams())
        # RFC 6585 4 / RFC 9110 10.2.3: tell clients how long the back-off lasts.
        headers = {"Retry-After": str(failure.retry_after)} if isinstance(failure, Throttled) else {}
        return page, status, headers


@bp.route("/register", methods=["GET", "POST"])
def register():
    """The sign-up form; each POST is counted (authn.rate_limits) before anything else is done."""
    settings = current_app.config["IDP_SETTINGS"]
    if not settings.registration_enabled:
        raise PageError(_("Registration is closed here. Ask your administrator for an account."), 403)
    target = _next_target()
    if request.method == "GET":
        return _register_page(target, {}, {})
    values = {"username": form_value("username", max_length=64), "email": form_value("email", max_length=320)}
    try:
        rate_limits.count_registration(request.remote_addr or "-", settings)
    except RateLimited as limited:
        message = _("Too many accounts were created recently. Try again later (in %(n)s min).",
                    n=-(-limited.retry_after // 60))
        page = _register_page(target, values, {"form": message})
        return page, 429, {"Retry-After": str(limited.retry_after)}  # RFC 6585 4
    try:
        if settings.terms_version and request.form.get("accept_terms") != "yes":
            raise RegistrationRejected({"accept_terms": _("Accept the terms of service to create an account.")})
        user = directory.register(values["username"], values["email"], request.form.get("password", ""))
    except RegistrationRejected as rejected:
        db.session.rollback()
        return _register_page(target, values, rejected.errors), 400
    if settings.terms_version:
        terms.accept(user)
    recovery.send_verification(user)
    if settings.email_verification_required:
        db.session.commit()
        flow.remember_unverified(user)
        return render_template("authn/verify_sent.html", user=user, message=None)
    # A new account goes through the same state machine (IDP_MFA_REQUIRED leads to enrolment).
    return flow.proved(flow.begin(target), user, steps.password_proof())


def _register_page(target: str, values: dict, errors: dict) -> str:
    let_forms_leave_origin_after(target)  # a new account goes on to `next` like a login
    return render_template("authn/register.html", next=target, values=values, errors=errors)


@bp.route("/logout", methods=["GET", "POST"])
def logout():
    if request.method == "GET":
        return render_template("authn/logout.html", user=session.current_user())
    flow.drop(flow.current_attempt())  # a login in progress here (a step-up) ends with the session
    row = session.end()
    if row is not None:
        audit.record("authn.logout.succeeded", user=row.user_id, sid=row.sid)
    db.session.commit()
    return redirect(url_for("authn.logged_out"), 303)


@bp.route("/logged-out")
def logged_out():
    return render_template("authn/logged_out.html")


from idp.authn import passkey_views  # noqa: E402,F401  (adds passwordless sign-in to bp)
from idp.authn import step_views  # noqa: E402,F401  (adds the second-factor steps to bp)
