"""UserInfo (OIDC Core 5.3): a bearer JWT access token with the openid scope, whose grant is live."""
from __future__ import annotations

import json

from flask import Response, request

from idp.oauth import claims as claims_mod
from idp.oauth.subjects import subject_for
from idp.oauth.token_state import active_access_token


def _bearer_error(status: int, error: str | None = None, description: str | None = None) -> Response:
    challenge = "Bearer"
    if error:
        challenge += f' error="{error}"'
        if description:
            challenge += f', error_description="{description}"'
    body = json.dumps({"error": error, "error_description": description} if error else {})
    return Response(body, status=status, headers={"WWW-Authenticate": challenge}, mimetype="application/json")


def _presented_token() -> tuple[str | None, str | None]:
    """RFC 6750 2.1 and 2.2; more than one method is invalid_request."""
    header = request.headers.get("Authorization", "")
    in_header = header[7:].strip() if header[:7].lower() == "bearer " else None
    in_body = request.form.get("access_token") if request.method == "POST" and request.mimetype == \
        "application/x-www-form-urlencoded" else None
    if in_header and in_body:
        return None, "invalid_request"
    return in_header or in_body, None


def userinfo() -> Response:
    token, problem = _presented_token()
    if problem:
        return _bearer_error(400, problem, "use one way to send the access token")
    if not token:
        return _bearer_error(401)
    found = active_access_token(token)  # the same decision as introspection
    if found is None or found.grant is None:  # no grant: a client_credentials token has no user
        return _bearer_error(401, "invalid_token", "the access token is invalid, expired or revoked")
    claims, grant = found.claims, found.grant
    if "openid" not in claims.get("scope", "").split():
        return _bearer_error(403, "insufficient_scope", "the openid scope is required")
    # The claims parameter's `userinfo` member adds nothing: it may not reach beyond the token's
    # scope (the consent), and every claim of that scope is released here anyway (OIDC Core 5.4).
    body = claims_mod.user_claims(grant.user, subject_for(grant.user, grant.client), claims["scope"])
    return Response(json.dumps(body), mimetype="application/json")
