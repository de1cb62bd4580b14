"""A change to how an account signs in (password, authenticator app, passkeys, recovery codes) is
mailed to the account's address, once per change, in the language of the page that made it, and
the mail holds no secret: abuse of a stolen or unattended session does not stay invisible."""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone

import pytest

from idp import clock
from idp.extensions import db
from idp.models import OutboxMessage, User, WebAuthnCredential
from idp.users import notices
from tests.authn.test_passkeys import add_passkey, options
from tests.authn.test_step_up_enrolment import MFA, PHR, enrol_passkey, step_up
from tests.authn.web import Web
from tests.helpers.authenticator import SoftAuthenticator
from tests.helpers.forms import csrf_token
from tests.helpers.mfa import code_at, give_passkey, give_recovery_codes, give_totp

SUBJECT = "How you sign in to your account changed"
SUBJECT_FR = "La façon de vous connecter à votre compte a changé"
NEW_PASSWORD = "a much better passphrase 42"


@pytest.fixture
def pinned():
    clock.set_now(datetime(2031, 5, 6, 7, 8, 9, tzinfo=timezone.utc))
    return clock


def notices_to(app, mailbox, address: str, subject: str = SUBJECT) -> list:
    """Every security notice delivered to `address` (after running the outbox)."""
    mailbox.deliver(app)
    return [m for m in mailbox.to(address) if m["Subject"] == subject]


def the_notice(app, mailbox, address: str, subject: str = SUBJECT) -> tuple[str, str]:
    """The one notice to `address`: its text and HTML bodies."""
    mailbox.wait_count(app, address, 1)
    [message] = notices_to(app, mailbox, address, subject)
    return (message.get_body(preferencelist=("plain",)).get_content(),
            message.get_body(preferencelist=("html",)).get_content())


def signed_in(app, user, **headers) -> Web:
    web = Web(app)
    web.http.environ_base.update({f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()})
    assert web.login(user["username"], user["password"]).status_code == 303
    return web


def post(web: Web, page_path: str, path: str, **data):
    page = web.get(page_path)
    return web.post(path, data={"csrf_token": csrf_token(page.get_data(as_text=True)), **data})


def enrol_totp(web: Web, page_path: str = "/account/security/totp"):
    """Set up the app on `page_path`; (its secret, the response)."""
    html = web.get(page_path).get_data(as_text=True)
    secret = html.split('data-testid="totp-secret">', 1)[1].split("<", 1)[0].strip()
    return secret, web.post(page_path, data={"csrf_token": csrf_token(html), "code": code_at(secret)})


def shown_codes(response) -> list[str]:
    return re.findall(r"<li><code>([^<]+)</code></li>", response.get_data(as_text=True))


def assert_no_secret(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret and secret not in text


# --- the password ---------------------------------------------------------------------------------

def test_a_password_change_on_the_account_page_is_mailed_once_without_the_password(app, make_user, mailbox,
                                                                                    pinned):
    user = make_user()
    web = signed_in(app, user)
    done = post(web, "/account/security/password", "/account/security/password",
                current_password=user["password"], new_password=NEW_PASSWORD)
    assert done.status_code == 303
    text, html = the_notice(app, mailbox, user["email"])
    assert "Your password was changed." in text and "Your password was changed." in html
    assert "2031-05-06 07:08 UTC" in text
    assert "signed out" not in text  # the person did not ask to end the other sessions
    assert "reset your password at once" in text and "/forgot-password" in text
    assert "you can ignore it" not in html
    assert_no_secret(text + html, NEW_PASSWORD, user["password"])


def test_a_password_change_that_signs_out_elsewhere_says_so(app, make_user, mailbox, pinned):
    user = make_user()
    elsewhere = signed_in(app, user)
    web = signed_in(app, user)
    assert post(web, "/account/security/password", "/account/security/password", current_password=user["password"],
                new_password=NEW_PASSWORD, end_other_sessions="1").status_code == 303
    assert not elsewhere.is_signed_in()
    text, _ = the_notice(app, mailbox, user["email"])
    assert "Your password was changed." in text and "Every other session of your account was signed out." in text


def test_a_refused_password_change_sends_nothing(app, make_user, mailbox, pinned):
    user = make_user()
    web = signed_in(app, user)
    assert post(web, "/account/security/password", "/account/security/password",
                current_password="not it", new_password=NEW_PASSWORD).status_code == 400
    assert post(web, "/account/security/password", "/account/security/password",
                current_password=user["password"], new_password="short").status_code == 400
    assert notices_to(app, mailbox, user["email"]) == []


def test_a_plain_password_login_sends_nothing(app, make_user, mailbox):
    user = make_user()
    signed_in(app, user)
    mailbox.deliver(app)
    assert mailbox.to(user["email"]) == []


# --- the authenticator app and recovery codes ------------------------------------------------------

def test_setting_up_the_app_is_mailed_once_without_its_secret_or_the_codes(app, make_user, mailbox, pinned):
    user = make_user()
    web = signed_in(app, user)
    secret, done = enrol_totp(web)
    codes = shown_codes(done)
    assert len(codes) == 10
    text, html = the_notice(app, mailbox, user["email"])
    assert "An authenticator app was set up" in text and "A new set of recovery codes was made" in text
    assert_no_secret(text + html, secret, *codes, *[c.replace("-", "") for c in codes])


def test_a_wrong_code_at_set_up_sends_nothing(app, make_user, mailbox, pinned):
    user = make_user()
    web = signed_in(app, user)
    html = web.get("/account/security/totp").get_data(as_text=True)
    assert web.post("/account/security/totp", data={"csrf_token": csrf_token(html), "code": "000000"}) \
        .status_code == 400
    assert notices_to(app, mailbox, user["email"]) == []


def test_removing_the_app_is_mailed_once_with_the_codes_it_took(app, make_user, mailbox, pinned):
    user = make_user()
    secret = give_totp(app, user)
    give_recovery_codes(app, user)
    web = Web(app)
    assert web.login(user["username"], user["password"]).headers["Location"] == "/login/totp"
    assert post(web, "/login/totp", "/login/totp", code=code_at(secret)).status_code == 303
    assert post(web, "/account/security", "/account/security/totp/remove").status_code == 303
    text, _ = the_notice(app, mailbox, user["email"])
    assert "The authenticator app was removed" in text and "Your recovery codes were removed" in text
    # A second removal (a double click) finds nothing to remove and tells nobody again.
    again = web.post("/account/security/totp/remove", data={"csrf_token": web.token("/logout")})
    assert again.status_code == 303
    assert len(notices_to(app, mailbox, user["email"])) == 1


def test_new_recovery_codes_are_mailed_once_without_the_codes(app, make_user, mailbox, pinned):
    user = make_user()
    web = signed_in(app, user)
    enrol_totp(web)
    mailbox.wait_count(app, user["email"], 1)
    made = post(web, "/account/security", "/account/security/recovery-codes")
    codes = shown_codes(made)
    assert made.status_code == 200 and len(codes) == 10
    mailbox.wait_count(app, user["email"], 2)
    second = notices_to(app, mailbox, user["email"])
    assert len(second) == 2
    text = second[-1].get_body(preferencelist=("plain",)).get_content()
    assert "A new set of recovery codes was made" in text and "authenticator app" not in text
    assert_no_secret(second[-1].as_string(), *codes, *[c.replace("-", "") for c in codes])


def test_setting_up_the_app_during_a_login_is_mailed_once(app, make_user, mailbox, pinned):
    user = make_user()
    web = signed_in(app, user)
    assert step_up(web, MFA).headers["Location"] == "/login/totp/enrol"
    secret, codes_page = enrol_totp(web, "/login/totp/enrol")
    codes = shown_codes(codes_page)
    assert codes_page.status_code == 200 and len(codes) == 10
    text, html = the_notice(app, mailbox, user["email"])
    assert "An authenticator app was set up" in text and "A new set of recovery codes was made" in text
    assert_no_secret(text + html, secret, *codes)


def test_a_passkey_set_up_during_a_login_that_keeps_the_codes_names_only_the_passkey(app, make_user, mailbox,
                                                                                      pinned):
    user = make_user()
    secret = give_totp(app, user)
    give_recovery_codes(app, user)
    web = Web(app)
    page = web.get(f"/login?next=/account&acr={PHR}&required={PHR}").get_data(as_text=True)
    web.post("/login", data={"csrf_token": csrf_token(page), "login": user["username"], "password": user["password"]})
    assert post(web, "/login/totp", "/login/totp", code=code_at(secret)).headers["Location"] == "/login/passkey/enrol"
    assert notices_to(app, mailbox, user["email"]) == []  # proving the app changes nothing
    done = enrol_passkey(web, SoftAuthenticator())
    assert done.status_code == 303 and done.headers["Location"] == "/account"
    text, _ = the_notice(app, mailbox, user["email"])
    assert "A passkey was added" in text and "recovery codes" not in text


# --- passkeys ---------------------------------------------------------------------------------------

def test_adding_and_removing_a_passkey_are_each_mailed_once_without_its_id_or_name(app, make_user, mailbox,
                                                                                  pinned):
    user = make_user()
    web = signed_in(app, user)
    authenticator = SoftAuthenticator()
    added = add_passkey(web, authenticator, name="Kitchen laptop")
    codes = shown_codes(added)
    assert added.status_code == 200 and len(codes) == 10
    text, html = the_notice(app, mailbox, user["email"])
    assert "A passkey was added" in text and "A new set of recovery codes was made" in text
    with app.app_context():
        [row] = db.session.scalars(db.select(WebAuthnCredential.credential_id)
                                   .where(WebAuthnCredential.user_id == user["id"]))
    assert_no_secret(text + html, row, "Kitchen laptop", *codes)

    page = web.get("/account/passkeys").get_data(as_text=True)
    delete = re.search(r'action="(/account/passkeys/\d+/delete)"', page).group(1)
    assert web.post(delete, data={"csrf_token": csrf_token(page)}).status_code == 303
    mailbox.wait_count(app, user["email"], 2)
    [_, removed] = notices_to(app, mailbox, user["email"])
    text = removed.get_body(preferencelist=("plain",)).get_content()
    assert "A passkey was removed" in text and "Your recovery codes were removed" in text
    assert_no_secret(removed.as_string(), row, "Kitchen laptop")


def test_renaming_a_passkey_or_a_refused_one_sends_nothing(app, make_user, mailbox, pinned):
    user = make_user()
    web = signed_in(app, user)
    sent = options(web, "/account/passkeys/options").get_json()
    answer = SoftAuthenticator().create(sent, "https://evil.example")  # another origin: refused
    refused = web.post("/account/passkeys", data={"csrf_token": web.token(), "name": "x",
                                                  "credential": json.dumps(answer)})
    assert refused.status_code == 400
    passkey = give_passkey(app, user)
    page = web.get("/account/passkeys").get_data(as_text=True)
    assert web.post(f"/account/passkeys/{passkey}/rename", data={"csrf_token": csrf_token(page), "name": "New"}) \
        .status_code == 303
    assert notices_to(app, mailbox, user["email"]) == []


def test_setting_up_a_passkey_during_a_login_is_mailed_once(app, make_user, mailbox, pinned):
    user = make_user()
    web = signed_in(app, user)
    assert step_up(web, MFA).headers["Location"] == "/login/totp/enrol"
    codes_page = enrol_passkey(web, SoftAuthenticator())
    codes = shown_codes(codes_page)
    assert codes_page.status_code == 200 and len(codes) == 10
    text, html = the_notice(app, mailbox, user["email"])
    assert "A passkey was added" in text and "A new set of recovery codes was made" in text
    assert_no_secret(text + html, "Phone", *codes)


# --- language and addresses --------------------------------------------------------------------------

def test_the_notice_is_in_the_language_of_the_page_that_made_the_change(app, make_user, mailbox, pinned):
    user = make_user()
    web = signed_in(app, user, **{"Accept-Language": "fr"})
    assert post(web, "/account/security/password", "/account/security/password",
                current_password=user["password"], new_password=NEW_PASSWORD).status_code == 303
    text, html = the_notice(app, mailbox, user["email"], SUBJECT_FR)
    assert "Votre mot de passe a été changé." in text and "réinitialisez immédiatement" in text
    assert 'lang="fr"' in html and notices_to(app, mailbox, user["email"]) == []


def test_an_account_without_an_address_gets_no_notice(app):
    with app.test_request_context("/"):
        before = db.session.scalar(db.select(db.func.count()).select_from(OutboxMessage))
        notices.notify_sign_in_change(User(username="nomail", email=""), notices.PASSWORD_CHANGED)
        assert db.session.scalar(db.select(db.func.count()).select_from(OutboxMessage)) == before
        db.session.rollback()
