"""Which factors a person has set up, for the login state machine and the account pages."""
from __future__ import annotations

from sqlalchemy import exists

from idp.authn import steps
from idp.extensions import db
from idp.models import RecoveryCode, TotpCredential, User, WebAuthnCredential


def enrolled_factors(user: User) -> set[str]:
    """The factor names (steps.PASSWORD, TOTP, RECOVERY, WEBAUTHN) this person can prove (one
    statement; it flushes first, so a factor enrolled in this request counts)."""
    factors = {steps.PASSWORD} if user.password_hash else set()
    query = db.select(
        exists().where(TotpCredential.user_id == user.id, TotpCredential.confirmed_at.is_not(None)),
        exists().where(WebAuthnCredential.user_id == user.id),
        exists().where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None)))
    totp, webauthn, recovery = db.session.execute(query).one()
    factors.update(name for name, present in ((steps.TOTP, totp), (steps.WEBAUTHN, webauthn),
                                                (steps.RECOVERY, recovery)) if present)
    return factors


def has_second_factor(user: User) -> bool:
    """Whether this person can reach urn:idp:acr:mfa (recovery codes alone do not count)."""
    return bool(enrolled_factors(user) & {steps.TOTP, steps.WEBAUTHN})
