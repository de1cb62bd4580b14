"""Which claims each scope releases, the `claims` request parameter, and the claim values."""
from __future__ import annotations

import json

from authlib.oauth2.rfc6749 import InvalidRequestError, scope_to_list

SCOPE_CLAIMS = {
    "profile": ["name", "family_name", "given_name", "middle_name", "nickname", "preferred_username", "picture",
                "website", "gender", "birthdate", "zoneinfo", "locale", "updated_at"],
    "email": ["email", "email_verified"],
    "address": ["address"],
    "phone": ["phone_number", "phone_number_verified"],
}
SCOPES_SUPPORTED = ["openid", "profile", "email", "address", "phone", "offline_access"]
CLAIMS_SUPPORTED = ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "sid", "azp",
                    "at_hash", *SCOPE_CLAIMS["profile"], "email", "email_verified", "address", "phone_number",
                    "phone_number_verified"]


CLAIMS_MAX = 4096  # characters: every claim we know, each with values, fits several times over


def parse_claims_parameter(raw: str | None) -> dict | None:
    """OIDC Core 5.5: a JSON object with optional `userinfo` and `id_token` objects."""
    if not raw:
        return None
    if len(raw) > CLAIMS_MAX:
        raise InvalidRequestError("claims parameter is too long")
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nested a thousand levels deep
        raise InvalidRequestError("claims parameter is not valid JSON") from None
    if not isinstance(value, dict) or not all(isinstance(value.get(k, {}), dict) for k in ("userinfo", "id_token")):
        raise InvalidRequestError("claims parameter must be an object of objects")
    for member in ("userinfo", "id_token"):
        for name, spec in value.get(member, {}).items():
            if spec is not None and not isinstance(spec, dict):
                raise InvalidRequestError("each requested claim must be null or an object")
    return {k: value[k] for k in ("userinfo", "id_token") if k in value}


def _address(user) -> dict | None:
    """OIDC Core 5.1.1: the parts we keep plus `formatted`, lines joined by newlines."""
    if not user.address:
        return None
    parts = dict(user.address)
    city = " ".join(p for p in (parts.get("postal_code"), parts.get("locality")) if p)
    lines = [parts.get("street_address"), city, parts.get("region"), parts.get("country")]
    parts["formatted"] = "\n".join(line for line in lines if line)
    return parts


def _values(user) -> dict:
    values = {name: getattr(user, name) for name in ("family_name", "given_name", "middle_name", "nickname",
                                                     "picture", "website", "gender", "birthdate", "zoneinfo",
                                                     "locale", "phone_number")}
    values.update({
        "name": user.name or user.username,
        "preferred_username": user.username,
        "updated_at": int((user.updated_at or user.created_at).timestamp()),
        "email": user.email,
        "email_verified": bool(user.email_verified),
        "address": _address(user),
        "phone_number_verified": bool(user.phone_number_verified) if user.phone_number else None,
    })
    return values


def scope_claims(scope: str) -> set[str]:
    """The claims the person consented to by granting these scopes (OIDC Core 5.4)."""
    return {c for s in scope_to_list(scope or "") for c in SCOPE_CLAIMS.get(s, [])}


def user_claims(user, subject: str, scope: str) -> dict:
    """UserInfo: `sub` plus every claim of the granted scope that we hold a value for."""
    return _release(user, subject, scope_claims(scope))


def id_token_claims(user, subject: str, scope: str, requested: dict | None) -> dict:
    """The ID token: `sub` plus the claims the `claims` parameter asked for in `id_token`, but
    only those the granted scope covers (OIDC Core 5.5 lets it select claims; consent, shown and
    stored per scope, decides what may be released; essential or not, no other claim goes out)."""
    return _release(user, subject, scope_claims(scope) & set(requested or {}))


def _release(user, subject: str, names: set[str]) -> dict:
    values = _values(user)
    claims = {"sub": subject}
    for name in sorted(names):
        if values.get(name) is not None:
            claims[name] = values[name]
    return claims
