"""Steps shared by the protocol tests: walk a browser through /authorize, sign in and consent as
a person would, read what came back to the client, and count what the database holds."""
from __future__ import annotations

import base64
import hashlib
import json
import re
from html import unescape
from urllib.parse import parse_qs, urlencode, urlsplit

import requests
from authlib.common.security import generate_token
from sqlalchemy import func, select

from tests.helpers.forms import csrf_token, hidden
from tests.helpers.rp import Browser, RelyingParty

TIMEOUT = 10


def absolute(issuer: str, location: str) -> str:
    return issuer + location if location.startswith("/") else location


def query_of(url: str) -> dict:
    """The query parameters of a URL, one value each (a repeated name is a test failure)."""
    values = parse_qs(urlsplit(url).query, keep_blank_values=True)
    assert all(len(v) == 1 for v in values.values()), url
    return {k: v[0] for k, v in values.items()}


def is_login_redirect(issuer: str, response) -> bool:
    location = response.headers.get("Location", "")
    return response.status_code in (302, 303) and absolute(issuer, location).startswith(f"{issuer}/login")


def is_consent_page(response) -> bool:
    return response.status_code == 200 and 'name="pending_id"' in response.text


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def raw_authorize_url(issuer: str, client: dict, **params) -> str:
    """An authorization request built by hand (for requests authlib's client would not send).
    A parameter given as None is left out."""
    query = {"response_type": "code", "client_id": client["client_id"], "redirect_uri": client["redirect_uri"],
             "scope": "openid", "state": generate_token(12), "nonce": generate_token(12),
             "code_challenge": s256("v" * 43), "code_challenge_method": "S256"}
    query.update(params)
    return f"{issuer}/authorize?" + urlencode({k: v for k, v in query.items() if v is not None})


def sign_in(browser: Browser, response, user: dict, stop_prefix: str):
    """From a redirect to /login: load the form, post the password, follow back into /authorize."""
    issuer = browser.issuer
    assert is_login_redirect(issuer, response), (response.status_code, response.headers.get("Location"))
    page = browser.get(absolute(issuer, response.headers["Location"]))
    assert page.status_code == 200
    posted = browser.post(f"{issuer}/login", data={"csrf_token": csrf_token(page.text), "login": user["username"],
                          "password": user["password"], "next": hidden(page.text, "next")})
    assert posted.status_code == 303, posted.status_code
    return browser.follow(posted, stop_prefix)


def authorize(issuer: str, user: dict, rp: RelyingParty, browser: Browser | None = None, decision="allow",
              url: str | None = None, **params):
    """Run the front channel to its end: sign in when asked, answer consent when asked.
    Returns (browser, the response that leaves for the client or stays on our page)."""
    browser = browser or Browser(issuer)
    response = browser.get(url or rp.authorization_url(**params))
    if is_login_redirect(issuer, response):
        response = sign_in(browser, response, user, rp.client["redirect_uri"])
    if decision and is_consent_page(response):
        response = browser.consent(response, decision)
    return browser, response


def signed_in_browser(issuer: str, user: dict) -> Browser:
    browser = Browser(issuer)
    assert browser.login(user["username"], user["password"]).status_code == 303
    return browser


def tokens_for(issuer: str, user: dict, client: dict, scope="openid profile email", browser=None, **params):
    """A complete code flow with PKCE; returns (rp, browser, token response)."""
    rp = RelyingParty(issuer, client, scope=scope)
    browser, response = authorize(issuer, user, rp, browser=browser, **params)
    assert response.status_code == 302, response.status_code
    return rp, browser, rp.fetch_token(rp.callback_params(response))


def token_request(issuer: str, data: dict, auth: tuple | None = None) -> requests.Response:
    return requests.post(f"{issuer}/token", data=data, auth=auth, timeout=TIMEOUT)


def redeem(issuer: str, client: dict, code: str, verifier: str | None, **extra) -> requests.Response:
    """The token request for a code, authenticated the way the client is registered."""
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": client["redirect_uri"]}
    if verifier is not None:
        data["code_verifier"] = verifier
    data.update(extra)
    if client["public"]:
        return token_request(issuer, {**data, "client_id": client["client_id"]})
    return token_request(issuer, data, auth=(client["client_id"], client["client_secret"]))


def refresh(issuer: str, client: dict, refresh_token: str) -> requests.Response:
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    if client["public"]:
        return token_request(issuer, {**data, "client_id": client["client_id"]})
    return token_request(issuer, data, auth=(client["client_id"], client["client_secret"]))


def userinfo(issuer: str, access_token: str, method="GET") -> requests.Response:
    return requests.request(method, f"{issuer}/userinfo", headers={"Authorization": f"Bearer {access_token}"},
                            timeout=TIMEOUT)


def assert_token_error(response, error: str, status: int = 400) -> dict:
    """RFC 6749 5.2: the status, a JSON object with `error` and at most error_description and
    error_uri, and no caching."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["error"] == error, body
    assert set(body) <= {"error", "error_description", "error_uri"}, body
    assert all(isinstance(v, str) for v in body.values())
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers.get("Pragma") == "no-cache"
    assert "access_token" not in body
    return body


def assert_error_page(response, error: str | None = None) -> None:
    """Our own error page (status 400), never a redirect to the client."""
    assert response.status_code == 400, (response.status_code, response.headers.get("Location"))
    assert "Location" not in response.headers
    assert response.headers["Content-Type"].startswith("text/html")
    if error:
        assert error in response.text


def assert_redirect_error(response, client: dict, issuer: str, error: str, state: str | None) -> dict:
    """An authorization error sent back to the client: error, the exact state, and iss (RFC 9207)."""
    assert response.status_code == 302, (response.status_code, response.text[:300])
    location = response.headers["Location"]
    assert location.startswith(client["redirect_uri"] + "?"), location
    params = query_of(location)
    assert params["error"] == error, params
    assert params["iss"] == issuer
    assert "code" not in params
    if state is None:
        assert "state" not in params
    else:
        assert params["state"] == state
    return params


def count_rows(app) -> dict:
    """Rows in every table, to prove a request wrote nothing (or exactly what it should)."""
    from idp.extensions import db

    with app.app_context():
        return {table.name: db.session.scalar(select(func.count()).select_from(table))
                for table in db.metadata.sorted_tables}


def with_db(app, fn):
    """Run fn(db) in an app context and return its result (reads and small test-side changes)."""
    from idp.extensions import db

    with app.app_context():
        result = fn(db)
        db.session.commit()
        return result


def form_fields(html: str) -> dict:
    """The hidden fields of a response_mode=form_post page."""
    pairs = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', html)
    names = [name for name, _ in pairs]
    assert len(names) == len(set(names)), names
    return {unescape(name): unescape(value) for name, value in pairs}


def _segment(token: str, index: int) -> dict:
    part = token.split(".")[index]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def jwt_header(token: str) -> dict:
    """The unverified JOSE header of a JWT (to look at kid, alg, typ)."""
    return _segment(token, 0)


def jwt_payload(token: str) -> dict:
    """The unverified claims of a JWT (to forge variants of it)."""
    return _segment(token, 1)


def client_session(client: dict, **kwargs):
    """authlib's OAuth2Session for a test client, authenticating as the client is registered."""
    from authlib.integrations.requests_client import OAuth2Session

    method = "none" if client["public"] else "client_secret_basic"
    return OAuth2Session(client["client_id"], client.get("client_secret"), token_endpoint_auth_method=method,
                         revocation_endpoint_auth_method=method, **kwargs)


def revoke(issuer: str, client: dict, token: str, hint: str | None = None) -> requests.Response:
    """RFC 7009 revocation through authlib's client."""
    return client_session(client).revoke_token(f"{issuer}/revoke", token=token, token_type_hint=hint)


def introspect(issuer: str, client: dict, token: str, hint: str | None = None) -> requests.Response:
    """RFC 7662 introspection through authlib's client."""
    return client_session(client).introspect_token(f"{issuer}/introspect", token=token, token_type_hint=hint)


def is_active(issuer: str, client: dict, token: str) -> bool:
    response = introspect(issuer, client, token)
    assert response.status_code == 200, response.text
    return response.json()["active"]
