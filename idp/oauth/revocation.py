"""RFC 7009 token revocation at /revoke: authlib's RevocationEndpoint with our token lookup.

- Access token: its `jti` goes on the revoked list until its `exp`; the rest of its grant (the
  refresh token and other access tokens) stays usable (RFC 7009 2.1 leaves that to us: a client
  that wants everything gone revokes the refresh token).
- Refresh token: its grant is revoked, which ends the refresh token family and every access
  token of the grant (they name it in `gid`). A rotated refresh token of a live grant revokes it
  too: the client asked for the grant to end.
- A token issued to another client, and an unknown, expired or malformed token, are answered 200
  and change nothing (RFC 7009 2.2: the client cannot act on such an error; an error would also
  tell it that another client's token exists). authlib answers invalid_grant for the first.
"""
from __future__ import annotations

from authlib.oauth2.rfc6749 import InvalidRequestError, OAuth2Error
from authlib.oauth2.rfc7009 import RevocationEndpoint as _RevocationEndpoint

from idp import audit
from idp.extensions import db
from idp.oauth.grants import AUTH_METHODS, revoke_grant
from idp.oauth.token_state import Presented, identify, revoke_access_token
from idp.oauth.tokens import verify

# RFC 7009 2.1: client authentication as at the token endpoint; a public client identifies
# itself with client_id and may revoke its own tokens.
REVOCATION_AUTH_METHODS = AUTH_METHODS


class UnsupportedTokenTypeError(OAuth2Error):
    """RFC 7009 2.2.1, with the status of RFC 6749 5.2 (authlib's class answers 401)."""

    error = "unsupported_token_type"
    status_code = 400


def is_id_token_of(token: str, client_id: str) -> bool:
    """A live ID token we issued to this client: a type we issue but cannot revoke."""
    claims = verify(token, typ="jwt")
    audience = claims.get("aud") if claims else None
    return client_id == audience or (isinstance(audience, list) and client_id in audience)


class RevocationEndpoint(_RevocationEndpoint):
    CLIENT_AUTH_METHODS = REVOCATION_AUTH_METHODS

    def check_params(self, request, client):
        """`token` is required; a token_type_hint we do not know is ignored (RFC 7009 2.1: the
        server MAY ignore the hint), never an error."""
        if not request.form.get("token"):
            raise InvalidRequestError("the token parameter is required")

    def authenticate_token(self, request, client):
        self.check_params(request, client)
        token = request.form["token"]
        found = self.query_token(token, request.form.get("token_type_hint"))
        if found is None:
            if is_id_token_of(token, client.client_id):
                raise UnsupportedTokenTypeError("ID tokens cannot be revoked; revoke the access or refresh token")
            return None
        if found.client_id != client.client_id:
            audit.record("oauth.token.revoked", outcome="failure", client=client, token_type=found.token_type,
                         reason="issued_to_another_client")
            db.session.commit()
            return None
        return found

    def query_token(self, token_string, token_type_hint):
        return identify(token_string, token_type_hint)

    def revoke_token(self, token: Presented, request):
        if token.access is not None:
            revoke_access_token(token.access)
            grant = token.access.grant
            audit.record("oauth.token.revoked", client=token.client_id, user=grant.user_id if grant else None,
                         token_type="access_token")
            db.session.commit()
            return
        grant = token.refresh.grant
        if grant.revoked_at is None:
            audit.record("oauth.token.revoked", client=token.client_id, user=grant.user_id,
                         token_type="refresh_token")
            revoke_grant(grant, "refresh_token_revoked")
