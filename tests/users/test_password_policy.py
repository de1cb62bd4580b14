"""Password rules as a person meets them at registration and login (issue 2 item 7)."""
import uuid

import pytest
from sqlalchemy import select

from idp.extensions import db
from idp.models import User
from tests.authn.web import Web

PHRASE = "the quick brown fox jumps over a lazy dog while it rains in spain "


def stored_hash(app, username) -> str:
    with app.app_context():
        return db.session.scalar(select(User.password_hash).where(User.username == username))


@pytest.mark.parametrize("password", [
    "q7vmx2lp",                 # exactly the minimum length
    PHRASE[:64],                # the length SP 800-63B says must be allowed
    (PHRASE * 4)[:200],
    "aaaaaaaaaaaaaaaa",         # no composition rules
    "ünïcödé pässwörd ✓",
], ids=["8", "64", "200", "repeated", "unicode"])
def test_registration_accepts_any_unbreached_password_of_allowed_length(app, password):
    username = f"policy{uuid.uuid4().hex[:8]}"
    assert Web(app).register(username, f"{username}@example.com", password).status_code == 303
    assert stored_hash(app, username).startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert Web(app).login(username, password).status_code == 303
