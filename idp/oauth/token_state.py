"""Whether a token we issued is still active: one answer for UserInfo, introspection and
revocation, so that they can never disagree.

A JWT access token is active while its signature, `typ`, `iss` and `exp` check out, its `jti` is
not in `revoked_tokens`, and either its grant (`gid`) is live (not revoked, not expired, account
not disabled) or, for a client_credentials token (no `gid`), its client still exists and the
token does not predate it: a client deleted and created again under the same client_id (`idp
clients create --client-id`) is another client, and its predecessor's tokens stay dead. A refresh
token is active while it is not rotated, not idle-expired and its grant is live.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone


from idp.clock import now
from idp.extensions import db, upsert
from idp.models import Client, Grant, RefreshToken, RevokedToken
from idp.oauth.tokens import verify
from idp.security.tokens import digest

MAX_TOKEN_LENGTH = 8192


@dataclass(frozen=True)
class AccessToken:
    """A verified, active JWT access token: its claims, and its grant (None for client_credentials)."""

    claims: dict
    grant: Grant | None

    @property
    def client_id(self) -> str:
        return self.claims["client_id"]


def is_live(grant: Grant) -> bool:
    return grant.revoked_at is None and grant.expires_at > now() and not grant.user.disabled


def active_access_token(token: str) -> AccessToken | None:
    """The token's claims and grant when it is active, else None (expired, revoked, forged, unknown)."""
    claims = verify(token, typ="at+jwt")
    if claims is None or not isinstance(claims.get("jti"), str) or not isinstance(claims.get("client_id"), str):
        return None
    if db.session.get(RevokedToken, claims["jti"]) is not None:
        return None
    gid = claims.get("gid")
    if gid is None:
        created_at = db.session.scalar(db.select(Client.created_at).where(Client.client_id == claims["client_id"]))
        return AccessToken(claims, None) if issued_since(claims, created_at) else None
    grant = db.session.get(Grant, gid) if isinstance(gid, str) else None
    if grant is None or not is_live(grant) or grant.client.client_id != claims["client_id"]:
        return None
    return AccessToken(claims, grant)


def issued_since(claims: dict, created_at: datetime | None) -> bool:
    """Whether a token names a client that existed when it was issued: `iat` (whole seconds) not
    before the client's creation, truncated to the second. False when there is no such client."""
    iat = claims.get("iat")
    if created_at is None or not isinstance(iat, int) or isinstance(iat, bool):
        return False
    return iat >= int(created_at.timestamp())


def find_refresh_token(token: str) -> RefreshToken | None:
    """The stored refresh token with this value, in whatever state (revocation needs rotated ones too)."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    return db.session.scalar(db.select(RefreshToken).where(RefreshToken.token_digest == digest(token)))


def is_active_refresh_token(row: RefreshToken) -> bool:
    return row.used_at is None and not row.is_expired() and is_live(row.grant)


def revoke_access_token(token: AccessToken) -> None:
    """Put the jti on the revoked list until the token would expire anyway; a second revocation
    (also one racing this one) is a no-op. The caller commits."""
    expires_at = datetime.fromtimestamp(token.claims["exp"], timezone.utc)
    db.session.execute(upsert(RevokedToken).values(jti=token.claims["jti"], expires_at=expires_at)
                       .on_conflict_do_nothing(index_elements=["jti"]))



@dataclass(frozen=True)
class Presented:
    """A token presented at revocation or introspection that we recognise: an active access
    token, or a stored refresh token in any state (the caller checks is_active_refresh_token)."""

    token_type: str  # "access_token" or "refresh_token", the RFC 7009 2.1 hint values
    client_id: str
    access: AccessToken | None = None
    refresh: RefreshToken | None = None


def _as_access_token(token: str) -> Presented | None:
    found = active_access_token(token)
    return Presented("access_token", found.client_id, access=found) if found else None


def _as_refresh_token(token: str) -> Presented | None:
    row = find_refresh_token(token)
    return Presented("refresh_token", row.grant.client.client_id, refresh=row) if row else None


def identify(token: str, hint: str | None) -> Presented | None:
    """RFC 7009 2.1, RFC 7662 2.1: the hint only orders the lookups; the search always extends
    to every type we issue, so a wrong or unknown hint changes nothing."""
    lookups = [_as_access_token, _as_refresh_token]
    if hint == "refresh_token":
        lookups.reverse()
    for lookup in lookups:
        found = lookup(token)
        if found is not None:
            return found
    return None
