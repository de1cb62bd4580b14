"""The relying-party side of one round trip, with authlib's requests client: the authorization
URL (state, nonce, PKCE S256), and the response: `iss` (RFC 9207), the code exchange, the ID
token (signature against the upstream JWKS, iss, aud, azp, exp, iat, nonce) and user info; for
GitHub, its user and e-mail APIs. Discovery and JWKS are cached per process.

Every outbound request has IDP_FEDERATION_TIMEOUT, verifies TLS, goes only to https URLs (http
only on loopback hosts), follows no redirect, and connects only to public addresses or networks
in IDP_OUTBOUND_ALLOW_PRIVATE (idp.security.outbound); a refused address is "unreachable"."""
from __future__ import annotations

import re
import time
from contextlib import contextmanager
from dataclasses import dataclass

import requests
from authlib.integrations.base_client import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from flask import current_app
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from idp.clock import timestamp
from idp.federation.errors import IssuerMismatch, UpstreamDenied, UpstreamInvalid, UpstreamUnavailable
from idp.federation.providers import PROFILES, ProviderRejected, check_url, decrypt
from idp.models import UpstreamProvider
from idp.security import outbound
from idp.security.tokens import constant_time_equal, digest

# Asymmetric algorithms only: never `none`, never HS* (which would turn a public key into a secret).
ALLOWED_ALGS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
GOOGLE_BARE = "accounts.google.com"
LEEWAY = 60  # seconds of clock difference tolerated on exp and iat
JWKS_REFETCH_AFTER = 60  # an unknown kid refetches the JWKS at most this often


@dataclass(frozen=True)
class Upstream:
    """What one sign-in proved: the upstream's subject and the claims it asserted."""
    subject: str
    claims: dict


@contextmanager
def _transport_failures():
    """A refused address, a timeout or any other transport failure: the upstream is unavailable."""
    try:
        yield
    except outbound.AddressRefused:
        raise UpstreamUnavailable("address_not_public") from None
    except requests.Timeout:
        raise UpstreamUnavailable("timeout") from None
    except requests.RequestException:
        raise UpstreamUnavailable("unreachable") from None

def _settings():
    return current_app.config["IDP_SETTINGS"]


def _secure(url) -> str:
    """An upstream URL we may call (https, or http on loopback), else UpstreamInvalid."""
    try:
        return check_url(url if isinstance(url, str) else "", "upstream URL")
    except ProviderRejected:
        raise UpstreamInvalid("insecure_url") from None


def _http(method: str, url: str, **kwargs) -> requests.Response:
    """One outbound request with the timeout; failures become UpstreamUnavailable / UpstreamInvalid."""
    _secure(url)
    with _transport_failures(), outbound.session(outbound.policy_for(_settings())) as session:
        response = session.request(method, url, timeout=_settings().federation_timeout, allow_redirects=False,
                                   **kwargs)
    if response.status_code >= 500:
        raise UpstreamUnavailable("unreachable")
    return response


def _json(response: requests.Response, why: str) -> dict:
    try:
        body = response.json()
    except ValueError:
        raise UpstreamInvalid(why) from None
    if response.status_code != 200 or not isinstance(body, dict):
        raise UpstreamInvalid(why)
    return body


def _cache() -> dict:
    return current_app.extensions.setdefault("idp.federation.cache", {})


def _cached(key: str, fetch, *, force: bool = False):
    """A value fetched at most once per IDP_FEDERATION_CACHE_SECONDS (or on force)."""
    hit = _cache().get(key)
    if hit is not None and not force and time.monotonic() - hit[1] < _settings().federation_cache_seconds:
        return hit[0]
    value = fetch()
    _cache()[key] = (value, time.monotonic())
    return value


def metadata(provider: UpstreamProvider) -> dict:
    """The endpoints: OIDC discovery (whose issuer must be the configured one, Discovery 4.3),
    or GitHub's fixed paths under its base URLs."""
    if not PROFILES[provider.kind].oidc:
        return {"issuer": provider.issuer, "authorization_endpoint": f"{provider.issuer}/login/oauth/authorize",
                "token_endpoint": f"{provider.issuer}/login/oauth/access_token",
                "token_endpoint_auth_methods_supported": ["client_secret_post"]}

    def fetch():
        meta = _json(_http("GET", f"{provider.issuer}/.well-known/openid-configuration"), "discovery")
        if not is_own_issuer(provider, meta.get("issuer")):
            raise IssuerMismatch("discovery")
        for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not isinstance(meta.get(name), str):
                raise UpstreamInvalid("discovery")
        return meta
    return _cached(f"meta:{provider.issuer}", fetch)


def _jwks(meta: dict, *, force: bool = False) -> KeySet:
    def fetch():
        try:
            return KeySet.import_key_set(_json(_http("GET", meta["jwks_uri"]), "jwks"))
        except (JoseError, ValueError, KeyError, TypeError):
            raise UpstreamInvalid("jwks") from None
    return _cached(f"jwks:{meta['jwks_uri']}", fetch, force=force)


def _session(provider: UpstreamProvider, redirect_uri: str, meta: dict) -> OAuth2Session:
    methods = meta.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
    method = "client_secret_basic" if "client_secret_basic" in methods else "client_secret_post"
    return OAuth2Session(provider.client_id, decrypt(provider.client_secret_encrypted), scope=provider.scopes,
                         redirect_uri=redirect_uri, code_challenge_method="S256",
                         token_endpoint_auth_method=method)


def authorization_url(provider: UpstreamProvider, redirect_uri: str, *, state: str, nonce: str,
                      code_verifier: str) -> str:
    meta = metadata(provider)
    _secure(meta["authorization_endpoint"])
    extra = {"nonce": nonce} if PROFILES[provider.kind].oidc else {}
    url, _ = _session(provider, redirect_uri, meta).create_authorization_url(
        meta["authorization_endpoint"], state=state, code_verifier=code_verifier, **extra)
    return url


MICROSOFT = re.compile(r"^https://login\.microsoftonline\.com/([0-9a-f-]{36}|\{tenantid\})/v2\.0$")
MICROSOFT_GROUPS = ("common", "organizations", "consumers")


def is_own_issuer(provider: UpstreamProvider, issuer) -> bool:
    """Discovery 4.3: the document's issuer is the one we configured. Microsoft answers a tenant
    domain with its tenant id, and common/organizations with the {tenantid} template
    (consumers with the personal-accounts tenant id), so a Microsoft provider configured by
    name accepts those forms, and one configured by tenant id only its own."""
    if issuer == provider.issuer:
        return True
    if provider.kind != "microsoft" or not isinstance(issuer, str):
        return False
    tenant = provider.issuer.split("/")[3]
    match = MICROSOFT.match(issuer)
    return match is not None and not re.fullmatch(r"[0-9a-f-]{36}", tenant) and \
        (match.group(1) != "{tenantid}" or tenant in MICROSOFT_GROUPS)


def expected_issuer(provider: UpstreamProvider, meta: dict, claims: dict | None = None) -> str:
    """The issuer a response must name. Microsoft's multi-tenant discovery says
    `https://login.microsoftonline.com/{tenantid}/v2.0`: the token's `tid` fills it in."""
    issuer = meta["issuer"]
    if provider.kind == "microsoft" and "{tenantid}" in issuer:
        tid = (claims or {}).get("tid")
        if not isinstance(tid, str) or not tid or "/" in tid:
            raise IssuerMismatch("id_token")
        issuer = issuer.replace("{tenantid}", tid)
    return issuer


def check_response_issuer(provider: UpstreamProvider, params: dict) -> None:
    """RFC 9207 2.4: when the upstream advertises `iss` in authorization responses, it must be
    there and equal its issuer; when present anyway, it must still match."""
    meta = metadata(provider)
    iss = params.get("iss")
    if iss is None:
        if meta.get("authorization_response_iss_parameter_supported"):
            raise IssuerMismatch("response")
        return
    if provider.kind == "microsoft" and "{tenantid}" in meta["issuer"]:
        return  # the template is filled from the ID token's tid, which validate_id_token checks
    if iss != meta["issuer"]:
        raise IssuerMismatch("response")


def check_error(params: dict) -> None:
    if "error" in params:
        error = params.get("error", "")
        raise UpstreamDenied(error if error.replace("_", "").isalpha() and len(error) < 64 else "invalid")


def exchange(provider: UpstreamProvider, redirect_uri: str, code: str, code_verifier: str) -> dict:
    meta = metadata(provider)
    _secure(meta["token_endpoint"])
    try:
        with _transport_failures(), \
                outbound.mount(_session(provider, redirect_uri, meta), outbound.policy_for(_settings())) as session:
            return dict(session.fetch_token(meta["token_endpoint"], code=code, code_verifier=code_verifier,
                                            grant_type="authorization_code", headers={"Accept": "application/json"},
                                            timeout=_settings().federation_timeout, allow_redirects=False))
    except (OAuthError, ValueError):
        raise UpstreamInvalid("token_response") from None


def _decode(id_token: str, meta: dict):
    algs = [a for a in meta.get("id_token_signing_alg_values_supported") or ["RS256"] if a in ALLOWED_ALGS]
    if not algs:  # an empty list would let joserfc fall back to its defaults, HS256 among them
        raise UpstreamInvalid("id_token_alg")
    try:
        return jwt.decode(id_token, _jwks(meta), algorithms=algs)
    except (JoseError, ValueError, KeyError, TypeError):
        pass
    # A key rotated at the upstream: fetch its JWKS again, at most once a minute.
    hit = _cache().get(f"jwks:{meta['jwks_uri']}")
    if hit is not None and time.monotonic() - hit[1] < JWKS_REFETCH_AFTER:
        raise UpstreamInvalid("id_token_signature")
    try:
        return jwt.decode(id_token, _jwks(meta, force=True), algorithms=algs)
    except (JoseError, ValueError, KeyError, TypeError):
        raise UpstreamInvalid("id_token_signature") from None


def validate_id_token(provider: UpstreamProvider, id_token: str, nonce_digest: str) -> dict:
    """OIDC Core 3.1.3.7: signature, iss, aud (and azp), exp, iat and nonce."""
    meta = metadata(provider)
    claims = dict(_decode(id_token, meta).claims)
    iss = claims.get("iss")
    # Google documents both spellings of its issuer in ID tokens.
    if iss != expected_issuer(provider, meta, claims) and not (provider.kind == "google" and iss == GOOGLE_BARE):
        raise IssuerMismatch("id_token")
    audience = claims.get("aud")
    audiences = [audience] if isinstance(audience, str) else audience if isinstance(audience, list) else []
    if provider.client_id not in audiences:
        raise UpstreamInvalid("id_token_audience")
    if (len(audiences) > 1 or "azp" in claims) and claims.get("azp") != provider.client_id:
        raise UpstreamInvalid("id_token_audience")
    t = timestamp()
    exp, iat = claims.get("exp"), claims.get("iat")
    if not isinstance(exp, int) or not isinstance(iat, int) or exp + LEEWAY < t or iat - LEEWAY > t:
        raise UpstreamInvalid("id_token_expired")
    nonce = claims.get("nonce")
    if not isinstance(nonce, str) or not constant_time_equal(digest(nonce), nonce_digest):
        raise UpstreamInvalid("id_token_nonce")
    if not isinstance(claims.get("sub"), str) or not 0 < len(claims["sub"]) <= 255:
        raise UpstreamInvalid("id_token_subject")
    return claims


def _bearer_get(url: str, access_token: str, why: str):
    response = _http("GET", url, headers={"Authorization": f"Bearer {access_token}",
                                           "Accept": "application/json"})
    try:
        body = response.json()
    except ValueError:
        raise UpstreamInvalid(why) from None
    if response.status_code != 200:
        raise UpstreamInvalid(why)
    return body


def oidc_identity(provider: UpstreamProvider, token: dict, nonce_digest: str) -> Upstream:
    """The ID token's claims, completed from UserInfo when a mapped claim is missing (its `sub`
    must be the ID token's, OIDC Core 5.3.4)."""
    if not isinstance(token.get("id_token"), str):
        raise UpstreamInvalid("id_token_missing")
    claims = validate_id_token(provider, token["id_token"], nonce_digest)
    meta = metadata(provider)
    wanted = {v for k, v in provider.claim_mapping.items()}
    if wanted - set(claims) and meta.get("userinfo_endpoint") and token.get("access_token"):
        info = _bearer_get(meta["userinfo_endpoint"], token["access_token"], "userinfo")
        if not isinstance(info, dict) or info.get("sub") != claims["sub"]:
            raise UpstreamInvalid("userinfo")
        claims = {**info, **claims}
    return Upstream(claims["sub"], claims)


def github_identity(provider: UpstreamProvider, token: dict) -> Upstream:
    """GitHub: GET /user (the numeric id is the stable subject; the login can change), and
    GET /user/emails for the primary address and whether GitHub verified it."""
    access_token = token.get("access_token")
    if not isinstance(access_token, str):
        raise UpstreamInvalid("token_response")
    user = _bearer_get(f"{provider.api_base_url}/user", access_token, "user")
    if not isinstance(user, dict) or not isinstance(user.get("id"), int):
        raise UpstreamInvalid("user")
    emails = _bearer_get(f"{provider.api_base_url}/user/emails", access_token, "emails")
    primary = next((e for e in emails if isinstance(e, dict) and e.get("primary")), None) \
        if isinstance(emails, list) else None
    claims = {"login": user.get("login"), "name": user.get("name"),
              "email": primary.get("email") if primary else None,
              "email_verified": primary.get("verified") is True if primary else False}
    return Upstream(str(user["id"]), claims)
