"""UserInfo (OIDC Core 5.3, RFC 6750): GET and POST, the token in the header or the form body,
claims by scope, and errors with WWW-Authenticate: Bearer."""
import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session

from idp.models import User
from tests.helpers.rp import verify_id_token
from tests.oauth.flows import TIMEOUT, query_of, signed_in_browser, tokens_for, userinfo, with_db

URL = "/userinfo"


@pytest.fixture
def access(live_server, make_user, make_client):
    user = make_user()
    client = make_client(first_party=True)
    rp, _, token = tokens_for(live_server, user, client, scope="openid profile email")
    return {"user": user, "client": client, "token": token, "rp": rp}


def _claims_for_scope(live_server, user, client, browser, scope) -> dict:
    _, _, token = tokens_for(live_server, user, client, scope=scope, browser=browser)
    response = userinfo(live_server, token["access_token"])
    assert response.status_code == 200
    return response.json()


def test_get_and_post_with_the_header_and_post_with_the_body_give_the_same_claims(live_server, access):
    token = access["token"]["access_token"]
    by_get = userinfo(live_server, token)
    by_post = userinfo(live_server, token, method="POST")
    by_body = requests.post(live_server + URL, data={"access_token": token}, timeout=TIMEOUT)
    for response in (by_get, by_post, by_body):
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("application/json")
        assert response.headers["Cache-Control"] == "no-store"
    assert by_get.json() == by_post.json() == by_body.json()
    claims = by_get.json()
    id_claims = verify_id_token(live_server, access["token"]["id_token"], access["client"]["client_id"],
                                access["rp"].nonce)
    assert claims["sub"] == id_claims["sub"] == access["user"]["subject"]


def test_userinfo_through_authlibs_client(live_server, access):
    session = OAuth2Session(access["client"]["client_id"], token=access["token"])
    response = session.get(live_server + URL)
    assert response.status_code == 200 and response.json()["email"] == access["user"]["email"]


def test_token_in_both_header_and_body_is_400_invalid_request(live_server, access):
    token = access["token"]["access_token"]
    response = requests.post(live_server + URL, data={"access_token": token},
                             headers={"Authorization": f"Bearer {token}"}, timeout=TIMEOUT)
    assert response.status_code == 400
    assert response.headers["WWW-Authenticate"].startswith('Bearer error="invalid_request"')
    assert response.json()["error"] == "invalid_request"


def test_token_in_the_query_string_is_not_accepted(live_server, access):
    response = requests.get(live_server + URL, params={"access_token": access["token"]["access_token"]},
                            timeout=TIMEOUT)
    assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_no_token_is_401_with_a_bare_bearer_challenge(live_server, method):
    response = requests.request(method, live_server + URL, timeout=TIMEOUT)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"  # RFC 6750 3.1: no error code without a token
    assert "error" not in response.json()


@pytest.mark.parametrize("header", ["Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Token abc"])
def test_malformed_or_other_authorization_scheme_is_401(live_server, header):
    response = requests.get(live_server + URL, headers={"Authorization": header}, timeout=TIMEOUT)
    assert response.status_code == 401 and response.headers["WWW-Authenticate"].startswith("Bearer")


def test_invalid_token_is_401_invalid_token(live_server):
    response = userinfo(live_server, "not-a-token")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')
    assert response.json()["error"] == "invalid_token"


def test_token_without_openid_scope_is_403_insufficient_scope(live_server, make_user, make_client):
    user = make_user()
    client = make_client(first_party=True)
    browser = signed_in_browser(live_server, user)
    session = OAuth2Session(client["client_id"], client["client_secret"], scope="profile email",
                            redirect_uri=client["redirect_uri"], code_challenge_method="S256")
    url, _ = session.create_authorization_url(f"{live_server}/authorize", code_verifier="q" * 43)
    code = query_of(browser.get(url).headers["Location"])["code"]
    token = session.fetch_token(f"{live_server}/token", code=code, code_verifier="q" * 43)
    assert "id_token" not in token
    response = userinfo(live_server, token["access_token"])
    assert response.status_code == 403
    assert response.headers["WWW-Authenticate"].startswith('Bearer error="insufficient_scope"')
    assert response.json()["error"] == "insufficient_scope"
    assert response.headers["Access-Control-Expose-Headers"] == "WWW-Authenticate"  # readable by browser apps


def test_claims_follow_the_scopes(live_server, make_user, make_client):
    user = make_user()
    client = make_client(first_party=True)
    browser = signed_in_browser(live_server, user)
    assert _claims_for_scope(live_server, user, client, browser, "openid") == {"sub": user["subject"]}
    profile = _claims_for_scope(live_server, user, client, browser, "openid profile")
    assert profile["preferred_username"] == user["username"] and profile["name"]
    assert isinstance(profile["updated_at"], int)
    assert not {"email", "email_verified"} & set(profile)
    email = _claims_for_scope(live_server, user, client, browser, "openid email")
    assert email == {"sub": user["subject"], "email": user["email"], "email_verified": False}


def test_disabled_users_token_stops_working(live_server, app, access):
    token = access["token"]["access_token"]
    assert userinfo(live_server, token).status_code == 200
    with_db(app, lambda db: setattr(db.session.get(User, access["user"]["id"]), "disabled", True))
    response = userinfo(live_server, token)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')


def test_userinfo_answers_cors_for_browser_clients(live_server, access):
    response = requests.get(live_server + URL, headers={"Authorization": f"Bearer {access['token']['access_token']}",
                                                         "Origin": "https://spa.example"}, timeout=TIMEOUT)
    assert response.status_code == 200 and response.headers["Access-Control-Allow-Origin"] == "*"
