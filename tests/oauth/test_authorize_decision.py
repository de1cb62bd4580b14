"""The consent form decides the request again, as /authorize and its resumption do: a pending
request that waits for a login, a fresh login, another user or new terms issues nothing when its
id is posted to /authorize/consent, and neither does a consent page shown to another session."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit

import pytest

from idp import clock
from idp.extensions import db
from idp.models import SsoSession, User
from tests.account.test_terms import terms_server  # noqa: F401 (fixture)
from tests.conftest import PASSWORD
from tests.helpers.forms import csrf_token, hidden
from tests.helpers.rp import Browser, RelyingParty, verify_id_token
from tests.oauth.flows import (absolute, authorize, count_rows, is_consent_page, is_login_redirect,
                               raw_authorize_url, sign_in, signed_in_browser)


def _real_now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def _pending_id(location: str) -> str:
    """The pending id in a /login?next=/authorize/resume/<id> (or /terms?next=...) redirect."""
    return parse_qs(urlsplit(location).query)["next"][0].rsplit("/", 1)[1]


def _sid_of_this_session(issuer: str, browser: Browser, make_client) -> str:
    """The sid field of a consent page this browser's session gets for some other client: all a
    person at the browser could put into a forged consent form."""
    page = browser.get(raw_authorize_url(issuer, make_client()))
    assert is_consent_page(page)
    return hidden(page.text, "sid")


def _post_consent(issuer: str, browser: Browser, pending_id: str, sid: str, decision: str):
    token = csrf_token(browser.get(f"{issuer}/login").text)
    return browser.post(f"{issuer}/authorize/consent",
                        data={"csrf_token": token, "pending_id": pending_id, "sid": sid, "decision": decision})


def _sent_back_to_resume(response, pending_id: str) -> None:
    assert response.status_code == 303, (response.status_code, response.headers.get("Location"))
    assert response.headers["Location"] == f"/authorize/resume/{pending_id}"


@pytest.mark.parametrize("decision", ["allow", "deny"])
def test_consent_post_for_a_prompt_login_request_goes_back_to_the_login(app, live_server, make_user, make_client,
                                                                        decision):
    user, client = make_user(), make_client()
    clock.set_now(_real_now() - timedelta(seconds=120))
    browser = signed_in_browser(live_server, user)
    assert authorize(live_server, user, RelyingParty(live_server, client), browser=browser)[1].status_code == 302
    clock.advance(60)
    response = browser.get(RelyingParty(live_server, client).authorization_url(prompt="login"))
    assert is_login_redirect(live_server, response)
    pending_id = _pending_id(response.headers["Location"])
    before = count_rows(app)
    posted = _post_consent(live_server, browser, pending_id, _sid_of_this_session(live_server, browser, make_client),
                           decision)
    _sent_back_to_resume(posted, pending_id)
    after = count_rows(app)
    assert (after["authorization_codes"], after["grants"]) == (before["authorization_codes"], before["grants"])
    assert is_login_redirect(live_server, browser.get(absolute(live_server, posted.headers["Location"])))


def test_consent_post_for_a_max_age_request_goes_back_to_the_login(app, live_server, make_user, make_client):
    user, client = make_user(), make_client()
    clock.set_now(_real_now() - timedelta(seconds=600))
    browser = signed_in_browser(live_server, user)
    clock.advance(300)
    response = browser.get(RelyingParty(live_server, client).authorization_url(max_age="60"))
    assert is_login_redirect(live_server, response)
    pending_id = _pending_id(response.headers["Location"])
    before = count_rows(app)["authorization_codes"]
    posted = _post_consent(live_server, browser, pending_id, _sid_of_this_session(live_server, browser, make_client),
                           "allow")
    _sent_back_to_resume(posted, pending_id)
    assert count_rows(app)["authorization_codes"] == before


def test_consent_post_for_a_request_hinting_at_another_user_issues_nothing(app, live_server, make_user,
                                                                             make_client):
    alice, bob = make_user(), make_user()
    client = make_client()
    rp = RelyingParty(live_server, client)
    _, response = authorize(live_server, alice, rp)
    alice_id_token = rp.fetch_token(rp.callback_params(response))["id_token"]
    browser = signed_in_browser(live_server, bob)
    response = browser.get(RelyingParty(live_server, client).authorization_url(id_token_hint=alice_id_token))
    assert is_login_redirect(live_server, response)
    pending_id = _pending_id(response.headers["Location"])
    before = count_rows(app)
    posted = _post_consent(live_server, browser, pending_id, _sid_of_this_session(live_server, browser, make_client),
                           "allow")
    _sent_back_to_resume(posted, pending_id)
    after = count_rows(app)
    assert (after["authorization_codes"], after["consents"]) == (before["authorization_codes"], before["consents"])


def test_consent_post_before_new_terms_are_accepted_issues_nothing(terms_server, make_user,  # noqa: F811
                                                                    make_client):
    app, base = terms_server
    user, client = make_user(), make_client(first_party=True)
    with app.app_context():
        db.session.get(User, user["id"]).terms_version = "1"
        db.session.commit()
    browser = Browser(base)
    browser.login(user["username"], PASSWORD)
    response = browser.get(raw_authorize_url(base, client))
    assert response.status_code == 302 and response.headers["Location"].startswith("/terms?")
    pending_id = _pending_id(response.headers["Location"])
    with app.app_context():  # every consent page waits for the terms too: the sid from the database
        sid = db.session.scalar(db.select(SsoSession.sid).where(SsoSession.user_id == user["id"]))
    before = count_rows(app)["authorization_codes"]
    posted = _post_consent(base, browser, pending_id, sid, "allow")
    _sent_back_to_resume(posted, pending_id)
    assert count_rows(app)["authorization_codes"] == before
    with app.app_context():
        assert db.session.get(User, user["id"]).terms_version == "1"
    assert browser.get(base + posted.headers["Location"]).headers["Location"].startswith("/terms?")


def test_a_consent_page_shown_to_one_user_does_not_consent_for_the_next_one(app, live_server, make_user,
                                                                            make_client):
    """Alice leaves a consent page open; Bob signs in in the same browser; Allow on Alice's page
    leads to a consent page for Bob instead of a code for Bob."""
    alice, bob = make_user(), make_user()
    client = make_client()
    browser = signed_in_browser(live_server, alice)
    page = browser.get(raw_authorize_url(live_server, client))
    assert is_consent_page(page) and alice["username"] in page.text
    assert browser.login(bob["username"], bob["password"]).status_code == 303
    before = count_rows(app)
    assert browser.consent(page, "allow").status_code == 400  # Bob's sign-in renewed the CSRF token
    pending_id = hidden(page.text, "pending_id")
    fresh = csrf_token(browser.get(f"{live_server}/logout").text)  # any form of Bob's session
    posted = browser.post(f"{live_server}/authorize/consent", data={  # Alice's form, with a valid token
        "csrf_token": fresh, "pending_id": pending_id, "sid": hidden(page.text, "sid"), "decision": "allow"})
    _sent_back_to_resume(posted, pending_id)
    after = count_rows(app)
    assert (after["authorization_codes"], after["consents"]) == (before["authorization_codes"], before["consents"])
    again = browser.get(absolute(live_server, posted.headers["Location"]))
    assert is_consent_page(again) and bob["username"] in again.text


def test_a_consent_form_without_the_session_it_was_shown_to_asks_again(app, live_server, make_user, make_client):
    user, client = make_user(), make_client()
    browser = signed_in_browser(live_server, user)
    page = browser.get(raw_authorize_url(live_server, client))
    pending_id = hidden(page.text, "pending_id")
    posted = browser.post(f"{live_server}/authorize/consent", data={
        "csrf_token": csrf_token(page.text), "pending_id": pending_id, "decision": "allow"})
    _sent_back_to_resume(posted, pending_id)
    assert is_consent_page(browser.get(absolute(live_server, posted.headers["Location"])))


def test_consent_after_the_login_a_prompt_login_asked_for_issues_with_the_new_auth_time(live_server, make_user,
                                                                                           make_client):
    user, client = make_user(), make_client()
    clock.set_now(_real_now() - timedelta(seconds=120))
    browser = signed_in_browser(live_server, user)
    clock.advance(60)
    rp = RelyingParty(live_server, client)
    response = sign_in(browser, browser.get(rp.authorization_url(prompt="login")), user, client["redirect_uri"])
    assert is_consent_page(response)
    token = rp.fetch_token(rp.callback_params(browser.consent(response)))
    claims = verify_id_token(live_server, token["id_token"], client["client_id"], rp.nonce)
    assert claims["auth_time"] == clock.timestamp()
