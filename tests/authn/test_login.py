"""Password sign-in, the SSO session cookie, lifetimes and logout (issue 2 item 8)."""
import re

import pytest
from sqlalchemy import func, select

from idp import audit
from idp.extensions import db
from idp.models import AuditEvent, SsoSession
from idp.security.tokens import digest
from tests.authn.fakes import counting_hasher
from tests.authn.web import USER_AGENT, Web, field_value, signed_in_as, without_csrf
from tests.helpers.forms import csrf_token

GENERIC = "The username, email or password is not right."


def session_rows(app, user_id) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(SsoSession).where(SsoSession.user_id == user_id))


def session_row_exists(app, cookie_value) -> bool:
    with app.app_context():
        return db.session.scalar(select(SsoSession.id).where(SsoSession.token_digest == digest(cookie_value))) is not None


def last_event(app, user_id=None, type_prefix="authn."):
    with app.app_context():
        found = audit.events(user_id=user_id, type_prefix=type_prefix)
        return audit.as_dict(found[-1]) if found else None


def test_login_page_prefills_login_hint(web):
    page = web.get("/login?login_hint=alice%40example.com")
    assert page.status_code == 200
    assert field_value(page.get_data(as_text=True), "login") == "alice@example.com"


def test_login_by_username_starts_a_session_with_a_safe_cookie(app, web, make_user):
    user = make_user()
    response = web.login(user["username"], user["password"])
    assert response.status_code == 303 and response.headers["Location"] == "/account"
    set_cookie = [h for h in response.headers.getlist("Set-Cookie") if h.startswith("idp_session=")]
    assert len(set_cookie) == 1
    flags = {part.strip().split("=")[0].lower() for part in set_cookie[0].split(";")[1:]}
    assert {"httponly", "path", "samesite"} <= flags and "samesite=lax" in set_cookie[0].lower()
    assert "domain" not in flags
    assert web.is_signed_in()
    assert session_row_exists(app, web.session_cookie)
    assert user["username"] in web.get("/account").get_data(as_text=True)


@pytest.mark.parametrize("form", ["username_upper", "email", "email_upper", "fullwidth"])
def test_login_accepts_username_or_email_in_any_case(web, make_user, form):
    user = make_user()
    login = {"username_upper": user["username"].upper(), "email": user["email"],
             "email_upper": user["email"].upper(),
             "fullwidth": "".join(chr(ord(c) + 0xFEE0) if c.isalnum() else c for c in user["username"])}[form]
    assert web.login(login, user["password"]).status_code == 303
    assert web.is_signed_in()


def test_login_without_csrf_token_is_refused(app, web, make_user):
    user = make_user()
    response = web.post("/login", data={"login": user["username"], "password": user["password"]})
    assert response.status_code == 400
    assert web.session_cookie is None and session_rows(app, user["id"]) == 0


def test_unknown_user_wrong_password_and_disabled_account_get_the_same_page(app, make_user):
    known, disabled = make_user(), make_user(disabled=True)
    attempts = {"unknown": (f"nobody-{known['username']}", known["password"]),
                "bad_password": (known["username"], "not the right password"),
                "disabled": (disabled["username"], disabled["password"])}
    pages = {}
    for case, (login, password) in attempts.items():
        web = Web(app)
        response = web.login(login, password)
        html = response.get_data(as_text=True)
        assert response.status_code == 400, case
        assert f'<div class="alert" role="alert">{GENERIC}</div>' in html
        assert field_value(html, "login") == login and field_value(html, "password") is None
        assert password not in html
        assert web.session_cookie is None
        pages[case] = without_csrf(html).replace(f'value="{login}"', 'value="LOGIN"')
    assert pages["unknown"] == pages["bad_password"] == pages["disabled"]
    assert session_rows(app, known["id"]) == session_rows(app, disabled["id"]) == 0


@pytest.mark.parametrize("case, reason", [("unknown", "unknown_user"), ("bad_password", "bad_password"),
                                          ("disabled", "disabled")])
def test_failed_login_is_audited_with_a_reason_code(app, web, make_user, case, reason):
    user = make_user(disabled=(case == "disabled"))
    login = f"ghost-{user['username']}" if case == "unknown" else user["username"]
    password = "not the right password" if case == "bad_password" else user["password"]
    assert web.login(login, password).status_code == 400
    event = last_event(app, type_prefix="authn.login.failed")
    assert event["type"] == "authn.login.failed" and event["outcome"] == "failure"
    assert event["details"] == {"reason": reason}
    assert event["user_id"] == (None if case == "unknown" else user["id"])
    assert (event["ip"], event["user_agent"]) == (web.ip, USER_AGENT) and event["request_id"]


def test_successful_login_is_audited(app, web, make_user):
    user = make_user()
    assert web.login(user["email"], user["password"]).status_code == 303
    event = last_event(app, user_id=user["id"])
    assert (event["type"], event["outcome"], event["details"]) == ("authn.login.succeeded", "success", {"amr": ["pwd"], "acr": "urn:idp:acr:pwd"})
    assert event["ip"] == web.ip


def test_planted_cookie_is_replaced_at_login(app, web, make_user):
    user = make_user()
    planted = "attacker-chosen-session-value"
    web.set_session_cookie(planted)
    assert not web.is_signed_in()
    assert web.login(user["username"], user["password"]).status_code == 303
    assert web.session_cookie not in (None, planted)
    assert web.is_signed_in()
    assert not signed_in_as(app, planted) and not session_row_exists(app, planted)


def test_each_login_issues_a_new_cookie_and_ends_the_previous_session(app, web, make_user):
    user = make_user()
    assert web.login(user["username"], user["password"]).status_code == 303
    first = web.session_cookie
    assert web.login(user["username"], user["password"]).status_code == 303
    second = web.session_cookie
    assert second != first
    assert signed_in_as(app, second)
    assert not signed_in_as(app, first) and not session_row_exists(app, first)
    assert session_rows(app, user["id"]) == 1


def test_cookie_value_is_stored_only_as_a_digest(app, web, make_user):
    user = make_user()
    web.login(user["username"], user["password"])
    with app.app_context():
        row = db.session.scalar(select(SsoSession).where(SsoSession.user_id == user["id"]))
        assert row.token_digest == digest(web.session_cookie) != web.session_cookie
        assert row.sid != web.session_cookie and row.amr == ["pwd"]


def test_session_ends_after_the_idle_lifetime(app, web, make_user, pinned):
    idle = app.config["IDP_SETTINGS"].session_idle_lifetime
    user = make_user()
    web.login(user["username"], user["password"])
    pinned.advance(idle - 5)
    assert web.is_signed_in()           # use within the idle window keeps it alive ...
    pinned.advance(idle - 5)
    assert web.is_signed_in()
    pinned.advance(idle + 1)            # ... and an idle stretch longer than the window ends it
    assert not web.is_signed_in()


def test_session_ends_at_the_absolute_lifetime_even_when_in_use(app, web, make_user, pinned):
    s = app.config["IDP_SETTINGS"]
    user = make_user()
    web.login(user["username"], user["password"])
    step = s.session_idle_lifetime // 2
    used = 0
    while used + step < s.session_absolute_lifetime:
        pinned.advance(step)
        used += step
        assert web.is_signed_in(), f"signed out after {used}s"
    pinned.advance(s.session_absolute_lifetime - used)
    assert not web.is_signed_in()


def test_disabling_a_user_ends_their_live_session(app, web, make_user):
    from idp.models import User
    user = make_user()
    web.login(user["username"], user["password"])
    with app.app_context():
        db.session.get(User, user["id"]).disabled = True
        db.session.commit()
    assert not web.is_signed_in()


def test_get_logout_only_asks_for_confirmation(app, web, make_user):
    user = make_user()
    web.login(user["username"], user["password"])
    page = web.get("/logout")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert re.search(r'<form method="post" action="/logout">\s*<input type="hidden" name="csrf_token"', html)
    # The SSO cookie stays as it was (only the form's new CSRF token may be written: sign-in renews it).
    assert not any(c.startswith(("__Host-idp_session=", "idp_session=")) for c in page.headers.getlist("Set-Cookie"))
    assert web.is_signed_in() and session_row_exists(app, web.session_cookie)


def test_logout_deletes_the_session_row_so_a_replayed_cookie_fails(app, web, make_user):
    user = make_user()
    web.login(user["username"], user["password"])
    cookie = web.session_cookie
    response = web.logout()
    assert response.status_code == 303 and response.headers["Location"] == "/logged-out"
    assert any(h.startswith("idp_session=;") for h in response.headers.getlist("Set-Cookie"))
    assert web.session_cookie is None
    assert not session_row_exists(app, cookie)
    assert not signed_in_as(app, cookie)
    event = last_event(app, user_id=user["id"])
    assert event["type"] == "authn.logout.succeeded" and set(event["details"]) == {"sid"}


def test_logout_without_csrf_token_keeps_the_session(app, web, make_user):
    user = make_user()
    web.login(user["username"], user["password"])
    response = web.post("/logout", data={})
    assert response.status_code == 400
    assert web.is_signed_in() and session_rows(app, user["id"]) == 1


@pytest.mark.parametrize("target", ["/account", "/account?tab=1", "/authorize/resume/abc123"])
def test_next_local_path_is_followed_after_login(web, make_user, target):
    user = make_user()
    response = web.login(user["username"], user["password"], next_path=target)
    assert response.status_code == 303 and response.headers["Location"] == target


@pytest.mark.parametrize("target", [
    "https://evil.example/", "//evil.example/", "///evil.example/", "/\\evil.example", "\\\\evil.example",
    "/\\/evil.example", "javascript:alert(1)", "http:/evil.example", " //evil.example", "/\t/evil.example",
    "/\r\nLocation: https://evil.example", "evil.example", "",
])
def test_next_that_is_not_a_local_path_falls_back_to_the_account_page(web, make_user, target):
    user = make_user()
    page = web.get("/login", query_string={"next": target})
    assert field_value(page.get_data(as_text=True), "next") == "/account"
    response = web.login(user["username"], user["password"], next_path=target)
    assert response.status_code == 303 and response.headers["Location"] == "/account"


def test_unknown_user_costs_one_argon2_verify_like_a_known_user(app, make_user):
    """No timing oracle for account existence: both paths verify once (asserted by behaviour, not time)."""
    user = make_user()
    Web(app).login(f"nobody-{user['username']}", user["password"])     # warm the dummy hash
    for login in (f"nobody2-{user['username']}", user["username"], f"nobody-{user['email']}"):
        with counting_hasher(app) as counter:
            assert Web(app).login(login, "not the right password").status_code == 400
        assert (counter.verifies, counter.hashes) == (1, 0), login


def test_an_account_without_a_password_costs_one_argon2_verify_like_the_others(app, make_user):
    """Passkey-only and federated accounts: no answer faster than a wrong password's, which told
    which kind of account a login names (found by review)."""
    from idp.users import directory
    user = make_user()
    with app.app_context():
        passwordless = directory.provision(f"fed-{user['email']}", preferred_username=f"fed{user['id']}")
        db.session.commit()
        login = passwordless.username
    Web(app).login(f"nobody-{user['username']}", user["password"])     # warm the dummy hash
    for typed in ("not the right password", "dummy-password-for-timing", "ｄｕｍｍｙ ｐａｓｓｗｏｒｄ 1"):
        with counting_hasher(app) as counter:
            assert Web(app).login(login, typed).status_code == 400
        assert counter.hashes == 0 and counter.verifies == (1 if typed.isascii() else 2), typed
        with counting_hasher(app) as counter:
            assert Web(app).login(user["username"], typed).status_code == 400
        assert counter.hashes == 0 and counter.verifies == (1 if typed.isascii() else 2), typed

def test_the_csrf_token_is_renewed_at_sign_in_and_at_sign_out(app, web, make_user):
    """A token read off this browser before someone signs in (a shared computer) is no good for
    their forms, nor theirs after they sign out (found by review)."""
    user = make_user()
    before = csrf_token(web.get("/login").get_data(as_text=True))
    assert web.login(user["username"], user["password"]).status_code == 303
    assert web.post("/logout", data={"csrf_token": before}).status_code == 400 and web.is_signed_in()
    during = csrf_token(web.get("/logout").get_data(as_text=True))
    assert during != before
    assert web.post("/logout", data={"csrf_token": during}).status_code == 303 and not web.is_signed_in()
    after = csrf_token(web.get("/login").get_data(as_text=True))
    assert after != during
