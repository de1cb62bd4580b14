"""Every way a session ends goes through one path that tells the registered callbacks (oauth's
back-channel logout hangs off it): logout, an admin ending a person's sessions, the expiry sweep,
and another person signing in in the same browser. The sweep is safe with several instances."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from idp import clock
from idp.authn.session import end_expired_sessions, end_sessions_of
from idp.extensions import db
from idp.models import AuditEvent, SsoSession
from idp.security.tokens import digest, random_token


@pytest.fixture
def ended(app):
    """The (sid, user_id, reason) of every session ended while the test runs."""
    seen: list[tuple[str, int, str]] = []
    lock = threading.Lock()

    def callback(rows, reason):
        with lock:
            seen.extend((row.sid, row.user_id, reason) for row in rows)

    callbacks = app.extensions.setdefault("idp.session_end", [])
    callbacks.append(callback)
    yield seen
    callbacks.remove(callback)


def add_session(app, user_id: int, *, age: int = 0, idle: int = 0, lifetime: int = 3600) -> str:
    """A session row signed in `age` seconds ago, last used `idle` seconds ago; returns its sid."""
    with app.app_context():
        t = clock.now()
        sid = random_token(16)
        db.session.add(SsoSession(token_digest=digest(random_token(32)), sid=sid, user_id=user_id,
                                  auth_time=t - timedelta(seconds=age), acr="1", amr=["pwd"],
                                  created_at=t - timedelta(seconds=age), last_seen_at=t - timedelta(seconds=idle),
                                  expires_at=t - timedelta(seconds=age) + timedelta(seconds=lifetime)))
        db.session.commit()
        return sid


def live_sids(app, user_id: int) -> set[str]:
    with app.app_context():
        return set(db.session.scalars(select(SsoSession.sid).where(SsoSession.user_id == user_id)))


def sweep(app, limit: int = 500) -> int:
    with app.app_context():
        return end_expired_sessions(limit=limit)


def test_sweep_ends_sessions_past_their_absolute_or_idle_lifetime_and_tells_the_callbacks(app, make_user, ended):
    clock.set_now(clock.now().replace(microsecond=0))
    user = make_user()
    idle_limit = app.config["IDP_SETTINGS"].session_idle_lifetime
    absolute = add_session(app, user["id"], age=3601, lifetime=3600)
    idle = add_session(app, user["id"], idle=idle_limit + 1)
    fresh = add_session(app, user["id"], age=10, idle=10)
    sweep(app)
    assert {(sid, reason) for sid, uid, reason in ended if uid == user["id"]} == {(absolute, "expired"), (idle, "expired")}
    assert live_sids(app, user["id"]) == {fresh}
    with app.app_context():
        events = db.session.scalars(select(AuditEvent).where(AuditEvent.user_id == user["id"],
                                                             AuditEvent.type == "authn.session.ended")).all()
        assert sorted(e.details["sid"] for e in events) == sorted([absolute, idle])
        assert {e.details["reason"] for e in events} == {"expired"}


def test_sweep_honours_its_limit_and_a_second_run_takes_the_rest(app, make_user, ended):
    user = make_user()
    sids = {add_session(app, user["id"], age=7200) for _ in range(3)}
    sweep(app, limit=2)
    assert len([1 for _, uid, _ in ended if uid == user["id"]]) == 2
    sweep(app, limit=2)
    assert {sid for sid, uid, _ in ended if uid == user["id"]} == sids
    assert live_sids(app, user["id"]) == set()


def test_a_session_at_the_edge_of_its_lifetime_is_not_swept(app, make_user, ended):
    clock.set_now(clock.now().replace(microsecond=0))
    user = make_user()
    sid = add_session(app, user["id"], age=3599, lifetime=3600)
    sweep(app)
    assert live_sids(app, user["id"]) == {sid}
    assert not [1 for _, uid, _ in ended if uid == user["id"]]


def test_concurrent_sweeps_end_and_announce_each_session_once(app, make_user, ended):
    user = make_user()
    sids = {add_session(app, user["id"], age=7200) for _ in range(40)}
    barrier = threading.Barrier(4)
    counts: list[int] = []
    errors: list[BaseException] = []

    def run():
        try:
            barrier.wait()
            total = 0
            while True:
                n = sweep(app, limit=7)
                total += n
                if n == 0:
                    break
            counts.append(total)
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    mine = [sid for sid, uid, _ in ended if uid == user["id"]]
    assert sorted(mine) == sorted(sids)          # every session announced, none twice
    assert sum(counts) >= len(sids)              # other tests' leftovers may be swept too
    assert live_sids(app, user["id"]) == set()


def test_ending_all_sessions_of_a_person_leaves_others_alone(app, make_user, ended):
    alice, bob = make_user(), make_user()
    a1, a2 = add_session(app, alice["id"]), add_session(app, alice["id"])
    b1 = add_session(app, bob["id"])
    with app.app_context():
        assert end_sessions_of(alice["id"], reason="admin") == 2
        db.session.commit()
    assert sorted((sid, reason) for sid, uid, reason in ended) == sorted([(a1, "admin"), (a2, "admin")])
    assert live_sids(app, alice["id"]) == set() and live_sids(app, bob["id"]) == {b1}


def test_logout_page_announces_the_session(app, web, make_user, ended):
    user = make_user()
    web.login(user["username"], user["password"])
    [sid] = live_sids(app, user["id"])
    assert web.logout().status_code == 303
    assert ended == [(sid, user["id"], "logout")]


def test_the_same_person_signing_in_again_keeps_the_sid_and_announces_nothing(app, web, make_user, ended):
    user = make_user()
    web.login(user["username"], user["password"])
    [sid] = live_sids(app, user["id"])
    first_cookie = web.session_cookie
    web.login(user["username"], user["password"])
    assert web.session_cookie != first_cookie
    assert live_sids(app, user["id"]) == {sid}
    assert ended == []


def test_another_person_signing_in_ends_the_previous_session_as_replaced(app, web, make_user, ended):
    alice, bob = make_user(), make_user()
    web.login(alice["username"], alice["password"])
    [sid] = live_sids(app, alice["id"])
    web.login(bob["username"], bob["password"])
    assert ended == [(sid, alice["id"], "replaced")]
    assert live_sids(app, alice["id"]) == set() and len(live_sids(app, bob["id"])) == 1

