"""The authorization code flow with PKCE over real HTTP, with authlib's client as the RP."""
import requests

from tests.conftest import PASSWORD
from tests.helpers.rp import Browser, RelyingParty, verify_access_token, verify_id_token


def sign_in_and_authorize(issuer, user, rp, browser=None, decision="allow", **params):
    browser = browser or Browser(issuer)
    response = browser.get(rp.authorization_url(**params))
    if response.status_code == 302 and "/login" in response.headers["Location"]:
        login_page = browser.get(issuer + response.headers["Location"] if response.headers["Location"].startswith("/") else response.headers["Location"])
        assert login_page.status_code == 200
        from tests.helpers.forms import csrf_token, hidden
        response = browser.post(f"{issuer}/login", data={"csrf_token": csrf_token(login_page.text),
                                "login": user["username"], "password": PASSWORD,
                                "next": hidden(login_page.text, "next")})
        response = browser.follow(response, rp.client["redirect_uri"])
    if response.status_code == 200 and "pending_id" in response.text:
        response = browser.consent(response, decision)
    return browser, response


def test_public_client_gets_verified_tokens_and_userinfo(live_server, make_user, make_client):
    user = make_user()
    client = make_client(public=True)
    rp = RelyingParty(live_server, client, scope="openid profile email offline_access")
    _, response = sign_in_and_authorize(live_server, user, rp)
    token = rp.fetch_token(rp.callback_params(response))
    claims = verify_id_token(live_server, token["id_token"], client["client_id"], rp.nonce,
                             access_token=token["access_token"])
    assert claims["sub"] == user["subject"] != user["username"]
    assert claims["azp"] == client["client_id"] and claims["sid"] and claims["amr"] == ["pwd"]
    access = verify_access_token(live_server, token["access_token"])
    assert access["client_id"] == client["client_id"] and "openid" in access["scope"].split()
    assert token["refresh_token"]
    info = requests.get(f"{live_server}/userinfo", headers={"Authorization": f"Bearer {token['access_token']}"}, timeout=5)
    assert info.status_code == 200 and info.json()["email"] == user["email"]


def test_second_client_gets_single_sign_on_without_password(live_server, make_user, make_client):
    user = make_user()
    first, second = make_client(first_party=True), make_client(first_party=True)
    browser, response = sign_in_and_authorize(live_server, user, RelyingParty(live_server, first))
    rp2 = RelyingParty(live_server, second)
    response = browser.get(rp2.authorization_url())
    assert response.status_code == 302
    token = rp2.fetch_token(rp2.callback_params(response))
    assert verify_id_token(live_server, token["id_token"], second["client_id"], rp2.nonce,
                           access_token=token["access_token"])["sub"] == user["subject"]


def test_replayed_code_is_rejected_and_grant_revoked(live_server, make_user, make_client):
    user = make_user()
    client = make_client()
    rp = RelyingParty(live_server, client)
    _, response = sign_in_and_authorize(live_server, user, rp)
    params = rp.callback_params(response)
    token = rp.fetch_token(params)
    again = requests.post(f"{live_server}/token", auth=(client["client_id"], client["client_secret"]), timeout=5,
                          data={"grant_type": "authorization_code", "code": params["code"],
                                "redirect_uri": client["redirect_uri"], "code_verifier": rp.verifier})
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    info = requests.get(f"{live_server}/userinfo", headers={"Authorization": f"Bearer {token['access_token']}"}, timeout=5)
    assert info.status_code == 401 and 'error="invalid_token"' in info.headers["WWW-Authenticate"]
