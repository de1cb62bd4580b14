from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from idp.clock import now
from idp.extensions import db
from idp.models.types import UtcDateTime


class SsoSession(db.Model):
    """A signed-in browser; the cookie holds a random value whose digest is token_digest."""

    __tablename__ = "sso_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_digest: Mapped[str] = mapped_column(String(64), unique=True)
    sid: Mapped[str] = mapped_column(String(64), unique=True)  # public session id for ID tokens
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    auth_time = mapped_column(UtcDateTime, nullable=False)
    acr: Mapped[str | None] = mapped_column(String(64))
    amr: Mapped[list] = mapped_column(JSON, default=list)
    # What the session proved, as authn.steps.dump_proofs; a step-up adds to these, never to
    # proofs guessed from amr (an upstream's "pwd" is not our password). None: from before 0008.
    proofs: Mapped[list | None] = mapped_column(JSON)
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    created_at = mapped_column(UtcDateTime, default=now, nullable=False)
    last_seen_at = mapped_column(UtcDateTime, default=now, nullable=False)
    expires_at = mapped_column(UtcDateTime, nullable=False, index=True)

    user = relationship("User", lazy="joined")


class LoginThrottle(db.Model):
    """Failed-login counter for one key (an account, an IP, or both) with its back-off."""

    __tablename__ = "login_throttles"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    blocked_until = mapped_column(UtcDateTime)
    updated_at = mapped_column(UtcDateTime, default=now, nullable=False)


class RateLimit(db.Model):
    """Requests counted under one key (registrations of people or of clients from one address,
    one network or everyone; client configuration requests from one address) in a fixed window;
    the count starts again at one after window_ends_at."""

    __tablename__ = "rate_limits"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    hits: Mapped[int] = mapped_column(Integer, default=0)
    window_ends_at = mapped_column(UtcDateTime, nullable=False, index=True)


class LoginAttempt(db.Model):
    """A login in progress: what has been proved so far and what is still required. Referenced
    by a random value in the Flask session (stored here as its digest), so it stays in one
    browser, and the browser never says what was proved."""

    __tablename__ = "login_attempts"

    token_digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    proofs: Mapped[list] = mapped_column(JSON, default=list)  # [[factor, [amr...], factors], ...]
    target: Mapped[str] = mapped_column(String(64))  # the acr this login should reach
    must: Mapped[bool] = mapped_column(Boolean, default=False)  # falling short is not acceptable
    step_up: Mapped[bool] = mapped_column(Boolean, default=False)  # adds factors to the SSO session
    next: Mapped[str] = mapped_column(String(2048))  # a local path to return to
    failures: Mapped[int] = mapped_column(Integer, default=0)
    created_at = mapped_column(UtcDateTime, default=now, nullable=False)
    expires_at = mapped_column(UtcDateTime, nullable=False, index=True)

    user = relationship("User")
