"""Second factors and passwordless credentials: WebAuthn passkeys and security keys, and the
single-use challenges of their ceremonies."""
from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from idp.clock import now
from idp.extensions import db
from idp.models.types import UtcDateTime


class WebAuthnCredential(db.Model):
    """A passkey or security key of one user. credential_id is globally unique, so a
    credential can never belong to two users; user_handle is the opaque WebAuthn user.id."""

    __tablename__ = "webauthn_credentials"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    credential_id: Mapped[str] = mapped_column(String(1400), unique=True)  # base64url, at most 1023 bytes
    user_handle: Mapped[str] = mapped_column(String(128), index=True)  # base64url of 32 random bytes
    public_key: Mapped[bytes] = mapped_column(LargeBinary)  # COSE_Key
    sign_count: Mapped[int] = mapped_column(BigInteger, default=0)  # unsigned 32-bit in the spec
    name: Mapped[str] = mapped_column(String(64))
    transports: Mapped[list] = mapped_column(JSON, default=list)
    aaguid: Mapped[str | None] = mapped_column(String(36))
    device_type: Mapped[str] = mapped_column(String(16))  # single_device (hwk) or multi_device (swk)
    backed_up: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at = mapped_column(UtcDateTime, default=now, nullable=False)
    last_used_at = mapped_column(UtcDateTime)

    user = relationship("User", lazy="joined")


class WebAuthnChallenge(db.Model):
    """A challenge we issued: found by its digest, bound to one browser (and to a user when the
    ceremony is for a known user), consumed by deleting it, useless after expires_at."""

    __tablename__ = "webauthn_challenges"

    challenge_digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(16))  # register | authenticate
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    browser_digest: Mapped[str] = mapped_column(String(64))
    created_at = mapped_column(UtcDateTime, default=now, nullable=False)
    expires_at = mapped_column(UtcDateTime, nullable=False, index=True)


class TotpCredential(db.Model):
    """An RFC 6238 authenticator app of one user. The secret is Fernet-encrypted; confirmed_at is
    empty until the person typed a valid code; last_step is the last time step accepted (replay)."""

    __tablename__ = "totp_credentials"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    secret_encrypted: Mapped[str] = mapped_column(Text)
    confirmed_at = mapped_column(UtcDateTime)
    last_step: Mapped[int | None] = mapped_column(BigInteger)
    created_at = mapped_column(UtcDateTime, default=now, nullable=False)
    last_used_at = mapped_column(UtcDateTime)


class RecoveryCode(db.Model):
    """One single-use recovery code, stored as its digest; used_at is set when it is spent."""

    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_digest: Mapped[str] = mapped_column(String(64), unique=True)
    created_at = mapped_column(UtcDateTime, default=now, nullable=False)
    used_at = mapped_column(UtcDateTime)
