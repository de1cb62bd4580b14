"""Download your data and delete your account (issue 6 item 7)."""
from __future__ import annotations

import uuid
from datetime import timedelta

from idp import clock
from idp.extensions import db
from idp.models import AuditEvent, Grant, SsoSession, User
from tests.authn.web import Web
from tests.conftest import PASSWORD, unique
from tests.helpers.forms import csrf_token
from tests.helpers.rp import Browser
from tests.oauth.flows import refresh, signed_in_browser, tokens_for, userinfo


def privacy_token(browser, issuer) -> str:
    return csrf_token(browser.get(f"{issuer}/account/privacy").text)


def test_the_download_holds_what_we_keep_and_no_secret(live_server, make_user, make_client):
    user = make_user()
    client = make_client(name="Bookshop")
    browser = signed_in_browser(live_server, user)
    tokens_for(live_server, user, client, scope="openid email offline_access", browser=browser)
    response = browser.post(f"{live_server}/account/export", data={"csrf_token": privacy_token(browser, live_server)})
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("application/json")
    assert "attachment" in response.headers["Content-Disposition"]
    data = response.json()
    assert data["profile"]["email"] == user["email"] and data["profile"]["subject"] == user["subject"]
    assert data["consents"][0]["app"] == "Bookshop" and "offline_access" in data["consents"][0]["scope"]
    assert data["grants"][0]["app"] == "Bookshop" and len(data["sessions"]) == 1
    assert {"authn.login.succeeded", "oauth.consent.granted"} <= \
        {e["type"] for e in data["audit_events"]}
    text = response.text
    assert "argon2" not in text and "password_hash" not in text and "token_digest" not in text


def test_the_download_needs_a_recent_sign_in(live_server, make_user):
    user = make_user()
    browser = signed_in_browser(live_server, user)
    token = privacy_token(browser, live_server)
    clock.set_now(clock.now() + timedelta(minutes=11))
    response = browser.post(f"{live_server}/account/export", data={"csrf_token": token})
    assert response.status_code == 303 and "/login?" in response.headers["Location"]
    assert "reauth=1" in response.headers["Location"]


def test_deleting_the_account_erases_it_and_ends_everything(live_server, app, make_user, make_client, mailbox):
    user = make_user()
    client = make_client()
    browser = signed_in_browser(live_server, user)
    elsewhere = signed_in_browser(live_server, user)
    _, _, token = tokens_for(live_server, user, client, scope="openid offline_access", browser=browser)
    token_field = privacy_token(browser, live_server)
    wrong = browser.post(f"{live_server}/account/delete", data={"csrf_token": token_field, "password": "wrong!",
                                                                "confirm": "delete"})
    assert wrong.status_code == 400
    unconfirmed = browser.post(f"{live_server}/account/delete", data={"csrf_token": token_field, "password": PASSWORD})
    assert unconfirmed.status_code == 400
    with app.app_context():
        assert db.session.get(User, user["id"]) is not None
    done = browser.post(f"{live_server}/account/delete", data={"csrf_token": token_field, "password": PASSWORD,
                                                               "confirm": "delete"})
    assert done.status_code == 303 and done.headers["Location"].endswith("/account/deleted")
    with app.app_context():
        assert db.session.get(User, user["id"]) is None
        assert db.session.scalar(db.select(db.func.count()).select_from(SsoSession)
                                 .where(SsoSession.user_id == user["id"])) == 0
        assert db.session.scalar(db.select(db.func.count()).select_from(Grant).where(Grant.user_id == user["id"])) == 0
        deleted = db.session.scalar(db.select(AuditEvent).where(AuditEvent.type == "users.user.deleted",
                                                                AuditEvent.user_id == user["id"]))
        assert deleted is not None and user["email"] not in str(deleted.details)
    assert refresh(live_server, client, token["refresh_token"]).json()["error"] == "invalid_grant"
    assert userinfo(live_server, token["access_token"]).status_code == 401
    assert browser.get(f"{live_server}/account").status_code == 302
    assert elsewhere.get(f"{live_server}/account").status_code == 302
    assert mailbox.last(app, user["email"])["Subject"] == "Your account was deleted"
    assert Web(app).login(user["username"], PASSWORD).status_code == 400


def test_deleting_needs_a_recent_sign_in_and_a_csrf_token(live_server, app, make_user):
    user = make_user()
    browser = signed_in_browser(live_server, user)
    token_field = privacy_token(browser, live_server)
    assert browser.post(f"{live_server}/account/delete", data={"password": PASSWORD, "confirm": "delete"}).status_code == 400
    clock.set_now(clock.now() + timedelta(minutes=11))
    late = browser.post(f"{live_server}/account/delete", data={"csrf_token": token_field, "password": PASSWORD,
                                                               "confirm": "delete"})
    assert late.status_code == 303 and "reauth=1" in late.headers["Location"]
    with app.app_context():
        assert db.session.get(User, user["id"]) is not None


def test_the_download_works_for_a_username_in_any_script(live_server):
    """Over real HTTP (werkzeug encodes headers as Latin-1): the file name never holds the username."""
    browser = Browser(live_server)
    name = "иван_" + str(uuid.uuid4().int)[:8]  # digits: unique()'s hex letters are Latin, and scripts may not mix
    assert browser.register(name, unique("u") + "@example.com", PASSWORD).status_code in (200, 303)
    response = browser.post(f"{live_server}/account/export", data={"csrf_token": privacy_token(browser, live_server)})
    assert response.status_code == 200 and response.json()["profile"]["username"] == name
    today = clock.now().strftime("%Y-%m-%d")
    assert response.headers["Content-Disposition"] == f'attachment; filename="idp-data-{today}.json"'
