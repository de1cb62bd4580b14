"""Simultaneous failed logins over real HTTP: no 500 and no lost count (issue 2 item 8).

The live server sees every request from 127.0.0.1, so the shared per-IP counter is put back
as it was afterwards (loopback_ip_counter, in conftest.py) and other tests keep their allowance.
"""
import threading

import requests
from sqlalchemy import select

from idp.extensions import db
from idp.models import LoginThrottle
from idp.security.tokens import digest
from idp.users.directory import identifier_key
from tests.helpers.forms import csrf_token

PARALLEL = 3
ROUNDS = 4


def failures(app, account_key: str) -> dict:
    """The account counters of an account key (authn.password: user:<id>, or login:<typed login>)."""
    account = digest(account_key)[:32]
    with app.app_context():
        rows = db.session.scalars(select(LoginThrottle).where(LoginThrottle.key.in_(
            [f"acct:{account}", f"acct-ip:{account}:127.0.0.1"])))
        return {r.key.split(":")[0]: r.failures for r in rows}


def fail_together(issuer: str, login: str, parallel: int = PARALLEL) -> list[int]:
    """`parallel` browsers each fetch the form, then all post a wrong password at the same moment."""
    sessions = [requests.Session() for _ in range(parallel)]
    tokens = [csrf_token(s.get(f"{issuer}/login", timeout=10).text) for s in sessions]
    barrier = threading.Barrier(parallel)
    statuses: list[int] = []

    def attempt(session, token):
        barrier.wait()
        response = session.post(f"{issuer}/login", data={"csrf_token": token, "login": login,
                                "password": "not the right password"}, allow_redirects=False, timeout=30)
        statuses.append(response.status_code)

    threads = [threading.Thread(target=attempt, args=pair) for pair in zip(sessions, tokens)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def test_simultaneous_failures_for_a_new_key_are_all_counted_without_error(app, live_server, make_user,
                                                                          loopback_ip_counter):
    for _ in range(ROUNDS):
        user = make_user()
        statuses = fail_together(live_server, user["username"])
        assert sorted(statuses) == [400] * PARALLEL
        assert failures(app, f"user:{user['id']}") == {"acct": PARALLEL, "acct-ip": PARALLEL}


def test_simultaneous_failures_for_an_unknown_login_are_counted_without_error(app, live_server,
                                                                              loopback_ip_counter):
    login = f"nobody-{digest(str(id(app)))[:8]}-{threading.get_ident()}@example.com"
    statuses = fail_together(live_server, login)
    assert sorted(statuses) == [400] * PARALLEL
    assert failures(app, f"login:{identifier_key(login)}") == {"acct": PARALLEL, "acct-ip": PARALLEL}


def test_parallel_guesses_at_one_account_get_no_more_than_the_back_off_allows(app, live_server, make_user,
                                                                            loopback_ip_counter):
    """On PostgreSQL the check, the password and the count are one step per account (a row lock):
    with the account's counter one failure from a long block, of twelve guesses sent at once
    exactly one is tried. (On SQLite the lock would be the whole database's, held through argon2,
    so there the attempts are not serialised: README, open finding.)"""
    from datetime import timedelta

    import pytest

    from idp.clock import now

    with app.app_context():
        if db.session.get_bind().dialect.name != "postgresql":
            pytest.skip("serialised on PostgreSQL only")
    user = make_user()
    key = f"acct:{digest('user:%d' % user['id'])[:32]}"
    with app.app_context():
        db.session.add(LoginThrottle(key=key, failures=40, updated_at=now(), blocked_until=now() - timedelta(seconds=1)))
        db.session.commit()
    statuses = fail_together(live_server, user["username"], parallel=12)
    assert statuses.count(400) == 1 and statuses.count(429) == 11, sorted(statuses)
