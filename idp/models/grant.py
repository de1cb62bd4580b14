"""Grants (the stored record behind every token of a login), codes, refresh tokens, consents,
and pending authorization requests."""
from authlib.oauth2.rfc6749 import AuthorizationCodeMixin
from sqlalchemy import JSON, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from idp.clock import now
from idp.extensions import db
from idp.models.types import UtcDateTime


class Grant(db.Model):
    """One authorization of a client by a user; codes and refresh tokens hang off it and
    revoking it revokes every token it produced (JWT access tokens name it in `gid`)."""

    __tablename__ = "grants"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    scope: Mapped[str] = mapped_column(String(1024))
    claims: Mapped[dict | None] = mapped_column(JSON)
    sid: Mapped[str | None] = mapped_column(String(64), index=True)
    auth_time: Mapped[int] = mapped_column(Integer)
    acr: Mapped[str | None] = mapped_column(String(64))
    amr: Mapped[list | None] = mapped_column(JSON)
    created_at = mapped_column(UtcDateTime, default=now, nullable=False)
    expires_at = mapped_column(UtcDateTime, nullable=False)
    revoked_at = mapped_column(UtcDateTime)

    client = relationship("Client", lazy="joined")
    user = relationship("User", lazy="joined")


class AuthorizationCode(db.Model, AuthorizationCodeMixin):
    __tablename__ = "authorization_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code_digest: Mapped[str] = mapped_column(String(64), unique=True)
    grant_id: Mapped[str] = mapped_column(ForeignKey("grants.id", ondelete="CASCADE"), index=True)
    redirect_uri: Mapped[str] = mapped_column(String(2048))
    code_challenge: Mapped[str | None] = mapped_column(String(128))
    code_challenge_method: Mapped[str | None] = mapped_column(String(8))
    nonce: Mapped[str | None] = mapped_column(String(512))
    expires_at = mapped_column(UtcDateTime, nullable=False)
    used_at = mapped_column(UtcDateTime)

    grant = relationship("Grant", lazy="joined")

    def get_redirect_uri(self):
        return self.redirect_uri

    def get_scope(self):
        return self.grant.scope

    def get_nonce(self):
        return self.nonce

    def get_auth_time(self):
        return self.grant.auth_time

    def get_acr(self):
        return self.grant.acr

    def get_amr(self):
        return self.grant.amr


class RefreshToken(db.Model):
    __tablename__ = "refresh_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_digest: Mapped[str] = mapped_column(String(64), unique=True)
    grant_id: Mapped[str] = mapped_column(ForeignKey("grants.id", ondelete="CASCADE"), index=True)
    created_at = mapped_column(UtcDateTime, default=now, nullable=False)
    expires_at = mapped_column(UtcDateTime)  # idle limit of this token; the grant's is absolute
    used_at = mapped_column(UtcDateTime)  # set when rotated; a second use is reuse

    grant = relationship("Grant", lazy="joined")

    def check_client(self, client):
        return self.grant.client_id == client.id

    def get_scope(self):
        return self.grant.scope

    def is_revoked(self):
        return self.grant.revoked_at is not None

    def is_expired(self):
        moment = now()
        return self.grant.expires_at <= moment or (self.expires_at is not None and self.expires_at <= moment)


class Consent(db.Model):
    __tablename__ = "consents"
    __table_args__ = (UniqueConstraint("user_id", "client_id", name="uq_consents_user_client"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"), index=True)
    scope: Mapped[str] = mapped_column(String(1024))
    granted_at = mapped_column(UtcDateTime, default=now, nullable=False)


class PendingAuthorization(db.Model):
    """An authorization request waiting for login or consent; referenced by an opaque id."""

    __tablename__ = "pending_authorizations"

    id_digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    browser_digest: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict] = mapped_column(JSON)
    step_up_acr: Mapped[str | None] = mapped_column(String(64))  # the level a step-up login was sent for
    created_at = mapped_column(UtcDateTime, default=now, nullable=False)
    expires_at = mapped_column(UtcDateTime, nullable=False, index=True)


class RevokedToken(db.Model):
    """The jti of a revoked JWT access token, kept until the token would have expired anyway."""

    __tablename__ = "revoked_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at = mapped_column(UtcDateTime, nullable=False, index=True)


class ClientAssertion(db.Model):
    """A client authentication JWT already used (RFC 7523 3 item 7: jti single use)."""

    __tablename__ = "client_assertions"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    jti: Mapped[str] = mapped_column(String(255), primary_key=True)
    expires_at = mapped_column(UtcDateTime, nullable=False, index=True)


class InitialAccessToken(db.Model):
    """Lets its bearer register one client dynamically (RFC 7591 3); stored as a digest."""

    __tablename__ = "initial_access_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_digest: Mapped[str] = mapped_column(String(64), unique=True)
    note: Mapped[str | None] = mapped_column(String(256))
    created_at = mapped_column(UtcDateTime, default=now, nullable=False)
    expires_at = mapped_column(UtcDateTime)
    used_at = mapped_column(UtcDateTime)
