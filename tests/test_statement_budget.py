"""How many SQL statements the hot paths send (bench/README.md: round trips dominate their CPU).

Counts, not timings: a change that adds a reload after a commit, a second client lookup or a
query per factor fails here instead of quietly costing throughput. Raise a budget only on
purpose, and say why in bench/README.md."""
from __future__ import annotations

import contextlib
import threading

import requests
from sqlalchemy import event

from idp.extensions import db
from tests.oauth.flows import authorize
from tests.helpers.rp import Browser, RelyingParty

CODE_FLOW = 9       # authorize: session, client, consent, grant + code + audit (one commit); token: client, code, consume
PASSWORD_LOGIN = 12  # GET: login in progress, providers; POST: attempt, throttle (+2 on PostgreSQL: make and lock the account's counter), user, attempt, factors, audit, session, end
CLIENT_CREDENTIALS = 1  # the client; the JWT needs no row


@contextlib.contextmanager
def statements(app):
    """The statements the server sends while the block runs (the live server is this process)."""
    sent: list[str] = []
    lock = threading.Lock()

    def count(_conn, _cursor, statement, *_args):
        with lock:
            sent.append(" ".join(statement.split())[:120])

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", count)


def test_a_signed_in_code_flow_stays_within_its_statement_budget(app, live_server, make_user, make_client):
    user, client = make_user(), make_client()
    browser, response = authorize(live_server, user, RelyingParty(live_server, client))  # sign in and consent once
    assert response.status_code == 302
    rp = RelyingParty(live_server, client)
    with statements(app) as sent:
        browser, response = authorize(live_server, user, rp, browser=browser)
        token = rp.fetch_token(rp.callback_params(response))
    assert "id_token" in token
    assert len(sent) <= CODE_FLOW, sent


def test_a_password_login_stays_within_its_statement_budget(app, live_server, make_user):
    user = make_user()
    with statements(app) as sent:
        response = Browser(live_server).login(user["username"], user["password"], "/account")
    assert response.status_code == 303
    assert len(sent) <= PASSWORD_LOGIN, sent


def test_client_credentials_reads_one_row_and_writes_none(app, live_server, make_client):
    client = make_client()
    with statements(app) as sent:
        response = requests.post(f"{live_server}/token", data={"grant_type": "client_credentials"},
                                 auth=(client["client_id"], client["client_secret"]), timeout=10)
    assert response.status_code == 200
    assert len(sent) <= CLIENT_CREDENTIALS, sent
    assert not [s for s in sent if not s.startswith("SELECT")], sent
