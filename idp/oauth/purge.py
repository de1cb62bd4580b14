"""What `idp purge` removes from the oauth room: rows nothing can use any more.

Rows that an unexpired JWT access token may still point at (its grant, through `gid`) are kept
for GRACE past their end, so deleting them never cuts a live token short: a grant goes a GRACE
after it expired, was revoked, or (holding no refresh token) was created; a refresh token a GRACE
after its idle limit, used or not, so a replayed old refresh token is still caught as reuse
until then. Deleting a grant removes its codes and refresh tokens (ON DELETE CASCADE).

A grant whose sid names a session that has not ended yet is kept whatever its age: it is how
logout finds the apps that took part in that session (Back-Channel Logout 1.0 2: each RP with a
session with the person is told), and how /end-session knows a hint's app joined the session.
Once that session has ended (its logout tokens are queued by then), the rules above apply again.
The check costs one lookup in the unique index on sso_sessions.sid per candidate grant.
"""
from __future__ import annotations

from datetime import timedelta

from flask import current_app
from sqlalchemy import and_, exists, or_, select

from idp.clock import now
from idp.models import (AuthorizationCode, ClientAssertion, Grant, InitialAccessToken, PendingAuthorization,
                        RateLimit, RefreshToken, RevokedToken, SsoSession)
from idp.models.batches import delete_in_batches
from idp.oauth.lifetimes import MAX_ACCESS_TTL


def grace() -> timedelta:
    """Longer than any access token can live after its grant's last code or refresh token."""
    settings = current_app.config["IDP_SETTINGS"]
    return timedelta(seconds=max(settings.token_access_ttl, MAX_ACCESS_TTL) + settings.token_code_ttl + 3600)


def purge_oauth(batch: int = 1000) -> dict[str, int]:
    """Delete expired oauth rows, table by table; returns how many rows each lost."""
    t = now()
    old = t - grace()
    no_refresh_token = ~exists(select(RefreshToken.id).where(RefreshToken.grant_id == Grant.id))
    in_live_session = exists(select(SsoSession.id).where(SsoSession.sid == Grant.sid))
    return {
        "authorization_codes": delete_in_batches(AuthorizationCode, AuthorizationCode.expires_at < t, batch),
        "pending_authorizations": delete_in_batches(PendingAuthorization, PendingAuthorization.expires_at < t, batch),
        "refresh_tokens": delete_in_batches(RefreshToken, RefreshToken.expires_at < old, batch),
        "grants": delete_in_batches(Grant, and_(or_(Grant.expires_at < old, Grant.revoked_at < old,
                                                    and_(Grant.created_at < old, no_refresh_token)),
                                                ~in_live_session), batch),
        "revoked_tokens": delete_in_batches(RevokedToken, RevokedToken.expires_at < t, batch),
        "client_assertions": delete_in_batches(ClientAssertion, ClientAssertion.expires_at < t, batch),
        "initial_access_tokens": delete_in_batches(
            InitialAccessToken, or_(InitialAccessToken.expires_at < t, InitialAccessToken.used_at.is_not(None)),
            batch),
        "rate_limits": delete_in_batches(RateLimit, RateLimit.window_ends_at <= t, batch),  # would start again at one
    }
