"""RFC 7662 token introspection at /introspect, for confidential clients only.

Who may see what (RFC 7662 2.1 and 4 leave it to us; a token the caller may not see is answered
exactly like an unknown one, `{"active": false}`):
- every confidential client may introspect the access and refresh tokens issued to itself;
- a client registered as a resource server (`clients.resource_server`) may also introspect
  access tokens issued to any other client, since our access tokens carry aud = the client they
  were issued to. Refresh tokens are never shown to anyone but their client: they are never sent
  to a resource server, and one presented there is a token confusion to refuse, not to describe.
Active or not comes from token_state, the same decision UserInfo makes.
"""
from __future__ import annotations

from authlib.oauth2.rfc6749 import InvalidRequestError
from authlib.oauth2.rfc7662 import IntrospectionEndpoint as _IntrospectionEndpoint
from flask import current_app

from idp import audit
from idp.extensions import db
from idp.oauth.grants import AUTH_METHODS
from idp.oauth.subjects import subject_for
from idp.oauth.token_state import Presented, identify, is_active_refresh_token

# Only clients that can authenticate: a public client (`none`) cannot be told about tokens.
INTROSPECTION_AUTH_METHODS = [method for method in AUTH_METHODS if method != "none"]

ACCESS_TOKEN_FIELDS = ("scope", "client_id", "sub", "exp", "iat", "aud", "iss", "jti")


def access_token_payload(token: Presented) -> dict:
    claims = token.access.claims
    payload = {name: claims[name] for name in ACCESS_TOKEN_FIELDS if name in claims}
    # RFC 7662 2.2: token_type as in RFC 6749 7.1, the type the token endpoint issued.
    return {"active": True, **payload, "token_type": "Bearer"}


def refresh_token_payload(token: Presented) -> dict:
    """RFC 7662 has no token_type for refresh tokens; ours says refresh_token so that a resource
    server that checks for Bearer never takes one for an access token. Its audience is us."""
    row, grant = token.refresh, token.refresh.grant
    expires = min(row.expires_at, grant.expires_at) if row.expires_at is not None else grant.expires_at
    issuer = current_app.config["IDP_SETTINGS"].issuer
    return {"active": True, "token_type": "refresh_token", "scope": grant.scope,
            "client_id": grant.client.client_id, "sub": subject_for(grant.user, grant.client),
            "iat": int(row.created_at.timestamp()), "exp": int(expires.timestamp()), "iss": issuer, "aud": issuer}


class IntrospectionEndpoint(_IntrospectionEndpoint):
    CLIENT_AUTH_METHODS = INTROSPECTION_AUTH_METHODS

    def check_params(self, request, client):
        """`token` is required; the hint only orders our lookups (RFC 7662 2.1), so an unknown
        value is ignored rather than refused."""
        if not request.form.get("token"):
            raise InvalidRequestError("the token parameter is required")

    def query_token(self, token_string, token_type_hint):
        found = identify(token_string, token_type_hint)
        if found is not None and found.refresh is not None and not is_active_refresh_token(found.refresh):
            return None
        return found

    def check_permission(self, token: Presented, client, request) -> bool:
        if token.client_id == client.client_id:
            return True
        if token.access is not None and client.resource_server:
            return True
        audit.record("oauth.token.introspected", outcome="failure", client=client, token_type=token.token_type,
                     reason="issued_to_another_client")
        db.session.commit()
        return False

    def create_introspection_payload(self, token: Presented | None) -> dict:
        if token is None:
            return {"active": False}
        if token.access is not None:
            return access_token_payload(token)
        return refresh_token_payload(token)
