"""The token endpoint (RFC 6749 3.2, 4.1.3, 5, 6; RFC 7636; RFC 9700 4.14) over real HTTP:
client authentication, code binding and single use, refresh rotation with reuse detection,
client_credentials without a database write, and errors exactly per RFC 6749 5.2."""
import base64
import uuid
from datetime import datetime, timedelta, timezone
from urllib.parse import quote_plus

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session

from idp import clock
from idp.models import AuthorizationCode, Grant, User
from idp.security.tokens import digest
from tests.helpers.rp import RelyingParty, verify_access_token, verify_id_token
from tests.oauth.flows import (TIMEOUT, assert_token_error, authorize, count_rows, query_of, raw_authorize_url,
                               redeem, refresh, signed_in_browser, token_request, tokens_for, userinfo, with_db)


def _code(live_server, user, client, scope="openid profile email", browser=None, **params):
    """A fresh code and the RP that asked for it (its verifier and redirect_uri)."""
    rp = RelyingParty(live_server, client, scope=scope)
    _, response = authorize(live_server, user, rp, browser=browser, **params)
    return rp, rp.callback_params(response)["code"]


def _code_used_at(app, code):
    return with_db(app, lambda db: db.session.scalar(
        db.select(AuthorizationCode.used_at).where(AuthorizationCode.code_digest == digest(code))))


def _assert_success(response) -> dict:
    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers.get("Pragma") == "no-cache"
    body = response.json()
    assert body["token_type"].lower() == "bearer" and body["access_token"] and body["expires_in"] > 0
    return body


# --- client authentication -----------------------------------------------------------------------

def test_client_secret_basic_authenticates_a_confidential_client(live_server, make_user, make_client):
    user = make_user()
    client = make_client(first_party=True)
    rp, code = _code(live_server, user, client)
    body = _assert_success(redeem(live_server, client, code, rp.verifier))
    claims = verify_id_token(live_server, body["id_token"], client["client_id"], rp.nonce)
    assert claims["sub"] == user["subject"]


def test_client_secret_post_authenticates_a_client_registered_for_it(live_server, make_user, make_client):
    user = make_user()
    client = make_client(first_party=True, token_endpoint_auth_method="client_secret_post")
    rp = RelyingParty(live_server, client)
    rp.session = OAuth2Session(client["client_id"], client["client_secret"], scope="openid profile email",
                               redirect_uri=client["redirect_uri"], code_challenge_method="S256",
                               token_endpoint_auth_method="client_secret_post")
    _, response = authorize(live_server, user, rp)
    token = rp.fetch_token(rp.callback_params(response))
    assert verify_id_token(live_server, token["id_token"], client["client_id"], rp.nonce)["sub"] == user["subject"]


def test_public_client_authenticates_with_none_and_pkce(live_server, make_user, make_client):
    user = make_user()
    client = make_client(public=True, first_party=True)
    rp, code = _code(live_server, user, client)
    _assert_success(redeem(live_server, client, code, rp.verifier))


def test_wrong_secret_with_basic_is_401_invalid_client_and_leaves_the_code_unused(
        live_server, app, make_user, make_client):
    client = make_client(first_party=True)
    rp, code = _code(live_server, make_user(), client)
    response = redeem(live_server, {**client, "client_secret": "wrong-secret"}, code, rp.verifier)
    assert_token_error(response, "invalid_client", 401)
    assert response.headers["WWW-Authenticate"].startswith("Basic")
    assert _code_used_at(app, code) is None
    _assert_success(redeem(live_server, client, code, rp.verifier))


def test_wrong_secret_with_post_is_invalid_client(live_server, make_user, make_client):
    client = make_client(first_party=True, token_endpoint_auth_method="client_secret_post")
    rp, code = _code(live_server, make_user(), client)
    response = token_request(live_server, {"grant_type": "authorization_code", "code": code,
                                           "redirect_uri": client["redirect_uri"], "code_verifier": rp.verifier,
                                           "client_id": client["client_id"], "client_secret": "wrong-secret"})
    assert_token_error(response, "invalid_client", 401)


def test_unknown_client_is_401_invalid_client(live_server):
    response = token_request(live_server, {"grant_type": "client_credentials"}, auth=("no-such-client", "secret"))
    assert_token_error(response, "invalid_client", 401)
    assert response.headers["WWW-Authenticate"].startswith("Basic")


def _basic(raw: bytes) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(raw).decode("ascii")}


CLIENT_AUTH_BODIES = {"/token": {"grant_type": "client_credentials"}, "/revoke": {"token": "t"},
                      "/introspect": {"token": "t"}}


@pytest.mark.parametrize("endpoint", list(CLIENT_AUTH_BODIES))
def test_every_failed_client_authentication_is_one_401_with_a_basic_challenge(live_server, make_client, endpoint):
    """RFC 6749 5.2 and 2.3.1: an unknown client, a wrong secret and a Basic header we cannot read
    (not base64, not UTF-8, no colon) all get invalid_client, 401, `WWW-Authenticate: Basic` and
    the same description, so the answer tells nobody which client_ids exist; never a 500."""
    basic = make_client(name="Basic app")
    post = make_client(name="Post app", token_endpoint_auth_method="client_secret_post")
    attempts = {
        "unknown client": (_basic(f"no-such-client:{basic['client_secret']}".encode()), {}),
        "wrong secret": (_basic(f"{basic['client_id']}:{basic['client_secret']}x".encode()), {}),
        "right secret, other method": (_basic(f"{post['client_id']}:{post['client_secret']}".encode()), {}),
        "not UTF-8": (_basic(b"\xff\xfe:" + basic["client_secret"].encode()), {}),
        "not UTF-8 once form-decoded": (_basic(f"{basic['client_id']}:%FF%FE".encode()), {}),
        "no colon": (_basic(basic["client_id"].encode()), {}),
        "not base64": ({"Authorization": "Basic ***"}, {}),
        "not ASCII": ({"Authorization": "Basic \xe9t\xe9"}, {}),
        "nothing": ({}, {}),
        "unknown client in the body": ({}, {"client_id": "no-such-client", "client_secret": "secret"}),
        "wrong secret in the body": ({}, {"client_id": post["client_id"], "client_secret": "wrong"}),
        "unknown client_id alone": ({}, {"client_id": "no-such-client"}),
    }
    descriptions = set()
    for how, (headers, credentials) in attempts.items():
        response = requests.post(f"{live_server}{endpoint}", data={**CLIENT_AUTH_BODIES[endpoint], **credentials},
                                 headers=headers, timeout=TIMEOUT)
        body = assert_token_error(response, "invalid_client", 401)
        assert response.headers["WWW-Authenticate"].startswith("Basic "), how
        descriptions.add(body["error_description"])
    assert len(descriptions) == 1, descriptions


def test_basic_credentials_are_form_decoded(live_server, make_client):
    """RFC 6749 2.3.1: client_id and secret are form-urlencoded before base64, so `+` is a space
    and `%2B` a plus."""
    client = make_client(client_id="svc account+" + uuid.uuid4().hex[:8])
    raw = f"{quote_plus(client['client_id'])}:{quote_plus(client['client_secret'])}"
    assert "+" in raw and "%2B" in raw
    response = requests.post(f"{live_server}/token", data={"grant_type": "client_credentials"},
                             headers=_basic(raw.encode()), timeout=TIMEOUT)
    assert verify_access_token(live_server, _assert_success(response)["access_token"])["sub"] == client["client_id"]


def test_confidential_client_without_its_secret_is_invalid_client(live_server, make_user, make_client):
    client = make_client(first_party=True)
    rp, code = _code(live_server, make_user(), client)
    response = redeem(live_server, {**client, "public": True}, code, rp.verifier)  # client_id only, no secret
    assert_token_error(response, "invalid_client", 401)


def test_public_client_cannot_use_client_credentials(live_server, app, make_client):
    client = make_client(public=True)
    before = count_rows(app)
    response = token_request(live_server, {"grant_type": "client_credentials", "client_id": client["client_id"]})
    assert_token_error(response, "invalid_client", 401)
    assert count_rows(app) == before


def test_client_without_the_grant_type_is_unauthorized_client(live_server, make_client):
    client = make_client(grant_types=["authorization_code"])
    response = token_request(live_server, {"grant_type": "client_credentials"},
                             auth=(client["client_id"], client["client_secret"]))
    assert_token_error(response, "unauthorized_client")


# --- PKCE and code binding ------------------------------------------------------------------------

@pytest.mark.parametrize("public", [True, False], ids=["public", "confidential"])
def test_missing_code_verifier_is_invalid_request(live_server, make_user, make_client, public):
    client = make_client(public=public, first_party=True)
    _, code = _code(live_server, make_user(), client)
    assert_token_error(redeem(live_server, client, code, None), "invalid_request")


@pytest.mark.parametrize("public", [True, False], ids=["public", "confidential"])
def test_wrong_code_verifier_is_invalid_grant(live_server, make_user, make_client, public):
    client = make_client(public=public, first_party=True)
    _, code = _code(live_server, make_user(), client)
    assert_token_error(redeem(live_server, client, code, "x" * 43), "invalid_grant")


def test_malformed_code_verifier_is_invalid_request(live_server, make_user, make_client):
    client = make_client(public=True, first_party=True)
    _, code = _code(live_server, make_user(), client)
    assert_token_error(redeem(live_server, client, code, "short"), "invalid_request")


def test_code_of_another_client_is_invalid_grant(live_server, app, make_user, make_client):
    owner, thief = make_client(first_party=True), make_client(first_party=True)
    rp, code = _code(live_server, make_user(), owner)
    before = count_rows(app)
    response = redeem(live_server, {**thief, "redirect_uri": owner["redirect_uri"]}, code, rp.verifier)
    assert_token_error(response, "invalid_grant")
    assert count_rows(app)["refresh_tokens"] == before["refresh_tokens"]


def test_code_is_bound_to_its_redirect_uri(live_server, make_user, make_client):
    first, second = "http://127.0.0.1:9999/callback", "http://127.0.0.1:9999/other"
    client = make_client(first_party=True, redirect_uris=[first, second])
    rp, code = _code(live_server, make_user(), client)
    assert_token_error(redeem(live_server, client, code, rp.verifier, redirect_uri=second), "invalid_grant")
    rp, code = _code(live_server, make_user(), client)
    data = {"grant_type": "authorization_code", "code": code, "code_verifier": rp.verifier}
    assert_token_error(token_request(live_server, data, auth=(client["client_id"], client["client_secret"])),
                       "invalid_grant")


def test_unknown_code_is_invalid_grant(live_server, make_client):
    client = make_client()
    assert_token_error(redeem(live_server, client, "not-a-code", "v" * 43), "invalid_grant")


def test_missing_code_is_invalid_request(live_server, make_client):
    client = make_client()
    response = token_request(live_server, {"grant_type": "authorization_code", "redirect_uri": client["redirect_uri"]},
                             auth=(client["client_id"], client["client_secret"]))
    assert_token_error(response, "invalid_request")


def test_expired_code_is_invalid_grant(live_server, app, make_user, make_client):
    client = make_client(first_party=True)
    ttl = app.config["IDP_SETTINGS"].token_code_ttl
    assert ttl <= 60
    clock.set_now(datetime.now(timezone.utc) - timedelta(seconds=300))
    rp, code = _code(live_server, make_user(), client)
    clock.advance(ttl + 1)
    assert_token_error(redeem(live_server, client, code, rp.verifier), "invalid_grant")


def test_code_just_inside_its_lifetime_is_redeemed(live_server, app, make_user, make_client):
    client = make_client(first_party=True)
    clock.set_now(datetime.now(timezone.utc) - timedelta(seconds=300))
    rp, code = _code(live_server, make_user(), client)
    clock.advance(app.config["IDP_SETTINGS"].token_code_ttl - 1)
    _assert_success(redeem(live_server, client, code, rp.verifier))


def test_replayed_code_revokes_every_token_of_the_first_redemption(live_server, app, make_user, make_client):
    client = make_client(first_party=True)
    rp, code = _code(live_server, make_user(), client, scope="openid offline_access")
    first = _assert_success(redeem(live_server, client, code, rp.verifier))
    assert userinfo(live_server, first["access_token"]).status_code == 200
    assert_token_error(redeem(live_server, client, code, rp.verifier), "invalid_grant")
    denied = userinfo(live_server, first["access_token"])
    assert denied.status_code == 401 and 'error="invalid_token"' in denied.headers["WWW-Authenticate"]
    assert_token_error(refresh(live_server, client, first["refresh_token"]), "invalid_grant")
    gid = verify_access_token(live_server, first["access_token"])["gid"]
    assert with_db(app, lambda db: db.session.scalar(db.select(Grant.revoked_at).where(Grant.id == gid)))


def _grant_revoked(app, access_token: str, live_server) -> bool:
    gid = verify_access_token(live_server, access_token)["gid"]
    return with_db(app, lambda db: db.session.scalar(db.select(Grant.revoked_at).where(Grant.id == gid))) is not None


@pytest.mark.parametrize("public", [True, False], ids=["public", "confidential"])
def test_wrong_code_verifier_leaves_the_code_to_its_rightful_redemption(
        live_server, app, make_user, make_client, public):
    client = make_client(public=public, first_party=True)
    rp, code = _code(live_server, make_user(), client, scope="openid offline_access")
    assert_token_error(redeem(live_server, client, code, "x" * 43), "invalid_grant")  # someone holding a leaked code
    assert _code_used_at(app, code) is None
    body = _assert_success(redeem(live_server, client, code, rp.verifier))
    assert not _grant_revoked(app, body["access_token"], live_server)
    assert userinfo(live_server, body["access_token"]).status_code == 200


@pytest.mark.parametrize("verifier", [None, "short", "x" * 43], ids=["missing", "malformed", "wrong"])
def test_refused_code_verifier_does_not_spend_the_code(live_server, app, make_user, make_client, verifier):
    client = make_client(public=True, first_party=True)
    rp, code = _code(live_server, make_user(), client)
    assert redeem(live_server, client, code, verifier).status_code == 400
    assert _code_used_at(app, code) is None
    _assert_success(redeem(live_server, client, code, rp.verifier))


def test_wrong_redirect_uri_does_not_spend_the_code(live_server, app, make_user, make_client):
    first, second = "http://127.0.0.1:9999/callback", "http://127.0.0.1:9999/other"
    client = make_client(first_party=True, redirect_uris=[first, second])
    rp, code = _code(live_server, make_user(), client)
    assert_token_error(redeem(live_server, client, code, rp.verifier, redirect_uri=second), "invalid_grant")
    assert _code_used_at(app, code) is None
    _assert_success(redeem(live_server, client, code, rp.verifier))


def test_code_asked_for_without_redirect_uri_is_redeemed_without_one(live_server, app, make_user, make_client):
    user = make_user()
    client = make_client(first_party=True)  # one registered redirect URI: the request may leave it out
    browser = signed_in_browser(live_server, user)
    verifier = "v" * 43  # raw_authorize_url's code_challenge
    # Plain OAuth (RFC 6749 4.1.1): an OpenID request must send redirect_uri (OIDC Core 3.1.2.1).
    response = browser.get(raw_authorize_url(live_server, client, redirect_uri=None, scope="profile", nonce=None))
    assert response.status_code == 302 and response.headers["Location"].startswith(client["redirect_uri"])
    code = query_of(response.headers["Location"])["code"]
    auth = (client["client_id"], client["client_secret"])
    data = {"grant_type": "authorization_code", "code": code, "code_verifier": verifier}
    assert_token_error(token_request(live_server, {**data, "redirect_uri": "http://127.0.0.1:9999/elsewhere"},
                                     auth=auth), "invalid_grant")
    assert_token_error(token_request(live_server, {**data, "redirect_uri": client["redirect_uri"]}, auth=auth),
                       "invalid_grant")  # RFC 6749 4.1.3: repeat it only if the request had it
    assert _code_used_at(app, code) is None
    _assert_success(token_request(live_server, data, auth=auth))


def test_code_verifier_for_a_code_without_challenge_is_refused_and_the_code_kept(
        live_server, app, make_user, make_client):
    client = make_client(first_party=True, require_pkce=False)
    browser = signed_in_browser(live_server, make_user())
    response = browser.get(raw_authorize_url(live_server, client, code_challenge=None, code_challenge_method=None))
    code = query_of(response.headers["Location"])["code"]
    assert_token_error(redeem(live_server, client, code, "v" * 43), "invalid_request")  # RFC 9700 4.8
    assert _code_used_at(app, code) is None
    _assert_success(redeem(live_server, client, code, None))


def test_replay_revokes_only_when_the_replay_could_redeem_the_code(live_server, app, make_user, make_client):
    client = make_client(public=True, first_party=True)
    rp, code = _code(live_server, make_user(), client, scope="openid offline_access")
    body = _assert_success(redeem(live_server, client, code, rp.verifier))
    assert_token_error(redeem(live_server, client, code, "x" * 43), "invalid_grant")  # no verifier: no revocation
    assert not _grant_revoked(app, body["access_token"], live_server)
    assert_token_error(redeem(live_server, client, code, rp.verifier), "invalid_grant")  # a real replay
    assert _grant_revoked(app, body["access_token"], live_server)
    assert_token_error(refresh(live_server, client, body["refresh_token"]), "invalid_grant")


# --- refresh tokens -------------------------------------------------------------------------------

def test_refresh_token_only_with_offline_access(live_server, make_user, make_client):
    user = make_user()
    client = make_client(first_party=True)
    browser = signed_in_browser(live_server, user)
    _, _, without = tokens_for(live_server, user, client, scope="openid profile", browser=browser)
    assert "refresh_token" not in without
    _, _, with_offline = tokens_for(live_server, user, client, scope="openid offline_access", browser=browser)
    assert with_offline["refresh_token"]


def test_refresh_token_without_offline_access_when_the_client_is_configured_for_it(
        live_server, make_user, make_client):
    client = make_client(first_party=True, refresh_without_offline=True)
    _, _, token = tokens_for(live_server, make_user(), client, scope="openid")
    assert token["refresh_token"]


def test_no_refresh_token_for_a_client_without_the_refresh_grant(live_server, make_user, make_client):
    client = make_client(first_party=True, grant_types=["authorization_code"])
    _, _, token = tokens_for(live_server, make_user(), client, scope="openid offline_access")
    assert "refresh_token" not in token


@pytest.mark.parametrize("public", [True, False], ids=["public", "confidential"])
def test_refresh_token_rotates_on_every_use(live_server, make_user, make_client, public):
    user = make_user()
    client = make_client(public=public, first_party=True)
    _, _, token = tokens_for(live_server, user, client, scope="openid profile offline_access")
    seen = {token["refresh_token"]}
    current = token["refresh_token"]
    for _ in range(3):
        body = _assert_success(refresh(live_server, client, current))
        assert body["refresh_token"] not in seen
        seen.add(body["refresh_token"])
        current = body["refresh_token"]
        claims = verify_access_token(live_server, body["access_token"])
        assert claims["sub"] == user["subject"] and set(claims["scope"].split()) == {"openid", "profile",
                                                                                     "offline_access"}
        assert userinfo(live_server, body["access_token"]).json()["preferred_username"] == user["username"]


def test_reused_refresh_token_revokes_the_whole_grant(live_server, make_user, make_client):
    client = make_client(first_party=True)
    _, _, token = tokens_for(live_server, make_user(), client, scope="openid offline_access")
    rotated = _assert_success(refresh(live_server, client, token["refresh_token"]))
    assert_token_error(refresh(live_server, client, token["refresh_token"]), "invalid_grant")
    assert_token_error(refresh(live_server, client, rotated["refresh_token"]), "invalid_grant")
    for access in (token["access_token"], rotated["access_token"]):
        response = userinfo(live_server, access)
        assert response.status_code == 401 and 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_refresh_token_of_another_client_is_invalid_grant_and_stays_usable(live_server, make_user, make_client):
    owner, thief = make_client(first_party=True), make_client(first_party=True)
    _, _, token = tokens_for(live_server, make_user(), owner, scope="openid offline_access")
    assert_token_error(refresh(live_server, thief, token["refresh_token"]), "invalid_grant")
    _assert_success(refresh(live_server, owner, token["refresh_token"]))


def test_refresh_cannot_widen_the_scope(live_server, make_user, make_client):
    client = make_client(first_party=True)
    _, _, token = tokens_for(live_server, make_user(), client, scope="openid offline_access")
    response = token_request(live_server, {"grant_type": "refresh_token", "refresh_token": token["refresh_token"],
                                           "scope": "openid offline_access email"},
                             auth=(client["client_id"], client["client_secret"]))
    assert_token_error(response, "invalid_scope")


def test_refused_wider_scope_leaves_the_refresh_token_usable_once(live_server, app, make_user, make_client):
    client = make_client(first_party=True)
    _, _, token = tokens_for(live_server, make_user(), client, scope="openid profile offline_access")
    wider = {"grant_type": "refresh_token", "refresh_token": token["refresh_token"], "scope": "openid email"}
    auth = (client["client_id"], client["client_secret"])
    assert_token_error(token_request(live_server, wider, auth=auth), "invalid_scope")
    assert not _grant_revoked(app, token["access_token"], live_server)
    rotated = _assert_success(refresh(live_server, client, token["refresh_token"]))  # the retry is no reuse
    assert userinfo(live_server, rotated["access_token"]).status_code == 200
    assert_token_error(refresh(live_server, client, token["refresh_token"]), "invalid_grant")  # now it is
    assert _grant_revoked(app, rotated["access_token"], live_server)
    assert_token_error(refresh(live_server, client, rotated["refresh_token"]), "invalid_grant")


def test_refresh_may_narrow_the_scope(live_server, make_user, make_client):
    client = make_client(first_party=True)
    _, _, token = tokens_for(live_server, make_user(), client, scope="openid profile offline_access")
    narrow = {"grant_type": "refresh_token", "refresh_token": token["refresh_token"], "scope": "openid"}
    body = _assert_success(token_request(live_server, narrow, auth=(client["client_id"], client["client_secret"])))
    assert verify_access_token(live_server, body["access_token"])["scope"] == "openid"


def test_refresh_token_of_a_disabled_user_is_invalid_grant(live_server, app, make_user, make_client):
    user = make_user()
    client = make_client(first_party=True)
    _, _, token = tokens_for(live_server, user, client, scope="openid offline_access")
    with_db(app, lambda db: setattr(db.session.get(User, user["id"]), "disabled", True))
    response = refresh(live_server, client, token["refresh_token"])
    assert_token_error(response, "invalid_grant")


def test_unknown_refresh_token_is_invalid_grant(live_server, make_client):
    assert_token_error(refresh(live_server, make_client(), "not-a-refresh-token"), "invalid_grant")


# --- client_credentials ----------------------------------------------------------------------------

def test_client_credentials_gives_an_rfc9068_jwt_and_writes_nothing(live_server, app, make_client):
    client = make_client(scope="openid profile")
    settings = app.config["IDP_SETTINGS"]
    requests_auth = (client["client_id"], client["client_secret"])
    token_request(live_server, {"grant_type": "client_credentials"}, auth=requests_auth)  # warm caches
    before = count_rows(app)
    first = _assert_success(token_request(live_server, {"grant_type": "client_credentials", "scope": "profile"},
                                          auth=requests_auth))
    second = _assert_success(token_request(live_server, {"grant_type": "client_credentials"}, auth=requests_auth))
    assert count_rows(app) == before
    assert "refresh_token" not in first and "id_token" not in first
    claims = verify_access_token(live_server, first["access_token"])
    assert claims["sub"] == claims["client_id"] == client["client_id"] and claims["aud"] == settings.issuer
    assert claims["iss"] == settings.issuer and claims["scope"] == "profile"
    assert claims["exp"] - claims["iat"] == settings.token_access_ttl == first["expires_in"]
    assert claims["jti"] and claims["jti"] != verify_access_token(live_server, second["access_token"])["jti"]
    assert "gid" not in claims


def test_client_credentials_token_is_not_accepted_at_userinfo(live_server, make_client):
    client = make_client()
    body = _assert_success(token_request(live_server, {"grant_type": "client_credentials", "scope": "openid"},
                                         auth=(client["client_id"], client["client_secret"])))
    response = userinfo(live_server, body["access_token"])
    assert response.status_code == 401 and 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_client_credentials_with_an_unknown_scope_is_invalid_scope(live_server, make_client):
    client = make_client()
    response = token_request(live_server, {"grant_type": "client_credentials", "scope": "admin:all"},
                             auth=(client["client_id"], client["client_secret"]))
    assert_token_error(response, "invalid_scope")


def test_client_credentials_through_authlibs_client(live_server, make_client):
    client = make_client()
    session = OAuth2Session(client["client_id"], client["client_secret"], token_endpoint_auth_method="client_secret_basic")
    token = session.fetch_token(f"{live_server}/token", grant_type="client_credentials")
    assert verify_access_token(live_server, token["access_token"])["client_id"] == client["client_id"]


# --- the shape of errors ---------------------------------------------------------------------------

def test_unsupported_grant_type_is_exactly_rfc6749_5_2(live_server, make_client):
    client = make_client()
    for grant_type in ("password", "urn:ietf:params:oauth:grant-type:device_code", ""):
        response = token_request(live_server, {"grant_type": grant_type},
                                 auth=(client["client_id"], client["client_secret"]))
        assert_token_error(response, "unsupported_grant_type")


def test_token_endpoint_refuses_get(live_server):
    response = requests.get(f"{live_server}/token", params={"grant_type": "client_credentials"}, timeout=10)
    assert response.status_code == 405
