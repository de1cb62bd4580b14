"""Single-use links sent by email: verify an address, reset a password.

The link carries a random token; we keep only its digest, with the purpose, the address it was
sent to and an expiry. Using a link is one UPDATE ... WHERE used_at IS NULL whose row count
decides, so two clicks racing each other cannot both succeed.
"""
from __future__ import annotations

from datetime import timedelta

from flask import current_app
from sqlalchemy import func, select, update

from idp.clock import now
from idp.extensions import db, lock_for_update
from idp.models import User, UserToken
from idp.security.tokens import digest, random_token
from idp.users.errors import LinkThrottled

VERIFY_EMAIL = "verify_email"
RESET_PASSWORD = "reset_password"
CHANGE_EMAIL = "change_email"
TTL_SETTING = {VERIFY_EMAIL: "email_verify_ttl", RESET_PASSWORD: "password_reset_ttl", CHANGE_EMAIL: "email_verify_ttl"}
PATHS = {VERIFY_EMAIL: "/verify-email/", RESET_PASSWORD: "/reset-password/", CHANGE_EMAIL: "/confirm-email-change/"}
MAX_TOKEN_LENGTH = 128


def issue(user: User, purpose: str, email: str | None = None) -> str:
    """A new link for `user`, to their current email or to `email` (a new address to prove);
    returns the absolute URL, built from the issuer. The caller commits."""
    settings = current_app.config["IDP_SETTINGS"]
    raw = random_token(32)
    ttl = getattr(settings, TTL_SETTING[purpose])
    db.session.add(UserToken(token_digest=digest(raw), user_id=user.id, purpose=purpose, email=email or user.email,
                             created_at=now(), expires_at=now() + timedelta(seconds=ttl)))
    return settings.issuer + PATHS[purpose] + raw


def find(raw: str, purpose: str) -> UserToken | None:
    """The unused, unexpired link for this token, without using it (to show its page)."""
    if not raw or len(raw) > MAX_TOKEN_LENGTH:
        return None
    return db.session.scalar(select(UserToken).where(
        UserToken.token_digest == digest(raw), UserToken.purpose == purpose,
        UserToken.used_at.is_(None), UserToken.expires_at > now()))


def use(raw: str, purpose: str) -> UserToken | None:
    """Mark the link used, atomically; None when it is unknown, expired or already used."""
    row = find(raw, purpose)
    if row is None:
        return None
    result = db.session.execute(update(UserToken).where(UserToken.id == row.id, UserToken.used_at.is_(None))
                                .values(used_at=now()))
    return row if result.rowcount == 1 else None


def cancel(user: User, purpose: str) -> None:
    """Every outstanding link of this purpose dies (a password changed, an address changed)."""
    db.session.execute(update(UserToken).where(UserToken.user_id == user.id, UserToken.purpose == purpose,
                                               UserToken.used_at.is_(None)).values(used_at=now()))


def sent_since(user: User, purpose: str, seconds: int) -> int:
    """How many links of this purpose went to `user` in the last `seconds` (for throttling)."""
    return db.session.scalar(select(func.count()).select_from(UserToken).where(
        UserToken.user_id == user.id, UserToken.purpose == purpose,
        UserToken.created_at > now() - timedelta(seconds=seconds))) or 0


DAY = 24 * 3600


def refusal(user: User, purpose: str, *, interval: int, per_day: int) -> str | None:
    """Why another link of this purpose may not go to `user` now: "throttled" (one went out in
    the last `interval` seconds), "daily_limit" (`per_day` went out in the last day), or None.
    Locks the account's row first, so parallel requests are counted one after the other; the
    caller commits (or rolls back) and so releases it."""
    lock_for_update(User, user.id)
    if sent_since(user, purpose, interval):
        return "throttled"
    if sent_since(user, purpose, DAY) >= per_day:
        return "daily_limit"
    return None


def check_throttle(user: User, purpose: str, *, interval: int, per_day: int) -> None:
    """Raise LinkThrottled (with when to try again) when refusal() refuses a link."""
    reason = refusal(user, purpose, interval=interval, per_day=per_day)
    if reason is not None:
        raise LinkThrottled(interval if reason == "throttled" else 3600)
