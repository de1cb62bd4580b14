"""Security headers on every response, and no-store on every response but public files and metadata."""
from __future__ import annotations

from flask import Flask, request

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "object-src 'none'; base-uri 'none'; frame-ancestors 'none'")

# Endpoints that browser-based clients call across origins (DESIGN: token, userinfo, JWKS, discovery),
# and revocation, so that a browser app can revoke its tokens when the person signs out.
CORS_ENDPOINTS = {"oauth.token", "oauth.userinfo", "oauth.jwks", "oauth.openid_configuration",
                  "oauth.oauth_metadata", "oauth.revoke"}
# CORS endpoints that may answer 401/403 with a WWW-Authenticate challenge (RFC 6750 3: UserInfo's
# invalid_token / insufficient_scope; RFC 6749 5.2: invalid_client at token and revocation). Browsers
# hide that header from scripts unless it is exposed.
CHALLENGE_ENDPOINTS = {"oauth.token", "oauth.userinfo", "oauth.revoke"}
# The only answers a browser or proxy may keep: public files and metadata, the same for everyone,
# that set their own Cache-Control. Every other answer is no-store, whatever its type: tokens
# (RFC 6749 5.1, RFC 7662 4), UserInfo, the data download, recovery codes, registration responses
# with client secrets, SCIM, and the pages.
PUBLIC_ENDPOINTS = {"static", "branding_css", "branding_logo", "oauth.client_logo", "oauth.jwks",
                    "oauth.openid_configuration", "oauth.oauth_metadata"}


def init_headers(app: Flask, *, https: bool) -> None:
    @app.after_request
    def _security_headers(response):
        h = response.headers
        h.setdefault("Content-Security-Policy", CSP)
        h.setdefault("X-Content-Type-Options", "nosniff")
        h.setdefault("Referrer-Policy", "no-referrer")
        h.setdefault("X-Frame-Options", "DENY")
        h.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        if https:
            h.setdefault("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
        if request.endpoint in CORS_ENDPOINTS:
            h["Access-Control-Allow-Origin"] = "*"
            h["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
            h["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
            if request.endpoint in CHALLENGE_ENDPOINTS:
                h["Access-Control-Expose-Headers"] = "WWW-Authenticate"
        if request.endpoint not in PUBLIC_ENDPOINTS or response.mimetype == "text/html":
            h["Cache-Control"] = "no-store"
            h.setdefault("Pragma", "no-cache")
        return response
