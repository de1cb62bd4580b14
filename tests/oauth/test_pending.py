"""The pending authorization request (DESIGN.md section 7): kept server-side behind an opaque id,
bound to the browser that started it, short-lived, and no `next=` open redirect."""
from datetime import datetime, timedelta, timezone
from urllib.parse import quote, urlsplit

import pytest

from idp import clock
from tests.helpers.forms import csrf_token, hidden
from tests.helpers.races import at_once
from tests.helpers.rp import Browser, RelyingParty
from tests.oauth.flows import (absolute, assert_error_page, count_rows, is_consent_page, is_login_redirect,
                               query_of, raw_authorize_url, signed_in_browser)

EXPIRED = "This sign-in request has expired or was opened in another browser"


def _resume_path(issuer: str, browser: Browser, client: dict, **params) -> str:
    response = browser.get(raw_authorize_url(issuer, client, **params))
    assert is_login_redirect(issuer, response)
    next_path = query_of(response.headers["Location"])["next"]
    assert next_path.startswith("/authorize/resume/")
    return next_path


def test_login_redirect_carries_only_an_opaque_id_not_the_request(live_server, make_client):
    client = make_client()
    browser = Browser(live_server)
    response = browser.get(raw_authorize_url(live_server, client, state="secret-state-value", nonce="nonce-value"))
    location = response.headers["Location"]
    assert "secret-state-value" not in location and "nonce-value" not in location
    assert "redirect_uri" not in location and "9999" not in location and client["client_id"] not in location


def test_resume_url_from_another_browser_gets_our_error_page(live_server, app, make_user, make_client):
    user = make_user()
    client = make_client(first_party=True)
    path = _resume_path(live_server, Browser(live_server), client)
    thief = signed_in_browser(live_server, user)
    before = count_rows(app)
    response = thief.get(live_server + path)
    assert_error_page(response, EXPIRED)
    after = count_rows(app)
    assert after["authorization_codes"] == before["authorization_codes"]
    assert after["grants"] == before["grants"]


def test_consent_for_a_pending_request_of_another_browser_is_refused(live_server, app, make_user, make_client):
    """The consent form of browser A replayed from browser B (with B's own CSRF token) issues nothing."""
    user = make_user()
    client = make_client(first_party=False)
    owner = signed_in_browser(live_server, user)
    page = owner.get(raw_authorize_url(live_server, client))
    assert is_consent_page(page)
    pending_id = hidden(page.text, "pending_id")
    other = signed_in_browser(live_server, user)
    token = csrf_token(other.get(f"{live_server}/login").text)
    before = count_rows(app)
    response = other.post(f"{live_server}/authorize/consent",
                          data={"csrf_token": token, "pending_id": pending_id, "decision": "allow"})
    assert_error_page(response, EXPIRED)
    after = count_rows(app)
    assert (after["consents"], after["grants"]) == (before["consents"], before["grants"])


def test_pending_request_expires_after_its_ttl(live_server, app, make_user, make_client):
    user = make_user()
    client = make_client(first_party=True)
    ttl = app.config["IDP_SETTINGS"].pending_ttl
    clock.set_now(datetime.now(timezone.utc) - timedelta(seconds=ttl + 120))
    browser = Browser(live_server)
    path = _resume_path(live_server, browser, client)
    clock.advance(ttl + 1)
    assert browser.login(user["username"], user["password"], next_path=path).status_code == 303
    before = count_rows(app)
    assert_error_page(browser.get(live_server + path), EXPIRED)
    assert count_rows(app)["authorization_codes"] == before["authorization_codes"]


def test_pending_request_just_inside_its_ttl_still_completes(live_server, app, make_user, make_client):
    user = make_user()
    client = make_client(first_party=True)
    ttl = app.config["IDP_SETTINGS"].pending_ttl
    clock.set_now(datetime.now(timezone.utc) - timedelta(seconds=ttl + 120))
    browser = Browser(live_server)
    rp = RelyingParty(live_server, client)
    response = browser.get(rp.authorization_url())
    path = query_of(response.headers["Location"])["next"]
    clock.advance(ttl - 1)
    login = browser.login(user["username"], user["password"], next_path=path)
    assert login.headers["Location"] == path
    assert rp.callback_params(browser.get(live_server + path))["code"]


def test_resume_is_single_use_after_the_code_is_issued(live_server, make_user, make_client):
    user = make_user()
    client = make_client(first_party=True)
    browser = Browser(live_server)
    path = _resume_path(live_server, browser, client)
    browser.login(user["username"], user["password"], next_path=path)
    assert browser.get(live_server + path).status_code == 302
    assert_error_page(browser.get(live_server + path), EXPIRED)


@pytest.mark.parametrize("target", ["//evil.example", "https://evil.example", "/\\evil.example",
                                    "\\\\evil.example", "/\\/evil.example", "http:evil.example",
                                    "javascript:alert(1)", " //evil.example", "/\r\nLocation: https://evil.example"])
def test_next_on_login_cannot_leave_the_site(live_server, make_user, target):
    user = make_user()
    browser = Browser(live_server)
    page = browser.get(f"{live_server}/login?next={quote(target, safe='')}")
    assert page.status_code == 200
    assert "evil.example" not in hidden(page.text, "next")
    response = browser.post(f"{live_server}/login", data={"csrf_token": csrf_token(page.text),
                            "login": user["username"], "password": user["password"], "next": target})
    assert response.status_code == 303
    landing = absolute(live_server, response.headers["Location"])
    assert urlsplit(landing).netloc == urlsplit(live_server).netloc, landing
    assert "evil.example" not in landing
    final = browser.http.get(landing, timeout=10)
    assert final.status_code == 200 and urlsplit(final.url).netloc == urlsplit(live_server).netloc


def _at_once(browser: Browser, calls) -> list:
    """Send `calls` (method, url, data) in parallel, each from a copy of this browser's cookie jar."""
    import requests

    def sender(method, url, data):
        http = requests.Session()
        http.cookies.update(browser.http.cookies)
        return lambda: http.request(method, url, data=data, allow_redirects=False, timeout=10)

    return at_once([sender(*call) for call in calls])


def test_racing_resumes_of_one_request_issue_one_code(live_server, app, make_user, make_client):
    user = make_user()
    client = make_client(first_party=True)
    browser = Browser(live_server)
    path = _resume_path(live_server, browser, client)
    browser.login(user["username"], user["password"], next_path=path)
    before = count_rows(app)["authorization_codes"]
    answers = _at_once(browser, [("GET", live_server + path, None)] * 3)
    assert sorted(r.status_code for r in answers) == [302, 400, 400], [r.status_code for r in answers]
    assert "code=" in next(r for r in answers if r.status_code == 302).headers["Location"]
    for refused in (r for r in answers if r.status_code == 400):
        assert_error_page(refused, EXPIRED)
    assert count_rows(app)["authorization_codes"] == before + 1


def test_a_double_click_on_allow_answers_the_client_once(live_server, app, make_user, make_client):
    user, client = make_user(), make_client()
    browser = signed_in_browser(live_server, user)
    page = browser.get(raw_authorize_url(live_server, client, scope="openid email"))
    assert is_consent_page(page)
    form = {"csrf_token": csrf_token(page.text), "pending_id": hidden(page.text, "pending_id"),
            "sid": hidden(page.text, "sid"), "decision": "allow"}
    before = count_rows(app)["authorization_codes"]
    answers = _at_once(browser, [("POST", f"{live_server}/authorize/consent", form)] * 2)
    assert sorted(r.status_code for r in answers) == [302, 400], [r.status_code for r in answers]
    assert count_rows(app)["authorization_codes"] == before + 1


def test_two_tabs_consenting_at_once_both_succeed_and_consent_holds_both_scopes(live_server, app, make_user,
                                                                                  make_client):
    from idp.extensions import db
    from idp.models import Consent

    user, client = make_user(), make_client()
    browser = signed_in_browser(live_server, user)
    forms = []
    for scope in ("openid email", "openid profile"):
        page = browser.get(raw_authorize_url(live_server, client, scope=scope))
        assert is_consent_page(page)
        forms.append({"csrf_token": csrf_token(page.text), "pending_id": hidden(page.text, "pending_id"),
                      "sid": hidden(page.text, "sid"), "decision": "allow"})
    answers = _at_once(browser, [("POST", f"{live_server}/authorize/consent", form) for form in forms])
    assert [r.status_code for r in answers] == [302, 302]
    with app.app_context():
        scopes = db.session.scalars(db.select(Consent.scope).where(Consent.user_id == user["id"])).all()
    assert len(scopes) == 1 and set(scopes[0].split()) == {"openid", "email", "profile"}
