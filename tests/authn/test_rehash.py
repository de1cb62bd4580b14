"""Hashes are upgraded transparently at the next login when the argon2 parameters change (item 7)."""
import dataclasses

import pytest
from argon2 import extract_parameters
from sqlalchemy import select

from idp import audit, create_app
from idp.extensions import db
from idp.models import User
from tests.authn.web import Web


@pytest.fixture(scope="module")
def stronger_app(settings, app):
    """A second app on the same database whose hasher uses three iterations instead of two."""
    return create_app(dataclasses.replace(settings, argon2_time_cost=3))


def stored_hash(app, user_id) -> str:
    with app.app_context():
        return db.session.scalar(select(User.password_hash).where(User.id == user_id))


def rehash_events(app, user_id) -> list:
    with app.app_context():
        return [e.type for e in audit.events(user_id=user_id, type_prefix="authn.password.rehashed")]


def test_login_under_new_parameters_rehashes_the_password(app, stronger_app, make_user):
    user = make_user()
    old = stored_hash(app, user["id"])
    assert old.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert Web(stronger_app).login(user["username"], user["password"]).status_code == 303
    new = stored_hash(app, user["id"])
    assert new.startswith("$argon2id$v=19$m=19456,t=3,p=1$") and extract_parameters(new).time_cost == 3
    assert rehash_events(app, user["id"]) == ["authn.password.rehashed"]
    assert Web(stronger_app).login(user["email"], user["password"]).status_code == 303
    assert stored_hash(app, user["id"]) == new                       # no second rehash
    assert rehash_events(app, user["id"]) == ["authn.password.rehashed"]


def test_failed_login_under_new_parameters_leaves_the_hash_alone(app, stronger_app, make_user):
    user = make_user()
    old = stored_hash(app, user["id"])
    assert Web(stronger_app).login(user["username"], "not the right password").status_code == 400
    assert stored_hash(app, user["id"]) == old
    assert rehash_events(app, user["id"]) == []


def test_login_under_unchanged_parameters_keeps_the_hash(app, make_user):
    user = make_user()
    old = stored_hash(app, user["id"])
    assert Web(app).login(user["username"], user["password"]).status_code == 303
    assert stored_hash(app, user["id"]) == old
    assert rehash_events(app, user["id"]) == []
