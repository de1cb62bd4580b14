"""A client's registered id_token_signed_response_alg (OIDC Dynamic Client Registration 1.0 2) is
honoured when tokens are issued, not only checked when the client registers: after the keys
rotate to another algorithm its token requests fail with unauthorized_client (the code stays
unspent) instead of carrying an ID token the relying party would reject."""
from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest
import requests

from idp.extensions import db
from idp.keys import keyring, rotate
from idp.models import AuthorizationCode
from idp.oauth.initial_tokens import issue_initial_access_token
from idp.security.tokens import digest
from tests.helpers.rp import RelyingParty, jwks, verify_id_token
from tests.oauth.flows import (TIMEOUT, assert_error_page, assert_token_error, authorize, count_rows, jwt_header,
                               redeem, signed_in_browser, tokens_for)

REDIRECT = "http://127.0.0.1:9999/callback"


def _rotate(app, alg=None) -> str:
    with app.app_context():
        row = rotate(app.config["IDP_SETTINGS"], alg, immediate=True)
        db.session.commit()
        return row.kid


def _signing_alg(app) -> str:
    with app.app_context():
        return keyring().alg


@pytest.fixture
def rotated_back(app):
    """Whatever a test rotates to, later tests sign with a fresh key of IDP_KEYS_ALG."""
    yield
    _rotate(app)


def register(app, issuer: str, metadata: dict) -> requests.Response:
    """POST /oauth/register (RFC 7591) with a fresh initial access token."""
    with app.app_context():
        _, token = issue_initial_access_token(3600, "id token alg test")
        db.session.commit()
    return requests.post(f"{issuer}/oauth/register", json=metadata, timeout=TIMEOUT,
                         headers={"Authorization": f"Bearer {token}"})


def registered(app, issuer: str, alg: str) -> dict:
    """A client registered asking for ID tokens signed with alg."""
    response = register(app, issuer, {"redirect_uris": [REDIRECT], "scope": "openid profile",
                                      "id_token_signed_response_alg": alg})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["id_token_signed_response_alg"] == alg
    return {"client_id": body["client_id"], "client_secret": body["client_secret"], "redirect_uri": REDIRECT,
            "public": False}


def code_for(issuer: str, user: dict, client: dict, scope: str = "openid") -> tuple[RelyingParty, str]:
    rp = RelyingParty(issuer, client, scope=scope)
    _, response = authorize(issuer, user, rp, browser=signed_in_browser(issuer, user))
    assert response.status_code == 302, response.status_code
    return rp, rp.callback_params(response)["code"]


def authorization_refused(issuer: str, user: dict, client: dict, shown: str, unverified: bool = False) -> None:
    """/authorize answers unauthorized_client at once (to the verified redirect_uri, with state
    and iss) instead of letting the person sign in and consent for a token that would fail; for
    an unverified (dynamically registered) client on our page (RFC 9700 4.11.2)."""
    rp = RelyingParty(issuer, client, scope="openid")
    _, response = authorize(issuer, user, rp, browser=signed_in_browser(issuer, user))
    if unverified:
        assert_error_page(response, "unauthorized_client")
        assert f"id_token_signed_response_alg {shown} is registered" in response.text
        return
    assert response.status_code == 302 and response.headers["Location"].startswith(client["redirect_uri"])
    params = dict(parse_qsl(urlsplit(response.headers["Location"]).query))
    assert params["error"] == "unauthorized_client" and "code" not in params
    assert params["state"] == rp.state and params["iss"] == issuer
    assert f"id_token_signed_response_alg {shown} is registered" in params["error_description"]


def code_used(app, code: str) -> bool:
    with app.app_context():
        return db.session.scalar(db.select(AuthorizationCode.used_at)
                                 .where(AuthorizationCode.code_digest == digest(code))) is not None


def test_after_a_rotation_to_another_alg_the_token_request_fails_and_the_code_survives(
        app, live_server, make_user, rotated_back):
    assert _signing_alg(app) == "RS256"  # IDP_KEYS_ALG's default in the test settings
    client = registered(app, live_server, "RS256")
    user = make_user()
    rp, code = code_for(live_server, user, client)

    _rotate(app, "ES256")  # as `idp keys rotate --alg ES256 --now` (or IDP_KEYS_ALG=ES256 and a rotation)
    before = count_rows(app)
    refused = redeem(live_server, client, code, rp.verifier)
    body = assert_token_error(refused, "unauthorized_client")
    assert "id_token_signed_response_alg RS256" in body["error_description"] and "ES256" in body["error_description"]
    assert count_rows(app) == before and not code_used(app, code)  # nothing issued, nothing spent

    _rotate(app, "RS256")  # the operator rotates back: the same code now redeems, signed as registered
    token = redeem(live_server, client, code, rp.verifier)
    assert token.status_code == 200, token.text
    id_token = token.json()["id_token"]
    assert jwt_header(id_token)["alg"] == "RS256"
    assert verify_id_token(live_server, id_token, client["client_id"], rp.nonce)["sub"] == user["subject"]


def test_a_client_registered_for_es256_gets_es256_id_tokens_verified_against_jwks(
        app, live_server, make_user, rotated_back):
    kid = _rotate(app, "ES256")
    client = registered(app, live_server, "ES256")
    user = make_user()
    rp, _, token = tokens_for(live_server, user, client, scope="openid",
                              browser=signed_in_browser(live_server, user))
    header = jwt_header(token["id_token"])
    assert header["alg"] == "ES256" and header["kid"] == kid
    assert {key.kid: key for key in jwks(live_server).keys}[kid].as_dict()["alg"] == "ES256"
    verify_id_token(live_server, token["id_token"], client["client_id"], rp.nonce)

    rp, code = code_for(live_server, user, client)  # a code issued while the keys were ES256 ...
    _rotate(app, "RS256")  # ... and back: the ES256 client is refused, not served RS256
    assert_token_error(redeem(live_server, client, code, rp.verifier), "unauthorized_client")
    assert not code_used(app, code)
    authorization_refused(live_server, user, client, "ES256", unverified=True)


@pytest.mark.parametrize("alg, shown", [("PS256", "PS256"), ('RS"256\u00e9', "RS256")])
def test_a_client_record_with_an_alg_no_key_can_sign_gets_no_token(app, live_server, make_user, make_client,
                                                                     alg, shown):
    """An alg the key ring cannot sign with at all (the record was edited, or an older version
    accepted it): refused the same way, never signed with the active key instead; what the
    record holds reaches the error description only in characters RFC 6749 5.2 allows."""
    client = make_client(first_party=True, id_token_signed_response_alg=alg)
    user = make_user()
    authorization_refused(live_server, user, client, shown)


def test_without_openid_no_id_token_is_issued_so_the_alg_does_not_matter(app, live_server, make_user, make_client):
    client = make_client(first_party=True, id_token_signed_response_alg="PS256")
    user = make_user()
    rp, code = code_for(live_server, user, client, scope="profile")
    token = redeem(live_server, client, code, rp.verifier)
    assert token.status_code == 200 and "id_token" not in token.json()


def test_userinfo_signing_is_not_offered_so_the_registration_answer_leaves_it_out(app, live_server):
    """UserInfo answers plain JSON; RFC 7591 3.2.1: the client learns that from the response."""
    response = register(app, live_server, {"redirect_uris": [REDIRECT], "userinfo_signed_response_alg": "RS256"})
    assert response.status_code == 201 and "userinfo_signed_response_alg" not in response.json()
