from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from idp.clock import now
from idp.extensions import db
from idp.models.types import UtcDateTime


class User(db.Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject: Mapped[str] = mapped_column(String(64), unique=True)  # the stable `sub`, never the username
    username: Mapped[str] = mapped_column(String(64))
    username_key: Mapped[str] = mapped_column(String(256), unique=True)  # NFKC + casefold
    email: Mapped[str] = mapped_column(String(320))
    email_key: Mapped[str] = mapped_column(String(1024), unique=True)
    email_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    name: Mapped[str | None] = mapped_column(String(256))
    password_hash: Mapped[str | None] = mapped_column(String(256))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at = mapped_column(UtcDateTime, default=now, nullable=False)

    # Standard claims the person edits (OIDC Core 5.1); None when not given.
    given_name: Mapped[str | None] = mapped_column(String(256))
    family_name: Mapped[str | None] = mapped_column(String(256))
    middle_name: Mapped[str | None] = mapped_column(String(256))
    nickname: Mapped[str | None] = mapped_column(String(256))
    picture: Mapped[str | None] = mapped_column(String(2048))
    website: Mapped[str | None] = mapped_column(String(2048))
    gender: Mapped[str | None] = mapped_column(String(64))
    birthdate: Mapped[str | None] = mapped_column(String(10))  # YYYY-MM-DD, YYYY or 0000-MM-DD
    zoneinfo: Mapped[str | None] = mapped_column(String(64))
    locale: Mapped[str | None] = mapped_column(String(35))
    phone_number: Mapped[str | None] = mapped_column(String(32))
    phone_number_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    address: Mapped[dict | None] = mapped_column(JSON)
    updated_at = mapped_column(UtcDateTime)  # last profile change; created_at until then
    terms_version: Mapped[str | None] = mapped_column(String(32))  # the version last accepted
    terms_accepted_at = mapped_column(UtcDateTime)

    def get_user_id(self):
        return self.subject


class UserToken(db.Model):
    """A single-use link sent by email (verify an address, reset a password); stored as a digest.

    `email` is the address the link was sent to: verifying proves that address, not whatever the
    account's email is by the time the link is used."""

    __tablename__ = "user_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_digest: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[str] = mapped_column(String(32))  # verify_email | reset_password | change_email
    email: Mapped[str] = mapped_column(String(320))
    created_at = mapped_column(UtcDateTime, default=now, nullable=False)
    expires_at = mapped_column(UtcDateTime, nullable=False, index=True)
    used_at = mapped_column(UtcDateTime)
