"""OpenID Provider metadata (Discovery 1.0 section 3) and RFC 8414 metadata: one document, built
from settings and the key ring, serialised once per key ring."""
from __future__ import annotations

import json

from flask import current_app

from idp.authn.steps import ACR_VALUES_SUPPORTED
from idp.keys import keyring
from idp.oauth.claims import CLAIMS_SUPPORTED, SCOPES_SUPPORTED
from idp.oauth.clients import SIGNING_ALGS
from idp.oauth.grants import AUTH_METHODS
from idp.oauth.introspection import INTROSPECTION_AUTH_METHODS
from idp.oauth.revocation import REVOCATION_AUTH_METHODS
from idp.oauth.subjects import SUBJECT_TYPES
from idp.web.i18n import languages

ASSERTION_ALGS = [alg for algs in SIGNING_ALGS.values() for alg in algs]  # never none (RFC 8414 2)


def metadata(issuer: str, algs: list[str], registration: bool = False) -> dict:
    """`algs`: those we sign ID tokens with now (KeyRing.algs; Discovery 3: RS256 included).
    `registration`: advertise the RFC 7591 registration_endpoint (IDP_CLIENT_REGISTRATION is
    not `disabled`)."""
    return {
        **({"registration_endpoint": f"{issuer}/oauth/register"} if registration else {}),
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/token",
        "userinfo_endpoint": f"{issuer}/userinfo",
        "jwks_uri": f"{issuer}/jwks",
        "revocation_endpoint": f"{issuer}/revoke",
        "revocation_endpoint_auth_methods_supported": REVOCATION_AUTH_METHODS,
        "introspection_endpoint": f"{issuer}/introspect",
        "introspection_endpoint_auth_methods_supported": INTROSPECTION_AUTH_METHODS,
        "scopes_supported": SCOPES_SUPPORTED,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query", "form_post"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "subject_types_supported": list(SUBJECT_TYPES),
        "id_token_signing_alg_values_supported": algs,
        "token_endpoint_auth_methods_supported": AUTH_METHODS,
        "token_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGS,
        "revocation_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGS,
        "introspection_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGS,
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": CLAIMS_SUPPORTED,
        "claims_parameter_supported": True,
        "claim_types_supported": ["normal"],
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "require_request_uri_registration": False,
        "authorization_response_iss_parameter_supported": True,
        "acr_values_supported": ACR_VALUES_SUPPORTED,
        "prompt_values_supported": ["none", "login", "consent", "select_account"]
        + (["create"] if current_app.config["IDP_SETTINGS"].registration_enabled else []),
        "ui_locales_supported": list(languages()),
        "claims_locales_supported": ["en"],
        "end_session_endpoint": f"{issuer}/end-session",
        "backchannel_logout_supported": True,
        "backchannel_logout_session_supported": True,
        "frontchannel_logout_supported": False,
    }


def metadata_json() -> bytes:
    ring = keyring()
    cached = current_app.extensions.get("idp.discovery")
    if cached is None or cached[0] is not ring:
        settings = current_app.config["IDP_SETTINGS"]
        body = json.dumps(metadata(settings.issuer, ring.algs,
                                   registration=settings.client_registration != "disabled"), indent=1).encode()
        cached = (ring, body)
        current_app.extensions["idp.discovery"] = cached
    return cached[1]
