"""TOTP as a second factor: codes from pyotp at a pinned time, drift, replay, throttling."""
from __future__ import annotations

import pyotp

from idp.models import AuditEvent, TotpCredential
from tests.helpers.forms import csrf_token
from tests.helpers.mfa import code_at, give_recovery_codes, give_totp


def password_then(web, user, next_path="/account"):
    response = web.login(user["username"], user["password"], next_path=next_path)
    assert response.status_code == 303
    return response


def post_code(web, path, code):
    page = web.get(path)
    assert page.status_code == 200, page.status_code
    return web.post(path, data={"csrf_token": csrf_token(page.get_data(as_text=True)), "code": code})


def test_user_without_second_factor_signs_in_with_password_only(web, make_user):
    user = make_user()
    assert password_then(web, user).headers["Location"] == "/account"
    assert web.is_signed_in()


def test_password_leads_to_the_totp_step_and_a_valid_code_signs_in(app, web, make_user, pinned):
    user = make_user()
    secret = give_totp(app, user)
    response = password_then(web, user)
    assert response.headers["Location"] == "/login/totp"
    assert not web.is_signed_in()
    done = post_code(web, "/login/totp", code_at(secret))
    assert done.status_code == 303 and done.headers["Location"] == "/account"
    assert web.is_signed_in()
    with app.app_context():
        from idp.extensions import db
        from idp.models import SsoSession
        row = db.session.scalar(db.select(SsoSession).where(SsoSession.user_id == user["id"]))
        assert row.amr == ["pwd", "otp", "mfa"] and row.acr == "urn:idp:acr:mfa"


def test_code_of_the_previous_and_next_step_is_accepted(app, make_user, pinned):
    from tests.authn.web import Web
    user = make_user()
    secret = give_totp(app, user)
    for drift in (-1, 1):
        web = Web(app)
        password_then(web, user)
        assert post_code(web, "/login/totp", code_at(secret, drift)).status_code == 303
        pinned.advance(90)  # a fresh step for the next round


def test_code_two_steps_away_is_rejected(app, web, make_user, pinned):
    user = make_user()
    secret = give_totp(app, user)
    password_then(web, user)
    for drift in (-2, 2):
        response = post_code(web, "/login/totp", code_at(secret, drift))
        assert response.status_code == 400 and "not right" in response.get_data(as_text=True)
    assert not web.is_signed_in()


def test_replayed_code_is_rejected(app, make_user, pinned):
    from tests.authn.web import Web
    user = make_user()
    secret = give_totp(app, user)
    first, second = Web(app), Web(app)
    password_then(first, user)
    password_then(second, user)
    code = code_at(secret)
    assert post_code(first, "/login/totp", code).status_code == 303
    replay = post_code(second, "/login/totp", code)
    assert replay.status_code == 400 and not second.is_signed_in()
    # An older step is refused too once a later one was used.
    pinned.advance(30)
    assert post_code(second, "/login/totp", code_at(secret, -1)).status_code == 400
    assert post_code(second, "/login/totp", code_at(secret)).status_code == 303


def test_totp_step_cannot_be_reached_without_the_password(app, web, make_user):
    user = make_user()
    give_totp(app, user)
    assert web.get("/login/totp").status_code == 400
    page = web.get("/login")
    response = web.post("/login/totp", data={"csrf_token": csrf_token(page.get_data(as_text=True)), "code": "123456"})
    assert response.status_code == 400 and not web.is_signed_in()


def test_totp_step_is_not_open_when_the_login_did_not_ask_for_it(web, make_user):
    user = make_user()  # no second factor: the login ended after the password
    password_then(web, user)
    assert web.get("/login/totp").status_code == 400
    assert web.get("/login/recovery").status_code == 400


def test_login_in_progress_does_not_carry_to_another_browser(app, make_user, pinned):
    from tests.authn.web import Web
    user = make_user()
    secret = give_totp(app, user)
    first, other = Web(app), Web(app)
    password_then(first, user)
    assert other.get("/login/totp").status_code == 400
    token = other.token("/login")  # the other browser's own (fresh) login has proved nothing
    refused = other.post("/login/totp", data={"csrf_token": token, "code": code_at(secret)})
    assert refused.status_code == 400 and not other.is_signed_in()
    assert post_code(first, "/login/totp", code_at(secret)).status_code == 303


def test_later_steps_cannot_be_called_out_of_turn(app, web, make_user):
    user = make_user()
    give_totp(app, user)
    assert web.get("/login/totp/enrol").status_code == 400  # nothing in progress
    token = web.token("/login")  # a login in progress, nothing proved yet
    for path in ("/login/totp", "/login/recovery", "/login/totp/enrol"):
        assert web.post(path, data={"csrf_token": token, "code": "123456"}).status_code == 400, path
    cont = web.post("/login/continue", data={"csrf_token": token})
    assert cont.status_code == 303 and cont.headers["Location"].startswith("/login")
    assert not web.is_signed_in()
    password_then(web, user)  # now TOTP is due; enrolment is not (a factor exists)
    assert web.get("/login/totp/enrol").status_code == 400
    assert web.post("/login/continue", data={"csrf_token": web.token("/login/totp")}).headers["Location"] == \
        "/login/totp"
    assert not web.is_signed_in()


def test_second_factor_failures_are_throttled(app, web, make_user, pinned):
    user = make_user()
    secret = give_totp(app, user)
    password_then(web, user)
    for _ in range(4):  # three free failures, then a back-off
        assert post_code(web, "/login/totp", "000000" if code_at(secret) != "000000" else "111111").status_code == 400
    refused = post_code(web, "/login/totp", code_at(secret))  # even the right code waits
    assert refused.status_code == 429 and not web.is_signed_in()
    pinned.advance(int(refused.headers["Retry-After"]))
    assert post_code(web, "/login/totp", code_at(secret)).status_code == 303


def test_five_wrong_codes_end_the_login(app, web, make_user, pinned):
    user = make_user()
    secret = give_totp(app, user)
    password_then(web, user)
    for _ in range(4):
        assert post_code(web, "/login/totp", "000000" if code_at(secret) != "000000" else "111111").status_code == 400
        pinned.advance(5)  # past the throttle's back-off (it starts after three failures)
    page = web.get("/login/totp")
    last = web.post("/login/totp", data={"csrf_token": csrf_token(page.get_data(as_text=True)), "code": "999999"
                                         if code_at(secret) != "999999" else "888888"})
    assert last.status_code == 400 and "Sign in again" in last.get_data(as_text=True)
    assert web.get("/login/totp").status_code == 400  # the login in progress is gone
    with app.app_context():
        from idp.extensions import db
        types = [e.type for e in db.session.scalars(db.select(AuditEvent).where(AuditEvent.user_id == user["id"]))]
        assert types.count("authn.second_factor.failed") == 5 and "authn.login.abandoned" in types


def test_totp_secret_is_stored_encrypted(app, make_user):
    user = make_user()
    secret = give_totp(app, user)
    with app.app_context():
        from idp.extensions import db
        row = db.session.scalar(db.select(TotpCredential).where(TotpCredential.user_id == user["id"]))
        assert secret not in row.secret_encrypted and pyotp.TOTP(secret).now()


def test_recovery_code_signs_in_once_and_is_audited(app, make_user, pinned):
    from tests.authn.web import Web
    user = make_user()
    give_totp(app, user)
    codes = give_recovery_codes(app, user)
    web = Web(app)
    assert password_then(web, user).headers["Location"] == "/login/totp"
    page = web.get("/login/totp").get_data(as_text=True)
    assert "/login/recovery" in page
    done = post_code(web, "/login/recovery", codes[0].upper().replace("-", " "))
    assert done.status_code == 303 and web.is_signed_in()
    again = Web(app)
    password_then(again, user)
    assert post_code(again, "/login/recovery", codes[0]).status_code == 400
    with app.app_context():
        from idp.extensions import db
        used = db.session.scalar(db.select(AuditEvent).where(AuditEvent.user_id == user["id"],
                                                             AuditEvent.type == "authn.recovery.used"))
        assert used.details == {"remaining": 9, "low": False}
        assert codes[0] not in str(used.details)


def test_few_recovery_codes_left_warns_before_continuing(app, make_user, pinned):
    from tests.authn.web import Web
    user = make_user()
    give_totp(app, user)
    codes = give_recovery_codes(app, user)
    for code in codes[:7]:
        web = Web(app)
        password_then(web, user)
        response = post_code(web, "/login/recovery", code)
    assert response.status_code == 200 and "3 recovery codes left" in response.get_data(as_text=True)
    assert 'href="/account"' in response.get_data(as_text=True) and web.is_signed_in()


def test_recovery_codes_are_stored_as_digests(app, make_user):
    user = make_user()
    codes = give_recovery_codes(app, user)
    assert len(codes) == 10 and len(set(codes)) == 10
    with app.app_context():
        from idp.extensions import db
        from idp.models import RecoveryCode
        stored = [r.code_digest for r in db.session.scalars(db.select(RecoveryCode).where(
            RecoveryCode.user_id == user["id"]))]
        assert len(stored) == 10 and not any(code.replace("-", "") in stored for code in codes)
    again = give_recovery_codes(app, user)
    with app.app_context():
        from idp.extensions import db
        from idp.models import RecoveryCode
        assert db.session.scalar(db.select(db.func.count()).select_from(RecoveryCode).where(
            RecoveryCode.user_id == user["id"])) == 10
    assert not set(again) & set(codes)


# --- a set-up's secret belongs to the browser that was shown it (found by review: MFA M1) -------

def _shown_secret(html: str) -> str:
    import re
    from html import unescape

    return unescape(re.search(r'data-testid="totp-secret">([^<]+)<', html).group(1)).strip()


def _password_holder_sees_a_setup(app, victim) -> str:
    from tests.authn.web import Web

    attacker = Web(app)
    page = attacker.get("/login?required=urn:idp:acr:mfa&next=/account")
    asked = attacker.post("/login", data={"csrf_token": csrf_token(page.get_data(as_text=True)),
                                          "login": victim["username"], "password": victim["password"]})
    assert asked.headers["Location"] == "/login/totp/enrol"
    return _shown_secret(attacker.get("/login/totp/enrol").get_data(as_text=True))


def test_a_secret_shown_to_whoever_knew_the_password_is_never_the_owners_app(app, make_user, pinned):
    from tests.authn.web import Web

    victim = make_user()
    planted = _password_holder_sees_a_setup(app, victim)
    owner = Web(app)
    assert owner.login(victim["username"], victim["password"]).status_code == 303
    setup = owner.get("/account/security/totp").get_data(as_text=True)
    mine = _shown_secret(setup)
    assert mine != planted
    refused = owner.post("/account/security/totp", data={"csrf_token": csrf_token(setup), "code": code_at(planted)})
    assert refused.status_code == 400
    assert owner.post("/account/security/totp", data={"csrf_token": csrf_token(setup),
                                                      "code": code_at(mine)}).status_code == 200
    with app.app_context():
        from idp.extensions import db
        rows = db.session.scalars(db.select(TotpCredential).where(TotpCredential.user_id == victim["id"])).all()
        assert [row.confirmed_at is not None for row in rows] == [True]  # the planted set-up is gone


def test_a_setup_left_waiting_gets_a_new_secret_after_fifteen_minutes(app, make_user, pinned):
    from tests.authn.web import Web

    user = make_user()
    web = Web(app)
    assert web.login(user["username"], user["password"]).status_code == 303
    first = _shown_secret(web.get("/account/security/totp").get_data(as_text=True))
    assert _shown_secret(web.get("/account/security/totp").get_data(as_text=True)) == first  # same browser, soon
    pinned.advance(14 * 60)
    web.login(user["username"], user["password"])  # the set-up page needs a recent sign-in
    assert _shown_secret(web.get("/account/security/totp").get_data(as_text=True)) == first
    pinned.advance(2 * 60)
    web.login(user["username"], user["password"])
    assert _shown_secret(web.get("/account/security/totp").get_data(as_text=True)) != first


def test_a_setup_page_opened_elsewhere_does_not_break_one_under_way(app, make_user, pinned):
    """The set-up page is a GET that any site can make a browser open: it must not end a set-up
    the person has open in another browser (found by review)."""
    from tests.authn.web import Web

    user = make_user()
    first, second = Web(app), Web(app)
    for web in (first, second):
        assert web.login(user["username"], user["password"]).status_code == 303
    page = first.get("/account/security/totp").get_data(as_text=True)
    mine = _shown_secret(page)
    assert _shown_secret(second.get("/account/security/totp").get_data(as_text=True)) != mine
    assert first.post("/account/security/totp", data={"csrf_token": csrf_token(page),
                                                      "code": code_at(mine)}).status_code == 200
