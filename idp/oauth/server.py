"""The authlib AuthorizationServer and its two storage hooks."""
from __future__ import annotations

from datetime import timedelta

from authlib.integrations.flask_oauth2 import AuthorizationServer as FlaskAuthorizationServer
from authlib.oauth2.rfc6749 import InvalidClientError, OAuth2Request, UnsupportedResponseTypeError
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc9207 import IssuerParameter as _IssuerParameter
from flask import Flask, current_app, g, has_request_context

from idp.clock import now
from idp.extensions import db
from idp.models import Client, RefreshToken
from idp.oauth import client_auth, grants
from idp.oauth import lifetimes, registration
from idp.oauth.claims import SCOPES_SUPPORTED
from idp.oauth.introspection import IntrospectionEndpoint
from idp.oauth.revocation import RevocationEndpoint
from idp.oauth.tokens import TokenGenerator
from idp.security.tokens import digest


class StoredRequest(OAuth2Request):
    """An authorization request rebuilt from parameters we stored (resume and consent)."""

    def __init__(self, params: dict, issuer: str):
        super().__init__("GET", issuer + "/authorize")
        self.payload = BasicOAuth2Payload(params)

    @property
    def args(self):
        return self.payload.data

    @property
    def form(self):
        return {}


class AuthorizationServer(FlaskAuthorizationServer):
    def create_oauth2_request(self, request):
        if isinstance(request, dict):
            return StoredRequest(request, current_app.config["IDP_SETTINGS"].issuer)
        return super().create_oauth2_request(request)

    def authenticate_client(self, request, methods, endpoint="token"):
        """authlib's, with our refusal in place of its last one: when no method authenticated the
        client, the answer is client_auth.secret_failure() (one description, a Basic challenge),
        not a list of methods. A client assertion's refusal (400, audited with its reason) stays."""
        try:
            return super().authenticate_client(request, methods, endpoint)
        except InvalidClientError as error:
            if error.status_code != 401:
                raise
            raise client_auth.secret_failure() from None

    def get_authorization_grant(self, request):
        """authlib's, except for an unknown response_type: authlib writes the raw value into
        error_description (attacker text on the way to the client; outside RFC 6749's charset a
        ValueError, a 500). Here the description is fixed; the redirect rule is authlib's (RFC 6749 4.1.2.1)."""
        if any(grant_cls.check_authorization_endpoint(request) for grant_cls, _ in self._authorization_grants):
            return super().get_authorization_grant(request)
        client = self.query_client(request.payload.client_id) if request.payload.client_id else None
        requested = request.payload.redirect_uri
        if client is None:
            redirect_uri = None
        elif requested:
            redirect_uri = requested if client.check_redirect_uri(requested) else None
        else:
            redirect_uri = client.get_default_redirect_uri()
        raise UnsupportedResponseTypeError(request.payload.response_type, description="response_type must be code",
                                           redirect_uri=redirect_uri)


class IssuerParameter(_IssuerParameter):
    """RFC 9207: `iss` on every authorization response, errors included."""

    def get_issuer(self) -> str:
        return current_app.config["IDP_SETTINGS"].issuer


def query_client(client_id: str) -> Client | None:
    """The client, read once per request: authlib asks for it at each validation step."""
    if not client_id or len(client_id) > 64 or not client_id.isprintable():  # none of ours has a control character
        return None
    memo = g.setdefault("idp_clients", {}) if has_request_context() else {}
    if client_id not in memo:
        memo[client_id] = db.session.scalar(db.select(Client).where(Client.client_id == client_id))
    return memo[client_id]


def save_token(token: dict, request) -> None:
    """JWT access tokens need no row; a refresh token is stored as a digest on its grant, usable
    until its idle limit (never past the grant's absolute expiry)."""
    refresh = token.get("refresh_token")
    if refresh:
        grant = g.idp_token_grant
        idle_end = now() + timedelta(seconds=lifetimes.refresh_idle_ttl(request.client))
        db.session.add(RefreshToken(token_digest=digest(refresh), grant_id=grant.id,
                                    expires_at=min(idle_end, grant.expires_at)))
        db.session.commit()


def build_server(app: Flask) -> AuthorizationServer:
    """One server per app (tests run several apps in one process)."""
    server = AuthorizationServer()
    server.init_app(app, query_client=query_client, save_token=save_token)
    server.scopes_supported = SCOPES_SUPPORTED
    client_auth.register(server)  # private_key_jwt, client_secret_jwt at every client-authenticating endpoint
    server.register_token_generator("default", TokenGenerator())
    server.register_grant(grants.AuthorizationCodeGrant,
                          [grants.S256CodeChallenge(required=True), grants.OpenIDCode(require_nonce=False)])
    server.register_grant(grants.RefreshTokenGrant)
    server.register_grant(grants.ClientCredentialsGrant)
    server.register_endpoint(RevocationEndpoint)
    server.register_endpoint(IntrospectionEndpoint)
    server.register_endpoint(registration.ClientRegistrationEndpoint)
    server.register_endpoint(registration.ClientConfigurationEndpoint)
    server.issuer_parameter = IssuerParameter()
    server.register_extension(server.issuer_parameter)
    app.extensions["idp.oauth"] = server
    return server


def get_server() -> AuthorizationServer:
    return current_app.extensions["idp.oauth"]
