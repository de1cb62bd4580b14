"""RFC 9068 JWT access tokens (no database write to issue), opaque refresh tokens stored as
digests, and verification of our own JWTs: with the key their kid names, in that key's alg only."""
from __future__ import annotations

from authlib.oauth2.rfc6750 import BearerTokenGenerator
from flask import current_app, g
from joserfc import jws, jwt
from joserfc.errors import JoseError

from idp.clock import timestamp
from idp.keys import ID_TOKEN_ALG, KeyRing, Signer, keyring, reload_for_unknown_kid
from idp.oauth import lifetimes
from idp.oauth.subjects import subject_for
from idp.security.tokens import random_token

ALGORITHMS = ["RS256", "ES256"]  # the algs of our keys (idp.keys.KEY_TYPES); never none, never HMAC
RETIRED_KEY_SKEW = 5  # seconds: instances whose rings switch a little after the key retired


def _settings():
    return current_app.config["IDP_SETTINGS"]


def sign(header: dict, claims: dict, signer: Signer | None = None) -> str:
    """A JWT signed by `signer`; by default the key for tokens with no per-client alg
    (IDP_KEYS_ALG's: access tokens)."""
    signer = signer or keyring().default
    return jwt.encode({**header, "alg": signer.alg, "kid": signer.kid}, claims, signer.key, algorithms=[signer.alg])


def id_token_signer(client, ring: KeyRing) -> Signer | None:
    """The key that signs this client's ID tokens, and its logout tokens (BCL 1.0 2.6: the RP
    checks their alg as an ID token's), or None. OIDC Registration 2: a registered
    id_token_signed_response_alg is the alg they MUST use, else RS256 (Core 3.1.3.7 step 7: the
    RP expects one of the two); only a key that signs now signs (a retired key may have been
    retired because it leaked), so an alg none signs is a refusal, never a downgrade. Without a
    registered alg and while the RS256 key is still only published (added to a deployment that
    signed ES256 alone, idp.keys.ensure_keys), the alg it signed with so far."""
    wanted = client.id_token_signed_response_alg
    if wanted:
        return ring.signers.get(wanted)
    return ring.signers.get(ID_TOKEN_ALG) or ring.default


def id_token_alg_refusal(client, ring: KeyRing) -> str | None:
    """Why no key of `ring` signs this client's ID tokens (id_token_signer), or None. The text
    fits RFC 6749 5.2's error_description charset."""
    if id_token_signer(client, ring) is not None:
        return None
    shown = "".join(c for c in client.id_token_signed_response_alg if c.isascii() and c.isalnum())[:16]
    return f"id_token_signed_response_alg {shown} is registered but ID tokens are signed with {', '.join(ring.algs)}"


def access_token(client, grant_type, user, scope) -> str:
    """RFC 9068 2.2: iss, exp, aud, sub, client_id, iat, jti, scope; `gid` names the stored grant.
    `aud` is the default resource indicator RFC 9068 3 asks for when a request names none (there
    is no `resource` parameter here): the issuer URL, whose APIs the token is for. Never the
    client_id, which is an ID token's audience: an access token must not pass for one (RFC 9068 5)
    at a relying party that skips `typ` and `nonce`."""
    t = timestamp()
    grant = g.get("idp_token_grant")
    claims = {"iss": _settings().issuer, "iat": t, "exp": t + lifetimes.access_ttl(client),
              "aud": _settings().issuer, "client_id": client.client_id, "jti": random_token(16),
              "scope": scope or "", "sub": subject_for(user, client) if user else client.client_id}
    if grant is not None:
        claims.update({"gid": grant.id, "auth_time": grant.auth_time})
        if grant.acr:
            claims["acr"] = grant.acr
        if grant.amr:
            claims["amr"] = grant.amr
        if grant.sid:
            claims["sid"] = grant.sid
    return sign({"typ": "at+jwt"}, claims)


def refresh_token(**_kwargs) -> str:
    return random_token(32)


class TokenGenerator(BearerTokenGenerator):
    """Issues a refresh token only when the grant has offline_access, or the client is configured
    to receive refresh tokens without it, and the client may use the refresh_token grant."""

    def __init__(self):
        super().__init__(access_token, refresh_token, lambda client, grant_type: lifetimes.access_ttl(client))

    def generate(self, grant_type, client, user=None, scope=None, expires_in=None, include_refresh_token=True):
        grant = g.get("idp_token_grant")
        allowed = (grant is not None and client.check_grant_type("refresh_token")
                   and ("offline_access" in grant.scope.split() or client.refresh_without_offline))
        return super().generate(grant_type, client, user, scope, expires_in, include_refresh_token and allowed)


def _decode(token: str):
    """Signature and algorithm checked against our published keys, or None. A kid this process
    does not know yet makes it reload the key ring when that kid is in the database, so a key
    rotated on another instance is accepted at once rather than after IDP_KEYS_CACHE_SECONDS."""
    if not token or len(token) > 8192 or token.count(".") != 2:
        return None
    ring = keyring()
    try:
        header = jws.extract_compact(token.encode("ascii")).headers()
    except (JoseError, ValueError, TypeError, UnicodeError):
        return None
    kid, alg = header.get("kid"), header.get("alg")
    if not isinstance(kid, str):  # we always name the key; a list or object here is not ours
        return None
    if kid not in ring.verifiers:
        ring = reload_for_unknown_kid(kid)
    key = ring.verifiers.get(kid)
    # RFC 8725 3.1: the alg is the key's own, never the one the token claims for it.
    if key is None or alg not in ALGORITHMS or alg != key.alg:
        return None
    try:
        decoded = jwt.decode(token, key, algorithms=[alg])
    except (JoseError, ValueError, TypeError):
        return None
    # A retired key stays published for the tokens it signed before; one it "signed" later was
    # made by whoever holds it now (a clock's skew aside).
    iat, retired = decoded.claims.get("iat"), ring.retired.get(kid)
    if retired is not None and (not isinstance(iat, int) or iat > retired + RETIRED_KEY_SKEW):
        return None
    return decoded


def verify(token: str, *, typ: str | None = None) -> dict | None:
    """Claims of a JWT we signed and that is still valid, or None (bad signature, alg, iss, exp)."""
    decoded = _decode(token)
    if decoded is None:
        return None
    if typ is not None and str(decoded.header.get("typ", "")).lower() != typ:
        return None
    claims = decoded.claims
    exp = claims.get("exp")
    if claims.get("iss") != _settings().issuer or not isinstance(exp, int) or exp <= timestamp():
        return None
    return claims


def verify_id_token_hint(token: str) -> dict | None:
    """Claims of an ID token we issued, expired or not (OIDC Core 3.1.2.1: an expired ID token is
    still a valid hint). Our ID tokens are typed JWT; any other type we sign (an access token,
    at+jwt, or a logout token, logout+jwt) is not an ID token and is refused."""
    decoded = _decode(token)
    if decoded is None or str(decoded.header.get("typ", "JWT")).lower() != "jwt":
        return None
    claims = decoded.claims
    if claims.get("iss") != _settings().issuer or not claims.get("sub") or "aud" not in claims:
        return None
    return claims
