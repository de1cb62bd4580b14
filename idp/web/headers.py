"""Security headers on every response, and no-store on every response but public files and metadata.

The CSP's form-action (which does not fall back to default-src) is 'self' on every page but one
whose form may end at another origin, which sends no form-action at all. Chromium applies
form-action to the form's URL and to every redirect that follows it in the same navigation (POST
/authorize/consent -> 302 redirect_uri is blocked by a bare 'self'; MDN notes that Firefox checks
the form's URL only), and a client's redirect URI may itself redirect on to an origin no page of
ours can know: a broker (Keycloak, authentik, Auth0, another idp using this one as its upstream)
whose callback answers its own client, an auth proxy on another domain, an https callback that
hands over to an app. Listing the redirect URI would break those, so such a page (consent,
form_post, the logout confirmation and re-send, a sign-in step that resumes an authorization
request) drops the directive, and every other page keeps the protection.

A view marks its page with let_forms_leave_origin() when it holds a validated destination (a
registered redirect URI or post_logout_redirect_uri), or with let_forms_leave_origin_after(path)
for the local path its form continues to (a login's `next`), which the resolver create_app
registers answers from server-side state (oauth: a live pending request of this browser), never
from a request's values. An error page that replaces the form keeps 'self' (keep_forms_on_origin).
See README, "Security choices"."""
from __future__ import annotations

from collections.abc import Callable

from flask import Flask, current_app, g, request

# The policy of a page whose forms may end at another origin (see above), and of every other page.
CSP_FORMS_MAY_LEAVE = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                       "object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
CSP = f"{CSP_FORMS_MAY_LEAVE}; form-action 'self'"

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

_LEAVES = "idp_forms_may_leave_origin"
_RESOLVER = "idp_forms_leave_origin_after"


def let_forms_leave_origin() -> None:
    """This response's page has a form that may end at another origin (through the client's own
    redirects too): send it without form-action. Only on a destination from server-side state."""
    setattr(g, _LEAVES, True)


def let_forms_leave_origin_after(path: str | None) -> None:
    """Mark this page when the local `path` its forms continue to (a login's `next`, such as
    /authorize/resume/<id>) may lead to another origin, as the resolver create_app registered
    answers from server-side state."""
    resolver = current_app.extensions.get(_RESOLVER)
    if resolver is not None and path and resolver(path):
        let_forms_leave_origin()


def keep_forms_on_origin() -> None:
    """form-action 'self' for this response after all (an error page replaced the form)."""
    g.pop(_LEAVES, None)


def init_forms_leave_origin_after(app: Flask, resolver: Callable[[str], bool]) -> None:
    """Register the function that says whether a local path may lead to another origin."""
    app.extensions[_RESOLVER] = resolver


def content_security_policy() -> str:
    """The CSP of this response: without form-action on a page whose forms may leave our origin."""
    return CSP_FORMS_MAY_LEAVE if g.get(_LEAVES) else CSP


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
