"""Which claims each scope releases, the `claims` request parameter, and the claim values."""
from __future__ import annotations

import json

from authlib.oauth2.rfc6749 import InvalidRequestError, scope_to_list

SCOPE_CLAIMS = {
    "profile": ["name", "preferred_username", "updated_at"],
    "email": ["email", "email_verified"],
    "address": ["address"],
    "phone": ["phone_number", "phone_number_verified"],
}
SCOPES_SUPPORTED = ["openid", "profile", "email", "address", "phone", "offline_access"]
CLAIMS_SUPPORTED = ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "sid", "azp",
                    "at_hash", "name", "preferred_username", "updated_at", "email", "email_verified"]


def parse_claims_parameter(raw: str | None) -> dict | None:
    """OIDC Core 5.5: a JSON object with optional `userinfo` and `id_token` objects."""
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        raise InvalidRequestError("claims parameter is not valid JSON") from None
    if not isinstance(value, dict) or not all(isinstance(value.get(k, {}), dict) for k in ("userinfo", "id_token")):
        raise InvalidRequestError("claims parameter must be an object of objects")
    for member in ("userinfo", "id_token"):
        for name, spec in value.get(member, {}).items():
            if spec is not None and not isinstance(spec, dict):
                raise InvalidRequestError("each requested claim must be null or an object")
    return {k: value[k] for k in ("userinfo", "id_token") if k in value}


def _values(user) -> dict:
    return {
        "name": user.name or user.username,
        "preferred_username": user.username,
        "updated_at": int(user.created_at.timestamp()),
        "email": user.email,
        "email_verified": bool(user.email_verified),
    }


def user_claims(user, subject: str, scope: str, requested: dict | None = None) -> dict:
    """`sub` plus the claims the scope grants plus the individually requested ones we hold."""
    names = [c for s in scope_to_list(scope or "") for c in SCOPE_CLAIMS.get(s, [])]
    names += list((requested or {}).keys())
    values = _values(user)
    claims = {"sub": subject}
    for name in names:
        if name in values and values[name] is not None:
            claims[name] = values[name]
    return claims
