"""Download your data and delete your account (issue 6 item 7)."""
from __future__ import annotations

import uuid
from datetime import timedelta

from idp import clock
from idp.authn.throttle import FREE_FAILURES
from idp.extensions import db
from idp.models import AuditEvent, Grant, SsoSession, User
from tests.authn.web import Web
from tests.conftest import PASSWORD, unique
from tests.helpers.forms import csrf_token
from tests.helpers.rp import Browser
from tests.oauth.flows import refresh, signed_in_browser, tokens_for, userinfo


def privacy_token(browser, issuer) -> str:
    return csrf_token(browser.get(f"{issuer}/account/privacy").text)


def test_the_download_holds_what_we_keep_and_no_secret(live_server, app, make_user, make_client):
    user = make_user()
    client = make_client(name="Bookshop")
    browser = signed_in_browser(live_server, user)
    tokens_for(live_server, user, client, scope="openid email offline_access", browser=browser)
    from idp.models import RecoveryCode, TotpCredential, UserToken, WebAuthnCredential
    from idp.security.tokens import digest
    with app.app_context():  # what the second-factor pages and an email change would have stored
        db.session.add_all([
            WebAuthnCredential(user_id=user["id"], credential_id=f"cred-{uuid.uuid4().hex}", user_handle="h" * 43,
                               public_key=b"\x01cose", name="Work laptop", device_type="multi_device"),
            TotpCredential(user_id=user["id"], secret_encrypted="sealed-totp-secret", confirmed_at=clock.now()),
            RecoveryCode(user_id=user["id"], code_digest=digest(uuid.uuid4().hex)),
            UserToken(user_id=user["id"], token_digest=digest(uuid.uuid4().hex), purpose="change_email",
                      email=f"new-{user['email']}", expires_at=clock.now() + timedelta(hours=1))])
        from idp.authn.steps import ACR_MFA  # as if this session had used them: the export asks for two factors now
        db.session.execute(db.update(SsoSession).where(SsoSession.user_id == user["id"]).values(acr=ACR_MFA))
        db.session.commit()
    response = browser.post(f"{live_server}/account/export", data={"csrf_token": privacy_token(browser, live_server)})
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("application/json")
    assert "attachment" in response.headers["Content-Disposition"]
    data = response.json()
    assert data["profile"]["email"] == user["email"] and data["profile"]["subject"] == user["subject"]
    assert data["consents"][0]["app"] == "Bookshop" and "offline_access" in data["consents"][0]["scope"]
    assert data["grants"][0]["app"] == "Bookshop" and len(data["sessions"]) == 1
    assert {"authn.login.succeeded", "oauth.consent.granted"} <= \
        {e["type"] for e in data["audit_events"]}
    assert [p["name"] for p in data["passkeys"]] == ["Work laptop"]
    assert len(data["authenticator_apps"]) == 1 and len(data["recovery_codes"]) == 1
    assert data["emailed_links"] == [{"purpose": "change_email", "email": f"new-{user['email']}",
                                      "created_at": data["emailed_links"][0]["created_at"],
                                      "expires_at": data["emailed_links"][0]["expires_at"]}]
    assert data["linked_identities"] == []
    text = response.text
    assert "argon2" not in text and "password_hash" not in text and "token_digest" not in text
    assert "sealed-totp-secret" not in text and "cred-" not in text and "code_digest" not in text


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
    from idp.models import LoginThrottle as _LT
    with app.app_context():
        print("KEYS", db.session.scalars(db.select(_LT.key)).all(), user["id"])
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
        from idp.models import LoginThrottle
        from idp.security.tokens import digest
        # The wrong password counted on the account; on SQLite the next account may get this id.
        account = digest(f"user:{user['id']}")[:32]
        assert db.session.scalars(db.select(LoginThrottle.key).where(LoginThrottle.key.contains(account))).all() == []
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


def test_a_new_account_never_sees_a_deleted_accounts_events_nor_trusts_its_device_cookie(live_server, app, make_user):
    """SQLite gives the next account the id of the newest one once it is deleted; the deleted
    person's audit events (which stay) must not show in the new person's download, and their
    browser's device cookie must not count for the new account (found by review)."""
    from idp.authn import known_devices

    alice = make_user()
    first = signed_in_browser(live_server, alice)
    first.http.headers["User-Agent"] = "Alice-Secret-Browser/1.0"
    first.get(f"{live_server}/account")
    token = privacy_token(first, live_server)
    assert first.post(f"{live_server}/account/delete", data={"csrf_token": token, "password": PASSWORD,
                                                              "confirm": "delete"}).status_code == 303
    clock.set_now(clock.now() + timedelta(seconds=2))
    try:
        name = unique("bob")
        second = Browser(live_server)
        assert second.register(name, f"{name}@example.com", PASSWORD).status_code == 303
        export = second.post(f"{live_server}/account/export",
                             data={"csrf_token": privacy_token(second, live_server)}).json()
        assert export["audit_events"] and all(e["user_agent"] != "Alice-Secret-Browser/1.0" and
                                              e["type"] != "users.user.deleted" for e in export["audit_events"])
        with app.app_context():
            bob = db.session.scalar(db.select(User).where(User.username == name))
            old = f"{bob.id}.{int(bob.created_at.timestamp()) - 60}.nonce"
            cookie = f"{old}.{known_devices._mac(old)}"
            with app.test_request_context(headers={"Cookie": f"{known_devices.cookie_name()}={cookie}"}):
                assert known_devices.trusted_nonce(bob) is None
            fresh = f"{bob.id}.{int(clock.now().timestamp())}.nonce"
            with app.test_request_context(headers={"Cookie": f"{known_devices.cookie_name()}={fresh}.{known_devices._mac(fresh)}"}):
                assert known_devices.trusted_nonce(bob) == "nonce"
    finally:
        clock.set_now(None)


def test_password_checks_on_the_account_pages_share_the_sign_in_back_off(app, make_user):
    """A recent session is no way round the back-off: wrong current passwords on the delete,
    email and password pages count as failed sign-ins (found by review), on the counters a sign-in
    from this browser uses: its device cookie's, with its allowance of FREE_FAILURES["dev"]."""
    user = make_user()
    web = Web(app)
    assert web.login(user["username"], PASSWORD).status_code == 303
    token = csrf_token(web.get("/account/privacy").get_data(as_text=True))
    attempts = [("/account/delete", {"password": "guess-%d", "confirm": "delete"}),
                ("/account/email", {"current_password": "guess-%d", "email": "n@example.org"}),
                ("/account/security/password", {"current_password": "guess-%d", "new_password": "x" * 12})]
    statuses = []
    free = FREE_FAILURES["dev"]
    for i in range(free + 3):
        path, data = attempts[i % 3]
        statuses.append(web.post(path, data={"csrf_token": token, **{k: v.replace("%d", str(i)) if "%d" in v else v
                                                                     for k, v in data.items()}}).status_code)
    assert statuses[:free] == [400] * free and 429 in statuses[free:], statuses
    blocked = web.post("/account/delete", data={"csrf_token": token, "password": PASSWORD, "confirm": "delete"})
    assert blocked.status_code == 429 and blocked.headers["Retry-After"].isdigit()
    with app.app_context():
        assert db.session.get(User, user["id"]) is not None
        assert db.session.scalar(db.select(db.func.count()).select_from(AuditEvent).where(
            AuditEvent.user_id == user["id"], AuditEvent.type == "users.user.delete_failed")) >= 1


def test_a_double_submitted_deletion_deletes_once(live_server, app, make_user, mailbox):
    from tests.helpers.races import at_once

    user = make_user()
    browser = signed_in_browser(live_server, user)
    token = privacy_token(browser, live_server)

    def send():
        return browser.http.post(f"{live_server}/account/delete", allow_redirects=False, timeout=30, data={
            "csrf_token": token, "password": PASSWORD, "confirm": "delete"})
    statuses = [r.status_code for r in at_once([send, send, send])]
    assert 303 in statuses and all(s in (303, 400) for s in statuses), statuses
    with app.app_context():
        assert db.session.get(User, user["id"]) is None
        assert db.session.scalar(db.select(db.func.count()).select_from(AuditEvent).where(
            AuditEvent.user_id == user["id"], AuditEvent.type == "users.user.deleted")) == 1
    assert len(mailbox.wait_count(app, user["email"], 1)) == 1


def test_an_out_of_range_id_in_an_account_url_is_a_404_not_a_500(app, make_user):
    user = make_user()
    web = Web(app)
    assert web.login(user["username"], PASSWORD).status_code == 303
    token = csrf_token(web.get("/account/privacy").get_data(as_text=True))
    for path in ("/account/sessions/99999999999999999999999/end", "/account/linked/99999999999999999999999/unlink",
                 "/account/passkeys/99999999999999999999999/rename", "/account/passkeys/99999999999999999999999/delete"):
        assert web.post(path, data={"csrf_token": token, "name": "x"}).status_code == 404, path
