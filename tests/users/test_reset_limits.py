"""Limits of "Forgot your password?" and of email change requests (security review H1, H2, M8):
whoever knows a username cannot use up the owner's reset links, the page does the same work for
a known and an unknown login, it is limited per address and network, parallel requests are
counted one after the other, and email change requests are capped per day. Over the real app,
database and SMTP server (the mailbox), with a pinned clock."""
from __future__ import annotations

import dataclasses
import json
import threading
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import event

from idp import clock, create_app, outbox
from idp.extensions import db
from idp.models import OutboxMessage, RateLimit
from idp.users import recovery
from tests.account.test_profile import request_change
from tests.authn.web import Web
from tests.conftest import PASSWORD, unique
from tests.helpers.forms import csrf_token
from tests.helpers.races import at_once
from tests.users.test_email_links import events, forgot

ATTACKER, OWNER = "198.51.100.7", "203.0.113.9"  # two networks


@pytest.fixture(autouse=True)
def pinned():
    clock.set_now(datetime.now(timezone.utc).replace(microsecond=0))
    yield
    clock.set_now(None)


def at(t0, seconds: float) -> None:
    clock.set_now(t0 + timedelta(seconds=seconds))


def test_an_attacker_cannot_use_up_the_owners_reset_links(app, make_user, mailbox):
    victim = make_user()
    t0 = clock.now()
    for i in range(recovery.RESET_LINKS_PER_NETWORK + 2):  # one a minute, past their network's allowance
        at(t0, 61 * i)
        assert forgot(Web(app, ip=ATTACKER), victim["username"]).status_code == 200
        mailbox.deliver(app)
    assert len(mailbox.to(victim["email"])) == recovery.RESET_LINKS_PER_NETWORK
    at(t0, 2 * 3600)  # the owner, from their own network, the same day
    assert forgot(Web(app, ip=OWNER), victim["email"]).status_code == 200
    mailbox.deliver(app)
    assert len(mailbox.to(victim["email"])) == recovery.RESET_LINKS_PER_NETWORK + 1
    assert "/reset-password/" in mailbox.to(victim["email"])[-1].get_body(("plain",)).get_content()
    reasons = [e[2].get("reason") for e in events(app, victim["id"], "users.password.reset_requested")]
    assert reasons[-3:] == ["network_limit", "network_limit", None]


def test_mail_to_one_person_stays_bounded_whoever_asks(app, make_user, mailbox):
    """Many networks, one a minute: at most RESET_LINKS_PER_DAY a day, then nothing more."""
    victim = make_user()
    t0 = clock.now()
    for i in range(recovery.RESET_LINKS_PER_DAY + 3):
        at(t0, 61 * i)
        forgot(Web(app, ip=f"192.0.{i}.1"), victim["username"])
        mailbox.deliver(app)  # the worker keeps up
    assert len(mailbox.to(victim["email"])) == recovery.RESET_LINKS_PER_DAY
    reasons = [e[2].get("reason") for e in events(app, victim["id"], "users.password.reset_requested")]
    assert reasons[-3:] == ["daily_limit"] * 3


def test_a_second_reset_link_within_a_minute_is_not_sent(app, make_user, mailbox):
    victim = make_user()
    t0 = clock.now()
    forgot(Web(app, ip=ATTACKER), victim["username"])
    mailbox.deliver(app)  # the worker keeps up; a link's minute counts from when it was made
    at(t0, 30)
    forgot(Web(app, ip=OWNER), victim["username"])
    mailbox.deliver(app)
    assert len(mailbox.to(victim["email"])) == 1
    at(t0, 61)
    forgot(Web(app, ip=OWNER), victim["username"])
    mailbox.deliver(app)
    assert len(mailbox.to(victim["email"])) == 2


def test_parallel_reset_requests_send_one_link(app, make_user, mailbox):
    """Eight requests at once, then eight workers at once: counted under the account's row lock."""
    victim = make_user()
    webs = [Web(app) for _ in range(8)]
    tokens = [csrf_token(w.get("/forgot-password").get_data(as_text=True)) for w in webs]
    results = at_once([lambda w=w, t=t: w.post("/forgot-password", data={"csrf_token": t, "login": victim["username"]})
                       for w, t in zip(webs, tokens)])
    assert [r.status_code for r in results] == [200] * 8

    def worker():
        with app.app_context():
            outbox.run_once(limit=1)
    at_once([worker] * 8)
    mailbox.deliver(app)
    assert len(mailbox.to(victim["email"])) == 1


class Statements:
    """The SQL statements this thread sends while a request runs (their text, no parameters)."""

    def __init__(self, app):
        self.engine, self.seen, self.thread = None, [], threading.get_ident()
        with app.app_context():
            self.engine = db.engine

    def __enter__(self):
        event.listen(self.engine, "before_cursor_execute", self._note)
        return self.seen

    def __exit__(self, *exc):
        event.remove(self.engine, "before_cursor_execute", self._note)

    def _note(self, conn, cursor, statement, parameters, context, executemany):
        if threading.get_ident() == self.thread:
            self.seen.append(statement)


def test_forgot_password_does_the_same_work_for_a_known_and_an_unknown_login(app, make_user, mailbox):
    """The structural property behind equal timing: the same SQL statements, and nothing delivered
    while the request runs (no SMTP wait, no link, no mail rendered) for either."""
    user = make_user()
    work = {}
    for label, login in (("known", user["email"]), ("unknown", unique("nobody") + "@example.com")):
        web = Web(app)
        token = csrf_token(web.get("/forgot-password").get_data(as_text=True))
        before = len(mailbox.to(user["email"]))
        with Statements(app) as seen:
            response = web.post("/forgot-password", data={"csrf_token": token, "login": login})
        assert response.status_code == 200
        assert len(mailbox.to(user["email"])) == before  # nothing was sent while the page answered
        work[label] = seen
    assert work["known"] == work["unknown"]
    with app.app_context():
        queued = db.session.scalars(db.select(OutboxMessage).where(OutboxMessage.kind == recovery.RESET_REQUEST_KIND,
                                                                   OutboxMessage.status == "pending")).all()
        assert queued and all(set(row.payload) == {"sealed"} for row in queued)  # the typed login is not readable
        assert not any(user["email"] in json.dumps(row.payload) for row in queued)
    assert "/reset-password/" in mailbox.last(app, user["email"]).get_body(("plain",)).get_content()


# --- the page's own limit, per address and network -------------------------------------------------
PER_IP, PER_NETWORK, WINDOW = 3, 5, 600


@pytest.fixture(scope="module")
def limited(settings, app):
    """The app with small /forgot-password limits (app first: the schema is migrated)."""
    return create_app(dataclasses.replace(settings, password_reset_per_ip=PER_IP, password_reset_per_network=PER_NETWORK,
                                          password_reset_window=WINDOW))


def _clear_counters(app) -> None:
    with app.app_context():
        db.session.execute(db.delete(RateLimit).where(RateLimit.key.startswith("password-reset:")))
        db.session.commit()


def test_forgot_password_is_limited_per_address_and_network(limited):
    _clear_counters(limited)
    try:
        for _ in range(PER_IP):
            assert forgot(Web(limited, ip="198.51.100.20"), unique("nobody")).status_code == 200
        refused = forgot(Web(limited, ip="198.51.100.20"), unique("nobody"))
        assert refused.status_code == 429 and refused.headers["Retry-After"] == str(WINDOW)
        assert "Too many requests came from your network" in refused.get_data(as_text=True)
        for _ in range(PER_NETWORK - PER_IP):  # another address of the same /24: the network's share
            assert forgot(Web(limited, ip="198.51.100.21"), unique("nobody")).status_code == 200
        assert forgot(Web(limited, ip="198.51.100.22"), unique("nobody")).status_code == 429
        assert forgot(Web(limited, ip="203.0.113.20"), unique("nobody")).status_code == 200  # another network
        clock.set_now(clock.now() + timedelta(seconds=WINDOW))
        assert forgot(Web(limited, ip="198.51.100.20"), unique("nobody")).status_code == 200  # a new window
    finally:
        _clear_counters(limited)


# --- email change ------------------------------------------------------------------------------------
def test_email_change_requests_are_capped_per_day(app, make_user, mailbox):
    victim = make_user()  # holds the address: hears "email_in_use" each time
    attacker = make_user()
    web = Web(app)
    t0 = clock.now()
    for i in range(recovery.MAX_LINKS_PER_DAY + 3):
        at(t0, 61 * i)
        assert web.login(attacker["username"], PASSWORD).status_code == 303  # always a recent sign-in
        request_change(web, victim["email"])
    mailbox.deliver(app)
    assert len(mailbox.to(victim["email"])) == 5
    at(t0, 24 * 3600 + 1)  # the next day
    web.login(attacker["username"], PASSWORD)
    request_change(web, victim["email"])
    mailbox.deliver(app)
    assert len(mailbox.to(victim["email"])) == 6


def test_parallel_email_change_requests_send_one_link(app, make_user, mailbox):
    user = make_user()
    webs = [Web(app) for _ in range(4)]
    pages = []
    for web in webs:
        assert web.login(user["username"], PASSWORD).status_code == 303
        pages.append(csrf_token(web.get("/account/profile").get_data(as_text=True)))
    new_email = unique("moved") + "@example.com"
    at_once([lambda w=w, t=t: w.post("/account/email", data={"csrf_token": t, "email": new_email,
                                                               "current_password": PASSWORD})
             for w, t in zip(webs, pages)])
    mailbox.deliver(app)
    assert len(mailbox.to(new_email)) == 1
