"""Discovery 1.0 and RFC 8414 metadata: the two documents agree, and every advertised value
does what it says over real HTTP."""
import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session

from tests.helpers.rp import RelyingParty, discovery, verify_id_token
from tests.oauth.flows import (TIMEOUT, assert_redirect_error, assert_token_error, authorize, form_fields,
                               raw_authorize_url, signed_in_browser, token_request, tokens_for, userinfo)

PRIVATE_JWK_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


def test_openid_configuration_and_oauth_metadata_are_the_same_document(live_server):
    oidc = requests.get(f"{live_server}/.well-known/openid-configuration", timeout=TIMEOUT)
    oauth = requests.get(f"{live_server}/.well-known/oauth-authorization-server", timeout=TIMEOUT)
    assert oidc.status_code == oauth.status_code == 200
    assert oidc.headers["Content-Type"].startswith("application/json")
    assert oauth.headers["Content-Type"].startswith("application/json")
    assert oidc.json() == oauth.json()
    meta = oidc.json()
    assert meta["issuer"] == live_server
    for key in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri"):
        assert meta[key].startswith(live_server + "/"), key


def test_metadata_advertises_exactly_the_protocol_we_speak(live_server):
    meta = discovery(live_server)
    assert meta["response_types_supported"] == ["code"]
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert set(meta["response_modes_supported"]) == {"query", "form_post"}
    assert meta["authorization_response_iss_parameter_supported"] is True
    assert meta["request_parameter_supported"] is False
    assert meta["request_uri_parameter_supported"] is False
    assert meta["claims_parameter_supported"] is True
    assert set(meta["grant_types_supported"]) == {"authorization_code", "refresh_token", "client_credentials"}
    assert set(meta["token_endpoint_auth_methods_supported"]) == {"client_secret_basic", "client_secret_post",
                                                                  "client_secret_jwt", "private_key_jwt", "none"}
    for endpoint in ("token", "revocation", "introspection"):
        assert meta[f"{endpoint}_endpoint_auth_signing_alg_values_supported"] == ["RS256", "PS256", "ES256", "HS256"]
    assert meta["subject_types_supported"] == ["public", "pairwise"]
    assert "openid" in meta["scopes_supported"] and "offline_access" in meta["scopes_supported"]
    # Discovery 3: RS256 MUST be included; each one listed is signed with by a published key (a
    # retired key of an alg given up stays published for its tokens, and is not listed).
    algs = meta["id_token_signing_alg_values_supported"]
    assert algs[0] == "RS256" and "none" not in algs
    published = {key["alg"] for key in requests.get(meta["jwks_uri"], timeout=TIMEOUT).json()["keys"]}
    assert set(algs) <= published


def test_every_advertised_endpoint_answers(live_server):
    meta = discovery(live_server)
    endpoints = {k: v for k, v in meta.items() if k.endswith("_endpoint") or k == "jwks_uri"}
    assert {"authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri", "revocation_endpoint",
            "introspection_endpoint"} <= set(endpoints)
    for name, url in endpoints.items():
        get = requests.get(url, timeout=TIMEOUT, allow_redirects=False)
        post = requests.post(url, timeout=TIMEOUT, allow_redirects=False)
        statuses = {get.status_code, post.status_code}
        assert statuses - {404, 405}, (name, statuses)
        assert not any(s >= 500 for s in statuses), (name, statuses)
    assert requests.get(meta["jwks_uri"], timeout=TIMEOUT).status_code == 200
    assert_token_error(token_request(live_server, {}), "unsupported_grant_type")
    assert requests.get(meta["userinfo_endpoint"], timeout=TIMEOUT).status_code == 401
    for name in ("revocation_endpoint", "introspection_endpoint"):
        assert_token_error(requests.post(meta[name], data={"token": "t"}, timeout=TIMEOUT), "invalid_client", 401)


def test_jwks_at_jwks_uri_has_public_signing_keys_with_kid(live_server):
    response = requests.get(discovery(live_server)["jwks_uri"], timeout=TIMEOUT)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("application/json")
    keys = response.json()["keys"]
    assert keys
    for key in keys:
        assert key["kid"] and key["use"] == "sig" and key["alg"] in ("RS256", "ES256")
        assert not PRIVATE_JWK_MEMBERS & set(key), "a private key member is published"
    assert len({k["kid"] for k in keys}) == len(keys)


def test_a_rotated_key_signs_only_after_every_cached_jwks_holds_it(app, live_server):
    """A relying party may keep /jwks for its max-age, fetched from an instance whose ring is up
    to IDP_KEYS_CACHE_SECONDS old: a staged key must wait for both (found by review)."""
    import re

    from idp.keys import publish_lead

    max_age = int(re.fullmatch(r"public, max-age=(\d+)",
                               requests.get(f"{live_server}/jwks", timeout=TIMEOUT).headers["Cache-Control"]).group(1))
    settings = app.config["IDP_SETTINGS"]
    assert publish_lead(settings) >= settings.keys_cache_seconds + max_age


def test_cors_is_allowed_on_token_userinfo_jwks_and_discovery(live_server):
    origin = {"Origin": "https://spa.example"}
    responses = [
        requests.get(f"{live_server}/.well-known/openid-configuration", headers=origin, timeout=TIMEOUT),
        requests.get(f"{live_server}/.well-known/oauth-authorization-server", headers=origin, timeout=TIMEOUT),
        requests.get(f"{live_server}/jwks", headers=origin, timeout=TIMEOUT),
        requests.get(f"{live_server}/userinfo", headers=origin, timeout=TIMEOUT),
        requests.post(f"{live_server}/token", data={"grant_type": "client_credentials"}, headers=origin,
                      timeout=TIMEOUT),
    ]
    for response in responses:
        assert response.headers.get("Access-Control-Allow-Origin") == "*", response.url


def test_cors_preflight_for_userinfo_and_token_allows_the_authorization_header(live_server):
    for path in ("/userinfo", "/token"):
        response = requests.options(f"{live_server}{path}", timeout=TIMEOUT, headers={
            "Origin": "https://spa.example", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization"})
        assert response.status_code in (200, 204), path
        assert response.headers.get("Access-Control-Allow-Origin") == "*"
        assert "authorization" in response.headers.get("Access-Control-Allow-Headers", "").lower()
        assert "POST" in response.headers.get("Access-Control-Allow-Methods", "")


def test_cors_is_not_offered_on_the_authorization_endpoint(live_server):
    response = requests.get(f"{live_server}/authorize", headers={"Origin": "https://spa.example"}, timeout=TIMEOUT)
    assert "Access-Control-Allow-Origin" not in response.headers


def test_every_advertised_response_mode_returns_a_code(live_server, make_user, make_client):
    user = make_user()
    client = make_client(first_party=True)
    browser = signed_in_browser(live_server, user)
    for mode in discovery(live_server)["response_modes_supported"]:
        rp = RelyingParty(live_server, client)
        _, response = authorize(live_server, user, rp, browser=browser, response_mode=mode)
        if mode == "query":
            params = rp.callback_params(response)
        else:
            assert mode == "form_post" and response.status_code == 200
            assert f'action="{client["redirect_uri"]}"' in response.text
            params = form_fields(response.text)
        token = rp.fetch_token(params)
        verify_id_token(live_server, token["id_token"], client["client_id"], rp.nonce)


def test_every_advertised_scope_can_be_granted(live_server, make_user, make_client):
    scopes = discovery(live_server)["scopes_supported"]
    user = make_user()
    client = make_client(first_party=True, scope=" ".join(scopes))
    _, _, token = tokens_for(live_server, user, client, scope=" ".join(scopes))
    assert set(token["scope"].split()) == set(scopes)
    assert token["refresh_token"]


def test_advertised_claims_are_the_ones_we_release(live_server, app, make_user, make_client):
    """Every advertised claim is released to some request (a person with a full profile)."""
    from idp.extensions import db
    from idp.models import User

    meta = discovery(live_server)
    user = make_user()
    with app.app_context():
        row = db.session.get(User, user["id"])
        for name in ("given_name", "family_name", "middle_name", "nickname", "gender", "zoneinfo", "locale"):
            setattr(row, name, {"zoneinfo": "Europe/Paris", "locale": "fr-FR"}.get(name, "x"))
        row.picture, row.website = "https://img.example.com/p.png", "https://example.com"
        row.birthdate, row.phone_number, row.address = "1990-01-01", "+33123456789", {"locality": "Paris"}
        db.session.commit()
    client = make_client(first_party=True)
    rp, _, token = tokens_for(live_server, user, client, scope="openid profile email address phone")
    released = set(verify_id_token(live_server, token["id_token"], client["client_id"], rp.nonce))
    released |= set(userinfo(live_server, token["access_token"]).json())
    assert set(meta["claims_supported"]) <= released, set(meta["claims_supported"]) - released


def test_advertised_acr_value_is_accepted_and_reached(live_server, make_user, make_client):
    meta = discovery(live_server)
    user = make_user()
    client = make_client(first_party=True)
    acr = meta["acr_values_supported"][0]
    rp, _, token = tokens_for(live_server, user, client, acr_values=acr)
    assert verify_id_token(live_server, token["id_token"], client["client_id"], rp.nonce)["acr"] == acr


def test_request_object_is_refused_with_request_not_supported(live_server, make_client):
    client = make_client()
    response = requests.get(raw_authorize_url(live_server, client, state="s-req", request="eyJhbGciOiJub25lIn0.e30."),
                            allow_redirects=False, timeout=TIMEOUT)
    assert_redirect_error(response, client, live_server, "request_not_supported", "s-req")


def test_request_uri_is_refused_with_request_uri_not_supported(live_server, make_client):
    client = make_client()
    url = raw_authorize_url(live_server, client, state="s-ruri", request_uri="https://rp.example/request.jwt")
    response = requests.get(url, allow_redirects=False, timeout=TIMEOUT)
    assert_redirect_error(response, client, live_server, "request_uri_not_supported", "s-ruri")


def test_unadvertised_grant_type_is_refused(live_server, make_client):
    client = make_client()
    response = token_request(live_server, {"grant_type": "password", "username": "a", "password": "b"},
                             auth=(client["client_id"], client["client_secret"]))
    assert_token_error(response, "unsupported_grant_type")


def test_revocation_and_introspection_take_the_token_endpoints_client_authentication(live_server):
    meta = discovery(live_server)
    assert meta["revocation_endpoint"] == f"{live_server}/revoke"
    assert meta["introspection_endpoint"] == f"{live_server}/introspect"
    token_methods = meta["token_endpoint_auth_methods_supported"]
    assert meta["revocation_endpoint_auth_methods_supported"] == token_methods
    assert meta["introspection_endpoint_auth_methods_supported"] == [m for m in token_methods if m != "none"]


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post", "none"])
def test_revocation_and_introspection_work_with_each_advertised_secret_method(live_server, make_user, make_client,
                                                                              method):
    meta = discovery(live_server)
    assert method in meta["revocation_endpoint_auth_methods_supported"]
    public = method == "none"
    client = make_client(public=public, first_party=True, token_endpoint_auth_method=method)
    user = make_user()
    rp = RelyingParty(live_server, client, scope="openid offline_access")
    rp.session.token_endpoint_auth_method = method
    _, response = authorize(live_server, user, rp)
    token = rp.fetch_token(rp.callback_params(response))
    session = OAuth2Session(client["client_id"], client["client_secret"], token_endpoint_auth_method=method,
                            revocation_endpoint_auth_method=method)
    looked_up = session.introspect_token(meta["introspection_endpoint"], token=token["access_token"])
    if method in meta["introspection_endpoint_auth_methods_supported"]:
        assert looked_up.status_code == 200 and looked_up.json()["active"] is True
    else:
        assert looked_up.status_code == 401 and looked_up.json()["error"] == "invalid_client"
    revoked = session.revoke_token(meta["revocation_endpoint"], token=token["refresh_token"])
    assert revoked.status_code == 200
    assert userinfo(live_server, token["access_token"]).status_code == 401
