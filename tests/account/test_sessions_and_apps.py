"""Self-service sessions and connected apps (issue 6 items 5 and 6)."""
from __future__ import annotations

import re

import pytest
import requests

from idp.account.devices import describe_user_agent
from tests.authn.web import Web
from tests.helpers.forms import csrf_token
from tests.oauth.flows import is_consent_page, refresh, signed_in_browser, tokens_for, userinfo, with_db
from tests.helpers.rp import RelyingParty

FIREFOX_WINDOWS = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"
SAFARI_IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
                 "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1")
EDGE_WINDOWS = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
                "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0")


@pytest.mark.parametrize("agent, expected", [
    (FIREFOX_WINDOWS, "Firefox on Windows"), (SAFARI_IPHONE, "Safari on iOS"), (EDGE_WINDOWS, "Edge on Windows"),
    ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
     "Chrome on Linux"),
    ("", "Unknown browser"), (None, "Unknown browser"), ("curl/8.5.0", "Unknown browser")])
def test_user_agents_are_described_in_words_people_know(agent, expected):
    assert describe_user_agent(agent) == expected


def browser_as(app, user, agent):
    web = Web(app)
    web.http.environ_base["HTTP_USER_AGENT"] = agent
    assert web.login(user["username"], user["password"]).status_code == 303
    return web


def end_form_actions(html: str) -> list[str]:
    return re.findall(r'action="(/account/sessions/\d+/end)"', html)


def test_the_sessions_page_lists_each_session_and_ends_another_one(app, make_user):
    user = make_user()
    here = browser_as(app, user, FIREFOX_WINDOWS)
    phone = browser_as(app, user, SAFARI_IPHONE)
    page = here.get("/account/sessions").get_data(as_text=True)
    assert "Firefox on Windows" in page and "this browser" in page and "Safari on iOS" in page
    assert phone.ip in page and here.ip in page
    [action] = end_form_actions(page)  # no end button for this browser's own session
    response = here.post(action, data={"csrf_token": csrf_token(page)})
    assert response.status_code == 303
    assert not phone.is_signed_in() and here.is_signed_in()
    assert here.post(action, data={"csrf_token": csrf_token(page)}).status_code == 404


def test_nobody_can_end_someone_elses_session(app, make_user):
    from idp.extensions import db
    from idp.models import SsoSession

    alice, bob = make_user(), make_user()
    bob_web = browser_as(app, bob, SAFARI_IPHONE)
    alice_web = browser_as(app, alice, FIREFOX_WINDOWS)
    with app.app_context():
        bob_id = db.session.scalar(db.select(SsoSession.id).where(SsoSession.user_id == bob["id"]))
    token = csrf_token(alice_web.get("/account").get_data(as_text=True))
    response = alice_web.post(f"/account/sessions/{bob_id}/end", data={"csrf_token": token})
    assert response.status_code == 404 and bob_web.is_signed_in()


def test_sign_out_everywhere_else_keeps_only_this_browser(app, make_user):
    user = make_user()
    here = browser_as(app, user, FIREFOX_WINDOWS)
    others = [browser_as(app, user, SAFARI_IPHONE), browser_as(app, user, EDGE_WINDOWS)]
    page = here.get("/account/sessions").get_data(as_text=True)
    assert here.post("/account/sessions/end-others", data={"csrf_token": csrf_token(page)}).status_code == 303
    assert here.is_signed_in() and not any(o.is_signed_in() for o in others)
    assert end_form_actions(here.get("/account/sessions").get_data(as_text=True)) == []


def test_session_pages_need_a_session_and_a_csrf_token(app, make_user):
    anonymous = Web(app)
    assert anonymous.get("/account/sessions").headers["Location"].startswith("/login")
    assert anonymous.get("/account/apps").headers["Location"].startswith("/login")
    web = browser_as(app, make_user(), FIREFOX_WINDOWS)
    assert web.post("/account/sessions/end-others", data={}).status_code == 400
    assert web.is_signed_in()


def test_revoking_a_connected_app_removes_consent_and_kills_its_tokens(live_server, make_user, make_client):
    user = make_user()
    client = make_client(name="Photo printer")
    browser = signed_in_browser(live_server, user)
    _, _, token = tokens_for(live_server, user, client, scope="openid email offline_access", browser=browser)
    page = browser.get(f"{live_server}/account/apps")
    assert "Photo printer" in page.text and "See your email address" in page.text
    action = re.search(rf'action="(/account/apps/{client["client_id"]}/revoke)"', page.text).group(1)
    assert browser.post(live_server + action, data={"csrf_token": csrf_token(page.text)}).status_code == 303
    assert "Photo printer" not in browser.get(f"{live_server}/account/apps").text
    assert refresh(live_server, client, token["refresh_token"]).json()["error"] == "invalid_grant"
    assert userinfo(live_server, token["access_token"]).status_code == 401
    rp = RelyingParty(live_server, client, scope="openid email")
    assert is_consent_page(browser.get(rp.authorization_url()))  # asked again
    again = browser.post(live_server + action, data={"csrf_token": csrf_token(page.text)})
    assert again.status_code == 404


def revoke_action(page_text: str, client: dict) -> str:
    return re.search(rf'action="(/account/apps/{client["client_id"]}/revoke)"', page_text).group(1)


def test_a_first_party_app_with_a_live_grant_is_listed_and_revoking_it_kills_its_tokens(live_server, make_user,
                                                                                       make_client):
    """First-party apps skip consent, yet their offline grant outlives sign-out: the person sees
    it among the connected apps and can end it."""
    user = make_user()
    client = make_client(name="Staff portal", first_party=True)
    browser = signed_in_browser(live_server, user)
    _, _, token = tokens_for(live_server, user, client, scope="openid email offline_access", browser=browser)
    page = browser.get(f"{live_server}/account/apps")
    assert "Staff portal" in page.text and "See your email address" in page.text
    assert "Stay connected when you are not using it" in page.text
    action = revoke_action(page.text, client)
    assert browser.post(live_server + action, data={"csrf_token": csrf_token(page.text)}).status_code == 303
    assert "Staff portal" not in browser.get(f"{live_server}/account/apps").text
    assert refresh(live_server, client, token["refresh_token"]).json()["error"] == "invalid_grant"
    assert userinfo(live_server, token["access_token"]).status_code == 401
    assert browser.post(live_server + action, data={"csrf_token": csrf_token(page.text)}).status_code == 404


def test_a_first_party_app_whose_grants_ended_is_not_listed(app, live_server, make_user, make_client):
    from idp.models import Grant

    user = make_user()
    expired, revoked = make_client(name="Old wiki", first_party=True), make_client(name="Old chat", first_party=True)
    browser = signed_in_browser(live_server, user)
    for client in (expired, revoked):
        _, _, token = tokens_for(live_server, user, client, scope="openid offline_access", browser=browser)
    assert requests.post(f"{live_server}/revoke", data={"token": token["refresh_token"]},
                         auth=(revoked["client_id"], revoked["client_secret"]), timeout=10).status_code == 200
    with_db(app, lambda db: db.session.execute(db.update(Grant).where(Grant.user_id == user["id"],
                                                                     Grant.revoked_at.is_(None))
                                               .values(expires_at=Grant.created_at)))
    page = browser.get(f"{live_server}/account/apps")
    assert "Old wiki" not in page.text and "Old chat" not in page.text
    assert "No app has access to your account." in page.text
    token = csrf_token(browser.get(f"{live_server}/account").text)
    for client in (expired, revoked):
        action = f"/account/apps/{client['client_id']}/revoke"
        assert browser.post(live_server + action, data={"csrf_token": token}).status_code == 404


def test_nobody_sees_or_revokes_someone_elses_first_party_grant(live_server, make_user, make_client):
    alice, bob = make_user(), make_user()
    client = make_client(name="Payroll", first_party=True)
    _, _, token = tokens_for(live_server, bob, client, scope="openid offline_access")
    alice_browser = signed_in_browser(live_server, alice)
    page = alice_browser.get(f"{live_server}/account/apps")
    assert "Payroll" not in page.text
    action = f"/account/apps/{client['client_id']}/revoke"
    form_token = csrf_token(alice_browser.get(f"{live_server}/account").text)
    assert alice_browser.post(live_server + action, data={"csrf_token": form_token}).status_code == 404
    assert refresh(live_server, client, token["refresh_token"]).status_code == 200
