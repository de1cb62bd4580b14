"""The consent screen (issue 2 item 14): names the client, lists scopes in words, Allow is
remembered per scope set, Deny is access_denied, first-party clients skip it, CSRF is checked."""
import pytest

from idp.oauth.consent import SCOPE_WORDS
from tests.helpers.forms import hidden
from tests.helpers.rp import RelyingParty, verify_id_token
from tests.oauth.flows import (assert_error_page, assert_redirect_error, authorize, count_rows, is_consent_page,
                               signed_in_browser)


def _consent_rows(app) -> dict:
    counts = count_rows(app)
    return {k: counts[k] for k in ("consents", "grants", "authorization_codes")}


def test_deny_returns_access_denied_with_state_and_iss_and_writes_nothing(live_server, app, make_user, make_client):
    user = make_user()
    client = make_client()
    rp = RelyingParty(live_server, client)
    browser = signed_in_browser(live_server, user)
    page = browser.get(rp.authorization_url())
    assert is_consent_page(page)
    before = _consent_rows(app)
    response = browser.consent(page, "deny")
    assert_redirect_error(response, client, live_server, "access_denied", rp.state)
    assert _consent_rows(app) == before
    assert is_consent_page(browser.get(RelyingParty(live_server, client).authorization_url())), "deny is not remembered"


def test_allow_is_remembered_for_the_same_scopes(live_server, make_user, make_client):
    user = make_user()
    client = make_client()
    browser, response = authorize(live_server, user, RelyingParty(live_server, client, scope="openid profile"))
    assert response.status_code == 302
    for scope in ("openid profile", "openid", "profile openid"):
        rp = RelyingParty(live_server, client, scope=scope)
        response = browser.get(rp.authorization_url())
        assert response.status_code == 302, scope
        token = rp.fetch_token(rp.callback_params(response))
        verify_id_token(live_server, token["id_token"], client["client_id"], rp.nonce)


def test_a_new_scope_asks_again_and_then_the_union_is_remembered(live_server, make_user, make_client):
    user = make_user()
    client = make_client()
    browser, _ = authorize(live_server, user, RelyingParty(live_server, client, scope="openid profile"))
    rp = RelyingParty(live_server, client, scope="openid email")
    page = browser.get(rp.authorization_url())
    assert is_consent_page(page)
    assert SCOPE_WORDS["email"] in page.text
    assert rp.callback_params(browser.consent(page))["code"]
    rp = RelyingParty(live_server, client, scope="openid profile email")
    assert rp.callback_params(browser.get(rp.authorization_url()))["code"]


def test_consent_is_remembered_per_client(live_server, make_user, make_client):
    user = make_user()
    first, second = make_client(), make_client()
    browser, _ = authorize(live_server, user, RelyingParty(live_server, first))
    assert is_consent_page(browser.get(RelyingParty(live_server, second).authorization_url()))


def test_first_party_client_skips_consent(live_server, app, make_user, make_client):
    user = make_user()
    client = make_client(first_party=True)
    browser = signed_in_browser(live_server, user)
    before = _consent_rows(app)
    rp = RelyingParty(live_server, client, scope="openid profile email offline_access")
    response = browser.get(rp.authorization_url())
    assert response.status_code == 302
    assert rp.fetch_token(rp.callback_params(response))["refresh_token"]
    assert _consent_rows(app)["consents"] == before["consents"]


def test_consent_page_names_the_client_and_lists_scopes_in_words(live_server, make_user, make_client):
    user = make_user()
    client = make_client(name="Photo Printer Deluxe")
    browser = signed_in_browser(live_server, user)
    page = browser.get(RelyingParty(live_server, client, scope="openid profile email").authorization_url())
    assert is_consent_page(page)
    assert "Photo Printer Deluxe" in page.text
    for scope in ("openid", "profile", "email"):
        assert SCOPE_WORDS[scope] in page.text
    assert SCOPE_WORDS["offline_access"] not in page.text
    assert user["username"] in page.text
    assert page.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]


def test_client_name_on_the_consent_page_is_escaped(live_server, make_user, make_client):
    client = make_client(name='<script>alert("x")</script>')
    page = signed_in_browser(live_server, make_user()).get(RelyingParty(live_server, client).authorization_url())
    assert '<script>alert("x")</script>' not in page.text
    assert "&lt;script&gt;" in page.text


@pytest.mark.parametrize("token", [None, "", "forged-token"])
def test_consent_post_without_a_valid_csrf_token_is_rejected(live_server, app, make_user, make_client, token):
    user = make_user()
    client = make_client()
    browser = signed_in_browser(live_server, user)
    page = browser.get(RelyingParty(live_server, client).authorization_url())
    data = {"pending_id": hidden(page.text, "pending_id"), "decision": "allow"}
    if token is not None:
        data["csrf_token"] = token
    before = _consent_rows(app)
    response = browser.post(f"{live_server}/authorize/consent", data=data)
    assert_error_page(response)
    assert _consent_rows(app) == before
    assert is_consent_page(browser.get(RelyingParty(live_server, client).authorization_url()))


def test_consent_for_an_unknown_pending_id_is_refused(live_server, app, make_user, make_client):
    user = make_user()
    client = make_client()
    browser = signed_in_browser(live_server, user)
    page = browser.get(RelyingParty(live_server, client).authorization_url())
    before = _consent_rows(app)
    response = browser.post(f"{live_server}/authorize/consent", data={
        "csrf_token": hidden(page.text, "csrf_token"), "pending_id": "not-a-real-id", "decision": "allow"})
    assert_error_page(response)
    assert _consent_rows(app) == before
