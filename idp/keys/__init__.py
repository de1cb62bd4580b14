"""Signing keys: created at first start, rotated on demand, cached per process.

One signing key per algorithm: RS256 always, because a relying party that registered no
id_token_signed_response_alg expects RS256 ID tokens (OIDC Registration 2, Discovery 3), and
IDP_KEYS_ALG's (ES256, when set) for the tokens that have no per-client alg. Private keys are
stored encrypted (Fernet, key derived from IDP_SECRET_KEY with HKDF). Each process keeps a
KeyRing (the signers, the verification keys and the serialised JWKS) and reloads it only after
IDP_KEYS_CACHE_SECONDS, so no request parses a key.

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
ID_TOKEN_ALG = "RS256"  # OIDC Registration 2: id_token_signed_response_alg's default; Discovery 3: always offered
JWKS_MAX_AGE = 60  # seconds a relying party (or a cache between) may keep the JWKS it fetched


def publish_lead(settings) -> int:
    """Seconds between publishing a rotated key and signing with it: every instance's cached ring
    (IDP_KEYS_CACHE_SECONDS) and then every JWKS a relying party fetched from one (its max-age)
    hold the key before the first token it signs."""
    return settings.keys_cache_seconds + JWKS_MAX_AGE


def signing_algs(settings) -> tuple[str, ...]:
    """The algorithms the ring keeps a signing key for: RS256, and IDP_KEYS_ALG."""
    return tuple(dict.fromkeys((ID_TOKEN_ALG, settings.keys_alg)))


@dataclass(frozen=True)
class Signer:
    kid: str
    alg: str
    key: object               # joserfc key with its private half


@dataclass(frozen=True)
class KeyRing:
    signers: dict             # alg -> Signer: the newest key of that alg that signs now
    default: Signer           # for tokens with no per-client alg: IDP_KEYS_ALG's (another while it is staged)
    verifiers: dict           # kid -> joserfc public key, its `alg` the only one it verifies
    jwks_json: bytes          # pre-serialised {"keys": [...]}
    loaded_at: float
    retired: dict             # kid -> when it stopped signing (epoch seconds), for keys that did
    switch_at: datetime | None = None  # when another key starts or stops signing; reload then

    @property
    def algs(self) -> list[str]:
        """The algorithms we sign with now, RS256 first."""
        return sorted(self.signers, key=lambda alg: (alg != ID_TOKEN_ALG, alg))


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


def _current(moment: datetime):
    """Keys that sign, or are staged to, or retire later."""
    return db.select(SigningKey).where(SigningKey.revoked_at.is_(None),
                                       (SigningKey.retired_at.is_(None)) | (SigningKey.retired_at > moment))


def ensure_keys(settings) -> None:
    """A key for each of signing_algs() that has none signing or staged (idempotent; at each
    load, at start and by the CLI). The first keys sign at once: nothing was published before
    them. A key added later (IDP_KEYS_ALG changed, or RS256 where only ES256 signed) is published
    first and signs publish_lead() later, as a rotation's. Instances that race here each add
    one; all are published, and every ring signs with the newest (_load)."""
    moment = now()
    current = {row.alg for row in db.session.scalars(_current(moment))}
    missing = [alg for alg in signing_algs(settings) if alg not in current]
    if missing:
        start = moment + timedelta(seconds=publish_lead(settings)) if current else None
        for alg in missing:
            create_key(settings, alg).activates_at = start
        db.session.commit()


def rotate(settings, alg: str | None = None, *, immediate: bool = False) -> list[SigningKey]:
    """New keys that sign from publish_lead() from now (at once if `immediate`): one for `alg`,
    or one for each of signing_algs(). The keys they replace (with every alg, also those of an
    alg no longer in signing_algs()) retire at that moment and stay published until their tokens
    expire. ValueError for an alg not in signing_algs(). The caller commits."""
    algs = signing_algs(settings)
    if alg is not None and alg not in algs:
        raise ValueError(alg)
    moment = now()
    start = moment if immediate else moment + timedelta(seconds=publish_lead(settings))
    current = _current(moment) if alg is None else _current(moment).where(SigningKey.alg == alg)
    for row in db.session.scalars(current):
        row.retired_at = start
    rows = [create_key(settings, each) for each in ((alg,) if alg else algs)]
    for row in rows:
        row.activates_at = None if immediate else start
    db.session.flush()
    _forget()
    return rows


def revoke(settings, kid: str) -> SigningKey | None:
    """Withdraw a key that leaked: it leaves the JWKS and our own checks at once (other instances
    within IDP_KEYS_CACHE_SECONDS), so tokens it signed, genuine or forged, stop being accepted.
    A key that signs or is about to is first replaced by a new key of its alg that signs now
    (unless that alg is no longer in signing_algs()); returns that key, or None. Raises
    LookupError for an unknown or already revoked kid. The caller commits."""
    row = db.session.get(SigningKey, kid)
    if row is None or row.revoked_at is not None:
        raise LookupError(kid)
    moment = now()
    replacement = None
    if (row.retired_at is None or row.retired_at > moment) and row.alg in signing_algs(settings):
        [replacement] = rotate(settings, row.alg, immediate=True)
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
    """Newest first (the same order on every instance): keys about to sign, the signing keys,
    retired keys whose tokens may live."""
    cutoff = now().timestamp() - _publish_window(settings)
    rows = db.session.scalars(db.select(SigningKey).where(SigningKey.revoked_at.is_(None))
                              .order_by(SigningKey.created_at.desc(), SigningKey.kid.desc()))
    return [r for r in rows if r.retired_at is None or r.retired_at.timestamp() > cutoff]


def _signers(settings, rows: list[SigningKey], moment: datetime) -> dict:
    """alg -> Signer: of each alg, the newest key that signs (newest first, as published_keys)."""
    fernet = _fernet(settings.secret_key)
    signers = {}
    for row in rows:
        if row.alg not in signers and is_signing(row, moment):
            pem = fernet.decrypt(row.private_key_encrypted.encode())
            signers[row.alg] = Signer(row.kid, row.alg, KEY_TYPES[row.alg].import_key(pem, {"kid": row.kid}))
    return signers


def _load(settings) -> KeyRing:
    ensure_keys(settings)
    moment = now()
    rows = published_keys(settings)
    signers = _signers(settings, rows, moment)
    if not signers:
        raise RuntimeError("no active signing key; run `idp keys rotate --now`")
    default = signers.get(settings.keys_alg) or signers.get(ID_TOKEN_ALG) or next(iter(signers.values()))
    verifiers = {r.kid: KEY_TYPES[r.alg].import_key(r.public_jwk) for r in rows}
    jwks = json.dumps({"keys": [r.public_jwk for r in rows]}, separators=(",", ":")).encode()
    changes = [t for r in rows for t in (r.activates_at, r.retired_at) if t is not None and t > moment]
    retired = {r.kid: r.retired_at.timestamp() for r in rows if r.retired_at is not None}
    return KeyRing(signers, default, verifiers, jwks, time.monotonic(), retired, min(changes) if changes else None)


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
