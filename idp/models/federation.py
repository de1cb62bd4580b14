"""Upstream identity providers, the identities linked to local users, and the two short-lived
records of a sign-in through an upstream: the round trip in flight, and an upstream identity
waiting for its owner to prove they own the local account it would be linked to."""
from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from idp.clock import now
from idp.extensions import db
from idp.models.types import UtcDateTime


class UpstreamProvider(db.Model):
    """An OpenID Provider or OAuth 2.0 server people may sign in with; `id` is the slug in its
    URLs. kind: oidc, google, microsoft (OIDC profiles) or github (plain OAuth 2.0)."""

    __tablename__ = "upstream_providers"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))
    issuer: Mapped[str] = mapped_column(String(512))  # OIDC issuer; for github its web base URL
    api_base_url: Mapped[str | None] = mapped_column(String(512))  # github's REST API base
    client_id: Mapped[str] = mapped_column(String(256))
    client_secret_encrypted: Mapped[str] = mapped_column(Text)
    scopes: Mapped[str] = mapped_column(String(512))
    claim_mapping: Mapped[dict] = mapped_column(JSON, default=dict)  # our field -> upstream claim
    acr_mapping: Mapped[dict] = mapped_column(JSON, default=dict)  # {"acr"|"amr": {upstream: our acr}}
    trust_email_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    allow_registration: Mapped[bool] = mapped_column(Boolean, default=False)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at = mapped_column(UtcDateTime, default=now, nullable=False)
    updated_at = mapped_column(UtcDateTime)


class LinkedIdentity(db.Model):
    """A local user's identity at an upstream: (provider, upstream sub) names one person."""

    __tablename__ = "linked_identities"
    __table_args__ = (UniqueConstraint("provider_id", "subject", name="uq_linked_identities_provider_subject"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    provider_id: Mapped[str] = mapped_column(ForeignKey("upstream_providers.id", ondelete="CASCADE"))
    subject: Mapped[str] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(String(320))  # as the upstream gave it at link time
    created_at = mapped_column(UtcDateTime, default=now, nullable=False)
    last_used_at = mapped_column(UtcDateTime)

    provider = relationship("UpstreamProvider", lazy="joined")


class FederationState(db.Model):
    """One round trip to an upstream in flight, found by the digest of its `state`, bound to the
    browser, single use. The PKCE verifier is needed in clear, so it is stored encrypted."""

    __tablename__ = "federation_states"

    state_digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    browser_digest: Mapped[str] = mapped_column(String(64))
    provider_id: Mapped[str] = mapped_column(ForeignKey("upstream_providers.id", ondelete="CASCADE"))
    nonce_digest: Mapped[str] = mapped_column(String(64))
    code_verifier_encrypted: Mapped[str] = mapped_column(Text)
    next_path: Mapped[str] = mapped_column(String(2048))
    created_at = mapped_column(UtcDateTime, default=now, nullable=False)
    expires_at = mapped_column(UtcDateTime, nullable=False, index=True)


class PendingLink(db.Model):
    """An upstream identity whose email matches a local account, waiting until the person signs
    in to that account with its own credentials; found by an opaque id, bound to the browser."""

    __tablename__ = "pending_links"

    id_digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    browser_digest: Mapped[str] = mapped_column(String(64))
    provider_id: Mapped[str] = mapped_column(ForeignKey("upstream_providers.id", ondelete="CASCADE"))
    subject: Mapped[str] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(String(320))
    amr: Mapped[list] = mapped_column(JSON, default=list)
    acr: Mapped[str] = mapped_column(String(64))
    next_path: Mapped[str] = mapped_column(String(2048))
    created_at = mapped_column(UtcDateTime, default=now, nullable=False)
    expires_at = mapped_column(UtcDateTime, nullable=False, index=True)
