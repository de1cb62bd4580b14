"""The checks of an authorization request that authlib leaves to us (idp/oauth/authorize_checks.py
and the response_type refusal in server.py): hostile values get a clear error, never a 500 or
attacker text on its way to the client; a `sub` asked for in `claims` is answered only for that
user (OIDC Core 5.5.1); an OpenID request without redirect_uri stays on our page."""
from __future__ import annotations

import json

import pytest
import requests

from tests.helpers.rp import Browser, RelyingParty, verify_id_token
from tests.oauth.flows import (TIMEOUT, assert_error_page, assert_redirect_error, count_rows, is_login_redirect,
                               raw_authorize_url, sign_in, signed_in_browser, tokens_for)


def _get(url: str):
    return requests.get(url, allow_redirects=False, timeout=TIMEOUT)


# --- hostile values: an error, not a 500 -------------------------------------------------------

@pytest.mark.parametrize("max_age", ["\u00b2", "\u0661\u0662", "\uff11"])
def test_max_age_of_non_ascii_digits_is_invalid_request(live_server, make_user, make_client, max_age):
    """str.isdigit() accepts these, int() does not (or reads them as another number)."""
    client = make_client()
    browser = signed_in_browser(live_server, make_user())
    response = browser.get(raw_authorize_url(live_server, client, max_age=max_age, state="st-age"))
    assert_redirect_error(response, client, live_server, "invalid_request", "st-age")


def test_a_nonce_longer_than_we_store_is_invalid_request_and_writes_nothing(app, live_server, make_user,
                                                                           make_client):
    client = make_client(first_party=True)
    browser = signed_in_browser(live_server, make_user())
    before = count_rows(app)
    response = browser.get(raw_authorize_url(live_server, client, nonce="n" * 513, state="st-nonce"))
    params = assert_redirect_error(response, client, live_server, "invalid_request", "st-nonce")
    assert "nonce" in params["error_description"]
    after = count_rows(app)
    assert (after["grants"], after["authorization_codes"]) == (before["grants"], before["authorization_codes"])


def test_a_nonce_of_the_longest_length_we_store_completes(live_server, make_user, make_client):
    user, client = make_user(), make_client(first_party=True)
    rp = RelyingParty(live_server, client, scope="openid")
    rp.nonce = "n" * 512
    browser = signed_in_browser(live_server, user)
    token = rp.fetch_token(rp.callback_params(browser.get(rp.authorization_url())))
    assert verify_id_token(live_server, token["id_token"], client["client_id"], rp.nonce)["nonce"] == rp.nonce


def test_a_scope_longer_than_we_store_is_invalid_request(app, live_server, make_user, make_client):
    client = make_client(first_party=True)
    browser = signed_in_browser(live_server, make_user())
    before = count_rows(app)["grants"]
    response = browser.get(raw_authorize_url(live_server, client, scope=" ".join(["openid"] * 200), state="st-sc"))
    assert_redirect_error(response, client, live_server, "invalid_request", "st-sc")
    assert count_rows(app)["grants"] == before


@pytest.mark.parametrize("response_type", ["Your account is locked. Call +1 555 0100 now", 'code"\\',
                                           "code\u00e9", "token"])
def test_an_unknown_response_type_is_refused_with_a_fixed_description(live_server, make_client, response_type):
    client = make_client()
    response = _get(raw_authorize_url(live_server, client, response_type=response_type, state="st-rt"))
    params = assert_redirect_error(response, client, live_server, "unsupported_response_type", "st-rt")
    assert params["error_description"] == "response_type must be code"


def test_an_unknown_response_type_with_an_unregistered_redirect_uri_stays_on_our_page(live_server, make_client):
    client = make_client()
    response = _get(raw_authorize_url(live_server, client, response_type="code\u00e9",
                                      redirect_uri="https://elsewhere.example/cb"))
    assert_error_page(response, "unsupported_response_type")
    assert "code\u00e9" not in response.text


# --- OIDC Core 5.5.1: a sub asked for with a value ----------------------------------------------

def _claims_sub(value) -> str:
    return json.dumps({"id_token": {"sub": {"value": value}}})


def test_a_claims_sub_of_someone_else_asks_for_login(live_server, make_user, make_client):
    alice, bob = make_user(), make_user()
    client = make_client(first_party=True)
    browser = signed_in_browser(live_server, alice)
    rp = RelyingParty(live_server, client, scope="openid")
    response = browser.get(rp.authorization_url(claims=_claims_sub(bob["subject"])))
    assert is_login_redirect(live_server, response)
    response = sign_in(browser, response, bob, client["redirect_uri"])
    token = rp.fetch_token(rp.callback_params(response))
    assert verify_id_token(live_server, token["id_token"], client["client_id"], rp.nonce)["sub"] == bob["subject"]


def test_a_claims_sub_of_someone_else_with_prompt_none_is_login_required(live_server, make_user, make_client):
    client = make_client(first_party=True)
    browser = signed_in_browser(live_server, make_user())
    response = browser.get(raw_authorize_url(live_server, client, prompt="none", state="st-sub",
                                             claims=_claims_sub("someone-else")))
    assert_redirect_error(response, client, live_server, "login_required", "st-sub")


def test_signing_in_as_someone_else_than_the_claims_sub_is_login_required(live_server, make_user, make_client):
    client = make_client(first_party=True)
    browser = Browser(live_server)
    response = browser.get(raw_authorize_url(live_server, client, state="st-sub2", claims=_claims_sub("someone-else")))
    response = sign_in(browser, response, make_user(), client["redirect_uri"])
    assert_redirect_error(response, client, live_server, "login_required", "st-sub2")


def test_a_claims_sub_of_the_signed_in_user_issues_at_once(live_server, make_user, make_client):
    user, client = make_user(), make_client(first_party=True)
    browser = signed_in_browser(live_server, user)
    rp = RelyingParty(live_server, client, scope="openid")
    response = browser.get(rp.authorization_url(claims=_claims_sub(user["subject"])))
    assert response.status_code == 302 and "code" in rp.callback_params(response)


def test_a_claims_sub_is_compared_with_the_pairwise_sub_the_client_sees(live_server, make_user, make_client):
    user = make_user()
    client = make_client(first_party=True, redirect_uris=["https://rp-sub.example/callback"], subject_type="pairwise")
    _, browser, token = tokens_for(live_server, user, client, scope="openid")
    pairwise = verify_id_token(live_server, token["id_token"], client["client_id"])["sub"]
    assert pairwise != user["subject"]
    issued = browser.get(raw_authorize_url(live_server, client, prompt="none", claims=_claims_sub(pairwise)))
    assert issued.status_code == 302 and "code=" in issued.headers["Location"]
    refused = browser.get(raw_authorize_url(live_server, client, prompt="none", state="st-pw",
                                            claims=_claims_sub(user["subject"])))
    assert_redirect_error(refused, client, live_server, "login_required", "st-pw")


def test_a_claims_sub_value_that_is_not_a_string_is_invalid_request(live_server, make_client):
    client = make_client()
    response = _get(raw_authorize_url(live_server, client, state="st-subv", claims=_claims_sub(42)))
    assert_redirect_error(response, client, live_server, "invalid_request", "st-subv")


# --- OIDC Core 3.1.2.1: redirect_uri is required in an OpenID request ------------------------------

def test_an_openid_request_without_redirect_uri_is_refused_on_our_page(app, live_server, make_user, make_client):
    client = make_client()  # one registered URI: authlib alone would accept the omission
    browser = signed_in_browser(live_server, make_user())
    before = count_rows(app)["pending_authorizations"]
    response = browser.get(raw_authorize_url(live_server, client, redirect_uri=None))
    assert_error_page(response, "invalid_request")
    assert "redirect_uri is required" in response.text
    assert count_rows(app)["pending_authorizations"] == before


def test_an_oauth_request_without_openid_may_still_leave_out_redirect_uri(live_server, make_user, make_client):
    client = make_client(first_party=True)
    browser = signed_in_browser(live_server, make_user())
    response = browser.get(raw_authorize_url(live_server, client, redirect_uri=None, scope="profile"))
    assert response.status_code == 302 and response.headers["Location"].startswith(client["redirect_uri"] + "?code=")
