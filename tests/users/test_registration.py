"""Self-registration over Flask's test client with CSRF on (issue 2 item 6)."""
import dataclasses
import re
import uuid

import pytest
from sqlalchemy import func, select

from idp import create_app
from idp.extensions import db
from idp.models import AuditEvent, SsoSession, User
from idp.users.directory import identifier_key
from tests.authn.web import Web, field_value, without_csrf

PASSWORD = "violet meadow quartz lantern"
TAKEN = "This username or email cannot be used. If it is yours, sign in instead."


def tag() -> str:
    return uuid.uuid4().hex[:8]


def count(app, model, *where) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model).where(*where))


def alert(html: str) -> str | None:
    match = re.search(r'<div class="alert" role="alert">([^<]*)</div>', html)
    return match.group(1) if match else None


def field_error(html: str, name: str) -> str | None:
    match = re.search(rf'<p class="error" id="e-{name}">([^<]*)</p>', html)
    return match.group(1) if match else None


def test_register_page_has_the_three_fields_and_a_csrf_token(web):
    page = web.get("/register")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert 'name="csrf_token"' in html
    for name, autocomplete in (("username", "username"), ("email", "email"), ("password", "new-password")):
        assert re.search(rf'<input id="f-{name}" name="{name}"[^>]*autocomplete="{autocomplete}"', html)


def test_registration_without_csrf_token_is_refused_and_writes_nothing(app, web):
    before = count(app, User)
    response = web.post("/register", data={"username": f"nocsrf{tag()}", "email": f"nocsrf{tag()}@example.com",
                                           "password": PASSWORD})
    assert response.status_code == 400
    assert "This form has expired" in response.get_data(as_text=True)
    assert count(app, User) == before


def test_registration_creates_the_user_and_starts_a_session(app, web):
    username, email = f"Newcomer_{tag()}", f"Newcomer.{tag()}@Example.com"
    response = web.register(username, email, PASSWORD)
    assert response.status_code == 303 and response.headers["Location"] == "/account"
    assert web.session_cookie and web.is_signed_in()
    with app.app_context():
        user = db.session.scalar(select(User).where(User.username_key == identifier_key(username)))
        assert (user.username, user.email, user.email_key) == (username, email, email.lower())
        assert user.password_hash.startswith("$argon2id$") and PASSWORD not in user.password_hash
        assert db.session.scalar(select(func.count()).select_from(SsoSession).where(SsoSession.user_id == user.id)) == 1
        types = [e.type for e in db.session.scalars(select(AuditEvent).where(AuditEvent.user_id == user.id).order_by(AuditEvent.id))]
    assert types == ["users.user.registered", "users.email.verification_sent", "authn.login.succeeded"]
    assert web.login(email.upper(), PASSWORD).status_code == 303


def test_registration_redirects_only_to_a_local_next(web):
    assert web.register(f"nextlocal{tag()}", f"nl{tag()}@example.com", PASSWORD,
                        next_path="/account?x=1").headers["Location"] == "/account?x=1"
    other = Web(web.app)
    assert other.register(f"nextfar{tag()}", f"nf{tag()}@example.com", PASSWORD,
                          next_path="https://evil.example/").headers["Location"] == "/account"


@pytest.mark.parametrize("first, second", [
    ("alice_{t}", "Ａlice_{t}"),        # fullwidth A (NFKC) and case
    ("alice_{t}", "ALICE_{t}"),
    ("file_{t}", "ﬁle_{t}"),            # the fi ligature (NFKC)
    ("straße_{t}", "STRASSE_{t}"),      # case folding, not just lower()
])
def test_usernames_are_unique_after_nfkc_and_case_folding(app, web, first, second):
    t = tag()
    assert Web(app).register(first.format(t=t), f"first{t}@example.com", PASSWORD).status_code == 303
    before = count(app, User)
    response = web.register(second.format(t=t), f"second{t}@example.com", PASSWORD)
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert alert(html) == TAKEN
    assert count(app, User) == before
    assert web.session_cookie is None
    assert count(app, User, User.username_key == identifier_key(first.format(t=t))) == 1


@pytest.mark.parametrize("first, second", [
    ("alice.{t}@example.com", "ALICE.{t}@Example.com"),
    ("alice.{t}@example.com", "ａlice.{t}@ｅxample.com"),   # fullwidth letters (NFKC)
    ("ﬁle.{t}@example.com", "FILE.{t}@EXAMPLE.COM"),
    ("b.{t}@bücher.example", "B.{t}@XN--BCHER-KVA.example"),  # the same domain, as U-label and A-label
    ("b.{t}@BÜCHER.example", "b.{t}@bücher.example"),
])
def test_emails_are_unique_after_nfkc_and_case_folding(app, web, first, second):
    t = tag()
    assert Web(app).register(f"first{t}", first.format(t=t), PASSWORD).status_code == 303
    before = count(app, User)
    response = web.register(f"second{t}", second.format(t=t), PASSWORD)
    assert response.status_code == 400
    assert alert(response.get_data(as_text=True)) == TAKEN
    assert count(app, User) == before
    assert web.session_cookie is None


@pytest.mark.parametrize("first, second", [
    ("maß.{t}@example.com", "MASS.{t}@example.com"),          # two mailboxes: no full case folding
    ("a.{t}@straße.example", "a.{t}@strasse.example"),        # two domains in DNS (IDNA 2008)
    ("a.{t}@xn--strae-oqa.example", "a.{t}@STRASSE.example"),
])
def test_emails_that_name_different_mailboxes_are_different_accounts(app, web, first, second):
    t = tag()
    assert Web(app).register(f"first{t}", first.format(t=t), PASSWORD).status_code == 303
    assert web.register(f"second{t}", second.format(t=t), PASSWORD).status_code == 303
    with app.app_context():
        keys = {identifier_key(first.format(t=t)), identifier_key(second.format(t=t))}
        assert len(keys) == 2 and count(app, User, User.email_key.in_(keys)) == 2
    assert Web(app).login(second.format(t=t), PASSWORD).status_code == 303


@pytest.mark.parametrize("email", ["a@exa_mple.com", "a@-bad.example", "a@bad-.example", "a@x..example",
                                   "a@" + "l" * 64 + ".example"])
def test_an_address_whose_domain_is_not_a_domain_name_is_refused(app, web, email):
    before = count(app, User)
    response = web.register(f"baddomain{tag()}", email, PASSWORD)
    assert response.status_code == 400 and "Enter an email address like name@example.com." in response.get_data(as_text=True)
    assert count(app, User) == before


@pytest.mark.parametrize("username, allowed", [
    ("p\u0430ypal_{t}", False),           # Latin with a Cyrillic a: looks like paypal
    ("\u0440\u0430\u0443\u0440\u0430l_{t}", False),  # Cyrillic with one Latin l
    ("\u03a9mega_{t}", False),             # Greek and Latin
    ("a\u0661b3_{t}", False),              # Arabic-Indic and ASCII digits
    ("\u03c9\u03bc\u03b5\u03b3\u03b1_{t}", True),  # all Greek
    ("\u3084\u307e\u3060taro_{t}", True),  # Hiragana with Latin, as Japanese is written
    ("\u5c71\u7530\u305f\u308d\u3046_{t}", True),  # Han with Hiragana
    ("\uae40\ucca0\uc218_{t}", True),   # Hangul
    ("tar\u014d_{t}", True),               # Latin with a macron
])
def test_usernames_that_mix_scripts_are_refused(app, web, username, allowed):
    t = str(uuid.uuid4().int)[:8]  # digits: tag()'s hex letters are Latin
    response = web.register(username.format(t=t), f"mix{t}@example.com", PASSWORD)
    if allowed:
        assert response.status_code == 303
    else:
        assert response.status_code == 400
        assert "Use letters from one alphabet, and one kind of digits." in response.get_data(as_text=True)


def test_taken_username_and_taken_email_get_the_same_page(app):
    t = tag()
    assert Web(app).register(f"owner{t}", f"owner{t}@example.com", PASSWORD).status_code == 303
    taken_name = Web(app).register(f"OWNER{t}", f"fresh{t}@example.com", PASSWORD)
    taken_mail = Web(app).register(f"fresh{t}", f"OWNER{t}@example.com", PASSWORD)
    assert taken_name.status_code == taken_mail.status_code == 400
    assert alert(taken_name.get_data(as_text=True)) == alert(taken_mail.get_data(as_text=True)) == TAKEN

    def neutral(response):
        html = without_csrf(response.get_data(as_text=True))
        return re.sub(r'(name="(username|email)"[^>]*value=")[^"]*"', r'\1"', html)
    assert neutral(taken_name) == neutral(taken_mail)
    assert field_error(taken_name.get_data(as_text=True), "username") is None
    assert field_error(taken_mail.get_data(as_text=True), "email") is None


@pytest.mark.parametrize("username, email, password, field, message", [
    ("ab", "ok{t}@example.com", PASSWORD, "username", "Use 3 to 32 letters, digits, dots, dashes or underscores."),
    ("has space{t}", "ok{t}@example.com", PASSWORD, "username", "Use 3 to 32 letters, digits, dots, dashes or underscores."),
    ("x" * 33, "ok{t}@example.com", PASSWORD, "username", "Use 3 to 32 letters, digits, dots, dashes or underscores."),
    ("okuser{t}", "not-an-email", PASSWORD, "email", "Enter an email address like name@example.com."),
    ("okuser{t}", "two@@example.com", PASSWORD, "email", "Enter an email address like name@example.com."),
    # one address, several recipients: a relay completes the bare "postmaster" with its own domain
    ("okuser{t}", "postmaster,x{t}@example.com", PASSWORD, "email", "Enter an email address like name@example.com."),
    ("okuser{t}", "x{t}<a@b.example>@example.com", PASSWORD, "email", "Enter an email address like name@example.com."),
    ("okuser{t}", "a..b{t}@example.com", PASSWORD, "email", "Enter an email address like name@example.com."),
    ("okuser{t}", "ok{t}@example.com", "short7!", "password", "Use at least 8 characters."),
    ("okuser{t}", "ok{t}@example.com", "Password1", "password",
     "This password appears in lists of leaked passwords. Choose another."),
    ("okuser{t}", "ok{t}@example.com", "OKUSER{t}", "password", "Do not use your username or email as your password."),
    ("okuser{t}", "ok{t}@example.com", "x" * 257, "password", "Use at most 256 characters."),
])
def test_bad_field_is_explained_beside_it_and_values_are_kept(app, web, username, email, password, field, message):
    t = tag()
    username, email, password = username.format(t=t), email.format(t=t), password.format(t=t)
    before = count(app, User)
    response = web.register(username, email, password)
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert field_error(html, field) == message
    assert re.search(rf'<input id="f-{field}"[^>]*aria-invalid="true" aria-describedby="e-{field}"', html)
    assert field_value(html, "username") == username[:64]
    assert field_value(html, "email") == email
    assert field_value(html, "password") is None
    assert password not in html
    assert count(app, User) == before
    assert web.session_cookie is None


def test_several_bad_fields_are_all_reported_at_once(app, web):
    response = web.register("a", "nope", "short")
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert field_error(html, "username") and field_error(html, "email") and field_error(html, "password")


@pytest.mark.parametrize("username", ["bob@{t}", "bob@{t}.example.com", "@bob{t}"])
def test_username_containing_at_sign_is_refused(app, web, username):
    username = username.format(t=tag())
    before = count(app, User)
    response = web.register(username, f"b{tag()}@example.com", PASSWORD)
    assert response.status_code == 400
    assert field_error(response.get_data(as_text=True), "username") == \
        "Use 3 to 32 letters, digits, dots, dashes or underscores."
    assert count(app, User) == before


def test_free_taken_and_invalid_registrations_all_hash_the_password(app, counting_hasher):
    """No timing oracle: every registration path runs exactly one argon2 hash (no timed assertion)."""
    t = tag()
    assert Web(app).register(f"hasher{t}", f"hasher{t}@example.com", PASSWORD).status_code == 303
    assert counting_hasher.hashes == 1
    for username, email in ((f"HASHER{t}", f"other{t}@example.com"),   # taken username
                            (f"other{t}", f"HASHER{t}@example.com"),   # taken email
                            ("a", f"other{t}@example.com")):           # invalid username
        counting_hasher.hashes = 0
        assert Web(app).register(username, email, PASSWORD).status_code == 400
        assert counting_hasher.hashes == 1


@pytest.fixture(scope="module")
def closed_app(settings, app):
    """A second app on the same database with IDP_REGISTRATION_ENABLED=false."""
    return create_app(dataclasses.replace(settings, registration_enabled=False))


def test_closed_registration_answers_403_and_writes_nothing(closed_app):
    web = Web(closed_app)
    page = web.get("/register")
    assert page.status_code == 403
    assert "Registration is closed here. Ask your administrator for an account." in page.get_data(as_text=True)
    before = count(closed_app, User)
    response = web.post("/register", data={"csrf_token": web.token("/login"), "username": f"closed{tag()}",
                                           "email": f"closed{tag()}@example.com", "password": PASSWORD})
    assert response.status_code == 403
    assert count(closed_app, User) == before
    assert web.session_cookie is None


def test_closed_registration_hides_the_link_on_the_login_page(app, closed_app):
    assert 'href="/register' not in Web(closed_app).get("/login").get_data(as_text=True)
    assert 'href="/register' in Web(app).get("/login").get_data(as_text=True)


def test_an_upstream_username_that_mixes_scripts_is_not_taken_over(app):
    from idp.users.directory import provision
    t = tag()
    with app.test_request_context():
        mixed = provision(f"up{t}@example.com", preferred_username="p\u0430ypal")
        plain = provision(f"up2{t}@example.com", preferred_username=f"paypal{t}")
        db.session.commit()
        assert mixed.username.startswith("user") and "\u0430" not in mixed.username
        assert plain.username == f"paypal{t}"


def test_a_fullwidth_at_sign_at_sign_in_finds_the_account_of_that_address_and_no_other(app):
    """NFKC before deciding "email or username": "straße＠…" used to take the username path (full
    case folding) and find the account of strasse@…; "bob＠bücher…" found nothing."""
    from idp.extensions import db
    from idp.users import directory
    t = tag()
    with app.app_context():
        sharp = directory.create_user(f"sharp{t}", f"stra\u00dfe{t}@example.com", PASSWORD)
        directory.create_user(f"plain{t}", f"strasse{t}@example.com", PASSWORD)
        idn = directory.create_user(f"idn{t}", f"bob{t}@b\u00fccher.example", PASSWORD)
        db.session.commit()
        assert directory.find_by_login(f"stra\u00dfe{t}\uff20example.com").id == sharp.id
        assert directory.find_by_login(f"bob{t}\uff20b\u00fccher.example").id == idn.id
