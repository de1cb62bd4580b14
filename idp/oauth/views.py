"""Protocol endpoints. /authorize follows DESIGN.md section 7: authorize_decision validates the
request and decides the next step; the view carries it out, keeping the request server-side
while the person signs in."""
from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

from authlib.oauth2.rfc6749 import AccessDeniedError, OAuth2Error
from flask import Blueprint, Response, abort, current_app, g, redirect, render_template, request, url_for

from idp import audit
from idp.authn.session import cookie_name, current_session
from idp.extensions import csrf, db
from idp.keys import JWKS_MAX_AGE, keyring
from idp.models import UpstreamProvider
from idp.oauth import acr as acr_mod
from idp.oauth import authorize_checks, consent, endpoints, interaction, logout, pending
from idp.oauth.authorize_decision import AcceptTerms, Decision, decide
from idp.oauth.discovery import metadata_json
from idp.oauth.introspection import IntrospectionEndpoint
from idp.oauth.revocation import RevocationEndpoint
from idp.oauth.server import get_server, query_client
from idp.web.errors import PageError
from idp.web.forms import form_value
from idp.web.headers import let_forms_leave_origin
from idp.web.templating import N_
from idp.web.templating import gettext as _

bp = Blueprint("oauth", __name__)

EXPIRED = N_("This sign-in request has expired or was opened in another browser. Go back to the application and start again.")


# Marks the one re-send of a cross-site POST from our own page (see _resend_same_site).
RESENT = "_same_site"


def _resend_same_site(fields, endpoint: str, heading: str, *, may_leave: bool):
    """OIDC Core 3.1.2.1 and RP-Initiated Logout 1.0 2 let the app POST to the authorization and
    logout endpoints, usually from its own page: a cross-site POST, which the browser sends
    without our SameSite=Lax cookies, so we would neither see the SSO session (prompt=none would
    answer login_required, a logout would end nothing) nor the browser's own cookie (and a new one
    would replace it). A POST that carries none of our cookies gets a page of ours that sends the
    same fields once more, same-site, so the cookies come along; None when the request goes on as
    it is (a GET, a POST with our cookies, or the re-send itself)."""
    if request.method != "POST" or request.form.get(RESENT) == "1" or \
            cookie_name() in request.cookies or current_app.config["SESSION_COOKIE_NAME"] in request.cookies:
        return None
    if may_leave:  # the re-sent request may redirect on to the client (see idp.web.headers)
        let_forms_leave_origin()
    return render_template("oauth/resend.html", heading=heading, action=url_for(endpoint),
                           fields=[*((k, v) for k, v in fields if k != RESENT), (RESENT, "1")])


@bp.route("/authorize", methods=["GET", "POST"])
@csrf.exempt  # the relying party may POST the request (OIDC Core 3.1.2.1)
def authorize():
    resend = _resend_same_site(request.values.items(multi=True), "oauth.authorize", _("One moment"), may_leave=True)
    if resend is not None:
        return resend
    # RFC 6749 3.1: a parameter sent without a value is treated as if it were omitted.
    values = {name: value for name, value in request.values.to_dict(flat=True).items() if value != ""}
    values.pop(RESENT, None)
    values.pop(authorize_checks.REPEATED, None)
    # RFC 6749 3.1: a parameter MUST NOT be sent more than once. Which client, address or response
    # type was meant is then unknown: our page. Any other: invalid_request to the client.
    repeated = sorted(name for name in request.values if len(request.values.getlist(name)) > 1)
    if set(repeated) & {"client_id", "redirect_uri", "response_type"}:
        return render_template("oauth/error.html", error="invalid_request",
                               description=authorize_checks.repeated_description(repeated)), 400
    if repeated:
        values[authorize_checks.REPEATED] = authorize_checks.repeated_description(repeated)
    return _authorize(values, None, None)


@bp.route("/authorize/resume/<pending_id>")
def resume(pending_id: str):
    row = pending.load(pending_id)
    if row is None:
        raise PageError(_(EXPIRED), 400)
    return _authorize(row.params, row, pending_id)


@bp.route("/authorize/consent", methods=["POST"])
def consent_decision():
    """The answer on the consent page. The request is decided again, as on resume: it is
    answered only when consent is what it waits for, for the session the page was shown to;
    anything else (a login, prompt=login, an id_token_hint or terms still to do) goes back
    through oauth.resume."""
    pending_id = form_value("pending_id", max_length=64)
    row = pending.load(pending_id)
    if row is None:
        raise PageError(_(EXPIRED), 400)
    resume_path = url_for("oauth.resume", pending_id=pending_id)
    if current_session() is None:
        return redirect(url_for("authn.login", next=resume_path), 303)
    params = row.params
    try:
        decided = decide(params, row)
    except OAuth2Error as error:
        return _answered_with_error(error, params, row)
    sso, grant = decided.sso, decided.grant
    if not isinstance(decided.step, (interaction.Consent, interaction.Issue)) \
            or form_value("sid", max_length=64) != sso.sid:
        return redirect(resume_path, 303)
    if not pending.drop(row):  # a second click on Allow or Deny: the first one answers the client
        raise PageError(_(EXPIRED), 400)
    if request.form.get("decision") != "allow":
        audit.record("oauth.consent.denied", user=sso.user, client=grant.client)
        db.session.commit()
        if grant.client.is_unverified:  # RFC 9700 4.11.2: no redirect an unverified client can use
            return _unverified_error_page(AccessDeniedError(redirect_uri=grant.redirect_uri), grant.client)
        response = get_server().create_authorization_response(request=params, grant=grant, grant_user=None)
        return _deliver(response, params, grant.redirect_uri)
    consent.record(sso.user, grant.client, grant.request.scope)
    return _issue(decided, params, None)


def _authorize(params: dict, row, pending_id: str | None):
    try:
        decided = decide(params, row)
    except OAuth2Error as error:
        return _answered_with_error(error, params, row)
    step = decided.step
    if isinstance(step, interaction.Issue):
        return _issue(decided, params, row)
    if pending_id is None:
        pending_id = pending.save(params, step_up_acr=step.acr if isinstance(step, interaction.StepUp) else None)
    elif isinstance(step, interaction.StepUp):
        row.step_up_acr = step.acr
    db.session.commit()
    resume_path = url_for("oauth.resume", pending_id=pending_id)
    if isinstance(step, AcceptTerms):
        return redirect(url_for("authn.accept_terms", next=resume_path), 302)
    if isinstance(step, interaction.Login) and step.reason == "create":
        return redirect(url_for("authn.register", next=resume_path), 302)
    if isinstance(step, (interaction.Login, interaction.StepUp)):
        return redirect(_login_url(step, decided, params, resume_path), 302)
    let_forms_leave_origin()  # Allow and Deny answer the client at its redirect URI, and on from there
    return render_template("oauth/consent.html", client=decided.grant.client, user=decided.sso.user,
                           pending_id=pending_id, sid=decided.sso.sid,
                           scopes=consent.describe(decided.grant.request.scope),
                           destination=_destination(params.get("redirect_uri") or decided.grant.client.get_default_redirect_uri()))


def _destination(redirect_uri: str | None) -> str | None:
    """Where the answer goes, as a person can check it: the host of a web address, or the scheme a
    native app registered. An unverified client chose its name; this part it cannot fake."""
    if not redirect_uri:
        return None
    parts = urlsplit(redirect_uri)
    return parts.hostname if parts.scheme in ("https", "http") else f"{parts.scheme}:"


def _login_url(step, decided, params: dict, resume_path: str) -> str:
    """Where a Login or StepUp goes: the named upstream provider, else our login page."""
    if isinstance(step, interaction.Login):
        upstream = _hinted_upstream(params.get("idp_hint"))
        if upstream is not None:  # straight to the named upstream provider (federation room)
            return url_for("federation.start", provider_id=upstream.id, next=resume_path)
    # authn gets a local path and the level to reach; oauth checks the result on resume.
    acr = decided.extras.acr
    return url_for("authn.login", next=resume_path, login_hint=params.get("login_hint", "")[:320] or None,
                   acr=acr.target, required=acr.required,
                   step_up=1 if isinstance(step, interaction.StepUp) else None)


def _hinted_upstream(hint) -> UpstreamProvider | None:
    """The enabled upstream provider named by `idp_hint`; an unknown one is ignored (the login page)."""
    if not isinstance(hint, str) or not hint or len(hint) > 64:
        return None
    upstream = db.session.get(UpstreamProvider, hint)
    return upstream if upstream is not None and upstream.enabled else None


def _issue(decided: Decision, params: dict, row):
    sso, grant = decided.sso, decided.grant
    g.idp_authorization = {"sid": sso.sid, "auth_time": int(sso.auth_time.timestamp()),
                           "acr": acr_mod.reported_acr(sso.acr, decided.extras.acr),
                           "amr": sso.amr, "claims": decided.extras.claims}
    if row is not None and not pending.drop(row):  # a racing resume of the same request issued already
        raise PageError(_(EXPIRED), 400)
    server = get_server()
    response = server.create_authorization_response(request=params, grant=grant, grant_user=sso.user)
    audit.record("oauth.code.issued", user=sso.user, client=grant.client, scope=grant.request.scope)
    db.session.commit()
    return _deliver(response, params, grant.redirect_uri)


def _answered_with_error(error: OAuth2Error, params: dict, row):
    """An error ends the request: a stored one is used up, so the client that got `error` with
    this `state` can never get a code for it later (say after another sign-in on this browser)."""
    if row is not None and pending.drop(row):
        db.session.commit()
    return _error_response(error, params)


def _error_response(error: OAuth2Error, params: dict):
    """Our page until client and redirect_uri are verified; and always for an unverified client
    (RFC 9700 4.11.2: else anyone could register one to use /authorize as an open redirector)."""
    client = query_client(params.get("client_id")) if error.redirect_uri else None  # read already by authlib
    if client is None:
        return render_template("oauth/error.html", error=error.error, description=error.description), 400
    if client.is_unverified:
        return _unverified_error_page(error, client)
    server = get_server()
    response = server.handle_error_response(None, error)
    server.issuer_parameter.add_issuer_parameter(server, response)
    return _deliver(response, params, error.redirect_uri)


def _unverified_error_page(error: OAuth2Error, client):
    """The error, on our page, naming the unverified app and where it wanted to send the person."""
    return render_template("oauth/error.html", error=error.error, description=error.description,
                           unverified_app=client.client_name,
                           destination=urlsplit(error.redirect_uri).hostname or error.redirect_uri), 400


def _deliver(response, params: dict, redirect_uri: str):
    """A 302 to the client, or for response_mode=form_post an auto-submitting form (OAuth 2.0
    Form Post Response Mode) whose script lives in static/js/form-post.js."""
    if params.get("response_mode") != "form_post" or response.status_code != 302 or \
            urlsplit(redirect_uri).scheme not in ("http", "https"):  # an app's own scheme takes no POST
        return response
    location = response.headers["Location"]
    own = parse_qsl(urlsplit(redirect_uri).query)
    fields = [pair for pair in parse_qsl(urlsplit(location).query, keep_blank_values=True) if pair not in own]
    let_forms_leave_origin()  # the form posts itself to the client (static/js/form-post.js)
    return render_template("oauth/form_post.html", action=redirect_uri, fields=fields), 200


@bp.route("/clients/<client_id>/logo")
def client_logo(client_id: str):
    """An operator-uploaded client logo, from our own origin (never the client's logo_uri)."""
    client = query_client(client_id)
    if client is None or client.logo_image is None:
        raise PageError(_("There is no such image."), 404)
    return Response(client.logo_image, mimetype=client.logo_content_type,
                    headers={"Cache-Control": "public, max-age=300", "Content-Disposition": "inline"})


@bp.route("/token", methods=["POST"])
@csrf.exempt
def token():
    return get_server().create_token_response()


@bp.route("/oauth/register", methods=["POST"])
@csrf.exempt
def register_client():
    """RFC 7591 3 (/register is the page where people sign up)."""
    _require_client_registration()
    return get_server().create_endpoint_response("client_registration")


@bp.route("/oauth/register/<client_id>", methods=["GET", "PUT", "DELETE"])
@csrf.exempt
def configure_client(client_id: str):
    """RFC 7592 2: read, replace or delete one dynamically registered client."""
    _require_client_registration()
    return get_server().create_endpoint_response("client_configuration")


def _require_client_registration() -> None:
    if current_app.config["IDP_SETTINGS"].client_registration == "disabled":
        abort(404)


@bp.route("/revoke", methods=["POST"])
@csrf.exempt
def revoke():
    """RFC 7009 token revocation."""
    return get_server().create_endpoint_response(RevocationEndpoint.ENDPOINT_NAME)


@bp.route("/introspect", methods=["POST"])
@csrf.exempt
def introspect():
    """RFC 7662 token introspection."""
    return get_server().create_endpoint_response(IntrospectionEndpoint.ENDPOINT_NAME)


@bp.route("/userinfo", methods=["GET", "POST"])
@csrf.exempt
def userinfo():
    return endpoints.userinfo()


@bp.route("/end-session", methods=["GET", "POST"])
@csrf.exempt  # RP-Initiated Logout 1.0 2: the app sends GET or POST; nothing ends untrusted unconfirmed
def end_session():
    return _end_session(request.values, confirmed=False)


@bp.route("/end-session/confirm", methods=["POST"])
def end_session_confirm():
    return _end_session(request.form, confirmed=True)


def _end_session(values, *, confirmed: bool):
    try:
        req = logout.parse_end_session(values)
    except logout.EndSessionRejected:
        raise PageError(_("This sign-out request is not valid. Go back to the application and try again."), 400) from None
    if not confirmed and (resend := _resend_same_site(req.params.items(), "oauth.end_session", _("Signing you out"),
                                                      may_leave=req.target is not None)) is not None:
        return resend
    sso = current_session()
    step = logout.plan(req, sso)
    if step.confirm and not confirmed:
        if step.redirect_to is not None:  # a registered post_logout_redirect_uri: signing out 303s there
            let_forms_leave_origin()
        return render_template("oauth/logout-confirm.html", user=sso.user, client=req.client, params=req.params)
    logout.finish(req, step, confirmed=confirmed)
    db.session.commit()
    return redirect(step.redirect_to or url_for("authn.logged_out"), 303 if request.method == "POST" else 302)


@bp.route("/jwks")
def jwks():
    return Response(keyring().jwks_json, mimetype="application/json",
                    headers={"Cache-Control": f"public, max-age={JWKS_MAX_AGE}"})


@bp.route("/.well-known/openid-configuration")
def openid_configuration():
    return Response(metadata_json(), mimetype="application/json", headers={"Cache-Control": "public, max-age=300"})


@bp.route("/.well-known/oauth-authorization-server")
def oauth_metadata():
    return openid_configuration()
