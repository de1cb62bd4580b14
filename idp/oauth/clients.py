"""Registering and changing clients: redirect URI rules, secrets shown once and stored as digests."""
from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

from flask import current_app, has_app_context
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import inspect

from idp import audit
from idp.clock import now
from idp.config import is_loopback
from idp.extensions import db
from idp.models import Client, User
from idp.oauth import lifetimes
from idp.oauth.client_secrets import store_secret
from idp.oauth.subjects import SUBJECT_TYPES, sector_from_redirect_uris
from idp.security.tokens import digest, random_token

GRANT_TYPES = {"authorization_code", "refresh_token", "client_credentials"}
PRIVATE_SCHEME = re.compile(r"^[a-z][a-z0-9+.\-]*\.[a-z0-9+.\-]+$")  # reverse domain, RFC 8252 7.1
JWKS_MAX_BYTES = 64 * 1024
JWKS_MAX_KEYS = 32
PRIVATE_KEY_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}  # RFC 7518 6.2.2, 6.3.2, 6.4; RFC 8037 2
PUBLIC_KEY_TYPES = {"RSA", "EC", "OKP"}
# Algorithms a client may sign its authentication JWT with (RFC 7523, OIDC Core 9): never `none`,
# and never an HMAC alg for private_key_jwt, so a public key can never serve as an HMAC secret.
SIGNING_ALGS = {"private_key_jwt": ("RS256", "PS256", "ES256"), "client_secret_jwt": ("HS256",)}
SECRET_METHODS = ("client_secret_basic", "client_secret_post", "client_secret_jwt")
HOST_NAME = re.compile(r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")


class ClientRejected(ValueError):
    """A client setting is not acceptable; the message says which and why."""


def check_redirect_uri(uri: str) -> None:
    """https anywhere, http only on loopback, or a private-use scheme; no fragment, no wildcard."""
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ClientRejected(f"redirect URI is not a valid URL: {uri!r}") from None
    if not uri or len(uri) > 2000 or any(c.isspace() for c in uri):
        raise ClientRejected(f"redirect URI is empty, too long or contains spaces: {uri!r}")
    if parts.fragment or "#" in uri:
        raise ClientRejected(f"redirect URI must not have a fragment: {uri!r}")
    if "*" in uri:
        raise ClientRejected(f"redirect URI must not contain wildcards: {uri!r}")
    if "@" in parts.netloc:  # https://bank.example@evil.example/cb reads as the bank, goes elsewhere
        raise ClientRejected(f"redirect URI must not have user information (an @ before the host): {uri!r}")
    if any(c in uri for c in '"<>\\^`{|}') or any(ord(c) < 0x20 or ord(c) == 0x7f for c in uri):
        raise ClientRejected(f"redirect URI has characters a URI may not hold unencoded: {uri!r}")
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and is_loopback(parts.hostname):
        return
    if parts.scheme not in ("http", "https", "javascript", "data", "file", "vbscript") and PRIVATE_SCHEME.match(parts.scheme):
        return
    raise ClientRejected(f"redirect URI must be https, http on a loopback address, "
                         f"or a private-use scheme like com.example.app: {uri!r}")


def check_jwks(jwks) -> None:
    """A client's JWK Set: public keys only (no private members, no symmetric `oct` keys), each one
    parseable, RSA of at least 2048 bits, at most JWKS_MAX_KEYS keys and JWKS_MAX_BYTES as JSON."""
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list) or not jwks["keys"]:
        raise ClientRejected('jwks must be a JSON object with a non-empty "keys" array')
    if len(jwks["keys"]) > JWKS_MAX_KEYS or len(json.dumps(jwks)) > JWKS_MAX_BYTES:
        raise ClientRejected(f"jwks may hold at most {JWKS_MAX_KEYS} keys and {JWKS_MAX_BYTES} bytes")
    for index, key in enumerate(jwks["keys"]):
        if not isinstance(key, dict) or key.get("kty") not in PUBLIC_KEY_TYPES:
            raise ClientRejected(f"jwks key {index}: kty must be one of {', '.join(sorted(PUBLIC_KEY_TYPES))}")
        private = PRIVATE_KEY_MEMBERS & set(key)
        if private:
            raise ClientRejected(f"jwks key {index} has private key members ({', '.join(sorted(private))}); "
                                 f"register the public key only")
        try:
            parsed = KeySet.import_key_set({"keys": [key]}).keys[0]
        except (JoseError, ValueError, TypeError):
            raise ClientRejected(f"jwks key {index} is not a valid {key['kty']} public key") from None
        if key["kty"] == "RSA" and parsed.raw_value.key_size < 2048:
            raise ClientRejected(f"jwks key {index}: RSA keys must have at least 2048 bits")


def check_jwks_uri(uri: str) -> None:
    """Where we fetch a client's keys: https, or http on a loopback address in development (and
    outside an app, in unit tests); no user information, no fragment. Production refuses loopback
    http, so a registered jwks_uri cannot point the server at its own local services."""
    try:
        parts = urlsplit(uri or "")
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ClientRejected(f"jwks_uri is not a valid URL: {uri!r}") from None
    if not uri or len(uri) > 2000 or any(c.isspace() for c in uri) or parts.fragment or "#" in uri:
        raise ClientRejected(f"jwks_uri is empty, too long, contains spaces or a fragment: {uri!r}")
    if parts.username is not None or parts.password is not None or not parts.hostname:
        raise ClientRejected(f"jwks_uri needs a host and must not carry user information: {uri!r}")
    development = not has_app_context() or current_app.config["IDP_SETTINGS"].is_development
    if parts.scheme == "https" or (parts.scheme == "http" and is_loopback(parts.hostname) and development):
        return
    raise ClientRejected(f"jwks_uri must be https (http only on a loopback address in development): {uri!r}")


def new_client_id() -> str:
    """A random client_id (128 bits) that never starts with '-', so it cannot be taken for an
    option on a command line (`idp clients show <id>`)."""
    while True:
        candidate = random_token(16)
        if not candidate.startswith("-"):
            return candidate


def create_client(*, name: str, redirect_uris: list[str], public: bool = False, first_party: bool = False,
                  grant_types: list[str] | None = None, scope: str = "openid profile email offline_access",
                  require_pkce: bool = True, client_id: str | None = None,
                  resource_server: bool = False, require_mfa: bool = False) -> tuple[Client, str | None]:
    """Add a client; returns it and its secret (None for public clients). The caller commits.
    A resource server may introspect access tokens issued to any client (RFC 7662)."""
    grant_types = grant_types or ["authorization_code", "refresh_token"]
    unknown = set(grant_types) - GRANT_TYPES
    if unknown:
        raise ClientRejected(f"unknown grant types: {', '.join(sorted(unknown))}")
    if public and "client_credentials" in grant_types:
        raise ClientRejected("a public client cannot use client_credentials")
    if public and resource_server:
        raise ClientRejected("a resource server must be a confidential client to use introspection")
    if "authorization_code" in grant_types and not redirect_uris:
        raise ClientRejected("the authorization_code grant needs at least one redirect URI")
    for uri in redirect_uris:
        check_redirect_uri(uri)
    if not name.strip() or len(name) > 200 or not name.isprintable():
        raise ClientRejected("the client name must be 1 to 200 printable characters")
    if client_id and db.session.scalar(db.select(User.id).where(User.subject == client_id)):
        # A client_credentials token's `sub` is its client_id: it must never name a person.
        raise ClientRejected(f"the client_id {client_id!r} is the subject of a user; choose another")
    secret = None if public else random_token(32)
    client = Client(client_id=client_id or new_client_id(), client_name=name.strip(),
                    client_secret_digest=digest(secret) if secret else None,
                    token_endpoint_auth_method="none" if public else "client_secret_basic",
                    redirect_uris=list(dict.fromkeys(redirect_uris)), grant_types=list(grant_types),
                    scope=scope, require_pkce=True if public else require_pkce, first_party=first_party,
                    resource_server=resource_server, require_mfa=require_mfa)
    db.session.add(client)
    audit.record("oauth.client.created", client=client, public=public, first_party=first_party,
                 resource_server=resource_server, require_mfa=require_mfa)
    return client, secret


def rotate_secret(client: Client) -> str:
    if client.token_endpoint_auth_method not in SECRET_METHODS:
        raise ClientRejected(f"a client using {client.token_endpoint_auth_method} has no secret")
    secret = random_token(32)
    store_secret(client, secret)  # the digest, and for client_secret_jwt the encrypted copy, in step
    audit.record("oauth.client.changed", client=client, change="secret_rotated")
    return secret


def set_auth_method(client: Client, method: str, *, jwks: dict | None = None, jwks_uri: str | None = None,
                    signing_alg: str | None = None) -> str | None:
    """Choose how the client authenticates (RFC 7591 2, OIDC Core 9). A method with a secret gets
    a new one, returned to be shown once; private_key_jwt needs exactly one of jwks and jwks_uri."""
    if method not in SECRET_METHODS + ("private_key_jwt", "none"):
        raise ClientRejected(f"unknown token_endpoint_auth_method {method!r}")
    if method == "none" and "client_credentials" in client.grant_types:
        raise ClientRejected("a public client cannot use client_credentials")
    if (jwks is not None or jwks_uri is not None) and method != "private_key_jwt":
        raise ClientRejected("jwks and jwks_uri are only used with private_key_jwt")
    if method == "private_key_jwt" and (jwks is None) == (jwks_uri is None):
        raise ClientRejected("private_key_jwt needs exactly one of jwks and jwks_uri")
    if jwks is not None:
        check_jwks(jwks)
    if jwks_uri is not None:
        check_jwks_uri(jwks_uri)
    if signing_alg is not None and signing_alg not in SIGNING_ALGS.get(method, ()):
        allowed = ", ".join(SIGNING_ALGS.get(method, ()))
        raise ClientRejected(f"the signing alg for {method} must be one of {allowed}" if allowed
                             else f"a signing alg does not apply to {method}")
    client.token_endpoint_auth_method, client.token_endpoint_auth_signing_alg = method, signing_alg
    client.jwks, client.jwks_uri = jwks, jwks_uri
    if method == "none":
        client.require_pkce = True
    secret = random_token(32) if method in SECRET_METHODS else None
    store_secret(client, secret)
    audit.record("oauth.client.changed", client=client, change="auth_method", method=method)
    return secret


def set_subject_type(client: Client, subject_type: str, sector: str | None = None) -> None:
    """OIDC Core 8: `public`, or `pairwise` within a sector, a host name: the one named, else the
    single host of the redirect URIs when they are all https there. Redirect URIs on several hosts
    need the sector named (OIDC Core 8.1 would prove them with a sector_identifier_uri, which we do
    not fetch), and so do a private-use scheme and a loopback address, which prove no host: any
    app may write `com.attacker.app://victim.example/cb`, and every native app uses 127.0.0.1.
    Only for a client being created: the `sub` a client sees never changes (OIDC Core 5.3.2, 8.1),
    or its tokens would show it one person under two values, one of them perhaps another sector's."""
    if inspect(client).has_identity:
        raise ClientRejected(f"the subject type and sector of {client.client_id} were fixed when it was created "
                             f"(OIDC Core 8.1); delete it and create a new client instead")
    if subject_type not in SUBJECT_TYPES:
        raise ClientRejected(f"subject_type must be one of {', '.join(SUBJECT_TYPES)}")
    if subject_type == "public":
        if sector is not None:
            raise ClientRejected("a sector identifier only applies to pairwise subjects")
        client.subject_type, client.sector_identifier = "public", None
        return
    if sector is not None:
        sector = sector.strip().lower().rstrip(".")
        if not HOST_NAME.match(sector) or len(sector) > 253:
            raise ClientRejected(f"the sector identifier must be a host name such as app.example.com: {sector!r}")
    else:
        sector = sector_from_redirect_uris(client.redirect_uris)
        if sector is None:
            raise ClientRejected("pairwise subjects need https redirect URIs on one host, or the sector host "
                                 "named with --sector: required for several hosts, a private-use scheme or a "
                                 "loopback address (OIDC Core 8.1)")
    client.subject_type, client.sector_identifier = "pairwise", sector
    audit.record("oauth.client.changed", client=client, change="subject_type", subject_type="pairwise",
                 sector=sector)


def set_token_lifetimes(client: Client, **values: int | None) -> None:
    """Per-client lifetimes in seconds (access_token_ttl, id_token_ttl, refresh_token_ttl,
    refresh_token_idle_ttl); None keeps the global IDP_TOKEN_* default."""
    unknown = set(values) - set(lifetimes.LIMITS)
    if unknown:
        raise ClientRejected(f"unknown token lifetimes: {', '.join(sorted(unknown))}")
    merged = {name: values.get(name, getattr(client, name)) for name in lifetimes.LIMITS}
    problem = lifetimes.lifetime_problem(current_app.config["IDP_SETTINGS"], **merged)
    if problem:
        raise ClientRejected(problem)
    for name, value in values.items():
        setattr(client, name, value)
    if any(v is not None for v in values.values()):
        audit.record("oauth.client.changed", client=client, change="token_lifetimes",
                     **{name: value for name, value in values.items() if value is not None})


def check_backchannel_logout_uri(uri: str) -> None:
    """Back-Channel Logout 1.0 2.2: an absolute https URL (http on loopback), query allowed, no
    fragment and no user information."""
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ClientRejected(f"backchannel_logout_uri is not a valid URL: {uri!r}") from None
    if (not parts.hostname or len(uri) > 2000 or any(c.isspace() for c in uri) or "#" in uri
            or "@" in parts.netloc):
        raise ClientRejected(f"backchannel_logout_uri must be an absolute URL with a host, without user "
                             f"information or fragment: {uri!r}")
    if not (parts.scheme == "https" or (parts.scheme == "http" and is_loopback(parts.hostname))):
        raise ClientRejected(f"backchannel_logout_uri must use https (http only on a loopback address): {uri!r}")


def set_logout(client: Client, *, post_logout_redirect_uris: list[str] | None = None,
               backchannel_logout_uri: str | None = None, backchannel_logout_session_required: bool = False) -> None:
    """Where RP-initiated logout may send the person back to (same rules as redirect URIs,
    RP-Initiated Logout 1.0 3.1) and where back-channel logout tokens go; the caller commits."""
    uris = list(dict.fromkeys(post_logout_redirect_uris or []))
    for uri in uris:
        try:
            check_redirect_uri(uri)
        except ClientRejected as rejected:
            raise ClientRejected("post-logout " + str(rejected)) from None
    if backchannel_logout_uri:
        check_backchannel_logout_uri(backchannel_logout_uri)
    client.post_logout_redirect_uris = uris
    client.backchannel_logout_uri = backchannel_logout_uri or None
    client.backchannel_logout_session_required = bool(backchannel_logout_session_required)


def find_client(client_id: str) -> Client | None:
    return db.session.scalar(db.select(Client).where(Client.client_id == client_id))


def describe(client: Client) -> dict:
    """What `idp clients show` prints: everything an operator checks before `idp clients verify`
    (the name and links a registered app chose for itself, its contacts and redirect URIs)."""
    return {"client_id": client.client_id, "client_name": client.client_name,
            "client_uri": client.client_uri, "policy_uri": client.policy_uri, "tos_uri": client.tos_uri,
            "logo_uri": client.logo_uri, "contacts": client.contacts or [],
            "type": "public" if client.is_public else "confidential",
            "token_endpoint_auth_method": client.token_endpoint_auth_method,
            "token_endpoint_auth_signing_alg": client.token_endpoint_auth_signing_alg,
            "jwks_uri": client.jwks_uri, "jwks": client.jwks,
            "redirect_uris": client.redirect_uris, "grant_types": client.grant_types, "scope": client.scope,
            "require_pkce": client.require_pkce, "first_party": client.first_party,
            "post_logout_redirect_uris": client.post_logout_redirect_uris or [],
            "backchannel_logout_uri": client.backchannel_logout_uri,
            "backchannel_logout_session_required": client.backchannel_logout_session_required,
            "registered_via": client.registered_via,
            "verified_at": client.verified_at.isoformat() if client.verified_at else None,
            "subject_type": client.subject_type, "sector_identifier": client.sector_identifier,
            **{name: getattr(client, name) for name in lifetimes.LIMITS},
            "resource_server": client.resource_server,
            "require_mfa": client.require_mfa,
            "created_at": client.created_at.isoformat() if client.created_at else None}


LOGO_SIGNATURES = {b"\x89PNG\r\n\x1a\n": "image/png", b"\xff\xd8\xff": "image/jpeg", b"GIF87a": "image/gif",
                   b"GIF89a": "image/gif"}
MAX_LOGO_BYTES = 100 * 1024


def logo_type(image: bytes) -> str | None:
    """The content type of a PNG, JPEG, GIF or WebP image, told by its first bytes (never SVG:
    it can carry script)."""
    if image[:4] == b"RIFF" and image[8:12] == b"WEBP":
        return "image/webp"
    return next((kind for magic, kind in LOGO_SIGNATURES.items() if image.startswith(magic)), None)


def set_logo(client: Client, image: bytes | None) -> None:
    """Store (or with None, remove) the logo shown on the consent page; the caller commits."""
    if image is None:
        client.logo_image = client.logo_content_type = None
        return
    kind = logo_type(image)
    if kind is None or len(image) > MAX_LOGO_BYTES:
        raise ClientRejected("the logo must be a PNG, JPEG, GIF or WebP image of at most 100 KiB")
    client.logo_image, client.logo_content_type = image, kind


def set_verified(client: Client, verified: bool) -> bool:
    """Mark a dynamically registered client checked by an operator (its name and links are what
    they claim), or no longer; True when that changed. Audited; the caller commits."""
    if client.registered_via != "dynamic":
        raise ClientRejected(f"{client.client_id} was created by an operator; only dynamically registered "
                             "clients are verified")
    if (client.verified_at is not None) == verified:
        return False
    client.verified_at = now() if verified else None
    audit.record("oauth.client.verified" if verified else "oauth.client.unverified", client=client,
                 **({} if verified else {"reason": "operator"}))
    return True
