"""prompt=create (OpenID Connect "Initiating User Registration" 1.0): the request opens the
registration page and, once the account exists, the authorization request goes on."""
from __future__ import annotations

import dataclasses
import threading

import requests
from werkzeug.serving import make_server

from idp import create_app
from tests.conftest import PASSWORD, _free_port, unique
from tests.helpers.forms import csrf_token, hidden
from tests.helpers.rp import Browser, RelyingParty, discovery, verify_id_token
from tests.oauth.flows import absolute, assert_redirect_error, raw_authorize_url, signed_in_browser, userinfo


def register_from(browser: Browser, response) -> requests.Response:
    issuer = browser.issuer
    location = absolute(issuer, response.headers["Location"])
    assert response.status_code == 302 and location.startswith(f"{issuer}/register?"), location
    page = browser.get(location)
    username = unique("created")
    posted = browser.post(f"{issuer}/register", data={
        "csrf_token": csrf_token(page.text), "username": username, "email": f"{username}@example.com",
        "password": PASSWORD, "next": hidden(page.text, "next")})
    assert posted.status_code == 303
    return posted, username


def test_prompt_create_registers_then_continues_the_authorization(live_server, app, make_client):
    client = make_client(first_party=True)
    rp = RelyingParty(live_server, client, scope="openid profile")
    browser = Browser(live_server)
    posted, username = register_from(browser, browser.get(rp.authorization_url(prompt="create")))
    response = browser.follow(posted, client["redirect_uri"])
    token = rp.fetch_token(rp.callback_params(response))
    claims = verify_id_token(live_server, token["id_token"], client["client_id"], rp.nonce)
    profile = userinfo(live_server, token["access_token"]).json()
    assert profile["sub"] == claims["sub"] and profile["preferred_username"] == username


def test_prompt_create_asks_for_a_new_account_even_when_someone_is_signed_in(live_server, make_user, make_client):
    client = make_client(first_party=True)
    browser = signed_in_browser(live_server, make_user())
    rp = RelyingParty(live_server, client)
    posted, _ = register_from(browser, browser.get(rp.authorization_url(prompt="create")))
    response = browser.follow(posted, client["redirect_uri"])
    assert rp.callback_params(response)["code"]


def test_prompt_create_with_none_is_an_error(live_server, make_client):
    client = make_client(first_party=True)
    response = Browser(live_server).get(raw_authorize_url(live_server, client, prompt="none create", state="st-c"))
    assert_redirect_error(response, client, live_server, "invalid_request", "st-c")


def test_create_is_advertised_while_registration_is_open(live_server):
    assert "create" in discovery(live_server)["prompt_values_supported"]


def test_prompt_create_is_invalid_request_when_registration_is_closed(settings, make_client):
    closed = create_app(dataclasses.replace(settings, registration_enabled=False))
    port = _free_port()
    server = make_server("127.0.0.1", port, closed, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        # The issuer stays the session's; requests carry its Host so the trusted-host check passes.
        issuer = settings.issuer
        client = make_client(first_party=True)
        url = raw_authorize_url(issuer, client, prompt="create", state="st-x").replace(issuer, f"http://127.0.0.1:{port}")
        response = requests.get(url, allow_redirects=False, timeout=10)
        assert_redirect_error(response, client, issuer, "invalid_request", "st-x")
        metadata = requests.get(f"http://127.0.0.1:{port}/.well-known/openid-configuration", timeout=10).json()
        assert "create" not in metadata["prompt_values_supported"]
    finally:
        server.shutdown()
