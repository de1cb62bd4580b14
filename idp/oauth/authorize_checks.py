"""The checks of an authorization request that authlib leaves to us, and what they yield for the
decision (max_age, the claims request, the subjects the request names, the acr asked for).

Every error raised here carries the verified redirect_uri (the view decides whether to follow
it), except for `check_before_authlib`, whose errors are shown on our page only."""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from authlib.oauth2.rfc6749 import InvalidRequestError, OAuth2Error, UnauthorizedClientError
from flask import current_app

from idp.keys import keyring
from idp.oauth import acr as acr_mod
from idp.oauth import claims as claims_mod
from idp.oauth.tokens import id_token_alg_refusal, verify_id_token_hint

# The widest values our columns hold (models.grant: AuthorizationCode.nonce, Grant.scope).
NONCE_MAX = 512
SCOPE_MAX = 1024


class UnmetAuthenticationRequirements(OAuth2Error):
    """OpenID Connect Core Unmet Authentication Requirements 1.0."""

    error = "unmet_authentication_requirements"


class RequestNotSupported(OAuth2Error):
    error = "request_not_supported"


class RequestUriNotSupported(OAuth2Error):
    error = "request_uri_not_supported"


@dataclass(frozen=True)
class RequestExtras:
    max_age: int | None                # the request's, else the client's default_max_age
    claims: dict | None                # the parsed `claims` parameter
    subjects: tuple[str, ...]          # the `sub` values the request names (id_token_hint, claims)
    acr: acr_mod.AcrRequest
    prompts: frozenset[str]


def check_before_authlib(params: dict) -> None:
    """OIDC Core 3.1.2.1: redirect_uri is REQUIRED in an OpenID request (authlib accepts its
    omission when one URI is registered); refused on our page, never by redirect."""
    scope = params.get("scope")
    if isinstance(scope, str) and "openid" in scope.split() and not params.get("redirect_uri"):
        raise InvalidRequestError("redirect_uri is required in an OpenID Connect request")


# What to say about parameters the request sent more than once, repeated_description()'s text (set
# by oauth.views.authorize, which removes any value a request itself sends under this name).
REPEATED = "_repeated"


def repeated_description(names) -> str:
    """What to say about repeated parameters: their names when they are plain protocol names, never
    other text a request sent (it would reach our page or the client as if it were ours)."""
    plain = [name for name in names if name.replace("_", "").isascii() and name.replace("_", "").isalnum()
             and len(name) <= 40]
    return f"{', '.join(plain)} sent more than once" if plain == list(names) else "a parameter was sent more than once"


def validate(grant, params: dict) -> RequestExtras:
    """The checks authlib leaves to us on a request whose client and redirect_uri it verified."""
    where = {"redirect_uri": grant.redirect_uri, "state": params.get("state")}
    if params.get(REPEATED):  # RFC 6749 3.1
        raise InvalidRequestError(params[REPEATED], **where)
    _check_parameters(grant, params, where)
    max_age = params.get("max_age")
    # isascii: str.isdigit() is also true for digits such as "²" that int() refuses.
    if max_age is not None and not (max_age.isascii() and max_age.isdigit() and len(max_age) <= 10):
        raise InvalidRequestError("max_age must be a non-negative integer", **where)
    try:
        claims_request = claims_mod.parse_claims_parameter(params.get("claims"))
    except InvalidRequestError as error:
        raise InvalidRequestError(error.description, **where) from None
    prompts = frozenset((params.get("prompt") or "").split())
    settings = current_app.config["IDP_SETTINGS"]
    if "create" in prompts and not settings.registration_enabled:
        # Prompt Create 1.0 4.1: a prompt value the OP does not support is invalid_request.
        raise InvalidRequestError("prompt=create is not supported: registration is closed", **where)
    acr_request = acr_mod.requested_acr(params.get("acr_values"), claims_request,
                                        policy_mfa=grant.client.require_mfa or settings.mfa_required)
    if acr_request.impossible:
        raise UnmetAuthenticationRequirements("the essential acr values are not supported", **where)
    # OIDC Registration 2: the client's default_max_age applies when the request has no max_age.
    return RequestExtras(max_age=int(max_age) if max_age is not None else grant.client.default_max_age,
                         claims=claims_request, subjects=_named_subjects(params, claims_request, where),
                         acr=acr_request, prompts=prompts)


def _check_parameters(grant, params: dict, where: dict) -> None:
    if "request" in params:
        raise RequestNotSupported("request objects are not supported", **where)
    if "request_uri" in params:
        raise RequestUriNotSupported("request_uri is not supported", **where)
    mode = params.get("response_mode", "query")
    if mode not in ("query", "form_post"):
        raise InvalidRequestError("response_mode must be query or form_post", **where)
    if mode == "form_post" and urlsplit(grant.redirect_uri).scheme not in ("http", "https"):
        raise InvalidRequestError("form_post needs an http(s) redirect_uri", **where)
    # Stored with the code and the grant: longer values would not fit their columns.
    if len(params.get("nonce") or "") > NONCE_MAX:
        raise InvalidRequestError(f"nonce must be at most {NONCE_MAX} characters", **where)
    if len(params.get("scope") or "") > SCOPE_MAX:
        raise InvalidRequestError(f"scope must be at most {SCOPE_MAX} characters", **where)
    refusal = id_token_alg_refusal(grant.client, keyring()) if "openid" in grant.request.scope.split() else None
    if refusal is not None:  # refused at /token anyway (grants.require_id_token_signer): say so before anyone signs in
        raise UnauthorizedClientError(f"{refusal}; update the client registration", **where)


def _named_subjects(params: dict, claims_request: dict | None, where: dict) -> tuple[str, ...]:
    """The `sub` values the answer must be for: the id_token_hint's, and OIDC Core 5.5.1's
    `sub` claim asked for with a specific value (the OP answers positively only for that user)."""
    named = []
    if params.get("id_token_hint"):
        hint = verify_id_token_hint(params["id_token_hint"])
        if hint is None:
            raise InvalidRequestError("id_token_hint is not an ID token we issued", **where)
        named.append(hint.get("sub"))
    spec = ((claims_request or {}).get("id_token") or {}).get("sub")
    if isinstance(spec, dict) and "value" in spec:
        if not isinstance(spec["value"], str):
            raise InvalidRequestError("the sub claim value must be a string", **where)
        named.append(spec["value"])
    return tuple(named)
