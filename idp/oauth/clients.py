"""Registering and changing clients: redirect URI rules, secrets shown once and stored as digests."""
from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from idp import audit
from idp.extensions import db
from idp.models import Client
from idp.security.tokens import digest, random_token

GRANT_TYPES = {"authorization_code", "refresh_token", "client_credentials"}
PRIVATE_SCHEME = re.compile(r"^[a-z][a-z0-9+.\-]*\.[a-z0-9+.\-]+$")  # reverse domain, RFC 8252 7.1


class ClientRejected(ValueError):
    """A client setting is not acceptable; the message says which and why."""


def _loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


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
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and _loopback(parts.hostname):
        return
    if parts.scheme not in ("http", "https", "javascript", "data", "file", "vbscript") and PRIVATE_SCHEME.match(parts.scheme):
        return
    raise ClientRejected(f"redirect URI must be https, http on a loopback address, "
                         f"or a private-use scheme like com.example.app: {uri!r}")


def create_client(*, name: str, redirect_uris: list[str], public: bool = False, first_party: bool = False,
                  grant_types: list[str] | None = None, scope: str = "openid profile email offline_access",
                  require_pkce: bool = True, client_id: str | None = None,
                  require_mfa: bool = False) -> tuple[Client, str | None]:
    """Add a client; returns it and its secret (None for public clients). The caller commits."""
    grant_types = grant_types or ["authorization_code", "refresh_token"]
    unknown = set(grant_types) - GRANT_TYPES
    if unknown:
        raise ClientRejected(f"unknown grant types: {', '.join(sorted(unknown))}")
    if public and "client_credentials" in grant_types:
        raise ClientRejected("a public client cannot use client_credentials")
    if "authorization_code" in grant_types and not redirect_uris:
        raise ClientRejected("the authorization_code grant needs at least one redirect URI")
    for uri in redirect_uris:
        check_redirect_uri(uri)
    if not name.strip() or len(name) > 200:
        raise ClientRejected("the client name must be 1 to 200 characters")
    secret = None if public else random_token(32)
    client = Client(client_id=client_id or random_token(16), client_name=name.strip(),
                    client_secret_digest=digest(secret) if secret else None,
                    token_endpoint_auth_method="none" if public else "client_secret_basic",
                    redirect_uris=list(dict.fromkeys(redirect_uris)), grant_types=list(grant_types),
                    scope=scope, require_pkce=True if public else require_pkce, first_party=first_party,
                    require_mfa=require_mfa)
    db.session.add(client)
    audit.record("oauth.client.created", client=client, public=public, first_party=first_party,
                 require_mfa=require_mfa)
    return client, secret


def rotate_secret(client: Client) -> str:
    if client.is_public:
        raise ClientRejected("a public client has no secret")
    secret = random_token(32)
    client.client_secret_digest = digest(secret)
    audit.record("oauth.client.changed", client=client, change="secret_rotated")
    return secret


def find_client(client_id: str) -> Client | None:
    return db.session.scalar(db.select(Client).where(Client.client_id == client_id))


def describe(client: Client) -> dict:
    return {"client_id": client.client_id, "client_name": client.client_name,
            "type": "public" if client.is_public else "confidential",
            "token_endpoint_auth_method": client.token_endpoint_auth_method,
            "redirect_uris": client.redirect_uris, "grant_types": client.grant_types, "scope": client.scope,
            "require_pkce": client.require_pkce, "first_party": client.first_party,
            "require_mfa": client.require_mfa,
            "created_at": client.created_at.isoformat() if client.created_at else None}
