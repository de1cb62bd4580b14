"""Client authentication at /token, /revoke and /introspect, registered on the AuthorizationServer
in place of authlib's built-in methods: a secret (client_secret_basic, client_secret_post), none,
and a signed JWT (private_key_jwt and client_secret_jwt, RFC 7523 2.2 and 3, OIDC Core 9).

A secret is read as RFC 6749 2.3.1 sends it: in the Basic header, client_id and secret are each
form-urlencoded before base64 (`+` is a space). Every failure of these methods, an unknown client
as much as a wrong secret or a header that is not base64 of UTF-8, ends in the one refusal of
`secret_failure` (401 with a Basic challenge, RFC 6749 5.2), so the answer tells nobody which
client_ids exist or which secret was right for another method (server.authenticate_client).

What we check, before any key is loaded: the assertion is small and its `sub` names an existing
client whose registered method is this one (no fallback between methods), and `alg` is on this
method's allow-list (and equals the client's token_endpoint_auth_signing_alg when set) - so
`none`, and HMAC against a public key, never reach a verifier. Then the signature with the
client's own keys (its `jwks`, its `jwks_uri`, or its secret; never `jku`/`x5u` from the header),
then the claims: iss == sub == client_id, `aud` names us and nobody else, `exp` present and at most
IDP_CLIENT_ASSERTION_MAX_LIFETIME ahead, `iat`/`nbf` not in the future, and `jti` single use.
"""
from __future__ import annotations

import base64
import json
import math
from datetime import datetime, timezone
from functools import lru_cache
from urllib.parse import unquote_plus

from authlib.oauth2.rfc6749 import InvalidClientError
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7523.client import ASSERTION_TYPE
from flask import current_app
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, OctKey
from sqlalchemy import delete, insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from idp import audit
from idp.clock import now, timestamp
from idp.extensions import db
from idp.models import Client, ClientAssertion
from idp.oauth import jwks_fetch
from idp.oauth.descriptions import safe
from idp.oauth.client_secrets import clear_secret
from idp.oauth.clients import SIGNING_ALGS
from idp.security import outbound
from idp.security.tokens import constant_time_equal, digest

SECRET_FAILURE = "client authentication failed"  # the one description, whatever went wrong
LEEWAY = 30                 # seconds of clock skew tolerated for exp, nbf and iat
MAX_ASSERTION_LENGTH = 8192
MAX_JTI_LENGTH = 255        # the width of client_assertions.jti
KEY_TYPES = {"RS256": "RSA", "PS256": "RSA", "ES256": "EC"}
ENDPOINT_PATHS = ("/token", "/revoke", "/introspect")


def _settings():
    return current_app.config["IDP_SETTINGS"]


def _reject(description: str, client: Client | None = None, reason: str | None = None) -> InvalidClientError:
    """The error to raise, after recording why (never the assertion itself). Anyone can send
    assertions naming a public client_id, so a repeat of the same rejection within a minute is
    counted into the next recorded one (`repeats`) instead of costing a row each."""
    reason = reason or description
    if audit.record_first("oauth.client_assertion.rejected", key=("client_assertion", getattr(client, "client_id", None),
                          reason), client=client, reason=reason) is not None:
        db.session.commit()
    return InvalidClientError(description=description)


def secret_failure() -> InvalidClientError:
    """RFC 6749 5.2: invalid_client, 401 with `WWW-Authenticate: Basic` (the scheme a client may
    retry with), and the same description for every failure."""
    return InvalidClientError(status_code=401, description=SECRET_FAILURE)


def basic_credentials(headers) -> tuple[str, str] | None:
    """The client_id and secret of an `Authorization: Basic` header (RFC 6749 2.3.1: each
    form-urlencoded, then joined by a colon and base64-encoded, RFC 7617), or None without one.
    A Basic header we cannot read (bad base64, bytes that are not UTF-8, no colon) is a failed
    authentication, never a server error."""
    scheme, _, value = headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        client_id, colon, secret = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
        if not colon:
            raise ValueError("no colon")
        return unquote_plus(client_id, errors="strict"), unquote_plus(secret, errors="strict")
    except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
        raise secret_failure() from None


def _client_with_secret(query_client, client_id: str | None, secret: str | None) -> Client | None:
    """The client when `secret` is its secret, else None; an unknown client costs the same digest
    and comparison as a wrong secret."""
    client = query_client(client_id) if client_id and secret else None
    if client is None:
        constant_time_equal(digest(secret or ""), "-" * 64)
        return None
    return client if client.check_client_secret(secret) else None


def authenticate_secret_basic(query_client, request) -> Client | None:
    """client_secret_basic: a Basic header that does not name a client with that secret is
    refused at once (RFC 6749 2.3: a client uses one method), not tried as another method."""
    credentials = basic_credentials(request.headers)
    if credentials is None:
        return None
    client = _client_with_secret(query_client, *credentials)
    if client is None:
        raise secret_failure()
    return client


def authenticate_secret_post(query_client, request) -> Client | None:
    """client_secret_post: None unless client_id and client_secret in the body match."""
    return _client_with_secret(query_client, request.form.get("client_id"), request.form.get("client_secret"))


def authenticate_none(query_client, request) -> Client | None:
    """none (a public client): the client named by client_id, when no secret is sent. An unknown
    client_id is None, like every other failure (authlib's raises its own description)."""
    client_id = request.payload.client_id
    if not client_id or request.payload.data.get("client_secret"):
        return None
    return query_client(client_id)


class JWTClientAuthentication(JWTBearerClientAssertion):
    """One instance per method; CLIENT_AUTH_METHOD is the name registered on the server."""

    def __init__(self, method: str):
        super().__init__(validate_jti=True, leeway=LEEWAY)
        self.CLIENT_AUTH_METHOD = method

    def __call__(self, query_client, request):
        form = request.form
        if form.get("client_assertion_type") != ASSERTION_TYPE or not form.get("client_assertion"):
            return None
        assertion = form["client_assertion"]
        if len(assertion) > MAX_ASSERTION_LENGTH:
            raise _reject("the client assertion is too long")
        headers, claims = self.extract_assertion(assertion)
        client_id = claims.get("sub")
        if not isinstance(client_id, str) or not client_id:
            raise _reject("the client assertion needs a sub claim naming the client")
        if form.get("client_id") not in (None, client_id):  # RFC 7523 3: both name one client
            raise _reject("client_id does not match the sub of the client assertion")
        client = query_client(client_id)
        if client is None:
            raise _reject("the client does not exist on this server")
        if client.token_endpoint_auth_method != self.CLIENT_AUTH_METHOD:
            return None  # another method's turn; if none fits, authlib answers invalid_client
        alg = headers.get("alg")
        if alg not in allowed_algs(client):
            raise _reject(safe(f"this client may not sign its assertion with alg {str(alg)[:16]!r}"), client, "alg")
        key = self.resolve_key(client, headers, alg)
        try:
            token = jwt.decode(assertion, key, algorithms=[alg])
        except (JoseError, ValueError) as failure:
            raise _reject("the client assertion signature is invalid", client,
                          f"signature: {type(failure).__name__}") from None
        request.client = client
        self.verify_claims(token.claims, client)
        return self.authenticate_client(client)

    def resolve_key(self, client: Client, headers: dict, alg: str):
        """The one key to verify with: the client's secret, or its key named by `kid` (or its only
        key of the right type when there is no kid, OIDC Core 10.1)."""
        if self.CLIENT_AUTH_METHOD == "client_secret_jwt":
            secret = clear_secret(client)
            if secret is None:
                raise _reject("the client has no secret usable for client_secret_jwt", client, "no_secret")
            return OctKey.import_key(secret)
        kid = headers.get("kid")
        key = _pick(self.resolve_client_public_key(client), kid, alg)
        if key is None and kid is not None and client.jwks_uri:
            key = _pick(self.resolve_client_public_key(client, refresh=True), kid, alg)  # rotated keys
        if key is None:
            raise _reject("no key of the client matches the assertion's kid and alg", client, "unknown_kid")
        return key

    def resolve_client_public_key(self, client: Client, refresh: bool = False) -> KeySet:
        if client.jwks:
            try:
                return _stored_key_set(json.dumps(client.jwks, sort_keys=True))
            except (JoseError, ValueError, TypeError):  # checked at registration; a row edited by hand
                raise _reject("the client's registered keys cannot be used", client, "bad_jwks") from None
        if not client.jwks_uri:
            raise _reject("the client has registered no public keys", client, "no_keys")
        try:
            return jwks_fetch.key_set(client.jwks_uri, timeout=_settings().jwks_fetch_timeout,
                                      cache_seconds=_settings().jwks_cache_seconds,
                                      policy=outbound.policy_for(_settings()), refresh=refresh)
        except jwks_fetch.JwksUnavailable as failure:
            raise _reject("the client's jwks_uri could not be used", client, f"jwks_uri: {failure}") from None

    def verify_claims(self, claims: dict, client: Client):
        registry = jwt.JWTClaimsRegistry(
            now=timestamp, leeway=LEEWAY,
            iss={"essential": True, "value": client.client_id}, sub={"essential": True, "value": client.client_id},
            aud={"essential": True, "values": self.get_audiences()}, exp={"essential": True},
            jti={"essential": True})
        try:
            registry.validate(claims)
        except JoseError as failure:
            raise _reject(safe(f"the client assertion is not acceptable: {failure.description}"), client,
                          f"claims: {failure.error}") from None
        if isinstance(claims["aud"], list) and not set(claims["aud"]) <= set(self.get_audiences()):
            # Audience injection (draft-ietf-oauth-rfc7523bis): an assertion also meant for someone
            # else is not ours to accept. joserfc checked above that aud is a non-empty list of strings.
            raise _reject("the client assertion names another audience besides this server", client,
                          "claims: foreign_aud")
        if not math.isfinite(claims["exp"]) or claims["exp"] > timestamp() + _settings().client_assertion_max_lifetime:
            raise _reject("the client assertion expires too far in the future", client, "exp_too_far")
        jti = claims["jti"]
        if not isinstance(jti, str) or not 0 < len(jti) <= MAX_JTI_LENGTH:
            raise _reject(f"jti must be a string of 1 to {MAX_JTI_LENGTH} characters", client, "jti")
        if not self.validate_jti(claims, jti):
            raise _reject("the client assertion was used before", client, "replayed")

    def get_audiences(self) -> list[str]:
        """OIDC Core 9 names the token endpoint, RFC 7523bis the issuer; an assertion sent to
        /revoke or /introspect may name that endpoint (authlib's client does). All of them are us,
        and an `aud` list must hold nothing else (verify_claims)."""
        issuer = _settings().issuer
        return [issuer] + [issuer + path for path in ENDPOINT_PATHS]

    def validate_jti(self, claims: dict, jti: str) -> bool:
        """Record (client_id, jti) until the assertion expires; False when it was there already.
        The primary key decides, so two racing requests cannot both succeed. `exp` is checked
        against whole seconds (clock.timestamp), so a fractional `exp` is accepted until the
        second after it plus the leeway: the row stays until then and one second more, never a
        moment less than the assertion is valid."""
        client_id = claims["sub"]
        expires_at = datetime.fromtimestamp(math.ceil(claims["exp"]) + LEEWAY + 1, timezone.utc)
        db.session.execute(delete(ClientAssertion).where(ClientAssertion.client_id == client_id,
                                                         ClientAssertion.expires_at < now()))
        values = {"client_id": client_id, "jti": jti, "expires_at": expires_at}
        dialect = db.session.get_bind().dialect.name
        try:
            if dialect in ("sqlite", "postgresql"):
                module = sqlite if dialect == "sqlite" else postgresql
                statement = module.insert(ClientAssertion).values(**values).on_conflict_do_nothing()
                inserted = db.session.execute(statement.returning(ClientAssertion.jti)).first() is not None
            else:
                db.session.execute(insert(ClientAssertion).values(**values))
                inserted = True
            db.session.commit()
        except IntegrityError:  # another database, or a race the statement above did not absorb
            db.session.rollback()
            return False
        return inserted


def allowed_algs(client: Client) -> tuple[str, ...]:
    """The method's allow-list, narrowed to the client's registered alg when it has one."""
    algs = SIGNING_ALGS.get(client.token_endpoint_auth_method, ())
    if client.token_endpoint_auth_signing_alg:
        return tuple(a for a in algs if a == client.token_endpoint_auth_signing_alg)
    return algs


@lru_cache(maxsize=256)
def _stored_key_set(jwks_json: str) -> KeySet:
    """Parsed once per process and key set, not on every request."""
    return KeySet.import_key_set(json.loads(jwks_json))


def _pick(keys: KeySet, kid: str | None, alg: str):
    kty = KEY_TYPES[alg]
    usable = [k for k in keys.keys if k.key_type == kty and k.get("use") in (None, "sig")
              and k.get("alg") in (None, alg) and (kty != "EC" or k.get("crv") == "P-256")]
    if kid is not None:
        usable = [k for k in usable if k.kid == kid]
    return usable[0] if len(usable) == 1 else None


def register(server) -> None:
    server.register_client_auth_method("client_secret_basic", authenticate_secret_basic)
    server.register_client_auth_method("client_secret_post", authenticate_secret_post)
    server.register_client_auth_method("none", authenticate_none)
    for method in SIGNING_ALGS:
        server.register_client_auth_method(method, JWTClientAuthentication(method))
