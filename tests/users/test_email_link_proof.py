"""A link that confirms an address works only for a browser that proves it can enter the link's
account (authn.link_proof): its session, a sign-in that IDP_EMAIL_VERIFICATION_REQUIRED stopped
at most 15 minutes ago, or the account's password on the link's page. Reading the mailbox alone
must not verify an account someone else registered with the address (pre-account hijacking), nor
move someone else's account to it. The end-to-end attack with an upstream sign-in afterwards is in
tests/federation/test_verify_link_hijack.py."""
from __future__ import annotations

import dataclasses
import re
from datetime import timedelta

import pytest

from idp import clock, create_app
from idp.extensions import db
from idp.models import User
from idp.users import directory, recovery
from tests.account.test_profile import request_change
from tests.authn.web import Web
from tests.conftest import PASSWORD, unique
from tests.helpers.forms import csrf_token
from tests.users.test_email_links import events, link_in, local, post_page, user_row

SQUATTER_PASSWORD = "attacker chosen passphrase 1"


def verify_path(app, mailbox, email: str) -> str:
    return local(app.config["IDP_SETTINGS"].issuer, link_in(mailbox.last(app, email), "/verify-email/"))


def squat(app, mailbox, status: int = 303):
    """Someone registers the victim's address with a password of their own; (their browser, the
    account's username, the victim's address, the link mailed to the victim)."""
    squatter, username, victim = Web(app), unique("squat"), unique("victim") + "@example.com"
    assert squatter.register(username, victim, SQUATTER_PASSWORD).status_code == status
    return squatter, username, victim, verify_path(app, mailbox, victim)


def asks_password(page) -> bool:
    return 'name="password"' in page.get_data(as_text=True)


def refusals(app, username: str, event: str = "users.email.verification_failed") -> list:
    return [e[2] for e in events(app, user_row(app, username).id, event)]


def test_the_mailbox_alone_does_not_verify_an_account_someone_else_made(app, mailbox):
    squatter, username, victim_email, path = squat(app, mailbox)
    victim = Web(app)
    page = victim.get(path)
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and asks_password(page)
    assert 'for="f-password"' in text and 'autocomplete="current-password"' in text
    assert "If you did not create an account here, do not confirm" in text and 'href="/forgot-password"' in text
    assert username not in text and victim_email not in text  # nothing the link does not already grant
    pressed = post_page(victim, path)
    assert pressed.status_code == 400 and "Enter the account" in pressed.get_data(as_text=True)
    assert not user_row(app, username).email_verified
    guessed = post_page(victim, path, password="a guess at their password")
    assert guessed.status_code == 400 and 'aria-invalid="true"' in guessed.get_data(as_text=True)
    assert not user_row(app, username).email_verified
    assert victim.get(path).status_code == 200  # the link is not used up
    assert refusals(app, username) == [{"reason": "no_proof"}, {"reason": "bad_password"}]
    assert squatter.is_signed_in()


def test_the_accounts_password_confirms_from_another_browser(app, mailbox):
    owner, username, email, path = squat(app, mailbox)  # the owner this time: they know the password
    phone = Web(app)
    wrong = post_page(phone, path, password="not the password")
    assert wrong.status_code == 400 and "is not the account" in wrong.get_data(as_text=True)
    assert not user_row(app, username).email_verified
    done = post_page(phone, path, password=SQUATTER_PASSWORD)
    assert done.status_code == 200 and "is confirmed" in done.get_data(as_text=True)
    assert user_row(app, username).email_verified
    assert phone.get(path).status_code == 410
    assert refusals(app, username) == [{"reason": "bad_password"}]


def test_the_accounts_own_session_confirms_without_a_password(app, mailbox):
    owner, username, _, path = squat(app, mailbox)
    page = owner.get(path)
    assert page.status_code == 200 and not asks_password(page)
    assert post_page(owner, path).status_code == 200
    assert user_row(app, username).email_verified


def test_a_browser_signed_in_to_another_account_is_refused(app, mailbox, make_user):
    owner, username, _, path = squat(app, mailbox)
    other = make_user()
    elsewhere = Web(app)
    assert elsewhere.login(other["username"], PASSWORD).status_code == 303
    page = elsewhere.get(path)
    text = page.get_data(as_text=True)
    assert page.status_code == 403 and "This link is for another account" in text and "Sign out first" in text
    assert not asks_password(page) and username not in text
    refused = elsewhere.post(path, data={"csrf_token": csrf_token(text), "password": SQUATTER_PASSWORD})
    assert refused.status_code == 403 and "another account" in refused.get_data(as_text=True)
    assert not user_row(app, username).email_verified
    assert refusals(app, username) == [{"reason": "other_account", "signed_in_as": other["id"]}]
    assert post_page(owner, path).status_code == 200  # still usable by its own account
    assert user_row(app, username).email_verified


def test_wrong_passwords_on_the_link_page_count_on_the_sign_in_back_off(app, mailbox):
    _, username, _, path = squat(app, mailbox)
    guesser = Web(app)
    statuses = [post_page(guesser, path, password=f"guess number {n}").status_code for n in range(6)]
    assert statuses[0] == 400 and statuses[-1] == 429, statuses
    throttled = post_page(guesser, path, password=SQUATTER_PASSWORD)
    assert throttled.status_code == 429 and int(throttled.headers["Retry-After"]) > 0
    assert guesser.login(username, SQUATTER_PASSWORD).status_code == 429  # the sign-in's own counters
    assert not user_row(app, username).email_verified
    assert {"reason": "throttled"} in refusals(app, username)


def test_an_account_without_a_password_gets_the_answer_a_wrong_password_gets(app, mailbox):
    """The page tells nobody whether the account has a password; such an account confirms through
    its session (or a stopped sign-in: tests/federation/test_verify_link_hijack.py)."""
    _, _, _, with_password = squat(app, mailbox)
    email = unique("nopass") + "@example.com"
    with app.app_context():
        user = directory.provision(email)
        recovery.send_verification(user)
        db.session.commit()
        username = user.username
    without = verify_path(app, mailbox, email)
    answers = []
    for path in (with_password, without):
        web = Web(app)
        page = web.get(path)
        assert page.status_code == 200 and asks_password(page)
        answer = post_page(web, path, password="some password 123")
        text = re.sub(r'value="[^"]*"|/verify-email/[\w\-]+', "", answer.get_data(as_text=True))
        answers.append((answer.status_code, text))
    assert answers[0] == answers[1] and answers[0][0] == 400
    assert not user_row(app, username).email_verified


def test_a_post_without_csrf_uses_nothing_up(app, mailbox):
    owner, username, _, path = squat(app, mailbox)
    assert owner.post(path, data={}).status_code == 400
    assert not user_row(app, username).email_verified and owner.get(path).status_code == 200


# --- IDP_EMAIL_VERIFICATION_REQUIRED: the sign-in that was stopped proves the browser -------------

@pytest.fixture(scope="module")
def strict_app(settings, app):  # app: the session app has migrated the database
    return create_app(dataclasses.replace(settings, email_verification_required=True))


def test_when_verification_is_required_the_victims_click_does_not_let_the_squatter_in(strict_app, mailbox):
    squatter, username, _, path = squat(strict_app, mailbox, status=200)
    assert post_page(Web(strict_app), path).status_code == 400
    assert not user_row(strict_app, username).email_verified
    assert squatter.login(username, SQUATTER_PASSWORD).status_code == 403 and not squatter.is_signed_in()


def test_a_stopped_sign_in_proves_the_browser_for_fifteen_minutes_only(strict_app, mailbox):
    start = clock.now()
    clock.set_now(start)
    web, username, _, path = squat(strict_app, mailbox, status=200)  # registering proved the password
    clock.set_now(start + timedelta(minutes=14))
    assert not asks_password(web.get(path))
    clock.set_now(start + timedelta(minutes=16))
    page = web.get(path)
    assert page.status_code == 200 and asks_password(page)
    assert post_page(web, path).status_code == 400
    assert not user_row(strict_app, username).email_verified
    stopped = web.login(username, SQUATTER_PASSWORD)  # a new proof, stopped before a session
    assert stopped.status_code == 403 and "Confirm your email address first" in stopped.get_data(as_text=True)
    assert not asks_password(web.get(path))
    assert post_page(web, path).status_code == 200
    assert user_row(strict_app, username).email_verified
    assert web.login(username, SQUATTER_PASSWORD).status_code == 303 and web.is_signed_in()


# --- an email change: the link goes to the new address, whoever reads it ----------------------

def test_an_email_change_link_needs_the_same_proof(app, mailbox, make_user):
    """Someone asks to move their account to the victim's address; the victim's click must not give
    that account the victim's verified address. Its owner confirms on another device with the password."""
    owner = make_user()
    requester = Web(app)
    assert requester.login(owner["username"], PASSWORD).status_code == 303
    target = unique("victim") + "@example.com"
    assert request_change(requester, target).status_code == 200
    path = local(app.config["IDP_SETTINGS"].issuer, link_in(mailbox.last(app, target), "/confirm-email-change/"))
    victim = Web(app)
    page = victim.get(path)
    assert page.status_code == 200 and asks_password(page)
    assert "someone else asked to move their account to your address" in page.get_data(as_text=True)
    assert post_page(victim, path).status_code == 400
    assert post_page(victim, path, password="not the password").status_code == 400
    with app.app_context():
        assert db.session.get(User, owner["id"]).email == owner["email"]
    assert refusals(app, owner["username"], "users.email.change_failed") == [{"reason": "no_proof"},
                                                                              {"reason": "bad_password"}]
    assert post_page(Web(app), path, password=PASSWORD).status_code == 200
    with app.app_context():
        row = db.session.get(User, owner["id"])
        assert row.email == target and row.email_verified
