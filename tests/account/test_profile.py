"""Self-service profile, email change and password change (issue 6 item 4)."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest

from idp import clock
from idp.extensions import db
from idp.models import AuditEvent, User, UserToken
from tests.authn.web import Web
from tests.conftest import PASSWORD
from tests.helpers.forms import csrf_token
from tests.helpers.rp import verify_id_token
from tests.oauth.flows import signed_in_browser, tokens_for, userinfo
from tests.users.test_email_links import events, link_in, local, post_page

FULL = {"preferred_username": None, "name": "Ada Lovelace", "given_name": "Ada", "middle_name": "",
        "family_name": "Lovelace", "nickname": "ada", "picture": "https://img.example.com/ada.png",
        "website": "https://ada.example.com", "gender": "female", "birthdate": "1815-12-10",
        "zoneinfo": "Europe/London", "locale": "en-GB", "phone_number": "+442071234567",
        "address_street_address": "12 St James's Square", "address_postal_code": "SW1Y 4JH",
        "address_locality": "London", "address_region": "", "address_country": "United Kingdom"}


def save_profile(browser, issuer, **changes):
    page = browser.get(f"{issuer}/account/profile")
    assert page.status_code == 200
    values = {k: v for k, v in FULL.items()}
    values["preferred_username"] = re.search(r'name="preferred_username"[^>]*value="([^"]*)"', page.text).group(1)
    values.update(changes)
    return browser.post(f"{issuer}/account/profile", data={"csrf_token": csrf_token(page.text), **values})


def test_profile_changes_show_up_in_userinfo_and_new_id_tokens(live_server, make_user, make_client):
    user = make_user()
    client = make_client(first_party=True)
    browser = signed_in_browser(live_server, user)
    _, _, before = tokens_for(live_server, user, client, scope="openid profile", browser=browser)
    first_updated = userinfo(live_server, before["access_token"]).json()["updated_at"]
    response = save_profile(browser, live_server)
    assert response.status_code == 303
    scope = "openid profile phone address"
    rp, _, token = tokens_for(live_server, user, client, scope=scope, browser=browser,
                              claims='{"id_token": {"given_name": null, "birthdate": null}}')
    info = userinfo(live_server, token["access_token"]).json()
    assert {k: info[k] for k in ("name", "given_name", "family_name", "nickname", "picture", "website", "gender",
                                 "birthdate", "zoneinfo", "locale", "phone_number")} == \
        {k: FULL[k] for k in ("name", "given_name", "family_name", "nickname", "picture", "website", "gender",
                              "birthdate", "zoneinfo", "locale", "phone_number")}
    assert "middle_name" not in info and info["phone_number_verified"] is False
    assert info["address"] == {"street_address": "12 St James's Square", "postal_code": "SW1Y 4JH",
                               "locality": "London", "country": "United Kingdom",
                               "formatted": "12 St James's Square\nSW1Y 4JH London\nUnited Kingdom"}
    assert info["updated_at"] >= first_updated
    claims = verify_id_token(live_server, token["id_token"], client["client_id"], rp.nonce)
    assert claims["given_name"] == "Ada" and claims["birthdate"] == "1815-12-10"
    save_profile(browser, live_server, nickname="", picture="")
    _, _, cleared = tokens_for(live_server, user, client, scope=scope, browser=browser)
    info = userinfo(live_server, cleared["access_token"]).json()
    assert "nickname" not in info and "picture" not in info and info["given_name"] == "Ada"


@pytest.mark.parametrize("field, value", [
    ("picture", "http://img.example.com/a.png"), ("website", "javascript:alert(1)"),
    ("birthdate", "2021-02-30"), ("birthdate", "12/10/1815"), ("birthdate", "2999-01-01"),
    ("zoneinfo", "Mars/Olympus_Mons"), ("locale", "en GB!"), ("phone_number", "0123 456"),
    ("given_name", "x" * 300), ("nickname", "tab\there"), ("preferred_username", "no spaces please"),
    ("preferred_username", ""), ("preferred_username", "p\u0430ypal"), ("preferred_username", "a\u0661\u0662b3"),
    # before: a 500 (urlsplit's ValueError; a value wider than its column on PostgreSQL) or non-ASCII digits stored
    ("website", "https://["), ("picture", "https://[::1"), ("website", "https://evil\uff03.example.com/"),
    ("gender", "x" * 100), ("locale", "en-" + "-".join(["abcdefgh"] * 10)),
    ("birthdate", "\u0661\u0669\u0669\u0660-\u0660\u0661-\u0660\u0662"), ("phone_number", "+3\u0663\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668")])
def test_a_bad_value_is_refused_next_to_its_field_and_changes_nothing(live_server, app, make_user, field, value):
    user = make_user()
    browser = signed_in_browser(live_server, user)
    response = save_profile(browser, live_server, **{field: value})
    assert response.status_code == 400
    assert f'aria-describedby="e-{field}"' in response.text
    with app.app_context():
        row = db.session.get(User, user["id"])
        assert row.given_name is None and row.username == user["username"]


def test_a_username_that_is_taken_is_refused(live_server, make_user):
    other, user = make_user(), make_user()
    response = save_profile(signed_in_browser(live_server, user), live_server, preferred_username=other["username"].upper())
    assert response.status_code == 400 and "cannot be used" in response.text


def test_renaming_changes_preferred_username_and_the_login(live_server, make_user):
    user = make_user()
    browser = signed_in_browser(live_server, user)
    new_name = user["username"] + "_x"
    assert save_profile(browser, live_server, preferred_username=new_name).status_code == 303
    from tests.helpers.rp import Browser
    assert Browser(live_server).login(new_name, PASSWORD).status_code == 303


def test_a_username_is_stored_in_nfkc_after_a_rename(live_server, app, make_user):
    user = make_user()
    browser = signed_in_browser(live_server, user)
    assert save_profile(browser, live_server, preferred_username="\uff21da_" + user["username"]).status_code == 303
    with app.app_context():
        assert db.session.get(User, user["id"]).username == "Ada_" + user["username"]


def test_a_username_from_before_the_script_rule_may_stay_when_the_profile_is_saved(live_server, app, make_user):
    user = make_user()
    with app.app_context():
        db.session.get(User, user["id"]).username = "p\u0430ypal" + user["username"][-6:]
        db.session.commit()
    browser = signed_in_browser(live_server, user)
    assert save_profile(browser, live_server, nickname="kept").status_code == 303
    with app.app_context():
        assert db.session.get(User, user["id"]).nickname == "kept"


def request_change(web, new_email, password=PASSWORD):
    page = web.get("/account/profile").get_data(as_text=True)
    return web.post("/account/email", data={"csrf_token": csrf_token(page), "email": new_email,
                                            "current_password": password})


def test_a_new_email_takes_effect_only_through_the_link_sent_to_it(app, make_user, mailbox):
    user = make_user()
    web = Web(app)
    web.login(user["username"], PASSWORD)
    new_email = "new-" + user["email"]
    response = request_change(web, new_email)
    assert response.status_code == 200 and "We sent a link" in response.get_data(as_text=True)
    message = mailbox.last(app, new_email)
    with app.app_context():
        assert db.session.get(User, user["id"]).email == user["email"]
    text = message.get_body(preferencelist=("plain",)).get_content()
    path = re.search(r"http://[^/]+(/confirm-email-change/[\w\-]+)", text).group(1)
    page = web.get(path)
    assert page.status_code == 200
    done = web.post(path, data={"csrf_token": csrf_token(page.get_data(as_text=True))})
    assert done.status_code == 200
    with app.app_context():
        row = db.session.get(User, user["id"])
        assert row.email == new_email and row.email_verified
    notice = mailbox.last(app, user["email"])
    assert notice["Subject"] == "Your email address was changed" and new_email in notice.get_body().get_content()
    assert web.get(path).status_code == 410


def test_an_email_change_to_a_taken_address_answers_like_a_free_one_and_changes_nothing(app, make_user, mailbox):
    """The page must not tell a signed-in person which addresses have accounts: the answer, the
    throttle and the notice to their own address are those of a free address; the address's
    owner is told, with no link and without the other account's name."""
    other, user, control = make_user(), make_user(), make_user()
    pages = {}
    for who, target in ((user, other["email"].upper()), (control, "free-" + control["email"])):
        web = Web(app)
        web.login(who["username"], PASSWORD)
        first, again = request_change(web, target), request_change(web, target)
        pages[who["username"]] = (first.status_code, first.get_data(as_text=True).replace(target, "X")
                                  .replace(who["username"], "Y").replace(who["email"], "Z"), again.status_code)
        assert request_change(web, "not an email").status_code == 400
    assert pages[user["username"]][0] == 200 and pages[user["username"]][2] == 429
    assert "We sent a link" in pages[user["username"]][1]
    assert [p[0] for p in pages.values()] == [200, 200] and [p[2] for p in pages.values()] == [429, 429]
    told = mailbox.last(app, other["email"])
    text = told.get_body(preferencelist=("plain",)).get_content()
    assert told["Subject"] == "Someone asked to use your email address"
    assert "http" not in text and user["username"] not in text and user["email"] not in text
    assert mailbox.last(app, user["email"])["Subject"] == "Someone asked to change your email address"
    with app.app_context():
        assert db.session.get(User, user["id"]).email == user["email"]
        assert db.session.get(User, other["id"]).email == other["email"]
        assert db.session.scalar(db.select(AuditEvent).where(
            AuditEvent.user_id == user["id"], AuditEvent.type == "users.email.change_requested")).details \
            == {"reason": "address_taken"}


def change_links(app, user_id: int) -> list[UserToken]:
    with app.app_context():
        return db.session.scalars(db.select(UserToken).where(UserToken.user_id == user_id,
                                                             UserToken.purpose == "change_email")).all()


def is_dead(app, path: str) -> bool:
    """The link's page says it is gone, and posting to it (with a valid CSRF token) changes nothing."""
    web = Web(app)
    token = csrf_token(web.get("/forgot-password").get_data(as_text=True))
    return web.get(path).status_code == 410 and web.post(path, data={"csrf_token": token}).status_code == 410


def confirm_path(app, mailbox, address: str) -> str:
    return local(app.config["IDP_SETTINGS"].issuer, link_in(mailbox.last(app, address), "/confirm-email-change/"))


def test_an_email_change_needs_a_recent_sign_in(app, make_user):
    user = make_user()
    web = Web(app)
    assert web.login(user["username"], PASSWORD).status_code == 303
    clock.set_now(clock.now() + timedelta(hours=2))  # past IDP_MFA_RECENT_AUTH_SECONDS
    page = web.get("/account/profile").get_data(as_text=True)
    assert 'name="current_password"' not in page and "reauth=1" in page
    response = request_change(web, "stolen-" + user["email"])
    assert response.status_code == 303 and "reauth=1" in response.headers["Location"]
    assert change_links(app, user["id"]) == []
    with app.app_context():
        assert db.session.get(User, user["id"]).email == user["email"]


@pytest.mark.parametrize("password", ["not the password", ""])
def test_an_email_change_needs_the_current_password(app, make_user, password):
    user = make_user()
    web = Web(app)
    assert web.login(user["username"], PASSWORD).status_code == 303
    response = request_change(web, "stolen-" + user["email"], password=password)
    assert response.status_code == 400 and "current password is not right" in response.get_data(as_text=True)
    assert change_links(app, user["id"]) == []
    assert ("account.email.change_failed", "failure", {"reason": "bad_password"}) in events(app, user["id"], "account.email")


def test_the_old_address_hears_of_a_change_request_and_what_to_do(app, make_user, mailbox):
    user = make_user()
    web = Web(app)
    web.login(user["username"], PASSWORD)
    assert request_change(web, "new-" + user["email"]).status_code == 200
    notice = mailbox.last(app, user["email"])
    text = notice.get_body(preferencelist=("plain",)).get_content()
    assert notice["Subject"] == "Someone asked to change your email address"
    assert "new-" + user["email"] in text and "change your password now" in text


def _change_password(web, new_password, end_others=True):
    page = web.get("/account/security/password").get_data(as_text=True)
    data = {"csrf_token": csrf_token(page), "current_password": PASSWORD, "new_password": new_password}
    if end_others:
        data["end_other_sessions"] = "1"
    return web.post("/account/security/password", data=data)


def test_a_pending_email_change_dies_when_the_owner_changes_the_password(app, make_user, mailbox):
    user = make_user()
    stolen, owner = Web(app), Web(app)
    stolen.login(user["username"], PASSWORD)
    assert request_change(stolen, "evil-" + user["email"]).status_code == 200
    path = confirm_path(app, mailbox, "evil-" + user["email"])
    owner.login(user["username"], PASSWORD)
    assert _change_password(owner, "a brand new passphrase 42", end_others=False).status_code == 303
    assert is_dead(app, path)
    with app.app_context():
        assert db.session.get(User, user["id"]).email == user["email"]


def test_a_pending_email_change_dies_when_the_password_is_reset(app, make_user, mailbox):
    user = make_user()
    stolen = Web(app)
    stolen.login(user["username"], PASSWORD)
    assert request_change(stolen, "evil-" + user["email"]).status_code == 200
    path = confirm_path(app, mailbox, "evil-" + user["email"])
    forgot = Web(app)
    page = forgot.get("/forgot-password").get_data(as_text=True)
    forgot.post("/forgot-password", data={"csrf_token": csrf_token(page), "login": user["email"]})
    reset = local(app.config["IDP_SETTINGS"].issuer, link_in(mailbox.last(app, user["email"]), "/reset-password/"))
    assert post_page(Web(app), reset, password="a brand new passphrase 42").status_code == 200
    assert is_dead(app, path)


def test_a_pending_email_change_dies_when_the_owner_ends_other_sessions(app, make_user, mailbox):
    user = make_user()
    stolen, owner = Web(app), Web(app)
    stolen.login(user["username"], PASSWORD)
    assert request_change(stolen, "evil-" + user["email"]).status_code == 200
    path = confirm_path(app, mailbox, "evil-" + user["email"])
    owner.login(user["username"], PASSWORD)
    page = owner.get("/account/sessions").get_data(as_text=True)
    assert owner.post("/account/sessions/end-others", data={"csrf_token": csrf_token(page)}).status_code == 303
    assert not stolen.is_signed_in()
    assert is_dead(app, path)
    with app.app_context():
        assert db.session.get(User, user["id"]).email == user["email"]


def test_a_username_changes_only_after_a_recent_sign_in_and_the_person_is_told(app, make_user, mailbox):
    """The username is a way to sign in: an unattended session must not change it unseen
    (found by review)."""
    user = make_user()
    web = Web(app)
    assert web.login(user["username"], PASSWORD).status_code == 303
    clock.set_now(clock.now() + timedelta(seconds=app.config["IDP_SETTINGS"].mfa_recent_auth_seconds + 60))
    try:
        page = web.get("/account/profile").get_data(as_text=True)
        stale = web.post("/account/profile", data={"csrf_token": csrf_token(page), "preferred_username": user["username"] + "_x"})
        assert stale.status_code == 400 and "Sign in again to change your username." in stale.get_data(as_text=True)
        kept = web.post("/account/profile", data={"csrf_token": csrf_token(page), "preferred_username": user["username"],
                                                  "nickname": "still saves"})
        assert kept.status_code == 303  # other fields need no recent sign-in
        assert web.login(user["username"], PASSWORD).status_code == 303
        page = web.get("/account/profile").get_data(as_text=True)  # the sign-in renewed the CSRF token
        renamed = web.post("/account/profile", data={"csrf_token": csrf_token(page),
                                                     "preferred_username": user["username"] + "_x"})
        assert renamed.status_code == 303
    finally:
        clock.set_now(None)
    with app.app_context():
        assert db.session.get(User, user["id"]).username == user["username"] + "_x"
    told = mailbox.last(app, user["email"]).get_body(preferencelist=("plain",)).get_content()
    assert "Your username was changed" in told
