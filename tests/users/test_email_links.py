"""Outgoing mail, email verification and password reset (issue 6 items 1-3), through the real
app, the real database and a real SMTP server (the session's aiosmtpd mailbox)."""
from __future__ import annotations

import dataclasses
import logging
import re
from datetime import timedelta

import pytest

from idp import clock, create_app, mail, outbox
from idp.extensions import db
from idp.models import AuditEvent, OutboxMessage, User
from idp.users import directory
from tests.authn.web import Web
from tests.conftest import PASSWORD, unique
from tests.helpers.forms import csrf_token

NEW_PASSWORD = "a brand new passphrase 42"


def link_in(message, path: str) -> str:
    text = message.get_body(preferencelist=("plain",)).get_content()
    match = re.search(r"(http\S+" + re.escape(path) + r"[\w\-]+)", text)
    assert match, text
    html = message.get_body(preferencelist=("html",)).get_content()
    assert match.group(1) in html
    return match.group(1)


def local(issuer: str, link: str) -> str:
    assert link.startswith(issuer + "/")
    return link[len(issuer):]


def user_row(app, username: str) -> User:
    with app.app_context():
        user = directory.find_by_login(username)
        db.session.expunge(user)
        return user


def events(app, user_id: int, prefix: str) -> list[AuditEvent]:
    with app.app_context():
        rows = db.session.scalars(db.select(AuditEvent).where(AuditEvent.user_id == user_id,
                                                              AuditEvent.type.startswith(prefix)).order_by(AuditEvent.id)).all()
        return [(e.type, e.outcome, e.details) for e in rows]


def register(app, web=None):
    web = web or Web(app)
    username = unique("mail")
    email = f"{username}@example.com"
    response = web.register(username, email, PASSWORD)
    assert response.status_code == 303
    return web, username, email


def post_page(web, path: str, **data):
    page = web.get(path)
    assert page.status_code == 200
    return web.post(path, data={"csrf_token": csrf_token(page.get_data(as_text=True)), **data})


# --- verification ------------------------------------------------------------------------------

def test_registration_mails_a_link_that_verifies_the_address_once(app, mailbox):
    web, username, email = register(app)
    message = mailbox.last(app, email)
    assert message["Subject"] == "Confirm your email address"
    assert message["From"] == "idp tests <idp@example.test>" and message["Auto-Submitted"] == "auto-generated"
    issuer = app.config["IDP_SETTINGS"].issuer
    path = local(issuer, link_in(message, "/verify-email/"))
    assert web.get(path).status_code == 200  # opening the link changes nothing
    assert not user_row(app, username).email_verified
    response = post_page(web, path)
    assert response.status_code == 200 and "is confirmed" in response.get_data(as_text=True)
    assert user_row(app, username).email_verified
    assert web.get(path).status_code == 410
    assert "confirmed" in web.get("/account").get_data(as_text=True)
    kinds = [e[0] for e in events(app, user_row(app, username).id, "users.email.")]
    assert kinds == ["users.email.verification_sent", "users.email.verified"]


def test_a_verification_link_expires(app, mailbox):
    web, username, email = register(app)
    path = local(app.config["IDP_SETTINGS"].issuer, link_in(mailbox.last(app, email), "/verify-email/"))
    clock.set_now(clock.now() + timedelta(seconds=app.config["IDP_SETTINGS"].email_verify_ttl + 1))
    assert web.get(path).status_code == 410
    assert not user_row(app, username).email_verified


def test_a_link_for_an_address_that_changed_since_does_not_verify_the_new_one(app, mailbox):
    web, username, email = register(app)
    page = web.get(local(app.config["IDP_SETTINGS"].issuer, link_in(mailbox.last(app, email), "/verify-email/")))
    with app.app_context():
        user = directory.find_by_login(username)
        user.email = f"other-{email}"
        user.email_key = directory.identifier_key(user.email)
        db.session.commit()
    path = page.request.path
    response = web.post(path, data={"csrf_token": csrf_token(page.get_data(as_text=True))})
    assert response.status_code == 410
    row = user_row(app, username)
    assert not row.email_verified
    assert events(app, row.id, "users.email.verification_failed")[-1][2] == {"reason": "address_changed"}  # kept
    assert web.get(path).status_code == 410  # and the link is used up


def test_asking_for_another_link_is_throttled(app, mailbox):
    web, username, email = register(app)
    mailbox.deliver(app)
    account = web.get("/account").get_data(as_text=True)
    assert 'action="/verify-email"' in account  # the account page offers another link
    token = csrf_token(account)
    again = web.post("/verify-email", data={"csrf_token": token})
    assert again.status_code == 429 and int(again.headers["Retry-After"]) > 0
    clock.set_now(clock.now() + timedelta(seconds=61))
    assert web.post("/verify-email", data={"csrf_token": token}).status_code == 200
    assert len(mailbox.wait_count(app, email, 2)) == 2


def test_resend_without_csrf_is_refused(app):
    web, _, _ = register(app)
    assert web.post("/verify-email", data={}).status_code == 400


@pytest.fixture(scope="module")
def strict_app(settings, app):  # app: the session app has migrated the database
    """The same database, with IDP_EMAIL_VERIFICATION_REQUIRED on."""
    return create_app(dataclasses.replace(settings, email_verification_required=True))


def test_when_verification_is_required_an_unverified_person_cannot_sign_in(strict_app, mailbox):
    web = Web(strict_app)
    username = unique("strict")
    email = f"{username}@example.com"
    response = web.register(username, email, PASSWORD)
    assert response.status_code == 200 and "Check your email" in response.get_data(as_text=True)
    assert not web.is_signed_in()
    response = web.login(username, PASSWORD)
    assert response.status_code == 403 and "Confirm your email address first" in response.get_data(as_text=True)
    assert not web.is_signed_in()
    assert web.login(username, "wrong password!").status_code == 400  # no hint without the password
    clock.set_now(clock.now() + timedelta(seconds=61))
    resent = web.post("/verify-email", data={"csrf_token": csrf_token(response.get_data(as_text=True))})
    assert resent.status_code == 200
    assert len(mailbox.wait_count(strict_app, email, 2)) == 2
    path = local(strict_app.config["IDP_SETTINGS"].issuer, link_in(mailbox.to(email)[-1], "/verify-email/"))
    assert post_page(web, path).status_code == 200
    assert web.login(username, PASSWORD).status_code == 303 and web.is_signed_in()


# --- password reset ----------------------------------------------------------------------------

def forgot(web, login: str):
    return post_page(web, "/forgot-password", login=login)


def test_forgot_password_answers_the_same_for_an_unknown_account_and_mails_only_a_real_one(app, make_user, mailbox):
    user = make_user()
    known = forgot(Web(app), user["email"])
    unknown = forgot(Web(app), "nobody-" + user["email"])
    assert known.status_code == unknown.status_code == 200
    assert known.get_data(as_text=True) == unknown.get_data(as_text=True)
    message = mailbox.last(app, user["email"])
    assert message["Subject"] == "Set a new password"
    assert link_in(message, "/reset-password/").startswith(app.config["IDP_SETTINGS"].issuer + "/reset-password/")
    assert mailbox.to("nobody-" + user["email"]) == []


def test_a_reset_link_sets_a_new_password_once_and_signs_out_everywhere(app, make_user, mailbox):
    user = make_user()
    elsewhere = Web(app)
    assert elsewhere.login(user["username"], PASSWORD).status_code == 303
    web = Web(app)
    forgot(web, user["username"])
    path = local(app.config["IDP_SETTINGS"].issuer, link_in(mailbox.last(app, user["email"]), "/reset-password/"))
    assert web.get(path).status_code == 200
    weak = post_page(web, path, password="password")
    assert weak.status_code == 400 and 'aria-invalid="true"' in weak.get_data(as_text=True)
    done = post_page(web, path, password=NEW_PASSWORD)  # the refused password did not burn the link
    assert done.status_code == 200 and "Password changed" in done.get_data(as_text=True)
    assert not elsewhere.is_signed_in()
    assert Web(app).login(user["username"], PASSWORD).status_code == 400
    assert Web(app).login(user["username"], NEW_PASSWORD).status_code == 303
    assert web.get(path).status_code == 410
    notice = mailbox.last(app, user["email"])
    assert notice["Subject"] == "Your password was changed"
    kinds = [e[0] for e in events(app, user["id"], "users.password.")]
    assert kinds == ["users.password.reset_requested", "users.password.changed", "users.password.reset"]


def test_a_reset_link_expires(app, make_user, mailbox):
    user = make_user()
    web = Web(app)
    forgot(web, user["email"])
    path = local(app.config["IDP_SETTINGS"].issuer, link_in(mailbox.last(app, user["email"]), "/reset-password/"))
    clock.set_now(clock.now() + timedelta(seconds=app.config["IDP_SETTINGS"].password_reset_ttl + 1))
    assert web.get(path).status_code == 410


def test_a_reset_link_dies_when_the_password_changes_another_way(app, make_user, mailbox):
    user = make_user()
    web = Web(app)
    forgot(web, user["email"])
    path = local(app.config["IDP_SETTINGS"].issuer, link_in(mailbox.last(app, user["email"]), "/reset-password/"))
    with app.app_context():
        directory.set_password(db.session.get(User, user["id"]), NEW_PASSWORD)
        db.session.commit()
    assert web.get(path).status_code == 410


def test_a_made_up_reset_link_is_a_friendly_410(app):
    web = Web(app)
    for path in ("/reset-password/x", "/reset-password/" + "a" * 500, "/verify-email/nope"):
        response = web.get(path)
        assert response.status_code == 410 and "Ask for a new one" in response.get_data(as_text=True)


def test_reset_requests_are_throttled_per_account_without_saying_so(app, make_user, mailbox):
    user = make_user()
    web = Web(app)
    first, second = forgot(web, user["email"]), forgot(web, user["email"])
    assert first.get_data(as_text=True) == second.get_data(as_text=True)
    assert len(mailbox.wait_count(app, user["email"], 1)) == 1
    reasons = [e[2].get("reason") for e in events(app, user["id"], "users.password.reset_requested")]
    assert reasons == [None, "throttled"]


# --- the mail pipeline -------------------------------------------------------------------------

def test_queued_mail_keeps_no_link_in_clear(app, make_user):
    user = make_user()
    forgot(Web(app), user["email"])
    with app.app_context():  # the worker's part: the queued request becomes the reset mail
        from idp.users.recovery import RESET_REQUEST_KIND
        request_id = db.session.scalar(db.select(OutboxMessage.id).where(OutboxMessage.kind == RESET_REQUEST_KIND)
                                       .order_by(OutboxMessage.id.desc()).limit(1))
        outbox.run_once(ids=[request_id])
        row = db.session.scalars(db.select(OutboxMessage).where(OutboxMessage.kind == "mail")
                                 .order_by(OutboxMessage.id.desc())).first()
        assert row.payload["template"] == "reset_password"
        assert "reset-password" not in str(row.payload) and user["email"] not in str(row.payload)


def test_mail_waits_in_the_outbox_while_the_server_is_down_and_goes_out_later(settings, make_user, mailbox):
    from tests.conftest import _free_port
    down = create_app(dataclasses.replace(settings, smtp_url=f"smtp://127.0.0.1:{_free_port()}?tls=none"))
    user = make_user()
    with down.app_context():
        mail.send(user["email"], "password_changed", user=db.session.get(User, user["id"]), when="now")
        db.session.commit()
        message_id = db.session.scalars(db.select(OutboxMessage.id).order_by(OutboxMessage.id.desc())).first()
        assert outbox.run_once(ids=[message_id]) == (0, 1)
        row = db.session.get(OutboxMessage, message_id)
        assert row.status == "pending" and row.attempts == 1 and "ConnectionRefusedError" in row.last_error
    up = create_app(settings)
    with up.app_context():
        clock.set_now(clock.now() + timedelta(hours=1))
        assert outbox.run_once(ids=[message_id]) == (1, 0)
    assert mailbox.to(user["email"])[-1]["Subject"] == "Your password was changed"


def test_without_a_mail_server_development_logs_the_message_and_production_keeps_it(settings, make_user, caplog):
    user = make_user()
    dev = create_app(dataclasses.replace(settings, smtp_url=""))
    with dev.app_context(), caplog.at_level(logging.WARNING, logger="idp.mail"):
        mail.send(user["email"], "password_changed", user=db.session.get(User, user["id"]), when="now")
        db.session.commit()
        message_id = db.session.scalars(db.select(OutboxMessage.id).order_by(OutboxMessage.id.desc())).first()
        assert outbox.run_once(ids=[message_id]) == (1, 0)
    assert user["email"] in caplog.text and "Your password was changed" in caplog.text
    prod = create_app(dataclasses.replace(settings, smtp_url="", env="production", issuer="https://id.example.test"))
    with prod.app_context():
        mail.send(user["email"], "password_changed", user=db.session.get(User, user["id"]), when="now")
        db.session.commit()
        message_id = db.session.scalars(db.select(OutboxMessage.id).order_by(OutboxMessage.id.desc())).first()
        assert outbox.run_once(ids=[message_id]) == (0, 1)
        assert db.session.get(OutboxMessage, message_id).last_error == "IDP_SMTP_URL is not set"


def _reset_links(app, user, mailbox, n: int) -> list[str]:
    web, t0, paths = Web(app), clock.now(), []
    for i in range(n):
        clock.set_now(t0 + timedelta(seconds=61 * i))  # past the per-account gap
        forgot(web, user["username"])
        paths.append(local(app.config["IDP_SETTINGS"].issuer, link_in(mailbox.wait_count(app, user["email"], i + 1)[-1],
                                                                      "/reset-password/")))
    return paths


def test_two_reset_links_used_at_once_neither_fails(app, make_user, mailbox):
    """Each used its link, then cancelled the other's: a deadlock (a 500) on PostgreSQL before the
    account's row was locked first."""
    from tests.helpers.races import at_once
    user = make_user()
    first, second = _reset_links(app, user, mailbox, 2)
    webs = Web(app), Web(app)
    tokens = [csrf_token(web.get(path).get_data(as_text=True)) for web, path in zip(webs, (first, second))]
    answers = at_once([lambda: webs[0].post(first, data={"csrf_token": tokens[0], "password": "first new passphrase 1"}),
                       lambda: webs[1].post(second, data={"csrf_token": tokens[1], "password": "second new passphrase 2"})])
    assert sorted(a.status_code for a in answers) in ([200, 200], [200, 410])


def test_a_reset_and_an_email_change_confirmed_at_once_neither_fails(app, make_user, mailbox):
    from tests.account.test_profile import request_change
    from tests.helpers.races import at_once
    user = make_user()
    (reset,) = _reset_links(app, user, mailbox, 1)
    owner = Web(app)
    assert owner.login(user["username"], PASSWORD).status_code == 303
    new_email = f"moved-{user['email']}"
    assert request_change(owner, new_email).status_code == 200
    change = local(app.config["IDP_SETTINGS"].issuer, link_in(mailbox.last(app, new_email), "/confirm-email-change/"))
    thief = Web(app)
    reset_token = csrf_token(thief.get(reset).get_data(as_text=True))
    change_token = csrf_token(owner.get(change).get_data(as_text=True))
    answers = at_once([lambda: thief.post(reset, data={"csrf_token": reset_token, "password": "thief new passphrase 9"}),
                       lambda: owner.post(change, data={"csrf_token": change_token})])
    assert 500 not in [a.status_code for a in answers]


def test_a_disabled_accounts_email_change_link_changes_nothing(app, make_user, mailbox):
    """Before, the change went through with the account's password although an operator had
    disabled the account (its reset link was already refused)."""
    from tests.account.test_profile import request_change
    user = make_user()
    owner = Web(app)
    assert owner.login(user["username"], PASSWORD).status_code == 303
    new_email = f"after-disable-{user['email']}"
    assert request_change(owner, new_email).status_code == 200
    change = local(app.config["IDP_SETTINGS"].issuer, link_in(mailbox.last(app, new_email), "/confirm-email-change/"))
    with app.app_context():
        from idp.authn.session import end_sessions_of
        db.session.get(User, user["id"]).disabled = True  # as `idp users disable`
        end_sessions_of(user["id"], reason="disabled")
        db.session.commit()
    other = Web(app)
    token = csrf_token(other.get(change).get_data(as_text=True))
    assert other.post(change, data={"csrf_token": token, "password": PASSWORD}).status_code == 410
    assert user_row(app, user["username"]).email == user["email"]
