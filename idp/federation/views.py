"""Sign-in through an upstream: /federation/<id>/start sends the browser there, the fixed
/federation/<id>/callback (the redirect URI to register upstream) checks the answer, and
/federation/link/<id> lets a person prove they own the account an upstream identity would join."""
from __future__ import annotations

from flask import Blueprint, current_app, redirect, render_template, request, session, url_for

from idp import audit
from idp.authn import flow as auth_flow
from idp.authn import password as password_step
from idp.authn import session as sso
from idp.authn.errors import LoginFailed, Throttled, wait_message
from idp.authn.factors import has_second_factor
from idp.authn.steps import ACR_MFA, AMR_PASSWORD, meets, password_proof, upstream_proof
from idp.extensions import db
from idp.federation import flow, linking, providers
from idp.federation.errors import (EmailMissing, FederationError, RegistrationClosed, StateInvalid, UpstreamDenied,
                                  UpstreamInvalid, UpstreamUnavailable)
from idp.models import UpstreamProvider, User
from idp.users import terms
from idp.web.errors import PageError, request_id
from idp.web.forms import form_value, is_local_path
from idp.web.headers import keep_forms_on_origin, let_forms_leave_origin_after
from idp.web.templating import N_
from idp.web.templating import gettext as _

bp = Blueprint("federation", __name__)

LOGIN_FAILED = N_("The username, email or password is not right.")


def _next_target(value: str | None) -> str:
    return value if is_local_path(value) and len(value) <= 2048 else url_for("account.home")


def _message(error: FederationError, name: str) -> tuple[str, int]:
    if isinstance(error, StateInvalid):
        return _("This sign-in attempt has expired or was already used. Go back and start again."), 400
    if isinstance(error, UpstreamDenied):
        return _("%(name)s did not sign you in. Try again, or choose another way to sign in.", name=name), 403
    if isinstance(error, UpstreamUnavailable):
        return _("%(name)s is not answering right now. Try again in a few minutes.", name=name), 504
    if isinstance(error, UpstreamInvalid):
        return _("%(name)s sent an answer we cannot trust. Try again, or choose another way to sign in.",
                 name=name), 502
    if isinstance(error, RegistrationClosed):
        return _("No account here is linked to this %(name)s account. Sign in another way, or ask your "
                 "administrator for an account.", name=name), 403
    if isinstance(error, EmailMissing):
        return _("%(name)s did not share a usable email address, which a new account needs.", name=name), 400
    return _("This account cannot sign in. Ask your administrator."), 403


def _failure(provider_id: str, name: str, error: FederationError, next_path: str | None):
    details = {"provider": provider_id, "reason": error.reason}
    if isinstance(error, UpstreamDenied):
        details["error"] = error.error
    if isinstance(error, UpstreamInvalid):
        details["check"] = error.why
    db.session.rollback()
    audit.record("federation.login.failed", outcome="failure", **details)
    db.session.commit()
    message, status = _message(error, name)
    return render_template("federation/error.html", message=message, next=_next_target(next_path),
                           request_id=request_id()), status


@bp.route("/federation/<provider_id>/start")
def start(provider_id: str):
    provider = providers.find_enabled(provider_id)
    if provider is None:
        raise PageError(_("This sign-in option does not exist. Go back and choose another."), 404)
    target = _next_target(request.args.get("next"))
    try:
        url = flow.begin(provider, target)
    except FederationError as error:
        return _failure(provider.id, provider.display_name, error, target)
    audit.record("federation.login.started", provider=provider.id)
    db.session.commit()
    return redirect(url, 302)


@bp.route("/federation/<provider_id>/callback")
def callback(provider_id: str):
    provider = providers.find(provider_id)
    name = provider.display_name if provider else provider_id[:64]
    params = request.args.to_dict(flat=True)
    try:
        row = flow.take_state(provider_id, params.get("state"))
    except FederationError as error:
        return _failure(provider_id[:64], name, error, None)
    try:
        if provider is None or not provider.enabled:
            raise StateInvalid()
        identity = flow.finish(provider, row, params)
        user = linking.resolve(provider, identity)
    except FederationError as error:
        return _failure(provider_id, name, error, row.next_path)
    if user is None:
        link_id = linking.hold(identity, row.next_path)
        db.session.commit()
        return redirect(url_for("federation.link", link_id=link_id), 303)
    return _sign_in(user, identity.amr, identity.acr, provider.id, row.next_path)


def _sign_in(user: User, amr: list, acr: str, provider_id: str, next_path: str, *, password: bool = False):
    """Start the session, as a password login would end: refused (with a page that offers a new
    link) while IDP_EMAIL_VERIFICATION_REQUIRED and the address is unproved; through the local
    second-factor steps when the person has a second factor here or the login that sent them
    upstream aims higher than the upstream reached (authn.flow.continue_after_upstream); through
    the terms page when the current terms are not accepted. `password`: the link page also
    proved the account's password (amr, acr: what the upstream proved)."""
    if current_app.config["IDP_SETTINGS"].email_verification_required and not user.email_verified:
        audit.record("federation.login.failed", outcome="failure", user=user, provider=provider_id,
                     reason="email_not_verified")
        db.session.commit()
        auth_flow.remember_unverified(user)
        keep_forms_on_origin()  # this page's form asks for a new link, here; not the link page's
        return render_template("authn/verify_first.html", user=user), 403
    proofs = [upstream_proof(amr, acr)] + ([password_proof()] if password else [])
    if password:
        amr = sorted(set(amr) | {AMR_PASSWORD})
    audit.record("federation.login.succeeded", user=user, provider=provider_id, amr=amr)
    target = _next_target(next_path)
    more = auth_flow.continue_after_upstream(user, proofs, acr, target)
    if more is not None:  # asks for the next factor here (committed), or the login ended there
        return more
    sso.start(user, amr=amr, acr=acr, proofs=proofs)
    audit.record("authn.login.succeeded", user=user, amr=amr, via="federation")
    db.session.commit()
    if terms.needs_acceptance(user):
        target = url_for("authn.accept_terms", next=target)
    return redirect(target, 303)


def _link_page(context: dict, login_value: str, message: str, status: int):
    page = render_template("federation/link.html", login=login_value, errors={"form": message}, **context)
    return page, status


def _why_not_link(row, user: User, provider: UpstreamProvider, owner_signed_in: bool) -> tuple[str, str] | None:
    """Why the account just proved may not take the waiting upstream identity: (reason, message),
    or None when it may."""
    if not linking.is_pending_account(row, user):
        # The page asked for the account with row.email; another account's password (or the
        # session of another account) proves nothing about it. The wait stays for the right one.
        return "other_account", _("You signed in to a different account. Sign in to the account with the email "
                                  "%(email)s to link it.", email=row.email or "")
    if has_second_factor(user) and not owner_signed_in:
        # A password is one factor: linking on it alone would hand this upstream identity (and
        # whoever holds it) an account that signs in with two. The owner signs in fully first.
        return "second_factor_required", _("This account uses two-step sign-in. Sign in to it first, with your "
                                           "second step, then choose %(name)s again to link it.",
                                           name=provider.display_name)
    return None


@bp.route("/federation/link/<link_id>", methods=["GET", "POST"])
def link(link_id: str):
    row = linking.find_pending(link_id, session.get("bid"))
    if row is None:
        raise PageError(_("This sign-in attempt has expired or was already used. Go back and start again."), 400)
    provider = db.session.get(UpstreamProvider, row.provider_id)
    context = {"provider": provider, "link_id": link_id, "email": row.email}
    let_forms_leave_origin_after(row.next_path)  # linking signs in and goes on to `next`
    if request.method == "GET":
        return render_template("federation/link.html", login="", errors={}, **context)
    login_value = form_value("login", max_length=320)
    try:
        user = password_step.authenticate(login_value, request.form.get("password", ""))
    except (LoginFailed, Throttled) as failure:
        db.session.commit()  # keep the throttle counters and the audit event
        if isinstance(failure, Throttled):
            return _link_page(context, login_value, wait_message(failure.retry_after), 429)
        return _link_page(context, login_value, _(LOGIN_FAILED), 400)
    current = sso.current_session()
    owner_signed_in = current is not None and current.user_id == user.id and meets(current.acr, ACR_MFA)
    refusal = _why_not_link(row, user, provider, owner_signed_in)
    if refusal is not None:
        audit.record("federation.link.refused", outcome="failure", user=user, provider=provider.id,
                     reason=refusal[0])
        db.session.commit()
        return _link_page(context, login_value, refusal[1], 403)
    upstream_amr, acr, next_path = list(row.amr), row.acr, row.next_path
    if linking.complete_pending(row, user) is None:
        db.session.commit()
        raise PageError(_("This %(name)s account was linked to another account meanwhile.",
                          name=provider.display_name), 409)
    if owner_signed_in:  # linked from a stronger session, which stays as it is
        audit.record("federation.login.succeeded", user=user, provider=provider.id,
                     amr=sorted(set(upstream_amr) | {AMR_PASSWORD}), session="kept")
        db.session.commit()
        return redirect(_next_target(next_path), 303)
    return _sign_in(user, upstream_amr, acr, provider.id, next_path, password=True)
