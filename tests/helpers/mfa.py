"""Give a test user a second factor directly in the database, and compute TOTP codes with pyotp
for the (pinned) idp clock."""
from __future__ import annotations

import pyotp

from idp import clock


def give_totp(app, user: dict) -> str:
    """Enrol and confirm TOTP for the user; returns the base32 secret."""
    from idp.authn import totp
    from idp.extensions import db
    from idp.models import User

    with app.test_request_context():  # a set-up belongs to a browser's session: this one's
        person = db.session.get(User, user["id"])
        row = totp.begin_enrolment(person)
        row.confirmed_at = clock.now()
        secret = totp.secret_of(row)
        db.session.commit()
        return secret


def give_recovery_codes(app, user: dict) -> list[str]:
    from idp.authn import recovery
    from idp.extensions import db
    from idp.models import User

    with app.app_context():
        codes = recovery.issue_recovery_codes(db.session.get(User, user["id"]))
        db.session.commit()
        return codes


def code_at(secret: str, steps: int = 0) -> str:
    """The TOTP code for the idp clock's time step plus `steps` (pyotp computes it)."""
    return pyotp.TOTP(secret).at(clock.timestamp() + 30 * steps)


def give_passkey(app, user: dict, name: str = "Laptop") -> int:
    """Store a passkey row for the user (its key is never used to sign); returns the row id."""
    import secrets

    from webauthn.helpers import bytes_to_base64url

    from idp.extensions import db
    from idp.models import WebAuthnCredential

    with app.app_context():
        row = WebAuthnCredential(user_id=user["id"], credential_id=bytes_to_base64url(secrets.token_bytes(32)),
                                 user_handle=bytes_to_base64url(secrets.token_bytes(32)), public_key=b"unused",
                                 sign_count=0, name=name, transports=[], device_type="multi_device",
                                 created_at=clock.now())
        db.session.add(row)
        db.session.commit()
        return row.id
