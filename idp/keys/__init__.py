"""Signing keys: created at first start, rotated on demand, cached per process.

Private keys are stored encrypted (Fernet, key derived from IDP_SECRET_KEY with HKDF). Each
process keeps a KeyRing (the signer, the verification keys and the serialised JWKS) and reloads
it only after IDP_KEYS_CACHE_SECONDS, so no request parses a key.

Rotation publishes before it signs: a rotated key is in the JWKS at once but starts signing only
publish_lead() later (`activates_at`: IDP_KEYS_CACHE_SECONDS plus the JWKS max-age), when every
instance's cached JWKS holds it and every copy a relying party keeps does, so a relying party
never meets a token whose key the JWKS it fetched from any instance lacks. An
emergency rotation (`immediate=True`, a compromised key) signs with the new key at once.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.fernet import Fernet
from flask import current_app
from joserfc.jwk import ECKey, RSAKey
from sqlalchemy import func

from idp.clock import now
from idp.extensions import db
from idp.models import Client, SigningKey
from idp.security.derived import fernet_for

KEY_TYPES = {"RS256": RSAKey, "ES256": ECKey}
JWKS_MAX_AGE = 60  # seconds a relying party (or a cache between) may keep the JWKS it fetched


def publish_lead(settings) -> int:
    """Seconds between publishing a rotated key and signing with it: every instance's cached ring
    (IDP_KEYS_CACHE_SECONDS) and then every JWKS a relying party fetched from one (its max-age)
    hold the key before the first token it signs."""
    return settings.keys_cache_seconds + JWKS_MAX_AGE


@dataclass(frozen=True)
class KeyRing:
    kid: str
    alg: str
    signer: object            # joserfc key with its private half
    verifiers: dict           # kid -> joserfc public key
    jwks_json: bytes          # pre-serialised {"keys": [...]}
    algs: tuple               # algorithms of the published keys
    loaded_at: float
    retired: dict             # kid -> when it stopped signing (epoch seconds), for keys that did
    switch_at: datetime | None = None  # when another key starts or stops signing; reload then


def _fernet(secret_key: str) -> Fernet:
    return fernet_for(secret_key, b"idp signing key encryption")


def create_key(settings, alg: str | None = None) -> SigningKey:
    """Generate a key pair and add it (active) to the session; the caller commits."""
    alg = alg or settings.keys_alg
    if alg == "RS256":
        key = RSAKey.generate_key(2048, private=True)
    else:
        key = ECKey.generate_key("P-256", private=True)
    kid = key.thumbprint()
    public = key.as_dict(private=False)
    public.update({"kid": kid, "alg": alg, "use": "sig"})
    pem = key.as_pem(private=True)
    row = SigningKey(kid=kid, alg=alg, public_jwk=public,
                     private_key_encrypted=_fernet(settings.secret_key).encrypt(pem).decode())
    db.session.add(row)
    return row


def ensure_key(settings) -> None:
    """Create the first key when none is active (idempotent; called at start and by the CLI)."""
    if db.session.scalar(db.select(SigningKey).where(SigningKey.retired_at.is_(None)).limit(1)) is None:
        create_key(settings)
        db.session.commit()


def rotate(settings, alg: str | None = None, *, immediate: bool = False) -> SigningKey:
    """Add a new key that signs from IDP_KEYS_CACHE_SECONDS from now (at once if `immediate`);
    the keys signing until then retire at that moment and stay published until their tokens
    expire. The caller commits."""
    moment = now()
    start = moment if immediate else moment + timedelta(seconds=publish_lead(settings))
    current = db.select(SigningKey).where((SigningKey.retired_at.is_(None)) | (SigningKey.retired_at > moment))
    for row in db.session.scalars(current):
        row.retired_at = start
    row = create_key(settings, alg)
    row.activates_at = None if immediate else start
    db.session.flush()
    _forget()
    return row


def revoke(settings, kid: str) -> SigningKey | None:
    """Withdraw a key that leaked: it leaves the JWKS and our own checks at once (other instances
    within IDP_KEYS_CACHE_SECONDS), so tokens it signed, genuine or forged, stop being accepted.
    A key that signs or is about to is first replaced by a new key that signs now; returns that
    key, or None. Raises LookupError for an unknown or already revoked kid. The caller commits."""
    row = db.session.get(SigningKey, kid)
    if row is None or row.revoked_at is not None:
        raise LookupError(kid)
    moment = now()
    replacement = None
    if row.retired_at is None or row.retired_at > moment:  # signing, or staged to sign
        replacement = rotate(settings, immediate=True)
    row.revoked_at = moment
    row.retired_at = min(row.retired_at or moment, moment)
    db.session.flush()
    _forget()
    return replacement


def state_of(row: SigningKey, moment: datetime) -> str:
    """signing, next (published, signs from activates_at) or retired."""
    if is_signing(row, moment):
        return "signing"
    return "next" if row.activates_at is not None and row.activates_at > moment else "retired"


def is_signing(row: SigningKey, moment: datetime) -> bool:
    return (row.activates_at is None or row.activates_at <= moment) and \
        (row.retired_at is None or row.retired_at > moment)


def _publish_window(settings) -> int:
    """Seconds a retired key stays published: the longest an access or ID token may live, a
    client's own lifetime included (idp.oauth.lifetimes caps those at a day), plus the cache."""
    by_client = db.session.execute(db.select(func.max(Client.access_token_ttl), func.max(Client.id_token_ttl))).one()
    longest = max(settings.token_access_ttl, settings.token_id_ttl, *(ttl or 0 for ttl in by_client))
    return longest + publish_lead(settings)


def published_keys(settings) -> list[SigningKey]:
    """Newest first: a key about to sign, the signing key, retired keys whose tokens may live."""
    cutoff = now().timestamp() - _publish_window(settings)
    rows = db.session.scalars(db.select(SigningKey).where(SigningKey.revoked_at.is_(None))
                              .order_by(SigningKey.created_at.desc()))
    return [r for r in rows if r.retired_at is None or r.retired_at.timestamp() > cutoff]


def _load(settings) -> KeyRing:
    ensure_key(settings)
    moment = now()
    rows = published_keys(settings)
    active = next((r for r in rows if is_signing(r, moment)), None)
    if active is None:
        raise RuntimeError("no active signing key; run `idp keys rotate --now`")
    pem = _fernet(settings.secret_key).decrypt(active.private_key_encrypted.encode())
    signer = KEY_TYPES[active.alg].import_key(pem, {"kid": active.kid})
    verifiers = {r.kid: KEY_TYPES[r.alg].import_key(r.public_jwk) for r in rows}
    jwks = json.dumps({"keys": [r.public_jwk for r in rows]}, separators=(",", ":")).encode()
    algs = tuple(sorted({r.alg for r in rows}))
    changes = [t for r in rows for t in (r.activates_at, r.retired_at) if t is not None and t > moment]
    retired = {r.kid: r.retired_at.timestamp() for r in rows if r.retired_at is not None}
    return KeyRing(active.kid, active.alg, signer, verifiers, jwks, algs, time.monotonic(), retired,
                   min(changes) if changes else None)


def keyring() -> KeyRing:
    """The cached KeyRing of this process, reloaded after IDP_KEYS_CACHE_SECONDS."""
    settings = current_app.config["IDP_SETTINGS"]
    ring = current_app.extensions.get("idp.keyring")
    if ring is None or time.monotonic() - ring.loaded_at > settings.keys_cache_seconds or \
            (ring.switch_at is not None and now() >= ring.switch_at):
        ring = _load(settings)
        current_app.extensions["idp.keyring"] = ring
    return ring


def reload_for_unknown_kid(kid) -> KeyRing:
    """The key ring, reloaded from the database when `kid` is not in it but is a published key of
    ours (one rotated by another instance). A made-up kid, or one of a key retired past its
    publication (anyone can read it off an old token), costs one lookup, never a reload: a
    reload decrypts and parses keys, and requests with such a kid cost nothing to send."""
    ring = keyring()
    if kid in ring.verifiers or not isinstance(kid, str) or not kid or len(kid) > 64 or not kid.isprintable():
        return ring
    row = db.session.get(SigningKey, kid)
    settings = current_app.config["IDP_SETTINGS"]
    if row is None or row.revoked_at is not None or (
            row.retired_at is not None and row.retired_at.timestamp() <= now().timestamp() - _publish_window(settings)):
        return ring
    _forget()
    return keyring()


def _forget() -> None:
    current_app.extensions.pop("idp.keyring", None)
