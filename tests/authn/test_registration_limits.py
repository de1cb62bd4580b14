"""Rate limits of self-registration at /register (idp/authn/rate_limits.py) over Flask's test client.

An instance with small limits runs on the test database; each Web speaks from its own address.
Each test starts with no registration counter and a pinned clock; windows end by moving the clock.
"""
from __future__ import annotations

import dataclasses
import re
import uuid
from datetime import datetime, timezone

import pytest
from sqlalchemy import func, select

from idp import clock, create_app
from idp.extensions import db
from idp.models import AuditEvent, RateLimit
from tests.authn.web import Web
from tests.helpers.races import at_once
from tests.oauth.flows import count_rows

PASSWORD = "violet meadow quartz lantern"
PER_IP, PER_NETWORK, TOTAL, WINDOW = 3, 5, 8, 600
A, B, C, D = "198.51.100.7", "198.51.100.8", "203.0.113.9", "192.0.2.10"  # A and B share a /24
MESSAGE = "Too many accounts were created recently. Try again later (in 10 min)."


@pytest.fixture(scope="module")
def limited(settings, app):
    """The app with small sign-up limits (app first: the schema is migrated)."""
    return create_app(dataclasses.replace(settings, registration_per_ip=PER_IP, registration_per_network=PER_NETWORK,
                                          registration_total=TOTAL, registration_window=WINDOW))


def _clear_counters(app) -> None:
    with app.app_context():
        db.session.execute(db.delete(RateLimit).where(RateLimit.key.startswith("registration:")))
        db.session.commit()


@pytest.fixture(autouse=True)
def pinned(app):
    """No sign-up counter yet, and a pinned clock; the counters this test made go after it."""
    _clear_counters(app)
    clock.set_now(datetime.now(timezone.utc).replace(microsecond=0))
    yield
    clock.set_now(None)
    _clear_counters(app)


def sign_up(app, ip: str, password: str = PASSWORD, **headers):
    tag = uuid.uuid4().hex[:10]
    web = Web(app, ip=ip)
    web.http.environ_base.update(headers)
    return web.post("/register", data={"csrf_token": web.token("/register"), "username": f"limit_{tag}",
                                       "email": f"limit.{tag}@example.com", "password": password})


def signed_up(app, ip: str, times: int) -> None:
    for _ in range(times):
        response = sign_up(app, ip)
        assert response.status_code == 303, response.get_data(as_text=True)


def limited_events(app) -> list[AuditEvent]:
    with app.app_context():
        return list(db.session.scalars(select(AuditEvent).where(AuditEvent.type == "authn.registration.limited")
                                       .order_by(AuditEvent.id)))


def assert_limited(response, retry_after: int = WINDOW, message: str = MESSAGE) -> None:
    """429 (RFC 6585 4) with Retry-After, and the form again with a message and what was typed."""
    html = response.get_data(as_text=True)
    assert response.status_code == 429, html
    assert response.headers["Retry-After"] == str(retry_after)
    assert response.headers["Content-Type"].startswith("text/html")
    assert re.search(r'<div class="alert" role="alert">([^<]*)</div>', html).group(1) == message
    assert re.search(r'name="username"[^>]*value="limit_', html)  # the form again, as typed


def besides_counters_and_audit(rows: dict) -> dict:
    return {k: v for k, v in rows.items() if k not in ("rate_limits", "audit_events")}


def test_a_burst_past_the_per_address_limit_gets_429_and_writes_nothing(app, limited):
    signed_up(limited, A, PER_IP)
    before = count_rows(app)
    for _ in range(3):
        assert_limited(sign_up(limited, A))
    after = count_rows(app)
    assert besides_counters_and_audit(after) == besides_counters_and_audit(before)  # no user, no mail, no session
    assert after["audit_events"] == before["audit_events"] + 1  # the first refusal only
    [event] = limited_events(app)[-1:]
    assert event.outcome == "failure" and event.details["limit"] == "ip" and event.ip == A


def test_every_attempt_counts_before_the_password_is_checked(app, limited):
    """Refused forms count too, and past the limit even a leaked password is not looked at (the
    argon2 hash comes after the count)."""
    for _ in range(PER_IP):
        assert sign_up(limited, A, password="short").status_code == 400
    assert_limited(sign_up(limited, A, password="password"))
    assert_limited(sign_up(limited, A))


def test_the_limit_lifts_when_the_window_ends_and_retry_after_counts_down(app, limited):
    signed_up(limited, A, PER_IP)
    clock.advance(WINDOW - 61)
    assert_limited(sign_up(limited, A), 61, "Too many accounts were created recently. Try again later (in 2 min).")
    clock.advance(60)
    assert_limited(sign_up(limited, A), 1, "Too many accounts were created recently. Try again later (in 1 min).")
    clock.advance(1)
    signed_up(limited, A, PER_IP)
    assert_limited(sign_up(limited, A))


def test_one_network_shares_one_allowance_and_refused_requests_do_not_use_it(app, limited):
    signed_up(limited, A, PER_IP)
    for _ in range(4):
        assert_limited(sign_up(limited, A))  # refused per address: not counted on the /24
    signed_up(limited, B, PER_NETWORK - PER_IP)
    assert_limited(sign_up(limited, B))
    assert [e.details["limit"] for e in limited_events(app)][-2:] == ["ip", "network"]
    signed_up(limited, C, 1)  # another network is not held back


def test_the_total_holds_everyone_back_without_using_up_their_own_allowance(app, limited):
    signed_up(limited, A, PER_IP)
    signed_up(limited, C, PER_IP)
    signed_up(limited, D, TOTAL - 2 * PER_IP)
    for _ in range(PER_IP + 1):
        assert_limited(sign_up(limited, B))  # refused by the total: B's own counter stays at 0
    assert limited_events(app)[-1].details["limit"] == "total"
    clock.advance(WINDOW)
    signed_up(limited, B, PER_IP)


def test_an_ipv6_64_is_one_address(app, limited):
    signed_up(limited, "2001:db8:1:2::1", 2)
    signed_up(limited, "2001:db8:1:2:ffff::9", PER_IP - 2)
    assert_limited(sign_up(limited, "2001:db8:1:2::abcd"))
    signed_up(limited, "2001:db8:1:3::1", 1)  # the next /64 of the same /48: its own address


def test_parallel_sign_ups_from_one_address_are_counted_exactly(app, limited):
    statuses = at_once([lambda: sign_up(limited, A).status_code for _ in range(PER_IP + 3)])
    assert sorted(statuses) == [303] * PER_IP + [429] * 3


def test_a_limit_of_zero_is_no_limit(app, settings):
    unlimited = create_app(dataclasses.replace(settings, registration_per_ip=0, registration_per_network=0,
                                               registration_total=0, registration_window=WINDOW))
    signed_up(unlimited, A, PER_IP + 2)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(RateLimit)
                                 .where(RateLimit.key.startswith("registration:"))) == 0


def test_the_message_is_translated(app, limited):
    signed_up(limited, A, PER_IP)
    response = sign_up(limited, A, HTTP_ACCEPT_LANGUAGE="fr")
    assert_limited(response, message="Trop de comptes ont été créés récemment. Réessayez plus tard (dans 10 min).")
