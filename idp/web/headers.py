"""Security headers on every response, and no-store on every response but public files and metadata.

The CSP's form-action (which does not fall back to default-src) is 'self', plus, on a page whose
form may legitimately end at another origin, exactly those destinations: Chromium applies
form-action to the form's URL and to every redirect that follows it in the same navigation
(POST /authorize/consent -> 302 redirect_uri is blocked by a bare 'self'; MDN notes that Firefox
checks the form's URL only). A view names a destination with allow_form_destination(url), or with
allow_form_destinations_after(path) for the local path its form continues to (a login's `next`),
which the resolver create_app registers maps to server-side state (oauth: a pending request's
registered redirect URI). Destinations come from that state, never from a request's values.

Chromium keeps checking the page's form-action on the client's own redirects in that navigation:
a redirect URI that redirects on to another origin or scheme is blocked after a form here (the
page cannot know where the client goes next). See README, "Security choices"."""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from urllib.parse import quote, urlsplit

from flask import Flask, current_app, g, has_request_context, request

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
FORM_ACTION = "form-action 'self'"

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

_SOURCES = "idp_form_action_sources"
_RESOLVER = "idp_form_destinations"
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*$")
_HOST = re.compile(r"^[a-z0-9-]+(\.[a-z0-9-]+)*$")  # CSP3 2.3.1 host-char: ALPHA / DIGIT / "-"
_NEVER_SCHEMES = {"http", "https", "javascript", "data", "vbscript", "file", "blob", "filesystem", "about"}
# Kept as they are in a path-part; anything else is percent-encoded (CSP3 2.3.1: ";" and "," must
# be; path-part matching percent-decodes both sides, so an encoded character still matches).
_PATH_SAFE = "/-._~!$&()+=:@%"


def source_expression(url: str | None) -> str | None:
    """The narrowest CSP source expression Chromium honours for a form destination, or None.

    http(s): scheme, host, port and path (no query). The path narrows a form's own action only:
    CSP3 6.7.2.8 step 3.6 ignores a source's path once the request was redirected, so for a
    redirect this matches the origin. An IPv6 literal cannot be written in a source expression
    (Chromium ignores `http://[::1]:8080` as invalid): any host on that port, `http://*:8080/cb`.
    A private-use scheme (RFC 8252 7.1, `com.example.app:/cb`) only matches as a scheme-source,
    `com.example.app:` (Chromium does not match a host-source with a non-network scheme)."""
    if not url:
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        return f"{scheme}:" if _SCHEME.match(scheme) and scheme not in _NEVER_SCHEMES else None
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal
        host, port = "*", port or (443 if scheme == "https" else 80)
    else:
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return None
        if not _HOST.match(host):
            return None
    return f"{scheme}://{host}{f':{port}' if port else ''}{quote(parts.path, safe=_PATH_SAFE)}"


def allow_form_destination(url: str | None) -> None:
    """Let this response's page post forms that end at `url` (directly or through redirects).
    Only for a URL from server-side state: a registered, validated redirect URI."""
    source = source_expression(url)
    if source is not None and has_request_context():
        sources = g.setdefault(_SOURCES, [])
        if source not in sources:
            sources.append(source)


def allow_form_destinations_after(path: str | None) -> None:
    """Let this page's forms end where the local `path` they continue to leads (a login's `next`,
    such as /authorize/resume/<id>), as the resolver create_app registered knows it."""
    resolver = current_app.extensions.get(_RESOLVER)
    if resolver is not None and path:
        for url in resolver(path):
            allow_form_destination(url)


def forget_form_destinations() -> None:
    """No extra destinations for this response after all (an error page replaced the form)."""
    g.pop(_SOURCES, None)


def init_form_destinations(app: Flask, resolver: Callable[[str], Iterable[str]]) -> None:
    """Register the function that maps a local path to the outside URLs it may redirect to."""
    app.extensions[_RESOLVER] = resolver


def content_security_policy() -> str:
    """The CSP of this response: CSP, with this page's form destinations after 'self'."""
    sources = g.get(_SOURCES)
    return CSP if not sources else CSP.replace(FORM_ACTION, " ".join([FORM_ACTION, *sources]))


def init_headers(app: Flask, *, https: bool) -> None:
    @app.after_request
    def _security_headers(response):
        h = response.headers
        h.setdefault("Content-Security-Policy", content_security_policy())
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
