"""Passwords are NFKC-normalised before they are hashed, verified or checked (SP 800-63B 5.1.1.2),
hashes from before normalisation still work and are upgraded, and nothing is ever cut short."""
import dataclasses
import uuid

import pytest
from sqlalchemy import select

from idp import audit, create_app
from idp.extensions import db
from idp.models import User
from idp.security import passwords
from tests.authn.fakes import counting_hasher as counting
from tests.authn.web import Web

FULLWIDTH_BREACHED = "\uff50\uff41\uff53\uff53\uff57\uff4f\uff52\uff44\uff11\uff12\uff13\uff14"  # ｐａｓｓｗｏｒｄ１２３４
COMPOSED = "caf\u00e9 \ufb01ligree secret"        # é precomposed, the "fi" ligature
DECOMPOSED = "cafe\u0301 filigree secret"         # the same password, NFKC-equal


def fresh_name() -> str:
    return f"nf{uuid.uuid4().hex[:10]}"


def register(app, password):
    name = fresh_name()
    return name, Web(app).register(name, f"{name}@example.com", password)


def stored_hash(app, username) -> str:
    with app.app_context():
        return db.session.scalar(select(User.password_hash).where(User.username == username))


def rehash_events(app, username) -> list:
    with app.app_context():
        user_id = db.session.scalar(select(User.id).where(User.username == username))
        return [e.type for e in audit.events(user_id=user_id, type_prefix="authn.password.rehashed")]


def test_a_breached_password_in_fullwidth_letters_is_refused(app):
    _, plain = register(app, "password1234")
    _, wide = register(app, FULLWIDTH_BREACHED)
    assert plain.status_code == wide.status_code == 400
    assert "lists of leaked passwords" in wide.get_data(as_text=True)


def test_length_counts_code_points_after_normalisation(app):
    short = "e\u0301e\u0301 o\u0301o\u0301"     # 9 code points typed, "éé óó" (5) after NFKC
    name, response = register(app, short)
    assert response.status_code == 400 and "Use at least 8 characters." in response.get_data(as_text=True)
    name, response = register(app, "\u00e9\u00e9\u00e9\u00e9 \u00f3\u00f3\u00f3")   # 8 after NFKC
    assert response.status_code == 303


def test_a_password_signs_in_whichever_nfkc_equal_form_is_typed(app):
    name, response = register(app, COMPOSED)
    assert response.status_code == 303
    with app.app_context():
        from idp.users.directory import hasher
        assert passwords.verify_password(hasher(), stored_hash(app, name), passwords.normalise(COMPOSED))
    assert Web(app).login(name, DECOMPOSED).status_code == 303
    assert Web(app).login(name, COMPOSED).status_code == 303
    assert rehash_events(app, name) == []


def legacy_user(app, make_user, typed: str) -> str:
    """An account whose hash was made, before normalisation, from the password as typed."""
    user = make_user()
    with app.app_context():
        from idp.users.directory import hasher
        db.session.get(User, user["id"]).password_hash = hasher().hash(typed)
        db.session.commit()
    return user["username"]


def test_a_hash_from_before_normalisation_signs_in_and_is_rehashed_to_the_nfkc_form(app, make_user,
                                                                                    counting_hasher):
    name = legacy_user(app, make_user, DECOMPOSED)
    old = stored_hash(app, name)
    before = counting_hasher.verifies
    assert Web(app).login(name, DECOMPOSED).status_code == 303
    assert counting_hasher.verifies - before == 2          # the NFKC form, then the typed one
    new = stored_hash(app, name)
    assert new != old and passwords.verify_password(counting_hasher, new, passwords.normalise(DECOMPOSED))
    assert rehash_events(app, name) == ["authn.password.rehashed"]
    before = counting_hasher.verifies
    assert Web(app).login(name, COMPOSED).status_code == 303   # the other form now works too
    assert counting_hasher.verifies - before == 1
    assert rehash_events(app, name) == ["authn.password.rehashed"]


def test_a_wrong_password_leaves_a_hash_from_before_normalisation_alone(app, make_user):
    name = legacy_user(app, make_user, DECOMPOSED)
    old = stored_hash(app, name)
    assert Web(app).login(name, "cafe\u0301 filigree secreT").status_code == 400
    assert stored_hash(app, name) == old and rehash_events(app, name) == []


def test_an_ascii_password_costs_one_argon2_run_right_or_wrong(app, make_user, counting_hasher):
    user = make_user()
    for password, status in ((user["password"], 303), ("a wrong ascii password", 400)):
        before = counting_hasher.verifies
        assert Web(app).login(user["username"], password).status_code == status
        assert counting_hasher.verifies - before == 1


@pytest.fixture(scope="module")
def long_app(settings, app):
    """A second app on the same database that allows the longest passwords (1024)."""
    return create_app(dataclasses.replace(settings, password_max_length=1024))


def test_a_password_longer_than_the_maximum_is_refused_at_sign_in_not_cut_short(long_app):
    longest = ("lorem ipsum " * 90)[:1024]
    name, response = register(long_app, longest)
    assert response.status_code == 303
    assert Web(long_app).login(name, longest).status_code == 303
    over = Web(long_app)
    with counting(long_app) as counter:
        response = over.login(name, longest + "x")   # was cut to the first 1024 and let in
    assert response.status_code == 400 and over.session_cookie is None
    assert counter.verifies == 1                    # the same argon2 work as a wrong password
    with long_app.app_context():
        user_id = db.session.scalar(select(User.id).where(User.username == name))
        failed = audit.events(user_id=user_id, type_prefix="authn.login.failed")
    assert [e.details.get("reason") for e in failed] == ["bad_password"]
