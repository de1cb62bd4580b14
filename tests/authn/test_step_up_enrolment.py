"""Setting up a factor during a login adds a way into the account, so it never rests on less than
the account pages ask for: an old session's step-up proves the first factor again, a person's
existing second factor is proved before another is set up, and recovery codes the person holds
are never replaced (nor shown to whoever is at the browser)."""
from __future__ import annotations

import json

from idp.extensions import db
from idp.models import RecoveryCode, SsoSession, TotpCredential, WebAuthnCredential
from tests.authn.test_passkeys import add_passkey, options, session_of
from tests.authn.web import Web, field_value
from tests.helpers.authenticator import SoftAuthenticator
from tests.helpers.forms import csrf_token
from tests.helpers.mfa import code_at, give_recovery_codes, give_totp

MFA = "urn:idp:acr:mfa"
PHR = "urn:idp:acr:phr"
STALE = 3 * 3600  # well past IDP_MFA_RECENT_AUTH_SECONDS, well within the idle lifetime
GENERIC = "The username, email or password is not right."


def step_up(web: Web, level: str):
    return web.get(f"/login?next=/account&acr={level}&required={level}&step_up=1")


def stale_session(app, user, pinned, *, totp_secret: str | None = None) -> Web:
    """A browser signed in (with the app's code too, when given) hours ago: still live, not recent."""
    web = Web(app)
    signed = web.login(user["username"], user["password"])
    if totp_secret is not None:
        assert signed.headers["Location"] == "/login/totp"
        signed = post_code(web, "/login/totp", code_at(totp_secret))
    assert signed.status_code == 303 and signed.headers["Location"] == "/account"
    pinned.advance(STALE)
    assert web.is_signed_in()
    assert options(web, "/account/passkeys/options", page="/logout").status_code == 403  # not recent
    return web


def post_code(web: Web, path: str, code: str):
    page = web.get(path)
    assert page.status_code == 200, page.status_code
    return web.post(path, data={"csrf_token": csrf_token(page.get_data(as_text=True)), "code": code})


def prove_password(web: Web, user, login: str | None = None, password: str | None = None):
    page = web.get("/login?resume=1")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    return web.post("/login", data={"csrf_token": csrf_token(html), "login": login or field_value(html, "login"),
                                    "password": password or user["password"]})


def enrol_passkey(web: Web, authenticator: SoftAuthenticator):
    sent = options(web, "/login/passkey/enrol/options", "/login/passkey/enrol")
    assert sent.status_code == 200, sent.status_code
    return web.post("/login/passkey/enrol", data={"csrf_token": web.token("/login/passkey/enrol"), "name": "Phone",
                                                  "credential": json.dumps(authenticator.create(sent.get_json(),
                                                                                                web.issuer))})


def count(app, model, *where) -> int:
    with app.app_context():
        return db.session.scalar(db.select(db.func.count()).select_from(model).where(*where))


def unused_codes(app, user) -> int:
    return count(app, RecoveryCode, RecoveryCode.user_id == user["id"], RecoveryCode.used_at.is_(None))


def one_session(app, user) -> SsoSession:
    with app.app_context():
        [row] = db.session.scalars(db.select(SsoSession).where(SsoSession.user_id == user["id"]))
        db.session.expunge(row)
        return row


# --- a step-up from an old session ------------------------------------------------------------

def test_an_old_session_proves_the_password_again_before_setting_up_a_passkey(app, make_user, pinned):
    user = make_user()
    web = stale_session(app, user, pinned)
    sid = one_session(app, user).sid
    asked = step_up(web, PHR)
    assert asked.status_code == 303 and asked.headers["Location"] == "/login?resume=1"
    # Nothing can be set up yet: the enrolment pages are not due.
    assert web.get("/login/passkey/enrol").status_code == 400
    assert options(web, "/login/passkey/enrol/options", page="/logout").status_code == 400
    page = web.get("/login?resume=1").get_data(as_text=True)
    assert field_value(page, "login") == user["username"]  # the session's person, pre-filled
    assert prove_password(web, user).headers["Location"] == "/login/passkey/enrol"
    authenticator = SoftAuthenticator()
    codes = enrol_passkey(web, authenticator)
    assert codes.status_code == 200 and codes.get_data(as_text=True).count("<li><code>") == 10
    done = web.post("/login/continue", data={"csrf_token": csrf_token(codes.get_data(as_text=True))})
    assert done.status_code == 303 and done.headers["Location"] == "/account"
    row = one_session(app, user)
    assert (row.sid, row.acr) == (sid, PHR)  # the same session, raised


def test_an_old_session_cannot_set_up_a_passkey_without_the_password(app, make_user, pinned):
    """The reviewer's sequence: an old session stepped up to phr, no password typed, a passkey
    registered and used from a new browser. Now the password is asked first, and a wrong one
    sets up nothing and leaves the session as it was."""
    user = make_user()
    web = stale_session(app, user, pinned)
    before = one_session(app, user)
    assert step_up(web, PHR).headers["Location"] == "/login?resume=1"
    wrong = prove_password(web, user, password="not the right password")
    assert wrong.status_code == 400 and GENERIC in wrong.get_data(as_text=True)
    assert web.get("/login/passkey/enrol").status_code == 400
    assert count(app, WebAuthnCredential, WebAuthnCredential.user_id == user["id"]) == 0
    assert unused_codes(app, user) == 0
    after = one_session(app, user)
    assert (after.acr, after.amr, after.auth_time) == (before.acr, before.amr, before.auth_time)
    assert options(web, "/account/passkeys/options", page="/logout").status_code == 403  # still not recent


def test_an_old_session_proves_the_password_again_before_setting_up_an_app(app, make_user, pinned):
    user = make_user()
    web = stale_session(app, user, pinned)
    assert web.get("/account/security/totp").status_code == 403
    assert step_up(web, MFA).headers["Location"] == "/login?resume=1"
    assert web.get("/login/totp/enrol").status_code == 400
    assert count(app, TotpCredential, TotpCredential.user_id == user["id"]) == 0
    assert prove_password(web, user).headers["Location"] == "/login/totp/enrol"


def test_a_step_up_that_starts_again_offers_no_passkey_to_someone_without_one(app, make_user, pinned):
    """The first factor may be a password or a passkey (steps.PRIMARY); for a person who has no
    passkey the passkey step sends to the password, and its options are a 400, not a 500."""
    user = make_user()
    web = stale_session(app, user, pinned)
    assert step_up(web, MFA).headers["Location"] == "/login?resume=1"
    refused = options(web, "/login/passkey/options", page="/login?resume=1")
    assert refused.status_code == 400 and "no passkey" in refused.get_data(as_text=True)
    page = web.get("/login/passkey")
    assert page.status_code == 303 and page.headers["Location"] == "/login?resume=1"
    assert web.post("/login/passkey", data={"csrf_token": web.token("/login?resume=1"),
                                            "credential": "{}"}).status_code == 400
    assert prove_password(web, user).headers["Location"] == "/login/totp/enrol"  # the login goes on


def test_a_step_up_that_starts_again_is_for_the_sessions_person_only(app, make_user, pinned):
    user, other = make_user(), make_user()
    web = stale_session(app, user, pinned)
    assert step_up(web, PHR).headers["Location"] == "/login?resume=1"
    refused = prove_password(web, other, login=other["username"])
    assert refused.status_code == 400 and GENERIC in refused.get_data(as_text=True)
    assert one_session(app, user).acr == "urn:idp:acr:pwd"
    assert count(app, SsoSession, SsoSession.user_id == other["id"]) == 0


def test_a_step_up_that_starts_again_refuses_another_persons_passkey(app, make_user, pinned):
    user, other = make_user(), make_user()
    others_key = SoftAuthenticator()
    setup = Web(app)
    setup.login(other["username"], other["password"])
    assert add_passkey(setup, others_key).status_code == 200
    web = stale_session(app, user, pinned)
    assert step_up(web, PHR).headers["Location"] == "/login?resume=1"
    # From the page of this login (the passkey button on it), not a new sign-in page.
    answer = others_key.get(options(web, "/login/passwordless/options", page="/login?resume=1").get_json(),
                            web.issuer)
    refused = web.post("/login/passwordless", data={"csrf_token": web.token("/login?resume=1"),
                                                    "credential": json.dumps(answer)})
    assert refused.status_code == 400
    row = session_of(app, web)
    assert row is not None and row.user_id == user["id"] and row.acr == "urn:idp:acr:pwd"


def test_an_old_two_factor_session_proves_both_factors_before_adding_a_passkey(app, make_user, pinned):
    """A person with an app, signed in with it hours ago, stepped up to phr: password and app
    again, then the passkey; the recovery codes they hold stay theirs and are not shown."""
    user = make_user()
    secret = give_totp(app, user)
    codes = give_recovery_codes(app, user)
    web = stale_session(app, user, pinned, totp_secret=secret)
    assert step_up(web, PHR).headers["Location"] == "/login?resume=1"
    assert prove_password(web, user).headers["Location"] == "/login/totp"
    assert web.get("/login/passkey/enrol").status_code == 400
    pinned.advance(30)  # the next time step: the code used at sign-in is spent
    assert post_code(web, "/login/totp", code_at(secret)).headers["Location"] == "/login/passkey/enrol"
    done = enrol_passkey(web, SoftAuthenticator())
    assert done.status_code == 303 and done.headers["Location"] == "/account"
    assert one_session(app, user).acr == PHR
    assert unused_codes(app, user) == len(codes)
    other = Web(app)
    assert other.login(user["username"], user["password"]).headers["Location"] == "/login/passkey"
    assert post_code(other, "/login/recovery", codes[0]).status_code == 303  # the owner's codes still work


def test_a_step_up_from_an_old_session_to_a_factor_the_person_has_asks_only_that_factor(app, make_user, pinned):
    user = make_user()
    web = stale_session(app, user, pinned)
    secret = give_totp(app, user)  # set up since (on another device)
    assert step_up(web, MFA).headers["Location"] == "/login/totp"
    assert post_code(web, "/login/totp", code_at(secret)).headers["Location"] == "/account"
    assert one_session(app, user).acr == MFA


def test_a_recent_session_still_steps_up_straight_to_setting_up_a_factor(app, make_user, pinned):
    user = make_user()
    web = Web(app)
    assert web.login(user["username"], user["password"]).status_code == 303
    pinned.advance(app.config["IDP_SETTINGS"].mfa_recent_auth_seconds - 1)
    assert step_up(web, MFA).headers["Location"] == "/login/totp/enrol"


# --- a person's second factor comes first ---------------------------------------------------------

def test_a_login_requiring_a_passkey_asks_for_the_persons_app_before_setting_one_up(app, make_user, pinned):
    """Password alone, then a phr requirement: the person's app first (the set-up was offered
    straight after the password, so the password alone let one add a passkey)."""
    user = make_user()
    secret = give_totp(app, user)
    web = Web(app)
    page = web.get(f"/login?next=/account&acr={PHR}&required={PHR}").get_data(as_text=True)
    asked = web.post("/login", data={"csrf_token": csrf_token(page), "login": user["username"],
                                     "password": user["password"]})
    assert asked.headers["Location"] == "/login/totp"
    assert web.get("/login/passkey/enrol").status_code == 400
    assert post_code(web, "/login/totp", code_at(secret)).headers["Location"] == "/login/passkey/enrol"
    codes = enrol_passkey(web, SoftAuthenticator())
    assert codes.status_code == 200 and codes.get_data(as_text=True).count("<li><code>") == 10  # none before


# --- recovery codes at enrolment ----------------------------------------------------------------

def test_setting_up_a_passkey_during_a_login_keeps_the_persons_recovery_codes(app, make_user, pinned):
    user = make_user()
    secret = give_totp(app, user)
    codes = give_recovery_codes(app, user)
    web = Web(app)
    page = web.get(f"/login?next=/account&acr={PHR}&required={PHR}").get_data(as_text=True)
    web.post("/login", data={"csrf_token": csrf_token(page), "login": user["username"], "password": user["password"]})
    assert post_code(web, "/login/totp", code_at(secret)).headers["Location"] == "/login/passkey/enrol"
    done = enrol_passkey(web, SoftAuthenticator())
    assert done.status_code == 303 and done.headers["Location"] == "/account"  # no codes page
    assert session_of(app, web).acr == PHR
    assert unused_codes(app, user) == len(codes)
    with app.app_context():
        from idp.authn import recovery
        from idp.models import User
        assert recovery.use_recovery_code(db.session.get(User, user["id"]), codes[-1]) is not None
        db.session.rollback()
