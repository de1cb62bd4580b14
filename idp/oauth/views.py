"""Protocol endpoints. /authorize follows DESIGN.md section 7: validate with authlib, decide the
next step with interaction.next_step, and keep the request server-side while the person signs in."""
from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

from authlib.oauth2.rfc6749 import InvalidRequestError, OAuth2Error, UnauthorizedClientError
from authlib.oidc.core.errors import ConsentRequiredError, InteractionRequiredError, LoginRequiredError
from flask import Blueprint, Response, abort, current_app, g, redirect, render_template, request, url_for

from idp import audit
from idp.authn.session import current_session
from idp.authn.steps import meets
from idp.clock import now
from idp.extensions import csrf, db
from idp.keys import keyring
from idp.models import UpstreamProvider
from idp.oauth import claims as claims_mod
from idp.oauth import acr as acr_mod
from idp.oauth import consent, endpoints, interaction, logout, pending
from idp.oauth.discovery import metadata_json
from idp.oauth.introspection import IntrospectionEndpoint
from idp.oauth.revocation import RevocationEndpoint
from idp.oauth.server import get_server, query_client
from idp.oauth.subjects import subject_for
from idp.oauth.tokens import id_token_alg_refusal, verify_id_token_hint
from idp.users import terms
from idp.web.errors import PageError
from idp.web.forms import form_value
from idp.web.templating import N_
from idp.web.templating import gettext as _

bp = Blueprint("oauth", __name__)

EXPIRED = N_("This sign-in request has expired or was opened in another browser. Go back to the application and start again.")


class UnmetAuthenticationRequirements(OAuth2Error):
    """OpenID Connect Core Unmet Authentication Requirements 1.0."""

    error = "unmet_authentication_requirements"


class RequestNotSupported(OAuth2Error):
    error = "request_not_supported"


class RequestUriNotSupported(OAuth2Error):
    error = "request_uri_not_supported"


@bp.route("/authorize", methods=["GET", "POST"])
@csrf.exempt  # the relying party may POST the request (OIDC Core 3.1.2.1)
def authorize():
    return _authorize(request.values.to_dict(flat=True), None, None)


@bp.route("/authorize/resume/<pending_id>")
def resume(pending_id: str):
    row = pending.load(pending_id)
    if row is None:
        raise PageError(_(EXPIRED), 400)
    return _authorize(row.params, row, pending_id)


@bp.route("/authorize/consent", methods=["POST"])
def consent_decision():
    pending_id = form_value("pending_id", max_length=64)
    row = pending.load(pending_id)
    if row is None:
        raise PageError(_(EXPIRED), 400)
    sso = current_session()
    if sso is None:
        return redirect(url_for("authn.login", next=url_for("oauth.resume", pending_id=pending_id)), 303)
    server = get_server()
    try:
        grant = server.get_consent_grant(request=row.params, end_user=sso.user)
        extras = _validate_extras(grant, row.params)
    except OAuth2Error as error:
        return _error_response(error, row.params)
    required = extras["acr"].required
    if required is not None and not meets(sso.acr, required):  # the session changed since the consent page
        return redirect(url_for("oauth.resume", pending_id=pending_id), 303)
    params = row.params
    if not pending.drop(row):  # a second click on Allow or Deny: the first one answers the client
        raise PageError(_(EXPIRED), 400)
    if request.form.get("decision") != "allow":
        audit.record("oauth.consent.denied", user=sso.user, client=grant.client)
        db.session.commit()
        response = server.create_authorization_response(request=params, grant=grant, grant_user=None)
        return _deliver(response, params, grant.redirect_uri)
    consent.record(sso.user, grant.client, grant.request.scope)
    return _issue(grant, sso, params, extras, None)


def _validate_extras(grant, params: dict) -> dict:
    """Checks authlib leaves to us; errors go back to the (verified) redirect_uri."""
    where = {"redirect_uri": grant.redirect_uri, "state": params.get("state")}
    if "request" in params:
        raise RequestNotSupported("request objects are not supported", **where)
    if "request_uri" in params:
        raise RequestUriNotSupported("request_uri is not supported", **where)
    mode = params.get("response_mode", "query")
    if mode not in ("query", "form_post"):
        raise InvalidRequestError("response_mode must be query or form_post", **where)
    if mode == "form_post" and urlsplit(grant.redirect_uri).scheme not in ("http", "https"):
        raise InvalidRequestError("form_post needs an http(s) redirect_uri", **where)
    refusal = id_token_alg_refusal(grant.client, keyring()) if "openid" in grant.request.scope.split() else None
    if refusal is not None:  # refused at /token anyway (grants.id_token_ring): say so before anyone signs in
        raise UnauthorizedClientError(f"{refusal}; update the client registration", **where)
    max_age = params.get("max_age")
    if max_age is not None and (not max_age.isdigit() or len(max_age) > 10):
        raise InvalidRequestError("max_age must be a non-negative integer", **where)
    try:
        claims_request = claims_mod.parse_claims_parameter(params.get("claims"))
    except InvalidRequestError as error:
        raise InvalidRequestError(error.description, **where) from None
    prompts = set((params.get("prompt") or "").split())
    if "create" in prompts and not current_app.config["IDP_SETTINGS"].registration_enabled:
        # Prompt Create 1.0 4.1: a prompt value the OP does not support is invalid_request.
        raise InvalidRequestError("prompt=create is not supported: registration is closed", **where)
    hint = None
    if params.get("id_token_hint"):
        hint = verify_id_token_hint(params["id_token_hint"])
        if hint is None:
            raise InvalidRequestError("id_token_hint is not an ID token we issued", **where)
    settings = current_app.config["IDP_SETTINGS"]
    acr_request = acr_mod.requested_acr(params.get("acr_values"), claims_request,
                                        policy_mfa=grant.client.require_mfa or settings.mfa_required)
    if acr_request.impossible:
        raise UnmetAuthenticationRequirements("the essential acr values are not supported", **where)
    # OIDC Registration 2: the client's default_max_age applies when the request has no max_age.
    max_age = int(max_age) if max_age is not None else grant.client.default_max_age
    return {"max_age": max_age, "claims": claims_request,
            "hint_sub": hint.get("sub") if hint else None, "acr": acr_request,
            "prompts": prompts}


def _authorize(params: dict, row, pending_id: str | None):
    server = get_server()
    sso = current_session()
    user = sso.user if sso else None
    try:
        grant = server.get_consent_grant(request=params if row else None, end_user=user)
        extras = _validate_extras(grant, params)
    except OAuth2Error as error:
        return _error_response(error, params)
    fresh = row is not None and sso is not None and sso.auth_time >= row.created_at
    hint_matches = extras["hint_sub"] is None or user is None or extras["hint_sub"] == subject_for(user, grant.client)
    where = {"redirect_uri": grant.redirect_uri, "state": params.get("state")}
    if fresh and not hint_matches:
        return _error_response(LoginRequiredError(**where), params)
    step = interaction.next_step(
        prompts=extras["prompts"], signed_in=user is not None, login_is_fresh=fresh,
        session_age=int((now() - sso.auth_time).total_seconds()) if sso else None,
        max_age=extras["max_age"], hint_matches=hint_matches,
        consent_covers=user is not None and consent.covers(consent.find(user.id, grant.client.id), grant.request.scope),
        first_party=grant.client.first_party, session_acr=sso.acr if sso else None,
        target=extras["acr"].target, required=extras["acr"].required,
        stepped_up=row is not None and row.step_up_acr is not None)
    if isinstance(step, interaction.Unmet):
        audit.record("oauth.authentication.unmet", outcome="failure", user=user, client=grant.client,
                     required=extras["acr"].required, acr=sso.acr)
        db.session.commit()
        return _error_response(UnmetAuthenticationRequirements("the required authentication level was not reached",
                                                               **where), params)
    if user is not None and not isinstance(step, (interaction.Login, interaction.StepUp)) \
            and terms.needs_acceptance(user):
        if "none" in extras["prompts"]:
            return _error_response(InteractionRequiredError("the terms of service must be accepted", **where), params)
        if pending_id is None:
            pending_id = pending.save(params)
            db.session.commit()
        return redirect(url_for("authn.accept_terms", next=url_for("oauth.resume", pending_id=pending_id)), 302)
    if "none" in extras["prompts"] and not isinstance(step, interaction.Issue):
        error = ConsentRequiredError(**where) if isinstance(step, interaction.Consent) else LoginRequiredError(**where)
        return _error_response(error, params)
    if isinstance(step, interaction.Issue):
        return _issue(grant, sso, params, extras, row)
    step_up_acr = step.acr if isinstance(step, interaction.StepUp) else None
    if pending_id is None:
        pending_id = pending.save(params, step_up_acr=step_up_acr)
    elif step_up_acr is not None:
        row.step_up_acr = step_up_acr
    db.session.commit()
    resume_path = url_for("oauth.resume", pending_id=pending_id)
    if isinstance(step, interaction.Login) and step.reason == "create":
        return redirect(url_for("authn.register", next=resume_path), 302)
    if isinstance(step, (interaction.Login, interaction.StepUp)):
        upstream = _hinted_upstream(params.get("idp_hint")) if isinstance(step, interaction.Login) else None
        if upstream is not None:  # straight to the named upstream provider (federation room)
            return redirect(url_for("federation.start", provider_id=upstream.id, next=resume_path), 302)
        # authn gets a local path and the level to reach; oauth checks the result on resume.
        login_url = url_for("authn.login", next=resume_path,
                            login_hint=params.get("login_hint", "")[:320] or None,
                            acr=extras["acr"].target, required=extras["acr"].required,
                            step_up=1 if step_up_acr else None)
        return redirect(login_url, 302)
    return render_template("oauth/consent.html", client=grant.client, user=user, pending_id=pending_id,
                           scopes=consent.describe(grant.request.scope))


def _hinted_upstream(hint) -> UpstreamProvider | None:
    """The enabled upstream provider named by `idp_hint`; an unknown one is ignored (the login page)."""
    if not isinstance(hint, str) or not hint or len(hint) > 64:
        return None
    upstream = db.session.get(UpstreamProvider, hint)
    return upstream if upstream is not None and upstream.enabled else None


def _issue(grant, sso, params: dict, extras: dict, row):
    g.idp_authorization = {"sid": sso.sid, "auth_time": int(sso.auth_time.timestamp()),
                           "acr": acr_mod.reported_acr(sso.acr, extras["acr"]),
                           "amr": sso.amr, "claims": extras["claims"]}
    if row is not None and not pending.drop(row):  # a racing resume of the same request issued already
        raise PageError(_(EXPIRED), 400)
    server = get_server()
    response = server.create_authorization_response(request=params, grant=grant, grant_user=sso.user)
    audit.record("oauth.code.issued", user=sso.user, client=grant.client, scope=grant.request.scope)
    db.session.commit()
    return _deliver(response, params, grant.redirect_uri)


def _error_response(error: OAuth2Error, params: dict):
    if not error.redirect_uri:
        return render_template("oauth/error.html", error=error.error, description=error.description), 400
    server = get_server()
    response = server.handle_error_response(None, error)
    server.issuer_parameter.add_issuer_parameter(server, response)
    return _deliver(response, params, error.redirect_uri)


def _deliver(response, params: dict, redirect_uri: str):
    """A 302 to the client, or for response_mode=form_post an auto-submitting form (OAuth 2.0
    Form Post Response Mode) whose script lives in static/js/form-post.js."""
    if params.get("response_mode") != "form_post" or response.status_code != 302:
        return response
    location = response.headers["Location"]
    own = parse_qsl(urlsplit(redirect_uri).query)
    fields = [pair for pair in parse_qsl(urlsplit(location).query, keep_blank_values=True) if pair not in own]
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
    sso = current_session()
    step = logout.plan(req, sso)
    if step.confirm and not confirmed:
        return render_template("oauth/logout-confirm.html", user=sso.user, client=req.client, params=req.params)
    logout.finish(req, step, confirmed=confirmed)
    db.session.commit()
    return redirect(step.redirect_to or url_for("authn.logged_out"), 303 if request.method == "POST" else 302)


@bp.route("/jwks")
def jwks():
    return Response(keyring().jwks_json, mimetype="application/json",
                    headers={"Cache-Control": "public, max-age=60"})


@bp.route("/.well-known/openid-configuration")
def openid_configuration():
    return Response(metadata_json(), mimetype="application/json", headers={"Cache-Control": "public, max-age=300"})


@bp.route("/.well-known/oauth-authorization-server")
def oauth_metadata():
    return openid_configuration()
