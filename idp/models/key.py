from sqlalchemy import JSON, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from idp.clock import now
from idp.extensions import db
from idp.models.types import UtcDateTime


class SigningKey(db.Model):
    """A JWS signing key; the private half is encrypted with a key derived from IDP_SECRET_KEY."""

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    alg: Mapped[str] = mapped_column(String(16))
    private_key_encrypted: Mapped[str] = mapped_column(Text)
    public_jwk: Mapped[dict] = mapped_column(JSON)
    created_at = mapped_column(UtcDateTime, default=now, nullable=False)
    activates_at = mapped_column(UtcDateTime)  # signs from then on (published before); None: at once
    retired_at = mapped_column(UtcDateTime)  # stops signing then; published until its tokens expire
    revoked_at = mapped_column(UtcDateTime)  # withdrawn (it leaked): unpublished and untrusted at once
