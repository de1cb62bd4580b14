"""Token lifetimes: a client's own value where it has one, else the global IDP_TOKEN_* default.

Per-client values are bounded (checked when a client is created or changed): access and ID
tokens live at most a day, so the key ring keeps a retired key published for a bounded time
(idp.keys publishes for the largest access or ID lifetime any client has); a refresh family at
most a year; and a refresh token's idle limit never exceeds its family's absolute one.
"""
from __future__ import annotations

from flask import current_app

MAX_ACCESS_TTL = 24 * 3600
MAX_ID_TTL = 24 * 3600
MAX_REFRESH_TTL = 366 * 24 * 3600
LIMITS = {"access_token_ttl": MAX_ACCESS_TTL, "id_token_ttl": MAX_ID_TTL,
          "refresh_token_ttl": MAX_REFRESH_TTL, "refresh_token_idle_ttl": MAX_REFRESH_TTL}


def _settings():
    return current_app.config["IDP_SETTINGS"]


def access_ttl(client) -> int:
    return client.access_token_ttl or _settings().token_access_ttl


def id_ttl(client) -> int:
    return client.id_token_ttl or _settings().token_id_ttl


def refresh_ttl(client) -> int:
    """Absolute lifetime of a refresh token family (the grant), from the code's issue."""
    return client.refresh_token_ttl or _settings().token_refresh_ttl


def refresh_idle_ttl(client) -> int:
    """How long one refresh token stays usable unused; never more than the absolute lifetime."""
    return min(client.refresh_token_idle_ttl or _settings().token_refresh_idle_ttl, refresh_ttl(client))


def lifetime_problem(settings, **values) -> str | None:
    """Why these per-client lifetimes (seconds, None = the default) are not acceptable, or None."""
    for name, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= LIMITS[name]:
            return f"{name} must be a whole number of seconds between 1 and {LIMITS[name]}"
    idle = values.get("refresh_token_idle_ttl")
    absolute = values.get("refresh_token_ttl") or settings.token_refresh_ttl
    if idle is not None and idle > absolute:
        return f"refresh_token_idle_ttl must not exceed the absolute refresh lifetime ({absolute} s)"
    return None
