"""A relying party web app built the way an application builds one: authlib's Flask client,
configured only from our discovery document (server_metadata_url) and served over real HTTP.

authlib keeps state, nonce and the PKCE verifier in the app's session, reads the callback
(state, and `error` on a GET), redeems the code, and validates the ID token (signature from
jwks_uri, iss, aud, exp, nonce, and at_hash against the access token). What authlib 1.9 leaves
to the application, the application does here, as an RP must:
- RFC 9207 2.4: the `iss` of every authorization response equals the issuer (authlib's client
  never reads `iss`; it knows the parameter only as discovery metadata);
- an error delivered by response_mode=form_post (authlib reads `error` from a GET only);
- OIDC Core 3.1.2.1: with max_age, auth_time is present and auth_time + max_age >= now.

Each callback answers JSON, so a test sees what the RP concluded: 200 with the ID token's
claims and the token response, or 400 with `error` and `error_description`.
"""
from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlencode

import requests
from authlib.integrations.flask_client import OAuth, OAuthError
from flask import Flask, jsonify, redirect, request, session
from joserfc.errors import JoseError
from werkzeug.serving import make_server

from tests.conftest import _free_port
from tests.helpers.forms import auto_submit_form
from tests.helpers.rp import Browser
from tests.oauth.flows import is_consent_page, is_login_redirect, query_of, sign_in


@dataclass(frozen=True)
class RpClient:
    """One client registration as the RP app knows it."""

    name: str
    client: dict  # as make_client returns it
    auth_method: str
    base: str
    owner: RelyingPartyApp = field(repr=False, compare=False)

    @property
    def redirect_uri(self) -> str:
        return f"{self.base}/cb/{self.name}"

    def login_url(self, **params) -> str:
        """Where the app starts a sign-in; params go on to /authorize (a `state` replaces authlib's)."""
        return f"{self.base}/login/{self.name}" + (f"?{urlencode(params)}" if params else "")

    def metadata(self) -> dict:
        """The discovery document as authlib loaded it for this client (server_metadata_url)."""
        return self.owner.oauth.create_client(self.name).load_server_metadata()


class RelyingPartyApp:
    def __init__(self, issuer: str, now: Callable[[], int]):
        self.issuer = issuer
        self.now = now  # the RP's clock: the tests pin it with idp.clock, as they pin the provider's
        self.app = Flask("relying_party")
        self.app.config.update(SECRET_KEY=secrets.token_hex(32), SESSION_COOKIE_NAME="rp_session")
        self.oauth = OAuth(self.app)
        self.base = ""
        self.app.add_url_rule("/login/<name>", view_func=self._login)
        self.app.add_url_rule("/cb/<name>", view_func=self._callback, methods=["GET", "POST"])

    @staticmethod
    def new_name() -> str:
        return f"c{secrets.token_hex(6)}"

    def redirect_uri(self, name: str) -> str:
        return f"{self.base}/cb/{name}"

    def add(self, name: str, client: dict, scope: str, auth_method: str) -> RpClient:
        """Register a client (made at the provider with redirect_uri(name)) the way an app does:
        its credentials and the discovery URL, nothing else."""
        self.oauth.register(name, client_id=client["client_id"], client_secret=client.get("client_secret"),
                            server_metadata_url=f"{self.issuer}/.well-known/openid-configuration",
                            client_kwargs={"scope": scope, "code_challenge_method": "S256",
                                           "token_endpoint_auth_method": auth_method, "default_timeout": 10})
        return RpClient(name, client, auth_method, self.base, self)

    def _login(self, name: str):
        client = self.oauth.create_client(name)
        params = request.args.to_dict()
        redirect_uri = self.redirect_uri(name)
        authorization = client.create_authorization_url(redirect_uri, **params)
        client.save_authorize_data(redirect_uri=redirect_uri, **authorization)
        if "max_age" in params:
            session[f"max_age:{authorization['state']}"] = int(params["max_age"])
        return redirect(authorization["url"])

    def _callback(self, name: str):
        client = self.oauth.create_client(name)
        values = request.form if request.method == "POST" else request.args
        seen = {"method": request.method, "state": values.get("state"), "iss": values.get("iss")}
        metadata = client.load_server_metadata()
        # RFC 9207 2.4: an AS that says it sends iss must send it, equal to its issuer, on every
        # response, error or not; compare before anything else (mix-up defence).
        if metadata.get("authorization_response_iss_parameter_supported") and seen["iss"] != metadata["issuer"]:
            return _refused(seen, "iss_mismatch", "iss is not the issuer this request went to")
        if request.method == "POST" and values.get("error"):  # authlib reads errors from GET only
            return _refused(seen, values["error"], values.get("error_description"))
        max_age = session.pop(f"max_age:{seen['state']}", None)
        try:
            token = client.authorize_access_token()
        except OAuthError as error:  # an error callback, a state it never sent, a token endpoint error
            return _refused(seen, error.error, error.description)
        except JoseError as error:  # the ID token failed authlib's validation
            return _refused(seen, "invalid_id_token", f"{error.error}: {error.description}")
        claims = dict(token.pop("userinfo"))
        if max_age is not None:  # OIDC Core 3.1.2.1 and 3.1.3.7 item 13
            if not isinstance(claims.get("auth_time"), int):
                return _refused(seen, "auth_time_missing", "max_age was sent; auth_time is required")
            if claims["auth_time"] + max_age < self.now():
                return _refused(seen, "auth_time_too_old", "the login is older than max_age")
        return jsonify({**seen, "claims": claims, "token": dict(token)})

    def start(self) -> str:
        """Serve on http://localhost:<port> (not 127.0.0.1, so that its cookies stay apart from
        the provider's in a browser's jar); returns the base URL."""
        port = _free_port()
        self._server = make_server("127.0.0.1", port, self.app, threaded=True)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.base = f"http://localhost:{port}"
        return self.base

    def stop(self) -> None:
        self._server.shutdown()


def _refused(seen: dict, error: str, description: str | None):
    return jsonify({**seen, "error": error, "error_description": description}), 400


# --- a browser between the app and the provider ------------------------------------------------

def start_sign_in(browser: Browser, rp: RpClient, **params) -> tuple[dict, requests.Response]:
    """Press the app's sign-in button: the app's redirect to /authorize (its parameters are
    returned) and what /authorize answers."""
    begun = browser.get(rp.login_url(**params))
    assert begun.status_code == 302, begun.status_code
    url = begun.headers["Location"]
    assert url.startswith(f"{browser.issuer}/authorize?"), url
    return query_of(url), browser.get(url)


def deliver(browser: Browser, response: requests.Response, rp: RpClient) -> requests.Response:
    """Carry the provider's answer to the app as a browser does: follow the redirect, or let
    static/js/form-post.js submit the response_mode=form_post form. The app's answer."""
    if response.status_code in (302, 303):
        location = response.headers["Location"]
        assert location.startswith(rp.redirect_uri + "?"), location
        return browser.get(location)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/html")
    form = auto_submit_form(response.text)
    assert "/static/js/form-post.js" in form.scripts  # what submits it without inline script
    assert (form.method, form.action) == ("post", rp.redirect_uri)
    return browser.post(form.action, data=form.fields)


def sign_in_through(rp: RpClient, browser: Browser, user: dict | None, decision: str | None = "allow",
                    **params) -> tuple[dict, requests.Response]:
    """The whole front channel: start at the app, sign in if asked (user None: not expected),
    answer consent if asked, and deliver the answer to the app. Returns (what the app sent to
    /authorize, the app's answer)."""
    sent, response = start_sign_in(browser, rp, **params)
    if is_login_redirect(browser.issuer, response):
        assert user is not None, "asked to sign in"
        response = sign_in(browser, response, user, rp.redirect_uri)
    if decision and is_consent_page(response):
        response = browser.consent(response, decision)
    return sent, deliver(browser, response, rp)
