"""Recovery codes: ten single-use codes shown once, stored as digests, all replaced on request."""
from __future__ import annotations

import secrets

from sqlalchemy import delete, func, update

from idp import audit
from idp.clock import now
from idp.extensions import db
from idp.models import RecoveryCode, User
from idp.security.tokens import digest

COUNT = 10
WARN_AT = 3  # tell the person to make new codes when this many or fewer are left
ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no i, l, o, 0, 1: nothing to misread
LENGTH = 16  # 16 characters of 31: about 79 bits each, beyond guessing even against the digests


def _normalise(code: str) -> str:
    return "".join(ch for ch in code.lower() if ch.isalnum())


def _format(raw: str) -> str:
    return "-".join(raw[i:i + 4] for i in range(0, len(raw), 4))


def looks_like_code(code: str) -> bool:
    """Whether a string has the shape of a recovery code (for echoing codes back as a download)."""
    raw = _normalise(code)
    return len(code) <= 32 and len(raw) == LENGTH and all(ch in ALPHABET for ch in raw)


def issue_recovery_codes(user: User) -> list[str]:
    """Replace this person's codes with ten new ones and return them in clear (shown once)."""
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes = ["".join(secrets.choice(ALPHABET) for _ in range(LENGTH)) for _ in range(COUNT)]
    db.session.add_all(RecoveryCode(user_id=user.id, code_digest=digest(code), created_at=now()) for code in codes)
    audit.record("authn.recovery.issued", user=user, count=COUNT)
    return [_format(code) for code in codes]


def remaining_codes(user: User) -> int:
    return db.session.scalar(db.select(func.count()).select_from(RecoveryCode).where(
        RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None)))


def use_recovery_code(user: User, code: str) -> int | None:
    """Spend a code (one conditional UPDATE, so it works once even in parallel); the number of
    codes left, or None when the code is not one of this person's unused codes."""
    raw = _normalise(code)[:64]
    if len(raw) != LENGTH:
        return None
    spent = db.session.execute(update(RecoveryCode).where(
        RecoveryCode.user_id == user.id, RecoveryCode.code_digest == digest(raw), RecoveryCode.used_at.is_(None))
        .values(used_at=now()))
    if spent.rowcount != 1:
        return None
    left = remaining_codes(user)
    audit.record("authn.recovery.used", user=user, remaining=left, low=left <= WARN_AT)
    return left


def discard_recovery_codes(user: User) -> int:
    """Delete every code of this person (used ones too); how many there were."""
    return db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id)).rowcount
