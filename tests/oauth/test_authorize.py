"""The authorization endpoint (OAuth 2.0 4.1.1, OIDC Core 3.1.2) over real HTTP: what goes back
to the client by redirect, what stays on our error page, and how prompt, max_age, hints and the
claims parameter steer the person."""
import json
from datetime import datetime, timedelta, timezone

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session

from idp import clock
from tests.helpers.rp import Browser, RelyingParty, verify_id_token
from tests.oauth.flows import (TIMEOUT, absolute, assert_error_page, assert_redirect_error, authorize,
                               count_rows, form_fields, is_consent_page, is_login_redirect, query_of,
                               raw_authorize_url, redeem, sign_in, signed_in_browser, tokens_for)

REQUEST_TABLES = ("grants", "authorization_codes", "pending_authorizations", "refresh_tokens", "consents")


def _request_rows(app) -> dict:
    counts = count_rows(app)
    return {name: counts[name] for name in REQUEST_TABLES}


def _real_now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


# --- GET and POST -------------------------------------------------------------------------------

def test_authorization_request_by_post_works_like_get(live_server, make_user, make_client):
    user = make_user()
    client = make_client(first_party=True)
    browser = signed_in_browser(live_server, user)
    rp = RelyingParty(live_server, client)
    params = query_of(rp.authorization_url())
    response = browser.post(f"{live_server}/authorize", data=params)
    token = rp.fetch_token(rp.callback_params(response))
    assert verify_id_token(live_server, token["id_token"], client["client_id"], rp.nonce)["sub"] == user["subject"]


def test_a_cross_site_authorization_post_is_sent_again_from_our_page_so_the_session_is_seen(
        live_server, make_user, make_client):
    """The app's page POSTs the request (Core 3.1.2.1); the browser leaves our SameSite=Lax cookies
    out of that cross-site POST, so a signed-in person would get login_required for prompt=none.
    Our page sends the same fields again, same-site, and writes no cookie of its own (a new
    browser cookie would replace the person's)."""
    import re
    from html import unescape
    user = make_user()
    client = make_client(first_party=True)
    browser = signed_in_browser(live_server, user)
    rp = RelyingParty(live_server, client)
    params = {**query_of(rp.authorization_url()), "prompt": "none", "ui_locales": "fr"}
    page = Browser(live_server).post(f"{live_server}/authorize", data=params)  # what arrives: no cookies
    assert page.status_code == 200 and "data-autosubmit" in page.text and "js/form-post.js" in page.text
    assert "Set-Cookie" not in page.headers
    fields = {unescape(k): unescape(v) for k, v in re.findall(r'<input type="hidden" name="([^"]*)" value="([^"]*)">',
                                                             page.text)}
    assert fields == {**params, "_same_site": "1"}
    response = browser.post(f"{live_server}/authorize", data=fields)  # the re-send carries the cookies
    token = rp.fetch_token(rp.callback_params(response))
    assert verify_id_token(live_server, token["id_token"], client["client_id"], rp.nonce)["sub"] == user["subject"]


# --- errors that go back to the client ------------------------------------------------------------

@pytest.mark.parametrize("response_type", ["token", "id_token", "code id_token", "code token", "none", "device_code"])
def test_response_type_other_than_code_is_unsupported_response_type_by_redirect(
        live_server, app, make_client, response_type):
    client = make_client()
    before = _request_rows(app)
    url = raw_authorize_url(live_server, client, response_type=response_type, state="st-rt")
    response = requests.get(url, allow_redirects=False, timeout=TIMEOUT)
    assert_redirect_error(response, client, live_server, "unsupported_response_type", "st-rt")
    assert _request_rows(app) == before


@pytest.mark.parametrize("challenge", [
    {"code_challenge_method": "plain", "code_challenge": "p" * 43},
    {"code_challenge_method": None, "code_challenge": "p" * 43},  # defaults to plain (RFC 7636 4.3)
    {"code_challenge_method": "S512", "code_challenge": "p" * 43},
])
def test_plain_or_unknown_pkce_method_is_refused(live_server, app, make_client, challenge):
    client = make_client(public=True)
    before = _request_rows(app)
    response = requests.get(raw_authorize_url(live_server, client, state="st-plain", **challenge),
                            allow_redirects=False, timeout=TIMEOUT)
    assert_redirect_error(response, client, live_server, "invalid_request", "st-plain")
    assert _request_rows(app) == before


@pytest.mark.parametrize("public", [True, False], ids=["public", "confidential-require-pkce"])
def test_missing_code_challenge_is_refused_when_pkce_is_required(live_server, app, make_user, make_client, public):
    client = make_client(public=public, first_party=True, require_pkce=True)
    browser = signed_in_browser(live_server, make_user())
    before = _request_rows(app)
    response = browser.get(raw_authorize_url(live_server, client, state="st-pkce", code_challenge=None,
                                             code_challenge_method=None))
    assert_redirect_error(response, client, live_server, "invalid_request", "st-pkce")
    assert _request_rows(app) == before


def test_confidential_client_without_require_pkce_completes_without_pkce(live_server, make_user, make_client):
    user = make_user()
    client = make_client(first_party=True, require_pkce=False)
    browser = signed_in_browser(live_server, user)
    session = OAuth2Session(client["client_id"], client["client_secret"], scope="openid",
                            redirect_uri=client["redirect_uri"])
    url, state = session.create_authorization_url(f"{live_server}/authorize", nonce="n-nopkce")
    assert "code_challenge" not in url
    response = browser.get(url)
    params = query_of(response.headers["Location"])
    assert params["state"] == state and params["iss"] == live_server
    token = session.fetch_token(f"{live_server}/token", code=params["code"], grant_type="authorization_code")
    assert verify_id_token(live_server, token["id_token"], client["client_id"], "n-nopkce")["sub"] == user["subject"]


def test_code_verifier_without_an_earlier_challenge_is_refused(live_server, make_user, make_client):
    """RFC 9700 4.8.2: a code_verifier for a code issued without code_challenge is rejected."""
    user = make_user()
    client = make_client(first_party=True, require_pkce=False)
    browser = signed_in_browser(live_server, user)
    response = browser.get(raw_authorize_url(live_server, client, code_challenge=None, code_challenge_method=None))
    code = query_of(response.headers["Location"])["code"]
    answer = redeem(live_server, client, code, "v" * 43)
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_request"


@pytest.mark.parametrize("mode", ["fragment", "web_message", "query.jwt"])
def test_unadvertised_response_mode_is_refused(live_server, make_client, mode):
    client = make_client()
    response = requests.get(raw_authorize_url(live_server, client, state="st-mode", response_mode=mode),
                            allow_redirects=False, timeout=TIMEOUT)
    assert_redirect_error(response, client, live_server, "invalid_request", "st-mode")


def test_scope_outside_what_we_support_is_invalid_scope(live_server, make_client):
    client = make_client()
    response = requests.get(raw_authorize_url(live_server, client, state="st-scope", scope="openid admin:all"),
                            allow_redirects=False, timeout=TIMEOUT)
    assert_redirect_error(response, client, live_server, "invalid_scope", "st-scope")


# --- errors that stay on our page -----------------------------------------------------------------

@pytest.mark.parametrize("client_id", ["does-not-exist", "", "x" * 300])
def test_unknown_client_id_shows_our_error_page_and_never_redirects(live_server, app, make_client, client_id):
    client = make_client()
    before = _request_rows(app)
    for extra in ({}, {"response_type": "token"}, {"prompt": "none"}):
        url = raw_authorize_url(live_server, {**client, "client_id": client_id}, **extra)
        assert_error_page(requests.get(url, allow_redirects=False, timeout=TIMEOUT))
    assert _request_rows(app) == before


@pytest.mark.parametrize("variant", [
    "http://127.0.0.1:9999/callback/",          # trailing slash
    "http://127.0.0.1:9999/Callback",           # case of the path
    "HTTP://127.0.0.1:9999/callback",           # case of the scheme
    "http://127.0.0.1:9999/callback?next=1",    # an added query parameter
    "http://127.0.0.1:9999/callback#x",         # a fragment
    "http://127.0.0.1:9998/callback",           # another port
    "http://localhost:9999/callback",           # another name for the host
    "https://127.0.0.1:9999/callback",          # another scheme
    "http://127.0.0.1:9999/callback/../callback",
    "http://127.0.0.1:9999/callback%20",
    "https://evil.example/callback",
])
def test_unregistered_redirect_uri_shows_our_error_page_and_never_redirects(
        live_server, app, make_user, make_client, variant):
    client = make_client(first_party=True)  # signed in and first-party: a valid request would issue a code
    browser = signed_in_browser(live_server, make_user())
    before = _request_rows(app)
    for extra, error in (({}, "invalid_request"), ({"response_type": "token"}, "unsupported_response_type"),
                         ({"prompt": "none"}, "invalid_request"), ({"code_challenge_method": "plain"}, "invalid_request")):
        response = browser.get(raw_authorize_url(live_server, client, redirect_uri=variant, **extra))
        assert_error_page(response, error)
    assert _request_rows(app) == before


def test_registered_redirect_uri_with_a_query_matches_only_exactly_and_keeps_its_query(
        live_server, make_user, make_client):
    registered = "http://127.0.0.1:9999/cb?tenant=a"
    client = make_client(first_party=True, redirect_uris=[registered])
    browser = signed_in_browser(live_server, make_user())
    other = raw_authorize_url(live_server, client, redirect_uri="http://127.0.0.1:9999/cb?tenant=b")
    assert_error_page(browser.get(other))
    response = browser.get(raw_authorize_url(live_server, client, state="st-q"))
    location = response.headers["Location"]
    assert location.startswith("http://127.0.0.1:9999/cb?")
    params = query_of(location)
    assert params["tenant"] == "a" and params["code"] and params["state"] == "st-q"


# --- state, iss, nonce ------------------------------------------------------------------------------

def test_state_is_echoed_exactly(live_server, make_user, make_client):
    client = make_client(first_party=True)
    browser = signed_in_browser(live_server, make_user())
    state = "a b/c?d=é&e=%41+'\"<x>"
    params = query_of(browser.get(raw_authorize_url(live_server, client, state=state)).headers["Location"])
    assert params["state"] == state and params["iss"] == live_server and params["code"]


def test_no_state_parameter_is_added_when_none_was_sent(live_server, make_user, make_client):
    client = make_client(first_party=True)
    browser = signed_in_browser(live_server, make_user())
    params = query_of(browser.get(raw_authorize_url(live_server, client, state=None)).headers["Location"])
    assert "state" not in params and params["iss"] == live_server


def test_nonce_is_carried_into_the_id_token_and_absent_when_not_sent(live_server, make_user, make_client):
    user = make_user()
    client = make_client(first_party=True)
    rp, browser, token = tokens_for(live_server, user, client)
    assert verify_id_token(live_server, token["id_token"], client["client_id"], rp.nonce)["nonce"] == rp.nonce
    session = OAuth2Session(client["client_id"], client["client_secret"], scope="openid",
                            redirect_uri=client["redirect_uri"], code_challenge_method="S256")
    url, _ = session.create_authorization_url(f"{live_server}/authorize", code_verifier="w" * 43)
    code = query_of(browser.get(url).headers["Location"])["code"]
    token = session.fetch_token(f"{live_server}/token", code=code, code_verifier="w" * 43)
    assert "nonce" not in verify_id_token(live_server, token["id_token"], client["client_id"])


# --- prompt --------------------------------------------------------------------------------------

def test_prompt_none_without_a_session_is_login_required(live_server, app, make_client):
    client = make_client(first_party=True)
    before = _request_rows(app)
    response = requests.get(raw_authorize_url(live_server, client, prompt="none", state="st-none"),
                            allow_redirects=False, timeout=TIMEOUT)
    assert_redirect_error(response, client, live_server, "login_required", "st-none")
    assert _request_rows(app) == before


def test_prompt_none_without_consent_is_consent_required(live_server, app, make_user, make_client):
    client = make_client(first_party=False)
    browser = signed_in_browser(live_server, make_user())
    before = _request_rows(app)
    response = browser.get(raw_authorize_url(live_server, client, prompt="none", state="st-consent"))
    assert_redirect_error(response, client, live_server, "consent_required", "st-consent")
    assert _request_rows(app) == before


def test_prompt_none_with_session_and_consent_issues_a_code_at_once(live_server, make_user, make_client):
    user = make_user()
    client = make_client(first_party=False)
    browser, response = authorize(live_server, user, RelyingParty(live_server, client))
    assert response.status_code == 302  # consented once
    rp = RelyingParty(live_server, client)
    response = browser.get(rp.authorization_url(prompt="none"))
    token = rp.fetch_token(rp.callback_params(response))
    verify_id_token(live_server, token["id_token"], client["client_id"], rp.nonce)


@pytest.mark.parametrize("signed_in", [False, True])
def test_prompt_none_combined_with_another_value_is_invalid_request(live_server, make_user, make_client, signed_in):
    client = make_client(first_party=True)
    browser = signed_in_browser(live_server, make_user()) if signed_in else Browser(live_server)
    for prompt in ("none login", "login none", "none consent"):
        response = browser.get(raw_authorize_url(live_server, client, prompt=prompt, state="st-mix"))
        assert_redirect_error(response, client, live_server, "invalid_request", "st-mix")


def test_prompt_login_shows_the_login_form_despite_a_session_and_then_completes(live_server, make_user, make_client):
    user = make_user()
    client = make_client(first_party=True)
    clock.set_now(_real_now() - timedelta(seconds=120))
    browser = signed_in_browser(live_server, user)
    clock.set_now(_real_now() - timedelta(seconds=60))
    rp = RelyingParty(live_server, client)
    response = browser.get(rp.authorization_url(prompt="login"))
    assert is_login_redirect(live_server, response)
    response = sign_in(browser, response, user, client["redirect_uri"])
    assert response.status_code == 302, "no second trip to the login form"
    token = rp.fetch_token(rp.callback_params(response))
    claims = verify_id_token(live_server, token["id_token"], client["client_id"], rp.nonce)
    assert claims["auth_time"] == clock.timestamp()


def test_prompt_consent_asks_again_although_consent_is_remembered(live_server, make_user, make_client):
    user = make_user()
    for first_party in (False, True):
        client = make_client(first_party=first_party)
        browser, response = authorize(live_server, user, RelyingParty(live_server, client))
        assert response.status_code == 302
        rp = RelyingParty(live_server, client)
        page = browser.get(rp.authorization_url(prompt="consent"))
        assert is_consent_page(page)
        token = rp.fetch_token(rp.callback_params(browser.consent(page, "allow")))
        verify_id_token(live_server, token["id_token"], client["client_id"], rp.nonce)


# --- max_age ---------------------------------------------------------------------------------------

def test_max_age_zero_forces_login_and_auth_time_is_fresh(live_server, make_user, make_client):
    user = make_user()
    client = make_client(first_party=True)
    clock.set_now(_real_now() - timedelta(seconds=300))
    browser = signed_in_browser(live_server, user)
    clock.advance(200)
    rp = RelyingParty(live_server, client)
    response = browser.get(rp.authorization_url(max_age="0"))
    assert is_login_redirect(live_server, response)
    response = sign_in(browser, response, user, client["redirect_uri"])
    token = rp.fetch_token(rp.callback_params(response))
    assert verify_id_token(live_server, token["id_token"], client["client_id"], rp.nonce)["auth_time"] == clock.timestamp()


def test_max_age_zero_forces_login_even_right_after_a_login(live_server, make_user, make_client):
    """OIDC Core 3.1.2.1: max_age=0 is equivalent to prompt=login."""
    user = make_user()
    client = make_client(first_party=True)
    clock.set_now(_real_now() - timedelta(seconds=60))
    browser = signed_in_browser(live_server, user)
    response = browser.get(RelyingParty(live_server, client).authorization_url(max_age="0"))
    assert is_login_redirect(live_server, response)


def test_max_age_longer_than_the_session_age_keeps_the_session(live_server, make_user, make_client):
    user = make_user()
    client = make_client(first_party=True)
    clock.set_now(_real_now() - timedelta(seconds=300))
    browser = signed_in_browser(live_server, user)
    signed_in_at = clock.timestamp()
    clock.advance(100)
    rp = RelyingParty(live_server, client)
    response = browser.get(rp.authorization_url(max_age="3600"))
    token = rp.fetch_token(rp.callback_params(response))
    assert verify_id_token(live_server, token["id_token"], client["client_id"], rp.nonce)["auth_time"] == signed_in_at
    rp = RelyingParty(live_server, client)
    assert is_login_redirect(live_server, browser.get(rp.authorization_url(max_age="99")))


def test_max_age_counts_from_auth_time_in_whole_seconds_as_the_client_does(live_server, make_user, make_client):
    """Signed in at x.9 s, asked 1.95 s later with max_age=1: the ID token's auth_time is x, so the
    client sees 2 s; the session is too old (before, the age was cut to 1 and a code went out)."""
    client = make_client(first_party=True)
    start = _real_now() - timedelta(seconds=300)
    clock.set_now(start + timedelta(milliseconds=900))
    browser = signed_in_browser(live_server, make_user())
    clock.set_now(start + timedelta(milliseconds=2850))
    response = browser.get(raw_authorize_url(live_server, client, max_age="1", prompt="none", state="st-ms"))
    assert_redirect_error(response, client, live_server, "login_required", "st-ms")


def test_max_age_exceeded_with_prompt_none_is_login_required(live_server, make_user, make_client):
    client = make_client(first_party=True)
    clock.set_now(_real_now() - timedelta(seconds=300))
    browser = signed_in_browser(live_server, make_user())
    clock.advance(100)
    response = browser.get(raw_authorize_url(live_server, client, max_age="60", prompt="none", state="st-ma"))
    assert_redirect_error(response, client, live_server, "login_required", "st-ma")


@pytest.mark.parametrize("max_age", ["-1", "abc", "1.5", "99999999999"])
def test_malformed_max_age_is_invalid_request(live_server, make_client, max_age):
    client = make_client()
    response = requests.get(raw_authorize_url(live_server, client, max_age=max_age, state="st-age"),
                            allow_redirects=False, timeout=TIMEOUT)
    assert_redirect_error(response, client, live_server, "invalid_request", "st-age")


# --- login_hint and id_token_hint ----------------------------------------------------------------------

def test_login_hint_prefills_the_login_form(live_server, make_client):
    client = make_client()
    browser = Browser(live_server)
    response = browser.get(raw_authorize_url(live_server, client, login_hint='alice@example.com"><b>'))
    assert is_login_redirect(live_server, response)
    page = browser.get(absolute(live_server, response.headers["Location"]))
    assert 'value="alice@example.com&#34;&gt;&lt;b&gt;"' in page.text or \
        'value="alice@example.com&quot;&gt;&lt;b&gt;"' in page.text
    assert "<b>" not in page.text


def _id_token_of(live_server, user, client) -> str:
    return tokens_for(live_server, user, client, scope="openid")[2]["id_token"]


def test_id_token_hint_of_another_user_asks_for_login(live_server, make_user, make_client):
    alice, bob = make_user(), make_user()
    client = make_client(first_party=True)
    hint = _id_token_of(live_server, bob, client)
    browser = signed_in_browser(live_server, alice)
    rp = RelyingParty(live_server, client)
    response = browser.get(rp.authorization_url(id_token_hint=hint))
    assert is_login_redirect(live_server, response)
    response = sign_in(browser, response, bob, client["redirect_uri"])
    token = rp.fetch_token(rp.callback_params(response))
    assert verify_id_token(live_server, token["id_token"], client["client_id"], rp.nonce)["sub"] == bob["subject"]


def test_id_token_hint_of_another_user_with_prompt_none_is_login_required(live_server, make_user, make_client):
    alice, bob = make_user(), make_user()
    client = make_client(first_party=True)
    hint = _id_token_of(live_server, bob, client)
    browser = signed_in_browser(live_server, alice)
    response = browser.get(raw_authorize_url(live_server, client, id_token_hint=hint, prompt="none", state="st-h"))
    assert_redirect_error(response, client, live_server, "login_required", "st-h")


def test_signing_in_as_someone_else_than_the_id_token_hint_is_login_required(live_server, make_user, make_client):
    alice, bob = make_user(), make_user()
    client = make_client(first_party=True)
    hint = _id_token_of(live_server, bob, client)
    browser = Browser(live_server)
    response = browser.get(raw_authorize_url(live_server, client, id_token_hint=hint, state="st-who"))
    response = sign_in(browser, response, alice, client["redirect_uri"])
    assert_redirect_error(response, client, live_server, "login_required", "st-who")


def test_id_token_hint_of_the_signed_in_user_issues_without_login(live_server, make_user, make_client):
    user = make_user()
    client = make_client(first_party=True)
    rp, browser, token = tokens_for(live_server, user, client, scope="openid")
    rp = RelyingParty(live_server, client)
    response = browser.get(rp.authorization_url(id_token_hint=token["id_token"], prompt="none"))
    assert rp.callback_params(response)["code"]


def test_expired_id_token_hint_of_the_signed_in_user_is_still_a_hint(live_server, app, make_user, make_client):
    """OIDC Core 3.1.2.1: the hint may be an expired ID token."""
    user = make_user()
    client = make_client(first_party=True)
    clock.set_now(_real_now() - timedelta(seconds=3 * app.config["IDP_SETTINGS"].token_id_ttl))
    _, browser, token = tokens_for(live_server, user, client, scope="openid")
    clock.advance(2 * app.config["IDP_SETTINGS"].token_id_ttl)
    response = browser.get(raw_authorize_url(live_server, client, id_token_hint=token["id_token"], prompt="none"))
    assert query_of(response.headers["Location"])["code"]


@pytest.mark.parametrize("hint", ["garbage", "a.b.c", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."])
def test_garbage_id_token_hint_is_invalid_request(live_server, make_user, make_client, hint):
    client = make_client(first_party=True)
    browser = signed_in_browser(live_server, make_user())
    response = browser.get(raw_authorize_url(live_server, client, id_token_hint=hint, state="st-g"))
    assert_redirect_error(response, client, live_server, "invalid_request", "st-g")


def test_an_access_token_is_not_an_id_token_hint(live_server, make_user, make_client):
    """Both are JWTs we signed, for the same person; only the ID token may be a hint."""
    user = make_user()
    client = make_client(first_party=True)
    _, browser, token = tokens_for(live_server, user, client, scope="openid")
    response = browser.get(raw_authorize_url(live_server, client, id_token_hint=token["access_token"],
                                             prompt="none", state="st-at"))
    assert_redirect_error(response, client, live_server, "invalid_request", "st-at")


# --- the claims parameter ------------------------------------------------------------------------------

@pytest.mark.parametrize("claims", ["{not json", "[]", '"text"', '{"id_token": "email"}',
                                    '{"userinfo": {"email": true}}'])
def test_malformed_claims_parameter_is_invalid_request(live_server, app, make_client, claims):
    client = make_client()
    before = _request_rows(app)
    response = requests.get(raw_authorize_url(live_server, client, claims=claims, state="st-c"),
                            allow_redirects=False, timeout=TIMEOUT)
    assert_redirect_error(response, client, live_server, "invalid_request", "st-c")
    assert _request_rows(app) == before


# --- response_mode=form_post ---------------------------------------------------------------------------

def _assert_form_post_page(response, client: dict) -> dict:
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    html = response.text
    assert f'<form method="post" action="{client["redirect_uri"]}"' in html
    scripts = [s for s in html.split("<script")[1:]]
    assert scripts, "the auto-submit script is loaded"
    for tag in scripts:
        head, _, rest = tag.partition(">")
        assert 'src="/static/js/form-post.js"' in head
        assert rest.startswith("</script>"), "no inline script"
    assert " onload=" not in html and "javascript:" not in html
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["Cache-Control"] == "no-store"
    return form_fields(html)


def test_form_post_returns_a_page_whose_form_posts_code_state_and_iss(live_server, make_user, make_client):
    user = make_user()
    client = make_client(first_party=True)
    browser = signed_in_browser(live_server, user)
    rp = RelyingParty(live_server, client)
    response = browser.get(rp.authorization_url(response_mode="form_post"))
    fields = _assert_form_post_page(response, client)
    assert set(fields) == {"code", "state", "iss"}
    assert fields["state"] == rp.state and fields["iss"] == live_server
    token = rp.fetch_token(fields)
    verify_id_token(live_server, token["id_token"], client["client_id"], rp.nonce)
    script = requests.get(f"{live_server}/static/js/form-post.js", timeout=TIMEOUT)
    assert script.status_code == 200 and "javascript" in script.headers["Content-Type"]
    assert "form[data-autosubmit]" in script.text


def test_form_post_also_carries_errors(live_server, make_client):
    client = make_client()
    state = 'st-fp"><script>x</script>'
    response = requests.get(raw_authorize_url(live_server, client, prompt="none", response_mode="form_post",
                                              state=state), allow_redirects=False, timeout=TIMEOUT)
    fields = _assert_form_post_page(response, client)
    assert fields["error"] == "login_required" and fields["state"] == state and fields["iss"] == live_server
    assert "code" not in fields


# --- unknown parameters -----------------------------------------------------------------------------------

def test_unknown_and_optional_parameters_are_ignored(live_server, make_user, make_client):
    user = make_user()
    client = make_client(first_party=True)
    rp, _, token = tokens_for(live_server, user, client, foo="bar", ui_locales="de-CH en", claims_locales="en",
                              display="page", acr_values="urn:idp:acr:pwd urn:other", registration="{}")
    verify_id_token(live_server, token["id_token"], client["client_id"], rp.nonce)


@pytest.mark.parametrize("claims", ["[" * 1500 + "]" * 1500, json.dumps({"id_token": {f"c{i}": None for i in range(600)}})])
def test_a_claims_parameter_too_deep_or_too_long_is_invalid_request_by_redirect(live_server, make_client, claims):
    """POSTed (too long for a URL); before, the deep ones were a 500 (RecursionError)."""
    client = make_client()
    base, _, query = raw_authorize_url(live_server, client, claims=claims, state="deep").partition("?")
    response = requests.post(base, data=query, allow_redirects=False, timeout=TIMEOUT,
                             headers={"Content-Type": "application/x-www-form-urlencoded",
                                      "Cookie": "idp_browser=x"})  # a same-site POST: no re-send page
    assert_redirect_error(response, client, live_server, "invalid_request", "deep")


@pytest.mark.parametrize("path", ["/authorize", "/end-session"])
def test_an_oversized_post_to_an_endpoint_that_reads_ui_locales_is_413_not_500(live_server, path):
    response = requests.post(f"{live_server}{path}", data={"ui_locales": "fr", "x": "a" * 100_000}, timeout=TIMEOUT)
    assert response.status_code == 413 and "Traceback" not in response.text


def test_a_parameter_sent_twice_is_invalid_request_by_redirect(live_server, make_user, make_client):
    """RFC 6749 3.1. Before, the first value won: prompt=none&prompt=login issued a code with no login."""
    client = make_client(first_party=True)
    browser = signed_in_browser(live_server, make_user())
    url = raw_authorize_url(live_server, client, prompt="none", state="st-dup") + "&prompt=login&max_age=0"
    response = browser.get(url)
    error = assert_redirect_error(response, client, live_server, "invalid_request", "st-dup")
    assert "prompt" in error["error_description"]


def test_a_client_id_or_redirect_uri_sent_twice_stays_on_our_page(live_server, make_client):
    client = make_client()
    for extra in ("&client_id=other", "&redirect_uri=https%3A%2F%2Fevil.example%2Fcb"):
        response = requests.get(raw_authorize_url(live_server, client) + extra, allow_redirects=False, timeout=TIMEOUT)
        assert_error_page(response, "invalid_request")


def test_a_form_post_error_for_an_apps_own_scheme_is_a_redirect(live_server, make_client):
    """A native app's private-use scheme takes no form POST: the error goes by redirect."""
    client = make_client(public=True, redirect_uris=["com.example.app:/cb"])
    response = requests.get(raw_authorize_url(live_server, client, response_mode="form_post", state="st-fp"),
                            allow_redirects=False, timeout=TIMEOUT)
    assert response.status_code == 302 and response.headers["Location"].startswith("com.example.app:/cb?")
    assert "error=invalid_request" in response.headers["Location"] and "state=st-fp" in response.headers["Location"]


def test_a_request_answered_with_an_error_is_used_up(live_server, make_user, make_client):
    """The request names A (id_token_hint), B signs in: login_required goes to the client. Before,
    the stored request lived on, and once A signed in on this browser its resume URL sent a code
    for the same state."""
    a, b = make_user(), make_user()
    client = make_client(first_party=True)
    _, _, tokens = tokens_for(live_server, a, client)
    browser = Browser(live_server)
    response = browser.get(raw_authorize_url(live_server, client, id_token_hint=tokens["id_token"], state="pend"))
    assert is_login_redirect(live_server, response)
    resume = query_of(absolute(live_server, response.headers["Location"]))["next"]
    response = sign_in(browser, response, b, client["redirect_uri"])
    assert_redirect_error(response, client, live_server, "login_required", "pend")
    assert browser.login(a["username"], a["password"]).status_code == 303
    assert_error_page(browser.get(live_server + resume))


def test_an_empty_parameter_counts_as_omitted(live_server, make_user, make_client):
    """RFC 6749 3.1: max_age=, response_mode=, request= and request_uri= are not errors."""
    client = make_client(first_party=True)
    browser = signed_in_browser(live_server, make_user())
    rp = RelyingParty(live_server, client)
    response = browser.get(rp.authorization_url(max_age="", response_mode="", request="", request_uri=""))
    token = rp.fetch_token(rp.callback_params(response))
    assert verify_id_token(live_server, token["id_token"], client["client_id"], rp.nonce)["sub"]


@pytest.mark.parametrize("redirect_uri", ["https://x.example/\u00e9", 'https://x.example/"', "https://x.example/\\",
                                          "https://x.example/ -- Your account is locked. Call +1 800 555 0100 now."])
def test_an_unregistered_redirect_uri_is_named_on_our_page_without_its_text(live_server, make_client, redirect_uri):
    """authlib wrote the URI into the description: a 500 outside RFC 6749's charset, and attacker
    text on our page (content spoofing) otherwise."""
    client = make_client()
    response = requests.get(raw_authorize_url(live_server, client, redirect_uri=redirect_uri),
                            allow_redirects=False, timeout=TIMEOUT)
    assert_error_page(response, "invalid_request")
    assert "redirect_uri is not registered for this client" in response.text
    assert "x.example" not in response.text and "800 555" not in response.text


@pytest.mark.parametrize("name", ["%C3%A9", "a%22", "a%5C", "Call+us+now"])
def test_a_repeated_parameter_with_an_odd_name_is_invalid_request_without_its_name(live_server, make_client, name):
    client = make_client()
    url = raw_authorize_url(live_server, client, state="st-odd") + f"&{name}=1&{name}=2"
    response = requests.get(url, allow_redirects=False, timeout=TIMEOUT)
    error = assert_redirect_error(response, client, live_server, "invalid_request", "st-odd")
    assert error["error_description"] == "a parameter was sent more than once"
