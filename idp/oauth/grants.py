"""authlib grant subclasses: our storage behind codes and refresh tokens, S256-only PKCE,
atomic single use with replay revocation, and the ID token contents."""
from __future__ import annotations

from datetime import timedelta

from authlib.oauth2.rfc6749 import (InvalidGrantError, InvalidRequestError, InvalidScopeError, UnauthorizedClientError,
                                    grants, scope_to_list)
from authlib.oauth2.rfc7636 import CodeChallenge, create_s256_code_challenge
from authlib.oauth2.rfc7636.challenge import CODE_VERIFIER_PATTERN
from authlib.oidc.core import grants as oidc_grants
from flask import current_app, g
from sqlalchemy import update

from idp import audit
from idp.clock import now, timestamp
from idp.extensions import commit_keeping_loaded, db
from idp.keys import Signer, keyring
from idp.models import AuthorizationCode, Grant, RefreshToken
from idp.oauth import claims as claims_mod
from idp.oauth import lifetimes
from idp.oauth.subjects import subject_for
from idp.oauth.tokens import id_token_alg_refusal, id_token_signer
from idp.security.tokens import constant_time_equal, digest, random_token

AUTH_METHODS = ["client_secret_basic", "client_secret_post", "client_secret_jwt", "private_key_jwt", "none"]


def _settings():
    return current_app.config["IDP_SETTINGS"]


def revoke_grant(grant: Grant, reason: str) -> None:
    """Revoke every token of a grant (access tokens name it; refresh tokens hang off it); commits."""
    grant.revoked_at = now()
    audit.record("oauth.grant.revoked", user=grant.user_id, client=grant.client.client_id, reason=reason)
    db.session.commit()


def require_id_token_signer(client) -> Signer:
    """The key that signs this client's ID tokens (tokens.id_token_signer); unauthorized_client
    when no key of the alg the client registered signs. Not invalid_client: the client did
    authenticate; its registration asks for what this server will not do now, and the RP's
    developer reads the description."""
    ring = keyring()
    signer = id_token_signer(client, ring)
    if signer is None:
        raise UnauthorizedClientError(f"{id_token_alg_refusal(client, ring)}; update the client registration")
    return signer


def _consume(model, row_id: int) -> bool:
    """Mark a code or refresh token used; True only for the one caller that got there first.
    Committed at once (a later failure must not give the code back); the rows already loaded
    stay loaded, and nothing reads `used_at` from them afterwards."""
    result = db.session.execute(update(model).where(model.id == row_id, model.used_at.is_(None))
                                .values(used_at=now()))
    commit_keeping_loaded()
    return result.rowcount == 1


def check_code_binding(row: AuthorizationCode, request) -> None:
    """RFC 6749 4.1.3, RFC 7636 4.6: the exact redirect_uri of the authorization request (none if
    it had none) and the S256 verifier, checked before the code is spent: a wrong verifier cannot
    be guessed right in the code's life, while spending the code would let whoever holds a leaked
    code turn the rightful redemption into a replay that revokes the grant."""
    if (request.payload.redirect_uri or "") != row.redirect_uri:
        raise InvalidGrantError("redirect_uri does not match the authorization request")
    verifier = request.form.get("code_verifier")
    if not row.code_challenge:
        if verifier:  # RFC 9700 4.8: no verifier without a challenge (PKCE downgrade)
            raise InvalidRequestError("code_verifier sent for a code issued without code_challenge")
        return
    if not verifier:
        raise InvalidRequestError("code_verifier is required (PKCE)")
    if not CODE_VERIFIER_PATTERN.fullmatch(verifier):
        raise InvalidRequestError("code_verifier is malformed")
    if row.code_challenge_method != "S256" or \
            not constant_time_equal(create_s256_code_challenge(verifier), row.code_challenge):
        raise InvalidGrantError("code_verifier does not match the code_challenge")


def check_refresh_scope(scope: str | None, row: RefreshToken) -> None:
    """RFC 6749 6: a refresh request may narrow the scope, never widen it. Checked before the
    token is spent, so a refused request leaves it usable (a retry is not reuse)."""
    if scope and not set(scope_to_list(scope)) <= set(scope_to_list(row.get_scope())):
        raise InvalidScopeError("the requested scope exceeds the scope originally granted")


class S256CodeChallenge(CodeChallenge):
    """RFC 7636 with S256 only; `plain` is refused (RFC 9700 2.1.1)."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def validate_code_challenge(self, grant, redirect_uri):
        payload = grant.request.payload.data
        client = grant.request.client
        if not payload.get("code_challenge") and (client.is_public or client.require_pkce):
            raise InvalidRequestError("code_challenge is required (PKCE with S256)")
        if payload.get("code_challenge") and payload.get("code_challenge_method") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256")
        super().validate_code_challenge(grant, redirect_uri)


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS
    AUTHORIZATION_CODE_LENGTH = 43

    @staticmethod
    def validate_authorization_redirect_uri(request, client):
        """authlib's, with a fixed description: it wrote the requested URI into it, which put
        attacker text on our error page, and outside RFC 6749's charset was a ValueError (a 500)."""
        requested = request.payload.redirect_uri
        if requested and not client.check_redirect_uri(requested):
            raise InvalidRequestError("redirect_uri is not registered for this client")
        return grants.AuthorizationCodeGrant.validate_authorization_redirect_uri(request, client)

    def save_authorization_code(self, code, request):
        ctx = g.idp_authorization  # set by the view: the SSO session facts and the claims request
        payload = request.payload.data
        grant = Grant(id=random_token(16), client_id=request.client.id, user_id=request.user.id,
                      scope=request.scope, claims=ctx["claims"], sid=ctx["sid"], auth_time=ctx["auth_time"],
                      acr=ctx["acr"], amr=ctx["amr"],
                      expires_at=now() + timedelta(seconds=lifetimes.refresh_ttl(request.client)))
        db.session.add(grant)
        db.session.add(AuthorizationCode(
            code_digest=digest(code), grant_id=grant.id, redirect_uri=request.payload.redirect_uri or "",
            code_challenge=payload.get("code_challenge"), code_challenge_method=payload.get("code_challenge_method"),
            nonce=payload.get("nonce"), expires_at=now() + timedelta(seconds=_settings().token_code_ttl)))
        # Committed by the view, with its audit event: one transaction per authorization response.

    def query_authorization_code(self, code, client):
        row = db.session.scalar(db.select(AuthorizationCode).where(AuthorizationCode.code_digest == digest(code)))
        if row is None or row.grant.client_id != client.id:
            return None
        check_code_binding(row, self.request)  # before the code is spent, and before replay counts
        if row.used_at is None and "openid" in row.grant.scope.split():
            require_id_token_signer(client)  # refuse before the code is spent: it can be redeemed once fixed
        if row.used_at is not None or not _consume(AuthorizationCode, row.id):
            # RFC 6749 4.1.2: a code is single use; on reuse, revoke what it produced.
            revoke_grant(row.grant, "code_replayed")
            raise InvalidGrantError("authorization code was already used")
        if row.expires_at <= now():
            raise InvalidGrantError("authorization code has expired")
        return row

    def delete_authorization_code(self, authorization_code):
        """Already consumed atomically in query_authorization_code; the purge removes the row."""

    def authenticate_user(self, authorization_code):
        grant = authorization_code.grant
        if grant.revoked_at is not None or grant.user.disabled:
            return None
        g.idp_token_grant = grant
        return grant.user


class OpenIDCode(oidc_grants.OpenIDCode):
    def exists_nonce(self, nonce, request):
        return False  # nonce replay is the RP's check; single-use codes and PKCE guard the code

    def encode_id_token(self, token, request):
        # One signer for the alg, the header and the key, chosen again (the ring may have
        # switched since query_authorization_code).
        g.idp_id_token_signer = require_id_token_signer(request.client)
        return super().encode_id_token(token, request)

    def resolve_client_private_key(self, client):
        return g.idp_id_token_signer.key

    def get_client_algorithm(self, client):
        return g.idp_id_token_signer.alg

    def get_encode_header(self, client):
        signer = g.idp_id_token_signer
        return {"alg": signer.alg, "kid": signer.kid, "typ": "JWT"}

    def get_client_claims(self, client):
        t = timestamp()
        return {"iss": _settings().issuer, "aud": [client.client_id], "iat": t, "exp": t + lifetimes.id_ttl(client)}

    def get_authorization_code_claims(self, authorization_code):
        claims = super().get_authorization_code_claims(authorization_code)
        claims["azp"] = authorization_code.grant.client.client_id
        if authorization_code.grant.sid:
            claims["sid"] = authorization_code.grant.sid
        return claims

    def generate_user_info(self, user, scope):
        # OIDC Core 5.4: scope claims go to UserInfo when an access token is issued (always, in the
        # code flow); the ID token carries only what the claims parameter asks for in id_token,
        # within `scope`: the token's scope, after the client's allowed scope was applied.
        grant = g.idp_token_grant
        requested = (grant.claims or {}).get("id_token")
        return claims_mod.id_token_claims(user, subject_for(user, grant.client), scope, requested)


class RefreshTokenGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True  # rotate on every use (RFC 9700 4.14.2)

    def authenticate_refresh_token(self, refresh_token):
        row = db.session.scalar(db.select(RefreshToken).where(RefreshToken.token_digest == digest(refresh_token)))
        if row is None or not row.check_client(self.request.client):
            return None
        if row.used_at is None:
            check_refresh_scope(self.request.payload.scope, row)  # before the token is spent
        if row.used_at is not None or not _consume(RefreshToken, row.id):
            revoke_grant(row.grant, "refresh_token_reused")
            raise InvalidGrantError("refresh token was already used")
        if row.is_revoked() or row.is_expired():
            return None
        g.idp_token_grant = row.grant
        return row

    def authenticate_user(self, refresh_token):
        user = refresh_token.grant.user
        if user.disabled:
            # RFC 6749 5.2: a refresh token whose account is disabled is revoked, so invalid_grant
            # (authlib answers invalid_request when this hook returns None).
            raise InvalidGrantError("the account of this refresh token is disabled")
        return user

    def revoke_old_credential(self, refresh_token):
        """Already marked used by authenticate_refresh_token."""


class ClientCredentialsGrant(grants.ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = [method for method in AUTH_METHODS if method != "none"]
