"""Subject identifiers (OIDC Core 8): the `sub` a client sees for a user.

A public client sees `user.subject`. A pairwise client sees a value computed from its sector (a
host name) and the user, so clients in different sectors cannot correlate a user by `sub`, while
every client of one sector sees the same value, login after login (OIDC Core 8.1). The value is
an HMAC under a key derived from IDP_SECRET_KEY: not reversible by anyone but this server, and it
changes if IDP_SECRET_KEY changes (rotating that secret changes every pairwise `sub`). A client's
subject type and sector are fixed when it is created (clients.set_subject_type refuses a stored
client, registration.keep_subject refuses an RFC 7592 update that would move them), so the `sub`
a client sees for a person never changes (OIDC Core 5.3.2).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import urlsplit

from flask import current_app

from idp.security.derived import derive_key

SUBJECT_TYPES = ("public", "pairwise")


def _pairwise_key(secret_key: str) -> bytes:
    return derive_key(secret_key, b"idp pairwise subject")


def redirect_hosts(redirect_uris) -> set[str]:
    """The host components (lower case) of a client's redirect URIs."""
    return {(urlsplit(uri).hostname or "").lower() for uri in redirect_uris or []} - {""}


def sector_from_redirect_uris(redirect_uris) -> str | None:
    """OIDC Core 8.1: without a sector_identifier_uri, the sector is the host of the redirect URIs;
    None when they span several hosts (then the sector must be named explicitly)."""
    hosts = redirect_hosts(redirect_uris)
    return hosts.pop() if len(hosts) == 1 else None


def sector_of(client) -> str:
    """The client's sector: stored at registration, else the single host of its redirect URIs."""
    sector = client.sector_identifier or sector_from_redirect_uris(client.redirect_uris)
    if not sector:
        raise ValueError(f"pairwise client {client.client_id} has no sector identifier")
    return sector.lower()


def pairwise_subject(secret_key: str, sector: str, subject: str) -> str:
    mac = hmac.new(_pairwise_key(secret_key), f"{sector}\x00{subject}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


def subject_for(user, client) -> str:
    """The `sub` that leaves this server for `user` towards `client` (ID token, UserInfo, JWT
    access token, logout token, id_token_hint comparison)."""
    if client is None or getattr(client, "subject_type", "public") != "pairwise":
        return user.subject
    return pairwise_subject(current_app.config["IDP_SETTINGS"].secret_key, sector_of(client), user.subject)
