from authlib.oauth2.rfc6749 import ClientMixin, scope_to_list
from sqlalchemy import JSON, Boolean, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from idp.clock import now
from idp.extensions import db
from idp.models.types import UtcDateTime
from idp.security.tokens import constant_time_equal, digest


class Client(db.Model, ClientMixin):
    __tablename__ = "clients"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64), unique=True)
    client_secret_digest: Mapped[str | None] = mapped_column(String(64))
    client_name: Mapped[str] = mapped_column(String(256))
    token_endpoint_auth_method: Mapped[str] = mapped_column(String(32), default="client_secret_basic")
    redirect_uris: Mapped[list] = mapped_column(JSON, default=list)
    grant_types: Mapped[list] = mapped_column(JSON, default=list)
    scope: Mapped[str] = mapped_column(String(1024), default="openid")
    require_pkce: Mapped[bool] = mapped_column(Boolean, default=True)
    first_party: Mapped[bool] = mapped_column(Boolean, default=False)
    refresh_without_offline: Mapped[bool] = mapped_column(Boolean, default=False)
    # RFC 7662: a resource server may introspect access tokens issued to any client, not only its own.
    resource_server: Mapped[bool] = mapped_column(Boolean, default=False)
    require_mfa: Mapped[bool] = mapped_column(Boolean, default=False)  # every login for it reaches urn:idp:acr:mfa
    created_at = mapped_column(UtcDateTime, default=now, nullable=False)
    updated_at = mapped_column(UtcDateTime)

    # Registration metadata (RFC 7591 2, OpenID Connect Dynamic Client Registration 1.0 2).
    registered_via: Mapped[str] = mapped_column(String(16), default="cli")  # cli | dynamic
    # When an operator checked a dynamically registered client's name and links (`idp clients verify`);
    # None: unverified, and the consent page says so. Cleared when the client changes them (RFC 7592).
    verified_at = mapped_column(UtcDateTime)
    registration_access_token_digest: Mapped[str | None] = mapped_column(String(64), unique=True)
    response_types: Mapped[list] = mapped_column(JSON, default=lambda: ["code"])
    client_uri: Mapped[str | None] = mapped_column(String(2048))
    logo_uri: Mapped[str | None] = mapped_column(String(2048))
    policy_uri: Mapped[str | None] = mapped_column(String(2048))
    tos_uri: Mapped[str | None] = mapped_column(String(2048))
    contacts: Mapped[list] = mapped_column(JSON, default=list)
    id_token_signed_response_alg: Mapped[str | None] = mapped_column(String(16))
    default_max_age: Mapped[int | None] = mapped_column(Integer)
    require_auth_time: Mapped[bool] = mapped_column(Boolean, default=False)

    # Client authentication with JWTs (RFC 7523, OIDC Core 9): the public keys for
    # private_key_jwt, the secret kept encrypted (Fernet) where client_secret_jwt needs it in clear.
    jwks: Mapped[dict | None] = mapped_column(JSON)
    jwks_uri: Mapped[str | None] = mapped_column(String(2048))
    token_endpoint_auth_signing_alg: Mapped[str | None] = mapped_column(String(16))
    client_secret_encrypted: Mapped[str | None] = mapped_column(Text)

    # Subject identifiers (OIDC Core 8): public, or pairwise per sector (a host name).
    subject_type: Mapped[str] = mapped_column(String(16), default="public")
    sector_identifier: Mapped[str | None] = mapped_column(String(255))

    # Logout (RP-Initiated Logout 1.0, Back-Channel Logout 1.0).
    post_logout_redirect_uris: Mapped[list] = mapped_column(JSON, default=list)
    backchannel_logout_uri: Mapped[str | None] = mapped_column(String(2048))
    backchannel_logout_session_required: Mapped[bool] = mapped_column(Boolean, default=False)

    # A logo uploaded by an operator (never fetched from logo_uri), shown on the consent page.
    logo_image: Mapped[bytes | None] = mapped_column(LargeBinary)
    logo_content_type: Mapped[str | None] = mapped_column(String(32))

    # Token lifetimes in seconds; None means the global IDP_TOKEN_* default.
    access_token_ttl: Mapped[int | None] = mapped_column(Integer)
    id_token_ttl: Mapped[int | None] = mapped_column(Integer)
    refresh_token_ttl: Mapped[int | None] = mapped_column(Integer)
    refresh_token_idle_ttl: Mapped[int | None] = mapped_column(Integer)

    @property
    def is_unverified(self) -> bool:
        """Registered by the application itself and not checked by an operator: its name is its own claim."""
        return self.registered_via == "dynamic" and self.verified_at is None and not self.first_party

    @property
    def is_public(self) -> bool:
        return self.token_endpoint_auth_method == "none"

    def get_client_id(self):
        return self.client_id

    def get_default_redirect_uri(self):
        return self.redirect_uris[0] if len(self.redirect_uris) == 1 else None

    def get_allowed_scope(self, scope):
        allowed = scope_to_list(self.scope)
        return " ".join(s for s in scope_to_list(scope or "") if s in allowed)

    def check_redirect_uri(self, redirect_uri):
        return redirect_uri in self.redirect_uris  # exact string match, RFC 9700 2.1

    def check_client_secret(self, client_secret):
        return bool(self.client_secret_digest) and constant_time_equal(digest(client_secret), self.client_secret_digest)

    def check_endpoint_auth_method(self, method, endpoint):
        return method == self.token_endpoint_auth_method

    def check_response_type(self, response_type):
        return response_type == "code" and "authorization_code" in self.grant_types

    def check_grant_type(self, grant_type):
        return grant_type in self.grant_types
