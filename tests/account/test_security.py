"""Self-service security: TOTP enrolment and removal, recovery codes, the password; each change
needs a recent sign-in, is audited, and can end the other sessions."""
from __future__ import annotations

import dataclasses

import pyotp
import pytest

from idp import create_app
from idp.models import AuditEvent, RecoveryCode, SsoSession, TotpCredential
from tests.authn.web import Web
from tests.helpers.forms import csrf_token
from tests.helpers.mfa import code_at, give_totp


@pytest.fixture
def pinned():
    from datetime import datetime, timezone

    from idp import clock
    clock.set_now(datetime.now(timezone.utc).replace(microsecond=0))
    return clock


def _rows(app, model, user):
    from idp.extensions import db
    with app.app_context():
        return list(db.session.scalars(db.select(model).where(model.user_id == user["id"])))


def _events(app, user) -> list[str]:
    return [e.type for e in _rows(app, AuditEvent, user)]


def _post(web, page_path, path, **data):
    page = web.get(page_path)
    return web.post(path, data={"csrf_token": csrf_token(page.get_data(as_text=True)), **data})


def _signed_in(app, user) -> Web:
    web = Web(app)
    assert web.login(user["username"], user["password"]).status_code == 303
    return web


def _enrol(web) -> tuple[str, str]:
    """Set up TOTP from the security page; returns (secret, the recovery codes page)."""
    page = web.get("/account/security/totp")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "<svg" in html
    secret = html.split('data-testid="totp-secret">', 1)[1].split("<", 1)[0].strip()
    done = web.post("/account/security/totp", data={"csrf_token": csrf_token(html), "code": code_at(secret)})
    return secret, done


def test_totp_enrolment_shows_a_qr_code_made_here_and_needs_a_valid_code(app, make_user, pinned):
    user = make_user()
    web = _signed_in(app, user)
    page = web.get("/account/security/totp").get_data(as_text=True)
    assert "<svg" in page and "<img" not in page and "http" not in page.split("<svg", 1)[1].split("</svg>", 1)[0]
    wrong = web.post("/account/security/totp", data={"csrf_token": csrf_token(page), "code": "000000"})
    assert wrong.status_code == 400
    assert all(row.confirmed_at is None for row in _rows(app, TotpCredential, user)), "not on before a valid code"
    secret, done = _enrol(web)
    html = done.get_data(as_text=True)
    assert done.status_code == 200 and html.count("<li><code>") == 10
    assert [row.confirmed_at is not None for row in _rows(app, TotpCredential, user)] == [True]
    assert len(_rows(app, RecoveryCode, user)) == 10
    assert "account.totp.enrolled" in _events(app, user) and "authn.totp.enrolled" in _events(app, user)
    # The codes download as text (the page posts them back; we only keep digests).
    codes = [line.split("<code>")[1].split("</code>")[0] for line in html.split("\n") if "<li><code>" in line]
    download = web.post("/recovery-codes.txt", data={"csrf_token": csrf_token(html), "code": codes + ["<script>"]})
    assert download.status_code == 200 and download.headers["Content-Type"].startswith("text/plain")
    assert "attachment" in download.headers["Content-Disposition"]
    body = download.get_data(as_text=True)
    assert all(code in body for code in codes) and "<script>" not in body
    # The next login asks for the code.
    again = Web(app)
    assert again.login(user["username"], user["password"]).headers["Location"] == "/login/totp"


def test_changes_need_a_recent_sign_in(app, make_user, pinned):
    user = make_user()
    web = _signed_in(app, user)
    pinned.advance(301)
    page = web.get("/account/security")
    assert page.status_code == 200 and "Sign in again" in page.get_data(as_text=True)
    assert web.get("/account/security/totp").status_code == 403
    token = web.token("/login")  # the page itself offers no forms now
    for path in ("/account/security/totp/remove", "/account/security/recovery-codes", "/account/security/password"):
        assert web.post(path, data={"csrf_token": token}).status_code == 403, path


def test_a_fresh_one_factor_sign_in_is_not_recent_enough_for_someone_with_a_second_factor(app, make_user, pinned):
    """A new password-only session (here: made before the authenticator app was set up elsewhere)
    must not pass for the two factors the account now has: changes ask for a sign-in that
    reaches urn:idp:acr:mfa."""
    user = make_user()
    web = _signed_in(app, user)
    give_totp(app, user)
    page = web.get("/account/security").get_data(as_text=True)
    assert "Sign in again" in page and "required=urn:idp:acr:mfa" in page.replace("%3A", ":")
    for path in ("/account/security/recovery-codes", "/account/security/totp/remove"):
        assert web.post(path, data={"csrf_token": web.token("/login")}).status_code == 403, path
    assert [row.confirmed_at is not None for row in _rows(app, TotpCredential, user)] == [True]
    assert "account.totp.removed" not in _events(app, user)


def test_setting_up_the_app_raises_the_session_so_the_next_change_needs_no_new_sign_in(app, make_user, pinned):
    user = make_user()
    web = _signed_in(app, user)
    _enrol(web)
    [row] = _rows(app, SsoSession, user)
    assert (row.acr, row.amr) == ("urn:idp:acr:mfa", ["pwd", "otp", "mfa"])
    response = _post(web, "/account/security", "/account/security/recovery-codes")
    assert response.status_code == 200 and response.get_data(as_text=True).count("<li><code>") == 10
    pinned.advance(301)  # the step counts as a sign-in: recent from then on, like any other
    assert web.post("/account/security/recovery-codes", data={"csrf_token": web.token("/login")}).status_code == 403


def test_regenerating_recovery_codes_kills_the_old_ones(app, make_user, pinned):
    user = make_user()
    web = _signed_in(app, user)
    _, first = _enrol(web)
    old = set(r.code_digest for r in _rows(app, RecoveryCode, user))
    response = _post(web, "/account/security", "/account/security/recovery-codes")
    assert response.status_code == 200 and response.get_data(as_text=True).count("<li><code>") == 10
    new = set(r.code_digest for r in _rows(app, RecoveryCode, user))
    assert len(new) == 10 and not old & new
    assert "account.recovery.regenerated" in _events(app, user)


def test_removing_totp_ends_other_sessions_on_request(app, make_user, pinned):
    user = make_user()
    web = _signed_in(app, user)
    secret, _ = _enrol(web)
    other = Web(app)
    other.login(user["username"], user["password"])
    pinned.advance(30)
    from tests.authn.test_totp import post_code
    assert post_code(other, "/login/totp", code_at(secret)).status_code == 303
    assert len(_rows(app, SsoSession, user)) == 2
    response = _post(web, "/account/security", "/account/security/totp/remove", end_other_sessions="1")
    assert response.status_code == 303
    assert _rows(app, TotpCredential, user) == [] and _rows(app, RecoveryCode, user) == []
    assert len(_rows(app, SsoSession, user)) == 1 and web.is_signed_in() and not other.is_signed_in()
    event = [e for e in _rows(app, AuditEvent, user) if e.type == "account.totp.removed"][-1]
    assert event.details == {"other_sessions_ended": 1}


def test_removing_the_last_second_factor_is_refused_when_mfa_is_required(settings, make_user, pinned):
    strict = create_app(dataclasses.replace(settings, mfa_required=True))
    user = make_user()
    secret = give_totp(strict, user)
    web = Web(strict)
    assert web.login(user["username"], user["password"]).headers["Location"] == "/login/totp"
    from tests.authn.test_totp import post_code
    assert post_code(web, "/login/totp", code_at(secret)).status_code == 303
    response = _post(web, "/account/security", "/account/security/totp/remove")
    assert response.status_code == 409
    assert len(_rows(strict, TotpCredential, user)) == 1
    assert "account.totp.remove_refused" in _events(strict, user)


def test_global_mfa_requirement_leads_through_enrolment_at_login(settings, make_user, pinned):
    strict = create_app(dataclasses.replace(settings, mfa_required=True))
    user = make_user()
    web = Web(strict)
    response = web.login(user["username"], user["password"])
    assert response.headers["Location"] == "/login/totp/enrol"
    assert not web.is_signed_in()
    assert web.get("/account/security/totp").status_code in (302, 403), "no self-service before the login ends"
    page = web.get("/login/totp/enrol").get_data(as_text=True)
    secret = page.split('data-testid="totp-secret">', 1)[1].split("<", 1)[0].strip()
    codes = web.post("/login/totp/enrol", data={"csrf_token": csrf_token(page), "code": code_at(secret)})
    assert codes.status_code == 200 and not web.is_signed_in()
    done = web.post("/login/continue", data={"csrf_token": csrf_token(codes.get_data(as_text=True))})
    assert done.status_code == 303 and web.is_signed_in()


def test_password_change_checks_the_current_password_and_is_audited(app, make_user, pinned):
    user = make_user()
    web = _signed_in(app, user)
    wrong = _post(web, "/account/security/password", "/account/security/password",
                  current_password="nope", new_password="a much better passphrase 42")
    assert wrong.status_code == 400
    weak = _post(web, "/account/security/password", "/account/security/password",
                 current_password=user["password"], new_password="short")
    assert weak.status_code == 400
    done = _post(web, "/account/security/password", "/account/security/password",
                 current_password=user["password"], new_password="a much better passphrase 42")
    assert done.status_code == 303
    assert Web(app).login(user["username"], "a much better passphrase 42").status_code == 303
    assert {"account.password.changed", "account.password.change_failed"} <= set(_events(app, user))
