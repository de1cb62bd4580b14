"""The authentication level an authorization request asks for, and the acr an ID token reports.

- `acr_values` (OIDC Core 3.1.2.1) is voluntary: the most preferred level we know is tried for
  with the factors the person has; unknown values are ignored.
- An essential `acr` claim with values (OIDC Core 5.5.1.1) must be met: the weakest listed level
  we know is required (any listed value satisfies it); if none is known, or the login made for
  the request does not reach it, the request fails with `unmet_authentication_requirements`
  (OpenID Connect Core Unmet Authentication Requirements 1.0). A voluntary acr claim counts as
  acr_values.
- A client with require_mfa, or IDP_MFA_REQUIRED, requires urn:idp:acr:mfa.
"""
from __future__ import annotations

from dataclasses import dataclass

from idp.authn.steps import ACR_MFA, ACR_VALUES_SUPPORTED, first_supported, meets, rank, stronger


@dataclass(frozen=True)
class AcrRequest:
    target: str | None          # the level to try for
    required: str | None        # the level that must be met
    essential: tuple[str, ...]  # the essential values we know (the ID token's acr must be one)
    impossible: bool            # an essential acr names only levels we do not have


def _acr_claim(claims_request: dict | None) -> dict:
    spec = ((claims_request or {}).get("id_token") or {}).get("acr")
    return spec if isinstance(spec, dict) else {}


def requested_acr(acr_values: str | None, claims_request: dict | None, *, policy_mfa: bool) -> AcrRequest:
    spec = _acr_claim(claims_request)
    values = spec.get("values") if isinstance(spec.get("values"), list) else (
        [spec["value"]] if isinstance(spec.get("value"), str) else [])
    values = [v for v in values if isinstance(v, str)]
    known = tuple(v for v in values if v in ACR_VALUES_SUPPORTED)
    essential = spec.get("essential") is True and bool(values)
    voluntary = first_supported((acr_values or "").split()) if isinstance(acr_values, str) else None
    if not essential and known:
        voluntary = stronger(voluntary, known[0])
    required = min(known, key=rank) if essential and known else None
    if policy_mfa:
        required = stronger(required, ACR_MFA)
    target = stronger(voluntary, required) if (voluntary or required) else None
    return AcrRequest(target, required, known if essential else (), essential and not known)


def reported_acr(session_acr: str, request: AcrRequest) -> str:
    """The ID token's acr: the session's level, or for an essential acr claim the strongest
    requested value the session meets (levels include the weaker ones, so that is true)."""
    met = [value for value in request.essential if meets(session_acr, value)]
    return max(met, key=rank) if met else session_acr
