"""The once-a-minute note that a session is in use (last_seen_at) never commits in the middle of
a request: the view's own commit takes it along, and a page that commits nothing gets it
committed alone once it is done (never with anything else the page left uncommitted); a page
that fails drops it with the rest."""
from __future__ import annotations

import pytest
from flask import request
from sqlalchemy import update

from idp import create_app
from idp.authn import session as sso
from idp.extensions import db
from idp.models import SsoSession, User
from tests.authn.web import Web

UNCOMMITTED = "written but never committed"


@pytest.fixture(scope="module")
def probe(settings):
    """A second app on the same database with pages that write, then read the session (so the
    touch comes after the write), then end without committing."""
    application = create_app(settings)

    def write_then_read_session():
        db.session.execute(update(User).where(User.id == int(request.args["user"])).values(name=UNCOMMITTED))
        assert sso.current_session() is not None  # due: touched

    @application.route("/probe/ends-without-commit")
    def ends_without_commit():
        write_then_read_session()
        return "done"

    @application.route("/probe/crashes")
    def crashes():
        write_then_read_session()
        raise RuntimeError("a bug after reading the session")

    return application


def _state(app, user) -> tuple:
    with app.app_context():
        [row] = db.session.scalars(db.select(SsoSession).where(SsoSession.user_id == user["id"]))
        return db.session.get(User, user["id"]).name, row.last_seen_at


def _signed_in(app, make_user) -> tuple[Web, dict]:
    user = make_user()
    web = Web(app)
    assert web.login(user["username"], user["password"]).status_code == 303
    return web, user


def test_a_page_that_commits_nothing_still_notes_the_session_in_use(app, make_user, pinned):
    web, user = _signed_in(app, make_user)
    pinned.advance(120)
    assert web.get("/account").status_code == 200
    assert _state(app, user)[1] == pinned.now()


def test_a_page_that_reads_the_session_late_commits_only_the_touch(probe, make_user, pinned):
    web, user = _signed_in(probe, make_user)
    pinned.advance(120)
    assert web.get(f"/probe/ends-without-commit?user={user['id']}").status_code == 200
    name, last_seen_at = _state(probe, user)
    assert name != UNCOMMITTED, "the touch committed what the page had written before it"
    assert last_seen_at == pinned.now()


def test_a_page_that_fails_keeps_neither_its_writes_nor_the_touch(probe, make_user, pinned):
    web, user = _signed_in(probe, make_user)
    before = _state(probe, user)
    pinned.advance(120)
    assert web.get(f"/probe/crashes?user={user['id']}").status_code == 500
    assert _state(probe, user) == before
