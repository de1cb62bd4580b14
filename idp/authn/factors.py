"""Which factors a person has set up, for the login state machine and the account pages."""
from __future__ import annotations

from sqlalchemy import func

from idp.authn import steps
from idp.extensions import db
from idp.models import RecoveryCode, TotpCredential, User, WebAuthnCredential


def _has(model, *where) -> bool:
    return bool(db.session.scalar(db.select(func.count()).select_from(model).where(*where)))


def enrolled_factors(user: User) -> set[str]:
    """The factor names (steps.PASSWORD, TOTP, RECOVERY, WEBAUTHN) this person can prove."""
    factors = {steps.PASSWORD} if user.password_hash else set()
    if _has(TotpCredential, TotpCredential.user_id == user.id, TotpCredential.confirmed_at.is_not(None)):
        factors.add(steps.TOTP)
    if _has(WebAuthnCredential, WebAuthnCredential.user_id == user.id):
        factors.add(steps.WEBAUTHN)
    if _has(RecoveryCode, RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None)):
        factors.add(steps.RECOVERY)
    return factors


def has_second_factor(user: User) -> bool:
    """Whether this person can reach urn:idp:acr:mfa (recovery codes alone do not count)."""
    return bool(enrolled_factors(user) & {steps.TOTP, steps.WEBAUTHN})
