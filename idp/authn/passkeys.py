"""WebAuthn passkeys and security keys: the registration and authentication ceremonies.

The relying party is the issuer: RP ID = its host name, and the one accepted origin = its scheme,
host and port (WebAuthn L3 7.1 step 9 / 7.2 step 13; the RP ID hash is checked against the
authenticator data). Every challenge is 32 random bytes, kept server-side only as a digest,
bound to this browser (and to the user when one is known), single use (consumed by deleting its
row, whatever the outcome) and valid for IDP_WEBAUTHN_CHALLENGE_TTL seconds.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from datetime import timedelta
from urllib.parse import urlsplit

from flask import current_app
from flask import session as browser
from sqlalchemy import delete, select, update
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm.attributes import set_committed_value
from webauthn import (generate_authentication_options, generate_registration_options, options_to_json,
                      verify_authentication_response, verify_registration_response)
from webauthn.helpers import (base64url_to_bytes, bytes_to_base64url, parse_authentication_credential_json,
                              parse_authenticator_data, parse_client_data_json,
                              parse_registration_credential_json)
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (AuthenticatorSelectionCriteria, AuthenticatorTransport,
                                      CredentialDeviceType, PublicKeyCredentialDescriptor,
                                      ResidentKeyRequirement, UserVerificationRequirement)

from idp import audit
from idp.authn.errors import PasskeyFailed, TooManyPasskeys
from idp.authn.steps import Proof, webauthn_proof
from idp.clock import now
from idp.extensions import db, lock_for_update
from idp.models import User, WebAuthnChallenge, WebAuthnCredential
from idp.security.derived import derive_key
from idp.security.tokens import constant_time_equal, digest, random_token
from idp.web.templating import N_

REGISTER = "register"
AUTHENTICATE = "authenticate"
NAME_MAX = 64
MAX_CREDENTIAL = 16384  # characters of a browser's JSON answer we read at most
# A longer credential id fails the registration (WebAuthn L3 7.1: "at most 1023 bytes"); the
# column holds its base64url form (at most 1364 characters).
MAX_CREDENTIAL_ID = 1023
# Passkeys one account may hold: every ceremony lists them all (excludeCredentials when adding
# one, allowCredentials as a second factor), so they must not grow without bound. Twenty is
# more than people keep (a phone, a laptop, a few security keys and spares).
MAX_PER_ACCOUNT = 20
FULL = N_("You have %(n)s passkeys, the most one account can have. Remove one you no longer use to add another.")
# Anything a malformed or hostile client JSON can make the parsers raise.
MALFORMED = (WebAuthnException, ValueError, TypeError, KeyError, AttributeError)


def relying_party() -> tuple[str, str]:
    """(RP ID, origin) of this issuer, e.g. ("id.example.com", "https://id.example.com")."""
    parts = urlsplit(current_app.config["IDP_SETTINGS"].issuer)
    default_port = {"http": 80, "https": 443}[parts.scheme]
    port = f":{parts.port}" if parts.port and parts.port != default_port else ""
    return parts.hostname, f"{parts.scheme}://{parts.hostname}{port}"


def is_available() -> bool:
    """Whether browsers can use passkeys here: an RP ID must be a domain, never an IP address
    (WebAuthn L3 5.1.3; Chromium refuses 127.0.0.1), so an issuer like http://127.0.0.1:5000
    offers none (use http://localhost:5000 in development)."""
    try:
        ipaddress.ip_address(relying_party()[0])
    except ValueError:
        return True
    return False


def credentials_of(user: User) -> list[WebAuthnCredential]:
    return list(db.session.scalars(db.select(WebAuthnCredential).where(WebAuthnCredential.user_id == user.id)
                                   .order_by(WebAuthnCredential.id)))


def is_full(user: User) -> bool:
    """Whether this person holds MAX_PER_ACCOUNT passkeys already (no other may be added)."""
    return db.session.scalar(db.select(db.func.count()).select_from(WebAuthnCredential)
                             .where(WebAuthnCredential.user_id == user.id)) >= MAX_PER_ACCOUNT


def has_credentials(user: User) -> bool:
    return db.session.scalar(db.select(WebAuthnCredential.id).where(WebAuthnCredential.user_id == user.id)
                             .limit(1)) is not None


def find_credential(user: User, credential_pk: int) -> WebAuthnCredential | None:
    """This user's credential with this row id, or None (another user's is None too)."""
    return db.session.scalar(db.select(WebAuthnCredential).where(WebAuthnCredential.id == credential_pk,
                                                                  WebAuthnCredential.user_id == user.id))


# --- challenges --------------------------------------------------------------------------------

def _browser_digest() -> str:
    if "bid" not in browser:
        browser["bid"] = random_token(16)
    return digest(browser["bid"])


def _issue_challenge(purpose: str, user: User | None) -> bytes:
    """A fresh random challenge stored as a digest (expired ones are swept); the caller commits."""
    ttl = current_app.config["IDP_SETTINGS"].webauthn_challenge_ttl
    t = now()
    db.session.execute(db.delete(WebAuthnChallenge).where(WebAuthnChallenge.expires_at <= t))
    challenge = secrets.token_bytes(32)
    db.session.add(WebAuthnChallenge(challenge_digest=digest(bytes_to_base64url(challenge)), purpose=purpose,
                                     user_id=user.id if user else None, browser_digest=_browser_digest(),
                                     created_at=t, expires_at=t + timedelta(seconds=ttl)))
    return challenge


def _consume_challenge(challenge: bytes, purpose: str, user: User | None) -> None:
    """Delete the challenge row (so it can never be presented twice, even after a failure), then
    require that it was live, for this ceremony, this browser and this user."""
    row = db.session.execute(
        db.delete(WebAuthnChallenge)
        .where(WebAuthnChallenge.challenge_digest == digest(bytes_to_base64url(challenge)))
        .returning(WebAuthnChallenge.purpose, WebAuthnChallenge.user_id, WebAuthnChallenge.browser_digest,
                   WebAuthnChallenge.expires_at)
        .execution_options(synchronize_session=False)).first()
    if row is None:
        raise _failed("unknown_challenge", user)
    if row.expires_at <= now():
        raise _failed("expired_challenge", user)
    if (row.purpose != purpose or row.user_id != (user.id if user else None)
            or not constant_time_equal(row.browser_digest, _browser_digest())):
        raise _failed("foreign_challenge", user)


def _failed(reason: str, user: User | None = None, **details) -> PasskeyFailed:
    audit.record("authn.passkey.failed", outcome="failure", user=user, reason=reason, **details)
    return PasskeyFailed(reason)


# --- registration ------------------------------------------------------------------------------

def _user_handle(user: User) -> bytes:
    """The WebAuthn user.id: opaque, no personal data (L3 14.6.1), the same for all of a user's
    credentials; derived from the secret key, so it needs no storage before the first one."""
    key = derive_key(current_app.config["IDP_SETTINGS"].secret_key, b"idp webauthn user handle")
    return hmac.new(key, user.subject.encode(), hashlib.sha256).digest()


def _descriptor(row: WebAuthnCredential) -> PublicKeyCredentialDescriptor:
    known = {t.value for t in AuthenticatorTransport}
    return PublicKeyCredentialDescriptor(id=base64url_to_bytes(row.credential_id),
                                         transports=[AuthenticatorTransport(t) for t in row.transports if t in known])


def registration_options(user: User) -> str:
    """PublicKeyCredentialCreationOptions as JSON. A discoverable credential (passkey) is
    preferred, so it can sign in without a username; keys already registered are excluded.
    Raises TooManyPasskeys (no challenge issued) when the account is full."""
    rp_id, _ = relying_party()
    existing = credentials_of(user)
    if len(existing) >= MAX_PER_ACCOUNT:
        raise TooManyPasskeys()
    handle = base64url_to_bytes(existing[0].user_handle) if existing else _user_handle(user)
    options = generate_registration_options(
        rp_id=rp_id, rp_name=rp_id, user_id=handle, user_name=user.username,
        user_display_name=user.name or user.username, challenge=_issue_challenge(REGISTER, user),
        timeout=current_app.config["IDP_SETTINGS"].webauthn_challenge_ttl * 1000,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED, user_verification=UserVerificationRequirement.PREFERRED),
        exclude_credentials=[_descriptor(row) for row in existing])
    return options_to_json(options)


def register(user: User, credential_json: str, name: str) -> tuple[WebAuthnCredential, Proof]:
    """Verify navigator.credentials.create()'s answer and store the credential. Returns it and
    what the ceremony proved (it counts as a factor when set up during a login). The caller
    commits, on failure too: the challenge is spent and the failure audited. TooManyPasskeys
    (a PasskeyFailed) when the account is full."""
    try:
        credential = parse_registration_credential_json(credential_json)
        challenge = parse_client_data_json(credential.response.client_data_json).challenge
    except MALFORMED:
        raise _failed("malformed", user) from None
    _consume_challenge(challenge, REGISTER, user)
    rp_id, origin = relying_party()
    try:
        verified = verify_registration_response(credential=credential, expected_challenge=challenge,
                                                expected_rp_id=rp_id, expected_origin=origin)
    except MALFORMED:
        raise _failed("invalid_attestation", user) from None
    if len(verified.credential_id) > MAX_CREDENTIAL_ID:
        raise _failed("malformed", user, credential_id_bytes=len(verified.credential_id))
    credential_id = bytes_to_base64url(verified.credential_id)
    lock_for_update(User, user.id)  # of two registrations at once, only one can take the last place
    existing = credentials_of(user)
    if len(existing) >= MAX_PER_ACCOUNT:
        audit.record("authn.passkey.failed", outcome="failure", user=user, reason="too_many_passkeys")
        raise TooManyPasskeys()
    row = WebAuthnCredential(
        user_id=user.id, credential_id=credential_id,
        user_handle=existing[0].user_handle if existing else bytes_to_base64url(_user_handle(user)),
        public_key=verified.credential_public_key, sign_count=verified.sign_count,
        name=name[:NAME_MAX] or "Passkey", transports=[t.value for t in credential.response.transports or []],
        aaguid=verified.aaguid, device_type=verified.credential_device_type.value,
        backed_up=verified.credential_backed_up, created_at=now())
    try:
        with db.session.begin_nested():  # a credential id is unique: it belongs to one user only
            db.session.add(row)
    except IntegrityError:
        raise _failed("credential_taken", user) from None
    except DataError:  # a value the column cannot hold (PostgreSQL checks lengths): a malformed answer
        raise _failed("malformed", user) from None
    audit.record("authn.passkey.registered", user=user, credential=row.id, device_type=row.device_type,
                 user_verified=verified.user_verified)
    return row, _proof(row, verified.user_verified)


def rename(row: WebAuthnCredential, name: str) -> None:
    row.name = name[:NAME_MAX] or row.name
    audit.record("authn.passkey.renamed", user=row.user_id, credential=row.id)


def remove(row: WebAuthnCredential) -> bool:
    """Delete the credential (one DELETE: a racing removal of the same one is no error and is
    audited once); the caller commits."""
    user_id, credential = row.user_id, row.id
    removed = db.session.execute(delete(WebAuthnCredential).where(WebAuthnCredential.id == credential)).rowcount == 1
    if removed:
        audit.record("authn.passkey.removed", user=user_id, credential=credential)
    return removed


# --- authentication ----------------------------------------------------------------------------

def authentication_options(user: User | None) -> str:
    """PublicKeyCredentialRequestOptions as JSON: for a known user (second factor) listing their
    credentials; for nobody yet (passwordless, passkey autofill) an empty list and user
    verification required, so the passkey alone is two factors."""
    rp_id, _ = relying_party()
    allow = [_descriptor(row) for row in credentials_of(user)] if user is not None else []
    if user is not None and not allow:
        raise PasskeyFailed("no_credentials")
    options = generate_authentication_options(
        rp_id=rp_id, challenge=_issue_challenge(AUTHENTICATE, user),
        timeout=current_app.config["IDP_SETTINGS"].webauthn_challenge_ttl * 1000, allow_credentials=allow,
        user_verification=UserVerificationRequirement.REQUIRED if user is None
        else UserVerificationRequirement.PREFERRED)
    return options_to_json(options)


def authenticate(credential_json: str, user: User | None) -> tuple[WebAuthnCredential, Proof]:
    """Verify navigator.credentials.get()'s answer. With `user` (a second factor) the credential
    must be theirs; without (passwordless) it must be discoverable and user-verified. Returns the
    credential and the Proof for the login steps; the caller commits, on failure too."""
    try:
        credential = parse_authentication_credential_json(credential_json)
        challenge = parse_client_data_json(credential.response.client_data_json).challenge
        flags = parse_authenticator_data(credential.response.authenticator_data).flags
    except MALFORMED:
        raise _failed("malformed", user) from None
    _consume_challenge(challenge, AUTHENTICATE, user)
    row = db.session.scalar(db.select(WebAuthnCredential).where(WebAuthnCredential.credential_id == credential.id))
    if row is None:
        raise _failed("unknown_credential", user)
    if user is not None and row.user_id != user.id:
        raise _failed("foreign_credential", user, credential=row.id)
    handle = credential.response.user_handle
    if (handle is None and user is None) or (
            handle is not None and not constant_time_equal(bytes_to_base64url(handle), row.user_handle)):
        raise _failed("user_handle_mismatch", row.user, credential=row.id)
    if user is None and not flags.uv:
        raise _failed("user_not_verified", row.user, credential=row.id)
    if row.user.disabled:
        raise _failed("disabled", row.user, credential=row.id)
    return row, _verify_assertion(row, credential, challenge, require_uv=user is None)


def _verify_assertion(row: WebAuthnCredential, credential, challenge: bytes, *, require_uv: bool) -> Proof:
    """The signature over authenticator data and client data (origin, RP ID, type, challenge),
    then the signature counter (L3 7.2 step 21): a counter that did not grow means a cloned
    authenticator may be in use, so the assertion is refused and the regression audited."""
    rp_id, origin = relying_party()
    try:
        # The counter is checked below, after the signature, so a regression is told apart.
        verified = verify_authentication_response(
            credential=credential, expected_challenge=challenge, expected_rp_id=rp_id, expected_origin=origin,
            credential_public_key=row.public_key, credential_current_sign_count=0,
            require_user_verification=require_uv)
    except MALFORMED:
        raise _failed("invalid_assertion", row.user, credential=row.id) from None
    new = verified.new_sign_count
    # One conditional UPDATE: of two assertions checked at once, a counter that did not grow past
    # the stored one (re-read by the database, not this request's copy) is refused, and a key
    # removed meanwhile is no error.
    grows = WebAuthnCredential.sign_count < new if new else WebAuthnCredential.sign_count == 0
    values = {"sign_count": new, "backed_up": verified.credential_backed_up, "last_used_at": now()}
    result = db.session.execute(update(WebAuthnCredential).where(WebAuthnCredential.id == row.id, grows)
                                .values(**values), execution_options={"synchronize_session": False})
    if result.rowcount != 1:
        if db.session.scalar(select(WebAuthnCredential.id).where(WebAuthnCredential.id == row.id)) is None:
            raise _failed("unknown_credential", row.user_id)
        audit.record("authn.passkey.sign_count_regressed", outcome="failure", user=row.user, credential=row.id,
                     stored_count=row.sign_count, presented_count=new)
        raise PasskeyFailed("sign_count_regressed")
    for name, value in values.items():
        set_committed_value(row, name, value)
    return _proof(row, verified.user_verified)


def _proof(row: WebAuthnCredential, user_verified: bool) -> Proof:
    """RFC 8176: hwk for a key bound to one device, swk for a synced passkey, plus user
    verification (steps.webauthn_proof)."""
    return webauthn_proof(hardware=row.device_type == CredentialDeviceType.SINGLE_DEVICE.value,
                          user_verified=user_verified)
