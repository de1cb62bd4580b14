"""Subject identifiers (OIDC Core 8): the `sub` a client sees for a user.

A public client sees `user.subject`. A pairwise client sees a value computed from its sector (a
host name) and the user, so clients in different sectors cannot correlate a user by `sub`, while
every client of one sector sees the same value, login after login (OIDC Core 8.1). A sector is
taken only from a host that whoever receives the codes must control: that of an https redirect
URI, not on loopback. A private-use scheme's "host" is whatever the app wrote
(`com.attacker.app://victim.example/cb`), and every native app on every machine listens on
loopback, so a client registered (RFC 7591) with such redirect URIs gets a sector of its own
(`client:<client_id>`, never a host name) and subjects nobody else sees; `idp clients create`
asks the operator to name the sector instead. The value is
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

from idp.config import is_loopback
from idp.security.derived import derive_key

SUBJECT_TYPES = ("public", "pairwise")


def _pairwise_key(secret_key: str) -> bytes:
    return derive_key(secret_key, b"idp pairwise subject")


def _proved_host(uri: str) -> str | None:
    """The host (lower case) of an https redirect URI not on loopback: codes sent there reach only
    whoever holds that host's certificate. None for anything else."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return None
    host = (parts.hostname or "").lower()
    if parts.scheme.lower() != "https" or not host or is_loopback(host) or host.endswith(".localhost"):
        return None  # RFC 6761 6.3: every name under localhost is this machine too
    return host


def redirect_hosts(redirect_uris) -> set[str]:
    """The hosts a client's redirect URIs prove: those of its https redirect URIs not on loopback
    (a private-use scheme or a loopback address proves none)."""
    return {host for host in map(_proved_host, redirect_uris or []) if host}


def sector_from_redirect_uris(redirect_uris) -> str | None:
    """OIDC Core 8.1: without a sector_identifier_uri, the sector is the host of the redirect URIs:
    when every one of them is https on one host, not loopback. None otherwise (several hosts, a
    private-use scheme, a loopback address, none at all)."""
    uris = list(redirect_uris or [])
    hosts = redirect_hosts(uris)
    if len(hosts) != 1 or any(_proved_host(uri) is None for uri in uris):
        return None
    return hosts.pop()


def own_sector(client_id: str) -> str:
    """A sector for one client alone: the colon keeps it apart from every host name."""
    return f"client:{client_id}"


def can_derive_sector(redirect_uris) -> bool:
    """Whether a pairwise client that names no sector gets one from these redirect URIs: some,
    and not on several https hosts (those need a sector_identifier_uri, OIDC Core 8.1)."""
    return bool(redirect_uris) and len(redirect_hosts(redirect_uris)) <= 1


def derived_sector(client_id: str, redirect_uris) -> str | None:
    """The sector of a pairwise client that names none (dynamic registration): the host its
    redirect URIs prove, else (a private-use scheme or a loopback address among them) its own;
    None when can_derive_sector says no."""
    if not can_derive_sector(redirect_uris):
        return None
    return sector_from_redirect_uris(redirect_uris) or own_sector(client_id)


def sector_of(client) -> str:
    """The client's sector: stored at registration, else derived from its redirect URIs."""
    sector = client.sector_identifier or derived_sector(client.client_id, client.redirect_uris)
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
