"""Which key signs an ID token. OIDC Dynamic Client Registration 1.0 2: a client's registered
id_token_signed_response_alg is the alg of its ID tokens, and RS256 when it registered none;
Discovery 1.0 3: RS256 is always among id_token_signing_alg_values_supported. So an RS256 key
always signs, beside IDP_KEYS_ALG's (ES256), whose key signs access tokens. A registered alg no
key signs any more (ES256 given up) makes the client's requests fail with unauthorized_client
(the code stays unspent) instead of carrying an ID token the relying party would reject."""
from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest
import requests

from idp.extensions import db
from idp.models import AuthorizationCode
from idp.oauth.initial_tokens import issue_initial_access_token
from idp.security.tokens import digest
from tests.helpers.keys import use_keys_alg
from tests.helpers.rp import RelyingParty, discovery, jwks, verify_access_token, verify_id_token
from tests.oauth.flows import (TIMEOUT, assert_error_page, assert_token_error, authorize, count_rows, jwt_header,
                               redeem, signed_in_browser, tokens_for, userinfo)

REDIRECT = "http://127.0.0.1:9999/callback"


def register(app, issuer: str, metadata: dict) -> requests.Response:
    """POST /oauth/register (RFC 7591) with a fresh initial access token."""
    with app.app_context():
        _, token = issue_initial_access_token(3600, "id token alg test")
        db.session.commit()
    return requests.post(f"{issuer}/oauth/register", json=metadata, timeout=TIMEOUT,
                         headers={"Authorization": f"Bearer {token}"})


def registered(app, issuer: str, alg: str | None) -> dict:
    """A client registered asking for ID tokens signed with alg (None: asking nothing)."""
    metadata = {"redirect_uris": [REDIRECT], "scope": "openid profile"}
    if alg:
        metadata["id_token_signed_response_alg"] = alg
    response = register(app, issuer, metadata)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body.get("id_token_signed_response_alg") == alg
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


def published_alg(issuer: str, kid: str) -> str:
    return {key.kid: key for key in jwks(issuer).keys}[kid].as_dict()["alg"]


# --- IDP_KEYS_ALG=ES256 ---------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["operator", "registered without an alg"])
def test_with_es256_a_client_that_asked_no_alg_gets_rs256_id_tokens_and_es256_access_tokens(
        app, live_server, make_user, make_client, es256_keys, how):
    """Registration 2: "The default, if omitted, is RS256"; what every certified RP library expects."""
    client = make_client(first_party=True) if how == "operator" else registered(app, live_server, None)
    user = make_user()
    rp, _, token = tokens_for(live_server, user, client, scope="openid profile",
                              browser=signed_in_browser(live_server, user))
    id_header, access_header = jwt_header(token["id_token"]), jwt_header(token["access_token"])
    assert id_header["alg"] == "RS256" and access_header["alg"] == "ES256"
    assert (id_header["kid"], access_header["kid"]) == (es256_keys["RS256"], es256_keys["ES256"])
    assert published_alg(live_server, id_header["kid"]) == "RS256"
    assert verify_id_token(live_server, token["id_token"], client["client_id"], rp.nonce)["sub"]
    verify_access_token(live_server, token["access_token"])
    assert userinfo(live_server, token["access_token"]).status_code == 200


def test_with_es256_a_client_registered_for_es256_gets_es256_id_tokens(app, live_server, make_user, es256_keys):
    client = registered(app, live_server, "ES256")
    user = make_user()
    rp, _, token = tokens_for(live_server, user, client, scope="openid",
                              browser=signed_in_browser(live_server, user))
    header = jwt_header(token["id_token"])
    assert (header["alg"], header["kid"]) == ("ES256", es256_keys["ES256"])
    assert published_alg(live_server, header["kid"]) == "ES256"
    verify_id_token(live_server, token["id_token"], client["client_id"], rp.nonce)
    assert jwt_header(token["access_token"])["alg"] == "ES256"


def test_with_es256_a_client_may_still_register_rs256_and_gets_it(app, live_server, make_user, es256_keys):
    client = registered(app, live_server, "RS256")
    user = make_user()
    rp, _, token = tokens_for(live_server, user, client, scope="openid",
                              browser=signed_in_browser(live_server, user))
    assert jwt_header(token["id_token"])["kid"] == es256_keys["RS256"]
    verify_id_token(live_server, token["id_token"], client["client_id"], rp.nonce)


def test_discovery_lists_rs256_first_and_es256_while_es256_keys_sign(app, live_server, es256_keys):
    for path in ("openid-configuration", "oauth-authorization-server"):
        meta = requests.get(f"{live_server}/.well-known/{path}", timeout=TIMEOUT).json()
        assert meta["id_token_signing_alg_values_supported"] == ["RS256", "ES256"]
    refused = register(app, live_server, {"redirect_uris": [REDIRECT], "id_token_signed_response_alg": "PS256"})
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_client_metadata"
    assert "must be one of RS256, ES256" in refused.json()["error_description"]


def test_after_es256_is_given_up_an_es256_client_is_refused_and_its_code_survives(
        app, live_server, make_user, es256_keys):
    """IDP_KEYS_ALG back to RS256 and `idp keys rotate`: the ES256 keys retire, and retired keys
    never sign, so the client's token request fails (the code is not spent) rather than carry
    an RS256 ID token it did not ask for; once ES256 signs again the same code redeems."""
    client = registered(app, live_server, "ES256")
    user = make_user()
    rp, code = code_for(live_server, user, client)

    use_keys_alg(app, "RS256")
    assert discovery(live_server)["id_token_signing_alg_values_supported"] == ["RS256"]
    before = count_rows(app)
    body = assert_token_error(redeem(live_server, client, code, rp.verifier), "unauthorized_client")
    assert body["error_description"] == ("id_token_signed_response_alg ES256 is registered but ID tokens are "
                                         "signed with RS256; update the client registration")
    assert count_rows(app) == before and not code_used(app, code)  # nothing issued, nothing spent
    authorization_refused(live_server, user, client, "ES256", unverified=True)
    refused = register(app, live_server, {"redirect_uris": [REDIRECT], "id_token_signed_response_alg": "ES256"})
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_client_metadata"

    kids = use_keys_alg(app, "ES256")  # the operator goes back: the same code now redeems, as registered
    token = redeem(live_server, client, code, rp.verifier)
    assert token.status_code == 200, token.text
    assert jwt_header(token.json()["id_token"])["kid"] == kids["ES256"]
    assert verify_id_token(live_server, token.json()["id_token"], client["client_id"], rp.nonce)["sub"] == \
        user["subject"]


# --- whatever IDP_KEYS_ALG ------------------------------------------------------------------------

def test_es256_is_refused_at_registration_when_no_es256_key_signs(app, live_server):
    refused = register(app, live_server, {"redirect_uris": [REDIRECT], "id_token_signed_response_alg": "ES256"})
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_client_metadata"
    assert "id_token_signed_response_alg: must be one of RS256 (never none)" in refused.json()["error_description"]


@pytest.mark.parametrize("alg, shown", [("PS256", "PS256"), ('RS"256\u00e9', "RS256"), ("ES256", "ES256")])
def test_a_client_record_with_an_alg_no_key_can_sign_gets_no_token(app, live_server, make_user, make_client,
                                                                     alg, shown):
    """An alg no key of ours signs (the record was edited, an older version accepted it, or
    ES256 was given up): refused the same way, never signed with another key instead; what the
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
