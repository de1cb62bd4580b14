"""One round trip to an upstream: `begin` stores state, nonce (as a digest) and the PKCE
verifier (encrypted) server-side, bound to this browser and short-lived; `take_state` consumes
that record exactly once; `finish` checks the response and maps what the upstream proved to
our profile fields, acr and amr."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from flask import current_app, session

from idp.authn.steps import ACR_PASSWORD, ACR_VALUES_SUPPORTED
from idp.clock import now
from idp.extensions import db
from idp.federation import client
from idp.federation.errors import IssuerMismatch, StateInvalid, UpstreamInvalid
from idp.federation.providers import PROFILES, decrypt, encrypt, redirect_uri
from idp.models import FederationState, UpstreamProvider
from idp.security.tokens import constant_time_equal, digest, random_token

AMR_FEDERATED = "fed"  # RFC 8176 2: federated authentication


@dataclass(frozen=True)
class Identity:
    """A person as an upstream described them, in our terms."""
    provider_id: str
    subject: str
    email: str | None
    email_verified: bool
    name: str | None
    preferred_username: str | None
    acr: str
    amr: list


def browser_id() -> str:
    """The random id of this browser in the signed Flask session (the same one oauth uses)."""
    if "bid" not in session:
        session["bid"] = random_token(16)
    return session["bid"]


def state_ttl() -> timedelta:
    return timedelta(seconds=current_app.config["IDP_SETTINGS"].federation_state_ttl)


def begin(provider: UpstreamProvider, next_path: str) -> str:
    """The authorization URL at the upstream; the caller commits the stored state."""
    state, nonce, verifier = random_token(32), random_token(32), random_token(48)
    url = client.authorization_url(provider, redirect_uri(provider.id), state=state, nonce=nonce,
                                   code_verifier=verifier)
    t = now()
    db.session.execute(db.delete(FederationState).where(FederationState.expires_at <= t))
    db.session.add(FederationState(state_digest=digest(state), browser_digest=digest(browser_id()),
                                   provider_id=provider.id, nonce_digest=digest(nonce),
                                   code_verifier_encrypted=encrypt(verifier), next_path=next_path,
                                   created_at=t, expires_at=t + state_ttl()))
    return url


def take_state(provider_id: str, state: str | None) -> FederationState:
    """The round trip this `state` belongs to, deleted and committed at once so that a replayed
    callback finds nothing; StateInvalid when unknown, expired or from another browser;
    IssuerMismatch when it belongs to another provider (a response delivered to the wrong
    callback is the signature of a mix-up attack)."""
    if not state or len(state) > 128 or "bid" not in session:
        raise StateInvalid()
    deleted = db.session.execute(db.delete(FederationState).where(FederationState.state_digest == digest(state))
                                 .returning(FederationState.browser_digest, FederationState.provider_id,
                                            FederationState.nonce_digest, FederationState.code_verifier_encrypted,
                                            FederationState.next_path, FederationState.expires_at)).first()
    db.session.commit()
    if deleted is None or deleted.expires_at <= now():
        raise StateInvalid()
    if not constant_time_equal(deleted.browser_digest, digest(session["bid"])):
        raise StateInvalid()
    row = FederationState(state_digest=digest(state), **deleted._asdict())
    if row.provider_id != provider_id:
        raise IssuerMismatch("callback")
    return row


def finish(provider: UpstreamProvider, row: FederationState, params: dict) -> Identity:
    """Check the authorization response and redeem its code; the Identity it proves."""
    client.check_response_issuer(provider, params)
    client.check_error(params)
    code = params.get("code")
    if not code or len(code) > 2048:
        raise UpstreamInvalid("code_missing")
    token = client.exchange(provider, redirect_uri(provider.id), code, decrypt(row.code_verifier_encrypted))
    if PROFILES[provider.kind].oidc:
        upstream = client.oidc_identity(provider, token, row.nonce_digest)
    else:
        upstream = client.github_identity(provider, token)
    return to_identity(provider, upstream)


def _text(value, limit: int) -> str | None:
    return value.strip()[:limit] or None if isinstance(value, str) else None


def to_identity(provider: UpstreamProvider, upstream: client.Upstream) -> Identity:
    """Apply the claim mapping; email_verified counts only as the JSON value true."""
    mapping, claims = provider.claim_mapping, upstream.claims
    acr, amr = assurance(provider.acr_mapping, claims)
    return Identity(provider_id=provider.id, subject=upstream.subject,
                    email=_text(claims.get(mapping.get("email", "")), 320),
                    email_verified=claims.get(mapping.get("email_verified", "")) is True,
                    name=_text(claims.get(mapping.get("name", "")), 256),
                    preferred_username=_text(claims.get(mapping.get("preferred_username", "")), 64),
                    acr=acr, amr=amr)


def assurance(acr_mapping: dict, claims: dict) -> tuple[str, list]:
    """Our acr: the password level, unless the upstream's `acr` or one of its `amr` values is
    mapped to a higher level of ours. amr: "fed" plus the upstream amr values that were mapped."""
    acr_map, amr_map = acr_mapping.get("acr", {}), acr_mapping.get("amr", {})
    upstream_acr = claims.get("acr")
    upstream_amr = [v for v in claims.get("amr") or [] if isinstance(v, str) and v in amr_map] \
        if isinstance(claims.get("amr"), list) else []
    levels = [acr_map[upstream_acr]] if isinstance(upstream_acr, str) and upstream_acr in acr_map else []
    levels += [amr_map[v] for v in upstream_amr]
    levels = [level for level in levels if level in ACR_VALUES_SUPPORTED]
    acr = max(levels, key=ACR_VALUES_SUPPORTED.index, default=ACR_PASSWORD)
    return acr, [AMR_FEDERATED] + sorted(set(upstream_amr) - {AMR_FEDERATED})
