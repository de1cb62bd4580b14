"""What a relying party checks in and does with its tokens, through authlib's own client:
auth_time against max_age (OIDC Core 3.1.2.1) on a pinned clock, and refresh with
OAuth2Session.refresh_token under each secret-based client authentication, rotation included."""
from datetime import datetime, timedelta, timezone

import pytest
from authlib.integrations.requests_client import OAuth2Session, OAuthError

from idp import clock
from tests.helpers.rp import Browser, verify_access_token, verify_id_token
from tests.helpers.rp_app import deliver, sign_in_through, start_sign_in
from tests.oauth.flows import is_login_redirect, sign_in, signed_in_browser

# --- max_age and auth_time --------------------------------------------------------------------


def _signed_in(answer, rp, sent: dict) -> dict:
    assert answer.status_code == 200, answer.text
    body = answer.json()
    verify_id_token(rp.owner.issuer, body["token"]["id_token"], rp.client["client_id"], sent["nonce"],
                    access_token=body["token"]["access_token"])
    return body["claims"]


def test_a_login_older_than_max_age_is_made_again_and_auth_time_satisfies_the_app(
        live_server, make_user, make_rp):
    """The app checks auth_time + max_age >= now itself (authlib does not); the provider must make
    that hold, by asking for the password again once the login is older than max_age."""
    user = make_user()
    rp = make_rp(first_party=True)
    # authlib validates iat and exp on the real clock (leeway 120 s, ID tokens live 600 s): start
    # 500 s back so that every token of this test is still valid in real time.
    clock.set_now(datetime.now(timezone.utc).replace(microsecond=0) - timedelta(seconds=500))
    login_time = clock.timestamp()
    browser = signed_in_browser(live_server, user)

    clock.advance(100)
    sent, response = start_sign_in(browser, rp, max_age="300")
    assert response.status_code == 302  # young enough: no page
    assert _signed_in(deliver(browser, response, rp), rp, sent)["auth_time"] == login_time

    clock.advance(300)  # the login is 400 s old now
    sent, response = start_sign_in(browser, rp, prompt="none", max_age="300")
    answer = deliver(browser, response, rp)
    assert answer.status_code == 400 and answer.json()["error"] == "login_required"

    sent, response = start_sign_in(browser, rp, max_age="300")
    assert is_login_redirect(live_server, response)
    response = sign_in(browser, response, user, rp.redirect_uri)
    claims = _signed_in(deliver(browser, response, rp), rp, sent)
    assert claims["auth_time"] == clock.timestamp() == login_time + 400


def test_max_age_zero_asks_for_the_password_even_in_the_second_of_the_last_login(live_server, make_user, make_rp):
    """OIDC Core 3.1.2.1: max_age=0 is prompt=login, also when the login is 0 whole seconds old."""
    user = make_user()
    rp = make_rp(first_party=True)
    clock.set_now(datetime.now(timezone.utc).replace(microsecond=0) - timedelta(seconds=60))
    browser = signed_in_browser(live_server, user)
    sent, response = start_sign_in(browser, rp, max_age="0")
    assert is_login_redirect(live_server, response)
    clock.advance(1)
    response = sign_in(browser, response, user, rp.redirect_uri)
    assert _signed_in(deliver(browser, response, rp), rp, sent)["auth_time"] == clock.timestamp()


# --- refresh through OAuth2Session.refresh_token -----------------------------------------------------

OTHER = {"client_secret_basic": "client_secret_post", "client_secret_post": "client_secret_basic"}


def _session(rp, metadata: dict, method: str, token: dict | None = None, **kwargs) -> OAuth2Session:
    """authlib's requests client for this app, endpoints from the discovery document."""
    endpoints = {k: metadata[k] for k in ("token_endpoint", "introspection_endpoint", "userinfo_endpoint")}
    return OAuth2Session(rp.client["client_id"], rp.client["client_secret"], token_endpoint_auth_method=method,
                         token=token, default_timeout=10, **endpoints, **kwargs)


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_refresh_through_authlib_rotates_and_a_replayed_refresh_token_revokes_the_grant(
        live_server, make_user, make_rp, method):
    user = make_user()
    rp = make_rp(scope="openid profile offline_access", auth_method=method, first_party=True)
    sent, answer = sign_in_through(rp, Browser(live_server), user)
    first = answer.json()["token"]  # the code was redeemed with `method` too
    _signed_in(answer, rp, sent)
    metadata = rp.metadata()
    assert method in metadata["token_endpoint_auth_methods_supported"]

    # The registered method only: another one is refused, and spends nothing.
    with pytest.raises(OAuthError) as refused:
        _session(rp, metadata, OTHER[method]).refresh_token(refresh_token=first["refresh_token"])
    assert refused.value.error == "invalid_client"

    updates = []
    session = _session(rp, metadata, method, token=first,
                       update_token=lambda token, refresh_token=None, access_token=None: updates.append(refresh_token))
    second = session.refresh_token()
    assert updates == [first["refresh_token"]] and session.token == second
    assert second["refresh_token"] != first["refresh_token"]  # RFC 9700 4.14.2: rotated
    assert second["access_token"] != first["access_token"]
    assert verify_access_token(live_server, second["access_token"])["sub"] == user["subject"]
    assert session.get(metadata["userinfo_endpoint"]).json()["sub"] == user["subject"]

    # The old refresh token again: RFC 9700 4.14.2 reuse detection ends the whole grant.
    with pytest.raises(OAuthError) as replayed:
        session.refresh_token(refresh_token=first["refresh_token"])
    assert replayed.value.error == "invalid_grant"
    with pytest.raises(OAuthError) as after:
        session.refresh_token(refresh_token=second["refresh_token"])
    assert after.value.error == "invalid_grant"
    for access_token in (first["access_token"], second["access_token"]):
        response = _session(rp, metadata, method, token={"access_token": access_token, "token_type": "Bearer"}) \
            .get(metadata["userinfo_endpoint"])
        assert response.status_code == 401, response.text
    for token, hint in ((second["refresh_token"], "refresh_token"), (second["access_token"], "access_token")):
        response = session.introspect_token(metadata["introspection_endpoint"], token=token, token_type_hint=hint)
        assert response.status_code == 200 and response.json() == {"active": False}
