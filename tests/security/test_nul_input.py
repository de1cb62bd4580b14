"""A NUL character is never a valid value: PostgreSQL cannot store one in text, so before this rule a
NUL that reached a query was a 500 there. Refused as a bad request on both databases, in the error
format of the endpoint; decoded from inside a value (Basic header, JWT header) it makes that value
unknown, as any other unknown value."""
from __future__ import annotations

import base64
import json

import pytest
import requests
from sqlalchemy import select

from idp.extensions import db
from idp.models import User
from idp.web.errors import NulInput

TIMEOUT = 10


def _b64(obj) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def _oauth_error(response, status: int, error: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"] == error
    assert response.headers["Cache-Control"] == "no-store"


def _page_error(response) -> None:
    assert response.status_code == 400
    assert response.headers["Content-Type"].startswith("text/html")
    assert "Traceback" not in response.text and "not allowed" in response.text


def test_a_nul_in_a_protocol_parameter_is_invalid_request(live_server, make_client):
    client = make_client()
    auth = (client["client_id"], client["client_secret"])
    _oauth_error(requests.post(f"{live_server}/token", timeout=TIMEOUT, data={
        "grant_type": "client_credentials", "client_id": "a\x00b", "client_secret": "s"}), 400, "invalid_request")
    _oauth_error(requests.post(f"{live_server}/token", auth=auth, timeout=TIMEOUT,
                               data={"grant_type": "client_credentials", "scope": "openid\x00"}), 400, "invalid_request")
    _oauth_error(requests.post(f"{live_server}/revoke", data={"token": "x", "client_id": "a\x00b"}, timeout=TIMEOUT),
                 400, "invalid_request")
    _oauth_error(requests.post(f"{live_server}/introspect", auth=auth, data={"token": "x\x00"}, timeout=TIMEOUT),
                 400, "invalid_request")
    response = requests.post(f"{live_server}/userinfo", data={"access_token": "x\x00"}, timeout=TIMEOUT)
    _oauth_error(response, 400, "invalid_request")
    assert response.headers["WWW-Authenticate"].startswith('Bearer error="invalid_request"')
    _oauth_error(requests.get(f"{live_server}/oauth/register/a%00b", timeout=TIMEOUT), 400, "invalid_request")
    _oauth_error(requests.post(f"{live_server}/oauth/register", timeout=TIMEOUT, json={
        "redirect_uris": ["https://app.example/cb"], "client_name": "a\x00b"}), 400, "invalid_client_metadata")


def test_a_nul_on_a_page_gets_the_error_page(live_server):
    _page_error(requests.get(f"{live_server}/end-session", params={"client_id": "a\x00b"}, timeout=TIMEOUT))
    _page_error(requests.get(f"{live_server}/verify-email/a%00b", timeout=TIMEOUT))
    _page_error(requests.get(f"{live_server}/login", params={"login_hint": "a\x00"}, timeout=TIMEOUT))


def test_a_nul_inside_basic_credentials_is_an_unknown_client(live_server):
    response = requests.post(f"{live_server}/token", auth=("a\x00b", "s"), timeout=TIMEOUT,
                             data={"grant_type": "client_credentials"})
    _oauth_error(response, 401, "invalid_client")
    assert response.headers["WWW-Authenticate"].startswith("Basic")


def test_a_jwt_whose_kid_holds_a_nul_is_an_invalid_token_everywhere(live_server, make_client):
    """The JWS header is unsigned: anyone can send such a kid."""
    client = make_client()
    auth = (client["client_id"], client["client_secret"])
    token = _b64({"alg": "RS256", "kid": "k\u0000"}) + "." + _b64({"sub": "x"}) + ".c2ln"
    response = requests.get(f"{live_server}/userinfo", headers={"Authorization": f"Bearer {token}"}, timeout=TIMEOUT)
    assert response.status_code == 401 and 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    response = requests.post(f"{live_server}/introspect", data={"token": token}, auth=auth, timeout=TIMEOUT)
    assert response.status_code == 200 and response.json() == {"active": False}
    assert requests.post(f"{live_server}/revoke", data={"token": token}, auth=auth, timeout=TIMEOUT).status_code == 200
    response = requests.get(f"{live_server}/end-session", params={"id_token_hint": token}, timeout=TIMEOUT,
                            allow_redirects=False)
    assert response.status_code < 500


def test_no_statement_carries_a_nul_to_the_database(app_ctx):
    with pytest.raises(NulInput):
        db.session.scalar(select(User).where(User.username == "a\x00b"))
    db.session.rollback()
    assert db.session.scalar(select(User).where(User.username == "a-b")) is None  # the session still works
