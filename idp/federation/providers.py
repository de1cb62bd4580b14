"""The registry of upstream providers: the generic OpenID Connect provider and the presets for
Google, Microsoft (tenant-aware issuer) and GitHub (plain OAuth 2.0), and their storage with the
client secret encrypted under a key derived from IDP_SECRET_KEY."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from cryptography.fernet import Fernet
from flask import current_app

from idp.authn.steps import ACR_VALUES_SUPPORTED
from idp.clock import now
from idp.config import is_loopback
from idp.extensions import db
from idp.models import UpstreamProvider
from idp.security.derived import fernet_for

SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
TENANT = re.compile(r"^([0-9a-f-]{36}|common|organizations|consumers|[a-z0-9-]+\.onmicrosoft\.com)$")
MAPPED_FIELDS = ("email", "email_verified", "name", "preferred_username")
OIDC_MAPPING = {"email": "email", "email_verified": "email_verified", "name": "name",
                "preferred_username": "preferred_username"}


class ProviderRejected(ValueError):
    """A provider configuration we will not store; the message says which value and why."""


@dataclass(frozen=True)
class Profile:
    """What a kind of upstream looks like: OIDC or OAuth 2.0 with an API, and its defaults."""
    kind: str
    oidc: bool
    scopes: str
    claim_mapping: dict = field(default_factory=dict)
    issuer: str | None = None
    api_base_url: str | None = None


PROFILES = {
    "oidc": Profile("oidc", True, "openid profile email", OIDC_MAPPING),
    "google": Profile("google", True, "openid profile email", OIDC_MAPPING, issuer="https://accounts.google.com"),
    # Microsoft identity platform v2.0; the issuer is per tenant (see expected_issuer in client.py).
    "microsoft": Profile("microsoft", True, "openid profile email", OIDC_MAPPING),
    # GitHub: OAuth 2.0 plus GET /user and GET /user/emails (docs.github.com, "Authorizing OAuth apps").
    "github": Profile("github", False, "read:user user:email",
                      {"email": "email", "email_verified": "email_verified", "name": "name",
                       "preferred_username": "login"},
                      issuer="https://github.com", api_base_url="https://api.github.com"),
}


def _fernet() -> Fernet:
    return fernet_for(current_app.config["IDP_SETTINGS"].secret_key, b"idp upstream provider secrets")


def encrypt(value: str) -> str:
    return _fernet().encrypt(value.encode()).decode()


def decrypt(value: str) -> str:
    return _fernet().decrypt(value.encode()).decode()


def check_url(url: str, what: str) -> str:
    """An absolute https URL (http only on a loopback host, for development and tests)."""
    parts = urlsplit(url or "")
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.fragment or "@" in parts.netloc:
        raise ProviderRejected(f"{what} must be an absolute https:// URL, not {url!r}")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ProviderRejected(f"{what} must use https:// (http only on a loopback address), not {url!r}")
    return url


def microsoft_issuer(tenant: str) -> str:
    if not TENANT.match(tenant or ""):
        raise ProviderRejected("tenant must be a tenant id (GUID), a *.onmicrosoft.com domain, "
                               "common, organizations or consumers")
    return f"https://login.microsoftonline.com/{tenant}/v2.0"


def _check_mappings(claim_mapping: dict, acr_mapping: dict) -> None:
    unknown = set(claim_mapping) - set(MAPPED_FIELDS)
    if unknown:
        raise ProviderRejected(f"claim mapping may only set {', '.join(MAPPED_FIELDS)}; not {sorted(unknown)}")
    if set(acr_mapping) - {"acr", "amr"}:
        raise ProviderRejected("acr mapping has two parts only: acr and amr")
    for part in acr_mapping.values():
        bad = {v for v in part.values() if v not in ACR_VALUES_SUPPORTED}
        if bad:
            raise ProviderRejected(f"acr mapping may only name our levels {ACR_VALUES_SUPPORTED}; not {sorted(bad)}")


def create(provider_id: str, kind: str, *, display_name: str, client_id: str, client_secret: str,
           issuer: str | None = None, api_base_url: str | None = None, scopes: str | None = None,
           claim_mapping: dict | None = None, acr_mapping: dict | None = None,
           trust_email_verified: bool = False, allow_registration: bool = False) -> UpstreamProvider:
    """Validate a provider and add it to the session (the caller commits and audits)."""
    if not SLUG.match(provider_id or "") or provider_id == "link":  # /federation/link/<id> is taken
        raise ProviderRejected("id must be 1 to 63 lower-case letters, digits, '-' or '_' (and not 'link')")
    if db.session.get(UpstreamProvider, provider_id) is not None:
        raise ProviderRejected(f"a provider with id {provider_id!r} exists already")
    profile = PROFILES.get(kind)
    if profile is None:
        raise ProviderRejected(f"kind must be one of {', '.join(PROFILES)}")
    issuer = (issuer or profile.issuer or "").rstrip("/") if kind != "oidc" else (issuer or "")
    check_url(issuer, "issuer" if profile.oidc else "base URL")
    api_base_url = (api_base_url or profile.api_base_url or "").rstrip("/") or None
    if not profile.oidc:
        check_url(api_base_url, "API URL")
    if not client_id or not client_secret:
        raise ProviderRejected("client id and client secret are required")
    mapping = {**profile.claim_mapping, **(claim_mapping or {})}
    _check_mappings(mapping, acr_mapping or {})
    row = UpstreamProvider(id=provider_id, kind=kind, display_name=display_name or provider_id, issuer=issuer,
                           api_base_url=api_base_url, client_id=client_id,
                           client_secret_encrypted=encrypt(client_secret), scopes=scopes or profile.scopes,
                           claim_mapping=mapping, acr_mapping=acr_mapping or {},
                           trust_email_verified=trust_email_verified, allow_registration=allow_registration,
                           enabled=True, created_at=now())
    db.session.add(row)
    return row


def find(provider_id: str) -> UpstreamProvider | None:
    if not provider_id or len(provider_id) > 64:
        return None
    return db.session.get(UpstreamProvider, provider_id)


def find_enabled(provider_id: str) -> UpstreamProvider | None:
    row = find(provider_id)
    return row if row is not None and row.enabled else None


def redirect_uri(provider_id: str) -> str:
    """The one callback URL of a provider: what to register with the upstream."""
    return f"{current_app.config['IDP_SETTINGS'].issuer}/federation/{provider_id}/callback"  # ids are slugs


def describe(row: UpstreamProvider) -> dict:
    """Everything about a provider except its secret."""
    return {"id": row.id, "display_name": row.display_name, "kind": row.kind, "issuer": row.issuer,
            "api_base_url": row.api_base_url, "client_id": row.client_id, "scopes": row.scopes,
            "claim_mapping": row.claim_mapping, "acr_mapping": row.acr_mapping,
            "trust_email_verified": row.trust_email_verified, "allow_registration": row.allow_registration,
            "enabled": row.enabled, "redirect_uri": redirect_uri(row.id),
            "created_at": row.created_at.isoformat() if row.created_at else None}
