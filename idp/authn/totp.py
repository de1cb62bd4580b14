"""TOTP second factor (RFC 6238): enrol with a QR code made here, verify with one step of drift
either way, and refuse a code whose time step was already used (RFC 6238 5.2).

The secret is Fernet-encrypted at rest with a key derived from IDP_SECRET_KEY (HKDF, own info).
"""
from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

import pyotp
import segno
from flask import current_app
from flask import session as browser
from sqlalchemy import delete, or_, update
from sqlalchemy.orm.attributes import set_committed_value

from idp import audit
from idp.clock import now, timestamp
from idp.extensions import db
from idp.security.derived import fernet_for
from idp.models import TotpCredential, User
from idp.security.tokens import constant_time_equal

PENDING_KEY = "idp.totp_pending"  # in the browser's session: the set-up it was shown
PENDING_TTL = 15 * 60  # seconds a set-up may wait for its first code
PERIOD = 30
DIGITS = 6
DRIFT_STEPS = 1  # RFC 6238 5.2: accept the previous and the next time step
_INFO = b"idp totp secret encryption"


def _fernet():
    return fernet_for(current_app.config["IDP_SETTINGS"].secret_key, _INFO)


def secret_of(row: TotpCredential) -> str:
    return _fernet().decrypt(row.secret_encrypted.encode()).decode()


def confirmed_totp(user: User) -> TotpCredential | None:
    return db.session.scalar(db.select(TotpCredential).where(
        TotpCredential.user_id == user.id, TotpCredential.confirmed_at.is_not(None)).limit(1))


def begin_enrolment(user: User) -> TotpCredential:
    """The unconfirmed secret this browser is setting up for this person: the one it was shown in
    the last PENDING_TTL, or a new one. A secret is never shown to another browser, nor kept for
    later: whoever knew the password could otherwise open the set-up page, note the secret, and
    wait for the owner to be given the same one (and later pass the step with it). A new set-up
    deletes the person's pending secrets that are past PENDING_TTL, not younger ones: a page
    anyone can make a browser open (a GET) must not break a set-up under way elsewhere. The
    caller commits."""
    mine = browser.get(PENDING_KEY)
    row = db.session.get(TotpCredential, mine) if isinstance(mine, int) else None
    if row is not None and row.user_id == user.id and row.confirmed_at is None and \
            row.created_at > now() - timedelta(seconds=PENDING_TTL):
        return row
    db.session.execute(delete(TotpCredential).where(
        TotpCredential.user_id == user.id, TotpCredential.confirmed_at.is_(None),
        TotpCredential.created_at <= now() - timedelta(seconds=PENDING_TTL)))
    secret = pyotp.random_base32()  # 160 bits (RFC 4226 4: at least 128)
    row = TotpCredential(user_id=user.id, secret_encrypted=_fernet().encrypt(secret.encode()).decode(),
                         created_at=now())
    db.session.add(row)
    db.session.flush()
    browser[PENDING_KEY] = row.id
    return row


def provisioning_uri(user: User, row: TotpCredential) -> str:
    issuer = urlsplit(current_app.config["IDP_SETTINGS"].issuer).hostname or "idp"
    return pyotp.TOTP(secret_of(row), digits=DIGITS, interval=PERIOD).provisioning_uri(
        name=user.username, issuer_name=issuer)


def qr_svg(uri: str) -> str:
    """The otpauth URI as an inline SVG QR code, drawn here (no third-party image service)."""
    return segno.make(uri, error="m").svg_inline(scale=5, border=2, dark="#000", light="#fff",
                                                 title="QR code for your authenticator app")


def _matching_step(secret: str, code: str) -> int | None:
    """The time step (within the drift window) whose code this is, or None."""
    code = "".join(code.split())
    if len(code) != DIGITS or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=PERIOD)
    current = timestamp() // PERIOD
    found = None
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        if constant_time_equal(totp.at(step * PERIOD), code):  # check every step: constant work
            found = step
    return found


def verify(row: TotpCredential, code: str) -> bool:
    """Whether the code is valid now and its time step is later than any used before. The step is
    claimed with one conditional UPDATE, so two parallel requests cannot both spend it."""
    step = _matching_step(secret_of(row), code)
    if step is None:
        return False
    values = {"last_step": step, "last_used_at": now()}
    claimed = db.session.execute(
        update(TotpCredential)
        .where(TotpCredential.id == row.id, or_(TotpCredential.last_step.is_(None), TotpCredential.last_step < step))
        .values(**values), execution_options={"synchronize_session": False})
    if claimed.rowcount != 1:  # spent already, or the app was removed meanwhile (no refresh: it may be gone)
        return False
    for name, value in values.items():
        set_committed_value(row, name, value)
    return True


def confirm_enrolment(user: User, row: TotpCredential, code: str) -> bool:
    """Make a pending secret the person's TOTP once they type a valid code (replacing an older one)."""
    if row.confirmed_at is not None or not verify(row, code):
        return False
    old = confirmed_totp(user)
    if old is not None:
        db.session.delete(old)
    db.session.execute(delete(TotpCredential).where(  # other browsers' set-ups end with this one
        TotpCredential.user_id == user.id, TotpCredential.confirmed_at.is_(None), TotpCredential.id != row.id))
    row.confirmed_at = now()
    audit.record("authn.totp.enrolled", user=user, replaced=old is not None)
    return True


def remove_totp(user: User) -> bool:
    """Delete the person's TOTP (and any pending set-up) in one DELETE ... RETURNING, so a racing
    removal is no error and the removal is audited once; True when a confirmed app was removed."""
    removed = db.session.execute(delete(TotpCredential).where(TotpCredential.user_id == user.id)
                                 .returning(TotpCredential.confirmed_at)).scalars().all()
    if any(confirmed is not None for confirmed in removed):
        audit.record("authn.totp.removed", user=user)
        return True
    return False
