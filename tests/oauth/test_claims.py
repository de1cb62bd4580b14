"""The claims parameter (OIDC Core 5.5) within consent (OIDC Core 5.4): it picks claims for the ID
token among those of the granted scopes and never releases one the person did not consent to."""
import json
import re

from tests.helpers.rp import RelyingParty, verify_id_token
from tests.oauth.flows import authorize, is_consent_page, signed_in_browser, tokens_for, userinfo

PERSONAL = ("email", "email_verified", "name", "preferred_username", "address", "phone_number", "birthdate")


def _released(live_server, client, rp, token) -> tuple[dict, dict]:
    id_claims = verify_id_token(live_server, token["id_token"], client["client_id"], rp.nonce)
    info = userinfo(live_server, token["access_token"])
    assert info.status_code == 200
    return id_claims, info.json()


def test_claims_outside_the_consented_scope_are_not_released(live_server, make_user, make_client):
    user = make_user()
    client = make_client(scope="openid")
    claims = json.dumps({"id_token": {"email": None, "name": None, "preferred_username": None},
                         "userinfo": {"email": None, "name": None, "address": None, "phone_number": None,
                                      "birthdate": None}})
    browser = signed_in_browser(live_server, user)
    rp = RelyingParty(live_server, client, scope="openid")
    page = browser.get(rp.authorization_url(claims=claims))
    assert is_consent_page(page)
    assert len(re.findall(r"<li>", page.text)) == 1  # the person is shown "openid" only
    token = rp.fetch_token(rp.callback_params(browser.consent(page)))
    id_claims, info = _released(live_server, client, rp, token)
    assert not set(PERSONAL) & set(id_claims)
    assert info == {"sub": user["subject"]}
    # The remembered consent ("openid") lets a later request through silently: still nothing more.
    rp = RelyingParty(live_server, client, scope="openid")
    _, response = authorize(live_server, user, rp, browser=browser, prompt="none", claims=claims)
    token = rp.fetch_token(rp.callback_params(response))
    id_claims, info = _released(live_server, client, rp, token)
    assert not set(PERSONAL) & set(id_claims)
    assert info == {"sub": user["subject"]}


def test_claims_parameter_cannot_reach_past_the_clients_allowed_scope(live_server, make_user, make_client):
    user = make_user()
    client = make_client(first_party=True, scope="openid")
    claims = json.dumps({"id_token": {"email": None}, "userinfo": {"email": None}})
    rp, _, token = tokens_for(live_server, user, client, scope="openid email", claims=claims)
    assert token["scope"] == "openid"
    id_claims, info = _released(live_server, client, rp, token)
    assert "email" not in id_claims
    assert info == {"sub": user["subject"]}


def test_claims_parameter_selects_id_token_claims_within_the_granted_scope(live_server, make_user, make_client):
    user = make_user()
    client = make_client(first_party=True)
    claims = json.dumps({"id_token": {"email": {"essential": True}, "name": None},
                         "userinfo": {"preferred_username": None}})
    rp, _, token = tokens_for(live_server, user, client, scope="openid email", claims=claims)
    id_claims, info = _released(live_server, client, rp, token)
    assert id_claims["email"] == user["email"]
    assert not {"name", "preferred_username", "email_verified"} & set(id_claims)  # not asked for, or no profile
    assert info == {"sub": user["subject"], "email": user["email"], "email_verified": info["email_verified"]}


def test_essential_claims_outside_the_scope_are_left_out_without_an_error(live_server, make_user, make_client):
    user = make_user()
    client = make_client(first_party=True)
    wanted = {"essential": True}
    claims = json.dumps({"id_token": {"email": wanted, "phone_number": wanted, "address": wanted},
                         "userinfo": {"email": wanted, "birthdate": wanted}})
    rp, _, token = tokens_for(live_server, user, client, scope="openid", claims=claims)
    id_claims, info = _released(live_server, client, rp, token)
    assert not set(PERSONAL) & set(id_claims)
    assert info == {"sub": user["subject"]}
