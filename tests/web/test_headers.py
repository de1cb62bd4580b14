"""The CSP's form-action: 'self' on every page, plus, on a page whose form may end at another
origin (directly or through redirects; Chromium checks both), exactly that destination, taken
from server-side state: the pending request's registered redirect URI, the registered
post_logout_redirect_uri; never from the request's own values. The browser flows that must
still finish are in tests/browser."""
from __future__ import annotations

from urllib.parse import urlencode

import pytest

from idp.web.headers import source_expression
from tests.conftest import PASSWORD
from tests.helpers.forms import csrf_token
from tests.helpers.rp import Browser, RelyingParty
from tests.oauth.flows import raw_authorize_url, signed_in_browser

EVIL = "https://evil.example/cb"


def form_action(response) -> list[str]:
    """The sources of the response's CSP form-action directive."""
    csp = response.headers["Content-Security-Policy"]
    [directive] = [d.split() for d in csp.split(";") if d.split()[:1] == ["form-action"]]
    return directive[1:]


@pytest.mark.parametrize("url, source", [
    ("https://rp.example/cb?tenant=a", "https://rp.example/cb"),  # no query in a source
    ("https://RP.example:8443/a/b", "https://rp.example:8443/a/b"),
    ("https://rp.example", "https://rp.example"),
    ("http://127.0.0.1:9999/callback", "http://127.0.0.1:9999/callback"),
    ("http://localhost:8080/cb", "http://localhost:8080/cb"),
    # Chromium ignores an IPv6 literal as an invalid source: any host on that port and path
    ("http://[::1]:8080/cb", "http://*:8080/cb"),
    ("http://[::1]/cb", "http://*:80/cb"),
    # a private-use scheme matches only as a scheme-source (RFC 8252 7.1)
    ("com.example.app:/oauth2redirect", "com.example.app:"),
    ("com.example.app://host/cb", "com.example.app:"),
    # CSP3 2.3.1: ";" and "," end a directive or a policy, so they are percent-encoded
    ("https://rp.example/a;b,c'd", "https://rp.example/a%3Bb%2Cc%27d"),
    ("https://bücher.example/cb", "https://xn--bcher-kva.example/cb"),
])
def test_a_destination_becomes_the_narrowest_source_chromium_honours(url, source):
    assert source_expression(url) == source


@pytest.mark.parametrize("url", [None, "", "/authorize/resume/x", "javascript:alert(1)", "data:text/html,x",
                                 "https://under_score.example/cb", "http://127.0.0.1:99999/cb"])
def test_what_cannot_be_a_form_destination_adds_no_source(url):
    assert source_expression(url) is None


def test_consent_and_login_pages_name_the_pending_requests_redirect_uri_and_nothing_else(
        live_server, make_user, make_client):
    user, client = make_user(), make_client(first_party=False)
    rp = RelyingParty(live_server, client)
    browser = Browser(live_server)
    to_login = browser.get(rp.authorization_url() + "&" + urlencode({"next": EVIL}))
    assert to_login.status_code == 302 and to_login.headers["Location"].startswith("/login?next=/authorize/resume/")
    resume = to_login.headers["Location"].split("next=", 1)[1]

    login = browser.get(live_server + to_login.headers["Location"])
    assert login.status_code == 200
    assert form_action(login) == ["'self'", "http://127.0.0.1:9999/callback"]  # the login may end at the client
    posted = browser.post(f"{live_server}/login", data={"csrf_token": csrf_token(login.text), "login": user["username"],
                                                        "password": PASSWORD, "next": resume})
    assert posted.status_code == 303 and posted.headers["Location"] == resume

    consent = browser.get(live_server + resume + "?" + urlencode({"redirect_uri": EVIL, "next": EVIL}))
    assert consent.status_code == 200 and 'name="pending_id"' in consent.text
    assert form_action(consent) == ["'self'", "http://127.0.0.1:9999/callback"]

    # The same paths from another browser, or a request that is not pending: 'self' only.
    other = Browser(live_server)
    assert form_action(other.get(f"{live_server}/login?next={resume}")) == ["'self'"]
    assert form_action(browser.get(f"{live_server}/login?next=/authorize/resume/not-a-request")) == ["'self'"]
    assert form_action(browser.get(f"{live_server}/login?next=/account")) == ["'self'"]


def test_an_unregistered_redirect_uri_gets_our_error_page_with_form_action_self_only(
        live_server, make_user, make_client):
    user, client = make_user(), make_client(first_party=False)
    browser = signed_in_browser(live_server, user)
    response = browser.get(raw_authorize_url(live_server, client, redirect_uri=EVIL))
    assert response.status_code == 400 and "Location" not in response.headers
    assert form_action(response) == ["'self'"]


def test_the_form_post_page_may_post_to_the_redirect_uri_path_only(live_server, make_user, make_client):
    user = make_user()
    client = make_client(first_party=True, redirect_uris=["http://127.0.0.1:9999/callback?tenant=a"])
    browser = signed_in_browser(live_server, user)
    response = browser.get(RelyingParty(live_server, client).authorization_url(response_mode="form_post"))
    assert response.status_code == 200 and 'data-autosubmit' in response.text
    assert form_action(response) == ["'self'", "http://127.0.0.1:9999/callback"]


@pytest.mark.parametrize("target, sources", [
    ("https://rp.example/bye?from=idp", ["'self'", "https://rp.example/bye"]),
    ("https://evil.example/bye", ["'self'"]),  # not registered: no redirect, no source
])
def test_the_logout_confirmation_names_the_registered_post_logout_redirect_uri_only(
        live_server, make_user, make_client, target, sources):
    user = make_user()
    client = make_client(first_party=True, post_logout_redirect_uris=["https://rp.example/bye?from=idp"])
    browser = signed_in_browser(live_server, user)
    page = browser.get(f"{live_server}/end-session?" + urlencode({"client_id": client["client_id"],
                                                                 "post_logout_redirect_uri": target}))
    assert page.status_code == 200 and 'action="/end-session/confirm"' in page.text
    assert form_action(page) == sources
