"""Setting up a factor during a login adds a way into the account, so it never rests on less than
it should: a person's existing second factor is proved before another is set up, and recovery
codes the person holds are never replaced (nor shown to whoever is at the browser)."""
from __future__ import annotations

import json

from idp.extensions import db
from idp.models import RecoveryCode
from tests.authn.test_passkeys import options, session_of
from tests.authn.web import Web
from tests.helpers.authenticator import SoftAuthenticator
from tests.helpers.forms import csrf_token
from tests.helpers.mfa import code_at, give_recovery_codes, give_totp

PHR = "urn:idp:acr:phr"


def post_code(web: Web, path: str, code: str):
    page = web.get(path)
    assert page.status_code == 200, page.status_code
    return web.post(path, data={"csrf_token": csrf_token(page.get_data(as_text=True)), "code": code})


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
