"""Account pages and the session's assurance level: under IDP_MFA_REQUIRED a session below MFA
is stepped up (or led through enrolment) before any account page, and "Sign in again" must reach
the level the session already has instead of replacing it with a weaker one."""
from __future__ import annotations

import dataclasses
import json
import re
from html import unescape
from urllib.parse import parse_qs, urlsplit

import pytest

from idp import create_app
from idp.extensions import db
from idp.models import SsoSession, User
from tests.authn.test_passkeys import add_passkey, options, passwordless
from tests.authn.web import Web
from tests.helpers.authenticator import SoftAuthenticator
from tests.helpers.forms import csrf_token
from tests.helpers.mfa import code_at, give_totp

MFA = "urn:idp:acr:mfa"
PHR = "urn:idp:acr:phr"


@pytest.fixture
def pinned():
    from datetime import datetime, timezone

    from idp import clock
    clock.set_now(datetime.now(timezone.utc).replace(microsecond=0))
    return clock


@pytest.fixture(scope="module")
def strict(settings, app):
    """The same database and keys with IDP_MFA_REQUIRED on."""
    return create_app(dataclasses.replace(settings, mfa_required=True))


def _session(app, user) -> SsoSession:
    with app.app_context():
        [row] = db.session.scalars(db.select(SsoSession).where(SsoSession.user_id == user["id"]))
        db.session.expunge(row)
        return row


def _password_session(app, strict, user) -> Web:
    """A password-only session (made while MFA was not required), used in the strict app."""
    lenient = Web(app)
    assert lenient.login(user["username"], user["password"]).headers["Location"] == "/account"
    web = Web(strict, ip=lenient.ip)
    web.set_session_cookie(lenient.session_cookie)
    return web


def _post_code(web, path, code):
    page = web.get(path)
    assert page.status_code == 200, page.status_code
    return web.post(path, data={"csrf_token": csrf_token(page.get_data(as_text=True)), "code": code})


def _enrol_totp(web):
    """The TOTP set-up page of a login: enrol, then go on after the recovery codes."""
    page = web.get("/login/totp/enrol").get_data(as_text=True)
    secret = page.split('data-testid="totp-secret">', 1)[1].split("<", 1)[0].strip()
    codes = web.post("/login/totp/enrol", data={"csrf_token": csrf_token(page), "code": code_at(secret)})
    assert codes.status_code == 200 and "<li><code>" in codes.get_data(as_text=True)
    return web.post("/login/continue", data={"csrf_token": csrf_token(codes.get_data(as_text=True))})


def _query(location: str) -> dict:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


# --- IDP_MFA_REQUIRED on the account pages -------------------------------------------------------

def test_a_password_session_proves_its_second_factor_before_an_account_page(app, strict, make_user, pinned):
    user = make_user()
    web = _password_session(app, strict, user)
    secret = give_totp(app, user)  # set up since that session began
    before = _session(app, user)
    sent = web.get("/account/security")
    assert sent.status_code == 302
    assert _query(sent.headers["Location"]) == {"next": "/account/security", "acr": MFA, "required": MFA,
                                                "step_up": "1"}
    assert web.get(sent.headers["Location"]).headers["Location"] == "/login/totp"
    done = _post_code(web, "/login/totp", code_at(secret))
    assert done.status_code == 303 and done.headers["Location"] == "/account/security"
    assert web.get("/account/security").status_code == 200
    after = _session(app, user)
    assert after.acr == MFA and after.sid == before.sid and after.amr == ["pwd", "otp", "mfa"]


def test_a_password_session_without_a_second_factor_is_led_through_enrolment(app, strict, make_user, pinned):
    user = make_user()
    web = _password_session(app, strict, user)
    for path in ("/account", "/account/profile", "/account/sessions", "/account/apps", "/account/privacy",
                 "/account/passkeys", "/account/security/totp"):
        response = web.get(path)
        assert response.status_code == 302 and _query(response.headers["Location"])["next"] == path, path
    assert web.get("/login?next=/account&acr=%s&required=%s&step_up=1" % (MFA, MFA)).headers["Location"] \
        == "/login/totp/enrol"
    done = _enrol_totp(web)
    assert done.status_code == 303 and done.headers["Location"] == "/account"
    assert web.get("/account").status_code == 200 and _session(app, user).acr == MFA


def test_a_password_session_cannot_change_the_account_under_mfa_required(app, strict, make_user):
    user = make_user()
    web = _password_session(app, strict, user)
    token = web.token("/login")
    changed = web.post("/account/profile", data={"csrf_token": token, "name": "Mallory"})
    assert changed.status_code == 303 and _query(changed.headers["Location"])["next"] == "/account"
    ended = web.post("/account/sessions/end-others", data={"csrf_token": token})
    assert ended.status_code == 303 and urlsplit(ended.headers["Location"]).path == "/login"
    with app.app_context():
        assert db.session.get(User, user["id"]).name is None
    # Signing out stays open.
    assert web.post("/logout", data={"csrf_token": web.token("/logout")}).status_code == 303


def test_without_mfa_required_a_password_session_uses_the_account_pages(app, make_user):
    user = make_user()
    web = Web(app)
    web.login(user["username"], user["password"])
    assert web.get("/account/security").status_code == 200


# --- "Sign in again" keeps the level ----------------------------------------------------------------

def test_signing_in_again_after_an_mfa_login_must_reach_mfa_again(app, make_user, pinned):
    """The person signed in with two factors, then removed their app: a password alone no longer
    reaches the session's level, so it does not refresh (or lower) the session."""
    user = make_user()
    secret = give_totp(app, user)
    web = Web(app)
    assert web.login(user["username"], user["password"]).headers["Location"] == "/login/totp"
    assert _post_code(web, "/login/totp", code_at(secret)).status_code == 303
    removed = web.post("/account/security/totp/remove", data={"csrf_token": web.token("/account/security")})
    assert removed.status_code == 303
    pinned.advance(301)
    link = _reauth_link(web.get("/account/security").get_data(as_text=True))
    assert _query(link) == {"next": "/account/security", "reauth": "1", "acr": MFA, "required": MFA}
    before = _session(app, user)
    form = web.get(link).get_data(as_text=True)
    asked = web.post("/login", data={"csrf_token": csrf_token(form), "login": user["username"],
                                     "password": user["password"]})
    assert asked.headers["Location"] == "/login/totp/enrol", "a password alone does not do"
    still = _session(app, user)
    assert (still.acr, still.amr, still.auth_time) == (MFA, ["pwd", "otp", "mfa"], before.auth_time)
    assert "Sign in again" in web.get("/account/security").get_data(as_text=True)
    done = _enrol_totp(web)
    assert done.headers["Location"] == "/account/security"
    after = _session(app, user)
    assert after.acr == MFA and after.sid == before.sid and after.auth_time > before.auth_time


def test_signing_in_again_after_a_passkey_login_asks_for_the_passkey(app, make_user, pinned):
    """A phishing-resistant session: the password and the app's code would make only MFA, so the
    re-authentication asks for the passkey after the password."""
    user = make_user()
    secret = give_totp(app, user)
    authenticator = SoftAuthenticator()
    web = Web(app)
    assert web.login(user["username"], user["password"]).headers["Location"] == "/login/totp"
    assert _post_code(web, "/login/totp", code_at(secret)).status_code == 303
    assert add_passkey(web, authenticator).status_code == 200  # with recovery codes (none yet)
    assert passwordless(web, authenticator).status_code == 303
    before = _session(app, user)
    assert before.acr == PHR
    pinned.advance(301)
    link = _reauth_link(web.get("/account/security").get_data(as_text=True))
    assert _query(link) == {"next": "/account/security", "reauth": "1", "acr": PHR, "required": PHR}
    form = web.get(link).get_data(as_text=True)
    asked = web.post("/login", data={"csrf_token": csrf_token(form), "login": user["username"],
                                     "password": user["password"]})
    assert asked.headers["Location"] == "/login/passkey", "the app's code alone would lower the session"
    assert (_session(app, user).acr, _session(app, user).auth_time) == (PHR, before.auth_time)
    sent = options(web, "/login/passkey/options", "/login/passkey").get_json()
    done = web.post("/login/passkey", data={"csrf_token": web.token("/login/passkey"),
                                            "credential": json.dumps(authenticator.get(sent, web.issuer))})
    assert done.headers["Location"] == "/account/security"
    after = _session(app, user)
    assert after.acr == PHR and after.sid == before.sid and after.auth_time > before.auth_time


def _reauth_link(html: str) -> str:
    match = re.search(r'<a href="([^"]*)">Sign in again</a>', html)
    assert match, "no sign-in-again link"
    return unescape(match.group(1))
