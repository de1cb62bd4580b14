"""Initial access tokens (RFC 7591 3): what lets an application register itself when
IDP_CLIENT_REGISTRATION=protected. An operator makes one with `idp clients initial-token`; it is
shown once, stored as a digest, may expire, and registers one client: a successful registration
uses it up, atomically, so two registrations racing with one token cannot both succeed."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import or_, update

from idp import audit
from idp.clock import now
from idp.extensions import db
from idp.models import InitialAccessToken
from idp.security.tokens import digest, random_token


def issue_initial_access_token(expires_in: int | None, note: str | None) -> tuple[InitialAccessToken, str]:
    """A new token (its value, to show once) that expires after expires_in seconds (None: never).
    The caller commits."""
    token = random_token(32)
    row = InitialAccessToken(token_digest=digest(token), note=note,
                             expires_at=now() + timedelta(seconds=expires_in) if expires_in else None)
    db.session.add(row)
    db.session.flush()
    audit.record("oauth.initial_access_token.created", token_id=row.id, note=note,
                 expires_at=row.expires_at.isoformat() if row.expires_at else None)
    return row, token


def find_usable(token: str) -> tuple[InitialAccessToken | None, str | None]:
    """The token's row when it may register a client now, else None and why (for the audit trail)."""
    row = db.session.scalar(db.select(InitialAccessToken).where(InitialAccessToken.token_digest == digest(token)))
    if row is None:
        return None, "unknown"
    if row.used_at is not None:
        return None, "used"
    if row.expires_at is not None and row.expires_at <= now():
        return None, "expired"
    return row, None


def use_up(row: InitialAccessToken) -> bool:
    """Mark the token used in the current unit of work; False when another request got there
    first (or it expired meanwhile). The caller commits, together with the client it registers."""
    moment = now()
    result = db.session.execute(
        update(InitialAccessToken)
        .where(InitialAccessToken.id == row.id, InitialAccessToken.used_at.is_(None),
               or_(InitialAccessToken.expires_at.is_(None), InitialAccessToken.expires_at > moment))
        .values(used_at=moment))
    return result.rowcount == 1
