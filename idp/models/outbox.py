from sqlalchemy import JSON, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from idp.clock import now
from idp.extensions import db
from idp.models.types import UtcDateTime


class OutboxMessage(db.Model):
    """One side effect to deliver (a back-channel logout token, later an email or webhook).

    status: pending -> delivered, or failed after the last attempt. A worker claims a pending row
    by moving next_attempt_at past a lease, so a crashed worker's claim simply expires."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at = mapped_column(UtcDateTime, default=now, nullable=False, index=True)
    last_error: Mapped[str | None] = mapped_column(String(512))
    created_at = mapped_column(UtcDateTime, default=now, nullable=False)
    delivered_at = mapped_column(UtcDateTime)
