"""Sign-in, registration and sign-out pages. authn never sees OAuth parameters: it receives a
local `next` path (and a `login_hint` to pre-fill) and sends the person back there."""
from __future__ import annotations

from flask import Blueprint, current_app, redirect, render_template, request, session as browser, url_for

from idp import audit
from idp.authn import password as password_step
from idp.authn import session
from idp.authn.errors import LoginFailed, Throttled
from idp.authn.steps import AMR_PASSWORD, acr_for
from idp.extensions import db
from idp.models import UpstreamProvider
from idp.users import directory, recovery, terms
from idp.users.errors import RegistrationRejected
from idp.web.errors import PageError
from idp.web.forms import form_value, is_local_path
from idp.web.templating import N_
from idp.web.templating import gettext as _

bp = Blueprint("authn", __name__)

LOGIN_FAILED = N_("The username, email or password is not right.")
VERIFY_USER_KEY = "idp_verify_user"  # who may ask for another verification mail before signing in


def _after_login(user, target: str) -> str:
    """Where a fresh sign-in goes: the terms page first when the current version is not accepted."""
    return url_for("authn.accept_terms", next=target) if terms.needs_acceptance(user) else target


def _upstreams() -> list[UpstreamProvider]:
    """Enabled upstream providers for the "Continue with ..." buttons (links to federation.start)."""
    return list(db.session.scalars(db.select(UpstreamProvider).where(UpstreamProvider.enabled.is_(True))
                                   .order_by(UpstreamProvider.display_name)))


def _next_target() -> str:
    target = request.values.get("next", "")
    return target if is_local_path(target) else url_for("account.home")


@bp.route("/login", methods=["GET", "POST"])
def login():
    target = _next_target()
    settings = current_app.config["IDP_SETTINGS"]
    if request.method == "GET":
        hint = request.args.get("login_hint", "")[:320]
        return render_template("authn/login.html", next=target, login=hint, errors={},
                               registration=settings.registration_enabled, upstreams=_upstreams())
    login_value = form_value("login", max_length=320)
    try:
        user = password_step.authenticate(login_value, request.form.get("password", ""))
    except (LoginFailed, Throttled) as failure:
        db.session.commit()  # keep the throttle counters and the audit event
        message = _(LOGIN_FAILED) if isinstance(failure, LoginFailed) else \
            _("Too many attempts. Wait %(s)s seconds and try again.", s=failure.retry_after)
        status = 400 if isinstance(failure, LoginFailed) else 429
        page = render_template("authn/login.html", next=target, login=login_value,
                               errors={"form": message}, registration=settings.registration_enabled,
                               upstreams=_upstreams())
        # RFC 6585 4 / RFC 9110 10.2.3: tell clients how long the back-off lasts.
        headers = {"Retry-After": str(failure.retry_after)} if isinstance(failure, Throttled) else {}
        return page, status, headers
    if settings.email_verification_required and not user.email_verified:
        audit.record("authn.login.failed", outcome="failure", user=user, reason="email_not_verified")
        db.session.commit()
        browser[VERIFY_USER_KEY] = user.id
        return render_template("authn/verify_first.html", user=user), 403
    amr = [AMR_PASSWORD]
    session.start(user, amr=amr, acr=acr_for(amr))
    audit.record("authn.login.succeeded", user=user, amr=amr)
    db.session.commit()
    return redirect(_after_login(user, target), 303)


@bp.route("/register", methods=["GET", "POST"])
def register():
    settings = current_app.config["IDP_SETTINGS"]
    if not settings.registration_enabled:
        raise PageError(_("Registration is closed here. Ask your administrator for an account."), 403)
    target = _next_target()
    if request.method == "GET":
        return render_template("authn/register.html", next=target, values={}, errors={})
    values = {"username": form_value("username", max_length=64), "email": form_value("email", max_length=320)}
    try:
        if settings.terms_version and request.form.get("accept_terms") != "yes":
            raise RegistrationRejected({"accept_terms": _("Accept the terms of service to create an account.")})
        user = directory.register(values["username"], values["email"], request.form.get("password", ""))
    except RegistrationRejected as rejected:
        db.session.rollback()
        return render_template("authn/register.html", next=target, values=values, errors=rejected.errors), 400
    if settings.terms_version:
        terms.accept(user)
    recovery.send_verification(user)
    if settings.email_verification_required:
        db.session.commit()
        browser[VERIFY_USER_KEY] = user.id
        return render_template("authn/verify_sent.html", user=user, message=None)
    amr = [AMR_PASSWORD]
    session.start(user, amr=amr, acr=acr_for(amr))
    audit.record("authn.login.succeeded", user=user, amr=amr, via="registration")
    db.session.commit()
    return redirect(target, 303)


@bp.route("/logout", methods=["GET", "POST"])
def logout():
    if request.method == "GET":
        return render_template("authn/logout.html", user=session.current_user())
    row = session.end()
    if row is not None:
        audit.record("authn.logout.succeeded", user=row.user_id, sid=row.sid)
    db.session.commit()
    return redirect(url_for("authn.logged_out"), 303)


@bp.route("/logged-out")
def logged_out():
    return render_template("authn/logged_out.html")
