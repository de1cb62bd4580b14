"""Versioned terms of service acceptance (issue 6 item 7): asked at registration, after sign-in
and before an app gets a code whenever the version changed; recorded with time and version."""
from __future__ import annotations

import dataclasses
import threading

import pytest
from werkzeug.serving import make_server

from idp import create_app
from idp.extensions import db
from idp.models import AuditEvent, User
from tests.conftest import PASSWORD, _free_port, unique
from tests.helpers.forms import csrf_token, hidden
from tests.helpers.rp import Browser
from tests.oauth.flows import absolute, assert_redirect_error, raw_authorize_url


@pytest.fixture(scope="module")
def terms_server(settings, app):  # app: the session app has migrated the database
    """The same database and issuer host, served by an app that asks for terms version 2."""
    app = create_app(dataclasses.replace(settings, terms_url="https://example.test/terms", terms_version="2"))
    port = _free_port()
    server = make_server("127.0.0.1", port, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield app, f"http://127.0.0.1:{port}"
    server.shutdown()


def accepted(app, user_id):
    with app.app_context():
        row = db.session.get(User, user_id)
        return row.terms_version, row.terms_accepted_at


def test_sign_in_asks_for_the_current_terms_once(terms_server, make_user):
    app, base = terms_server
    user = make_user()
    browser = Browser(base)
    response = browser.login(user["username"], PASSWORD)
    assert response.status_code == 303 and response.headers["Location"].startswith("/terms?next=")
    page = browser.get(base + response.headers["Location"])
    assert "version 2" in page.text and 'href="https://example.test/terms"' in page.text
    assert accepted(app, user["id"]) == (None, None)
    done = browser.post(f"{base}/terms", data={"csrf_token": csrf_token(page.text), "next": hidden(page.text, "next"),
                                               "decision": "accept"})
    assert done.status_code == 303 and done.headers["Location"] == "/account"
    version, when = accepted(app, user["id"])
    assert version == "2" and when is not None
    assert Browser(base).login(user["username"], PASSWORD).headers["Location"] == "/account"
    with app.app_context():
        assert db.session.scalar(db.select(AuditEvent).where(AuditEvent.user_id == user["id"],
                                                             AuditEvent.type == "users.terms.accepted"))


def test_declining_signs_out(terms_server, make_user):
    _, base = terms_server
    user = make_user()
    browser = Browser(base)
    page = browser.get(base + browser.login(user["username"], PASSWORD).headers["Location"])
    response = browser.post(f"{base}/terms", data={"csrf_token": csrf_token(page.text), "next": "/account",
                                                   "decision": "decline"})
    assert response.headers["Location"] == "/logged-out"
    assert browser.get(f"{base}/account").status_code == 302


def test_an_app_login_waits_for_the_terms_and_prompt_none_gets_interaction_required(terms_server, make_user, make_client):
    app, base = terms_server
    user = make_user()
    client = make_client(first_party=True)
    with app.app_context():
        db.session.get(User, user["id"]).terms_version = "1"  # accepted an older version
        db.session.commit()
    browser = Browser(base)
    browser.login(user["username"], PASSWORD)  # signed in, terms not yet accepted
    none = browser.get(raw_authorize_url(base, client, prompt="none", state="st-t"))
    assert_redirect_error(none, client, app.config["IDP_SETTINGS"].issuer, "interaction_required", "st-t")
    response = browser.get(raw_authorize_url(base, client, state="st-ok"))
    assert response.status_code == 302 and absolute(base, response.headers["Location"]).startswith(f"{base}/terms?")
    page = browser.get(absolute(base, response.headers["Location"]))
    done = browser.post(f"{base}/terms", data={"csrf_token": csrf_token(page.text), "next": hidden(page.text, "next"),
                                               "decision": "accept"})
    final = browser.follow(done, client["redirect_uri"])
    assert final.headers["Location"].startswith(client["redirect_uri"] + "?code=")


def test_registration_needs_the_terms_ticked_and_records_them(terms_server):
    app, base = terms_server
    browser = Browser(base)
    page = browser.get(f"{base}/register")
    assert 'name="accept_terms"' in page.text
    username = unique("terms")
    data = {"csrf_token": csrf_token(page.text), "username": username, "email": f"{username}@example.com",
            "password": PASSWORD}
    assert browser.post(f"{base}/register", data=data).status_code == 400
    second = browser.post(f"{base}/register", data={**data, "accept_terms": "yes"})
    assert second.status_code == 303
    with app.app_context():
        row = db.session.scalar(db.select(User).where(User.username == username))
        assert row.terms_version == "2" and row.terms_accepted_at is not None


def test_without_a_terms_version_nobody_is_asked(live_server, make_user):
    user = make_user()
    assert Browser(live_server).login(user["username"], PASSWORD).headers["Location"] == "/account"
