"""Rate limits of dynamic client registration and of the client configuration endpoint
(idp/oauth/registration_limits.py) over real HTTP.

Instances with small limits run on the test database behind one trusted proxy, so a test can
speak from several addresses (X-Forwarded-For). Each test starts with no counter and a pinned
clock; windows end by moving the clock, never by sleeping.
"""
from __future__ import annotations

import dataclasses
import threading
from datetime import datetime, timedelta, timezone

import pytest
import requests
from werkzeug.serving import make_server

from idp import clock, create_app
from idp.extensions import db
from idp.models import InitialAccessToken, RateLimit
from idp.oauth.initial_tokens import issue_initial_access_token
from tests.conftest import _free_port
from tests.helpers.races import at_once
from tests.oauth.flows import TIMEOUT, count_rows
from tests.oauth.test_registration import (JSON, REDIRECT, assert_bearer_refusal, assert_registration_error,
                                           client_row, events)

PER_IP, PER_NETWORK, TOTAL, CONFIGURE, WINDOW = 3, 5, 5, 4, 600
A, B, C = "198.51.100.7", "198.51.100.8", "203.0.113.9"  # A and B share a /24


def _serve(settings, **overrides):
    port = _free_port()
    limits = {"client_registration_per_ip": PER_IP, "client_registration_per_network": PER_NETWORK,
              "client_registration_total": TOTAL, "client_configuration_per_ip": CONFIGURE,
              "client_registration_window": WINDOW, **overrides}
    other = create_app(dataclasses.replace(settings, issuer=f"http://127.0.0.1:{port}", trusted_proxies=1, **limits))
    server = make_server("127.0.0.1", port, other, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def open_limited(settings, live_server):
    server, url = _serve(settings, client_registration="open")
    yield url
    server.shutdown()


@pytest.fixture(scope="module")
def network_limited(settings, live_server):
    """One registration per /64, sixteen per /48 (or per /24), twenty in all."""
    server, url = _serve(settings, client_registration="open", client_registration_per_ip=1,
                         client_registration_per_network=16, client_registration_total=20)
    yield url
    server.shutdown()


@pytest.fixture(scope="module")
def protected_limited(settings, live_server):
    server, url = _serve(settings, client_registration="protected")
    yield url
    server.shutdown()


def _clear_counters(app) -> None:
    with app.app_context():
        db.session.execute(db.delete(RateLimit))
        db.session.commit()


@pytest.fixture(autouse=True)
def pinned(app):
    """No counter yet, and a pinned clock; the counters this test made go after it."""
    _clear_counters(app)
    clock.set_now(datetime.now(timezone.utc).replace(microsecond=0))
    yield
    clock.set_now(None)
    _clear_counters(app)


@pytest.fixture
def initial_token(app):
    def make():
        with app.app_context():
            _, token = issue_initial_access_token(3600, "limits test")
            db.session.commit()
            return token
    return make


def post(issuer: str, ip: str, body=None, token: str | None = None) -> requests.Response:
    headers = {**JSON, "X-Forwarded-For": ip}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return requests.post(f"{issuer}/oauth/register", json=body or {"redirect_uris": [REDIRECT]}, headers=headers,
                         timeout=TIMEOUT)


def configure(method: str, uri: str, ip: str, token: str | None, body=None) -> requests.Response:
    headers = {**JSON, "X-Forwarded-For": ip}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return requests.request(method, uri, json=body, headers=headers, timeout=TIMEOUT)


def assert_limited(response, retry_after: int, what: str = "client registrations") -> None:
    """429 (RFC 6585 4) with Retry-After, an RFC 6749 5.2-shaped JSON error, not cached."""
    assert response.status_code == 429, (response.status_code, response.text)
    assert response.headers["Retry-After"] == str(retry_after)
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json()
    assert body["error"] == "temporarily_unavailable"
    assert body["error_description"] == f"too many {what}, try again after Retry-After seconds"
    assert set(body) == {"error", "error_description"}


def registered(issuer: str, ip: str, count: int) -> None:
    for _ in range(count):
        response = post(issuer, ip)
        assert response.status_code == 201, response.text


def hits(app) -> dict[str, int]:
    """Every counter; registration keys without their "client-registration:" prefix."""
    with app.app_context():
        return {row.key.removeprefix("client-registration:"): row.hits
                for row in db.session.scalars(db.select(RateLimit))}


def _besides_counters_and_audit(rows: dict) -> dict:
    return {k: v for k, v in rows.items() if k not in ("rate_limits", "audit_events")}


def test_a_burst_past_the_per_address_limit_gets_429_and_registers_nothing(app, open_limited):
    registered(open_limited, A, PER_IP)
    before = count_rows(app)
    for _ in range(4):
        assert_limited(post(open_limited, A, {"redirect_uris": [REDIRECT], "client_name": "One too many"}), WINDOW)
    after = count_rows(app)
    assert _besides_counters_and_audit(after) == _besides_counters_and_audit(before)  # no client, nothing else
    assert after["audit_events"] == before["audit_events"] + 1  # the first refusal only
    event = events(app, "oauth.registration.limited")[-1]
    assert event["outcome"] == "failure" and event["details"]["limit"] == "ip" and event["ip"] == A


def test_the_limit_lifts_when_the_window_ends_and_retry_after_counts_down(open_limited):
    registered(open_limited, A, PER_IP)
    clock.advance(WINDOW - 1)
    assert_limited(post(open_limited, A), 1)
    clock.advance(1)
    registered(open_limited, A, PER_IP)  # a new window, with the whole allowance
    clock.advance(WINDOW / 2)
    assert_limited(post(open_limited, A), WINDOW // 2)


def test_a_refused_registration_counts_too(open_limited):
    for _ in range(PER_IP):
        assert_registration_error(post(open_limited, A, {"redirect_uris": ["http://example.com/cb"]}),
                                  "invalid_redirect_uri", "redirect_uris[0]")
    assert_limited(post(open_limited, A), WINDOW)


def test_other_addresses_keep_their_allowance_until_the_total_is_reached(app, open_limited):
    for _ in range(PER_IP + 4):
        post(open_limited, A)
    assert hits(app)["total"] == PER_IP  # A's refused requests did not use up everyone's allowance
    registered(open_limited, B, TOTAL - PER_IP)
    assert_limited(post(open_limited, C), WINDOW)  # C's first request, but the total is reached
    assert [e["details"]["limit"] for e in events(app, "oauth.registration.limited")][-2:] == ["ip", "total"]


def test_one_ipv6_network_shares_one_allowance(open_limited):
    for address in ("2001:db8:1:2::1", "2001:db8:1:2::ffff", "2001:db8:1:2:abcd::9"):
        registered(open_limited, address, 1)
    assert_limited(post(open_limited, "2001:db8:1:2:ffff:ffff:ffff:ffff"), WINDOW)
    registered(open_limited, "2001:db8:1:3::1", 1)  # the next /64 is another network


def test_a_usable_initial_access_token_is_not_counted_and_is_used_up(app, open_limited, initial_token):
    registered(open_limited, A, PER_IP)
    token = initial_token()
    response = post(open_limited, A, token=token)
    assert response.status_code == 201, response.text
    assert hits(app)["ip:" + A] == PER_IP
    with app.app_context():
        assert db.session.scalar(db.select(InitialAccessToken.used_at).where(
            InitialAccessToken.id == db.select(db.func.max(InitialAccessToken.id)).scalar_subquery())) is not None
    assert_limited(post(open_limited, A, token=token), WINDOW)  # used up: now an ordinary request


def test_protected_mode_counts_requests_without_a_usable_token(app, protected_limited, initial_token):
    for _ in range(PER_IP):
        assert_bearer_refusal(post(protected_limited, A))
    refused = len(events(app, "oauth.registration.refused"))
    assert_limited(post(protected_limited, A), WINDOW)
    assert_limited(post(protected_limited, A, token="not-a-token"), WINDOW)
    assert len(events(app, "oauth.registration.refused")) == refused  # a flood stops filling the audit trail
    assert post(protected_limited, A, token=initial_token()).status_code == 201


def test_a_parallel_burst_registers_exactly_the_limit(app, open_limited):
    clients = count_rows(app)["clients"]
    statuses = at_once([lambda: post(open_limited, A).status_code for _ in range(10)])
    assert sorted(statuses) == [201] * PER_IP + [429] * (10 - PER_IP)
    assert count_rows(app)["clients"] == clients + PER_IP
    assert hits(app)["ip:" + A] == 10


def test_a_limit_of_zero_is_no_limit(app, settings, live_server):
    server, url = _serve(settings, client_registration="open", client_registration_per_ip=0,
                         client_registration_per_network=0, client_registration_total=0,
                         client_configuration_per_ip=0)
    try:
        registered(url, A, PER_IP + 2)
        client = post(url, A).json()
        for _ in range(CONFIGURE + 2):
            assert configure("GET", client["registration_client_uri"], A, "wrong").status_code == 401
        assert hits(app) == {}
    finally:
        server.shutdown()


def test_ended_windows_are_purged(app):
    from idp.oauth.purge import purge_oauth

    t = clock.now()
    with app.app_context():
        db.session.add_all([RateLimit(key="client-registration:ip:192.0.2.1", hits=9, window_ends_at=t),
                            RateLimit(key="client-registration:ip:192.0.2.2", hits=1,
                                      window_ends_at=t + timedelta(seconds=1))])
        db.session.commit()
        assert purge_oauth(batch=10)["rate_limits"] == 1
    assert hits(app) == {"ip:192.0.2.2": 1}


# --- the network level: one IPv6 /48 or IPv4 /24 gets one share of the total --------------------
SITES = {  # sixteen addresses in different /64s of one network, a seventeenth, and another network
    "ipv6 /48": ([f"2001:db8:a:{n:x}::1" for n in range(16)], "2001:db8:a:ffff::1", "2001:db8:b::1"),
    "ipv4 /24": ([f"198.51.100.{n}" for n in range(1, 17)], "::ffff:198.51.100.17", "198.51.101.1"),
}


@pytest.mark.parametrize("site", SITES, ids=list(SITES))
def test_the_seventeenth_address_of_one_network_is_refused_while_another_network_registers(
        app, network_limited, site):
    addresses, seventeenth, elsewhere = SITES[site]
    for address in addresses:
        registered(network_limited, address, 1)
    assert_limited(post(network_limited, seventeenth), WINDOW)
    event = events(app, "oauth.registration.limited")[-1]
    assert event["details"]["limit"] == "network" and event["details"]["endpoint"] == "register"
    registered(network_limited, elsewhere, 1)


def test_requests_a_network_is_refused_do_not_use_up_the_total(app, network_limited):
    addresses, _, _ = SITES["ipv6 /48"]
    for address in addresses:
        registered(network_limited, address, 1)
    for n in range(16):  # sixteen more /64s of the same /48: refused, and not counted in the total
        assert_limited(post(network_limited, f"2001:db8:a:1{n:x}::1"), WINDOW)
    counts = hits(app)
    assert counts["total"] == 16 and counts["network:2001:db8:a::/48"] == 32
    assert counts["ip:2001:db8:a:10::/64"] == 0  # taken back: the network refused it, not the address
    for n in range(4):  # the rest of the total is still there for other networks
        registered(network_limited, f"2001:db8:{n + 0xb:x}::1", 1)
    assert_limited(post(network_limited, "2001:db8:ff::1"), WINDOW)
    assert events(app, "oauth.registration.limited")[-1]["details"]["limit"] == "total"


def test_requests_the_total_refuses_do_not_use_up_an_address_allowance(app, open_limited):
    registered(open_limited, B, PER_IP)
    registered(open_limited, C, TOTAL - PER_IP)
    clock.advance(100)
    for _ in range(PER_IP + 1):  # A's retries while the total is reached
        assert_limited(post(open_limited, A), WINDOW - 100)
    assert hits(app)["ip:" + A] == 0
    clock.advance(WINDOW - 100)  # the total's window ends; A's own window would still run
    registered(open_limited, A, PER_IP)


def test_a_parallel_burst_from_one_network_registers_exactly_its_share(app, network_limited):
    clients = count_rows(app)["clients"]
    statuses = at_once([lambda n=n: post(network_limited, f"2001:db8:a:{n:x}::1").status_code for n in range(20)])
    assert sorted(statuses) == [201] * 16 + [429] * 4
    assert count_rows(app)["clients"] == clients + 16
    counts = hits(app)
    assert counts["total"] == 16 and counts["network:2001:db8:a::/48"] == 20
    assert sum(v for k, v in counts.items() if k.startswith("ip:")) == 16  # the refused four taken back


def test_an_unreadable_forwarded_address_still_counts_per_address_and_in_total(app, open_limited):
    registered(open_limited, "not-an-address", PER_IP)
    assert_limited(post(open_limited, "not-an-address"), WINDOW)
    assert hits(app) == {"ip:not-an-address": PER_IP + 1, "total": PER_IP}


# --- the client configuration endpoint (RFC 7592) --------------------------------------------------
@pytest.fixture
def managed(open_limited):
    """A client registered from C (the registration counters are not the configuration counter)."""
    response = post(open_limited, C, {"redirect_uris": [REDIRECT], "client_name": "Managed"})
    assert response.status_code == 201, response.text
    return response.json()


def test_the_configuration_endpoint_answers_429_past_its_limit_and_changes_nothing(app, open_limited, managed):
    uri, token = managed["registration_client_uri"], managed["registration_access_token"]
    update = {"client_id": managed["client_id"], "redirect_uris": [REDIRECT], "client_name": "Updated"}
    for method in ("GET", "PUT", "GET", "PUT"):  # a client reading and updating itself
        assert configure(method, uri, A, token, update if method == "PUT" else None).status_code == 200
    before = client_row(app, managed["client_id"])
    assert_limited(configure("PUT", uri, A, token, {**update, "client_name": "Too late"}), WINDOW,
                   "client configuration requests")
    assert_limited(configure("DELETE", uri, A, token), WINDOW, "client configuration requests")
    assert client_row(app, managed["client_id"]) == before  # not renamed, not deleted
    event = events(app, "oauth.registration.limited")[-1]
    assert event["details"]["endpoint"] == "configure" and event["details"]["limit"] == "ip" and event["ip"] == A
    assert configure("GET", uri, B, token).status_code == 200  # another address
    registered(open_limited, A, 1)  # registering is counted apart


@pytest.mark.parametrize("token", [None, "wrong", "x" * 600])
def test_wrong_registration_access_tokens_count_against_the_configuration_limit(app, open_limited, managed, token):
    uri = managed["registration_client_uri"]
    refused = len(events(app, "oauth.registration.refused"))
    for _ in range(CONFIGURE - 1):
        assert_bearer_refusal(configure("GET", uri, A, token))
    assert_bearer_refusal(configure("GET", uri.rsplit("/", 1)[0] + "/no-such-client", A, token))
    assert len(events(app, "oauth.registration.refused")) == refused + CONFIGURE
    assert_limited(configure("GET", uri, A, managed["registration_access_token"]), WINDOW,
                   "client configuration requests")  # the right token, but the address is over its limit
    assert_limited(configure("GET", uri, A, token), WINDOW, "client configuration requests")
    assert len(events(app, "oauth.registration.refused")) == refused + CONFIGURE  # no more audit per guess
    assert hits(app)["client-configuration:ip:" + A] == CONFIGURE + 2


def test_the_configuration_limit_lifts_when_the_window_ends(open_limited, managed):
    uri, token = managed["registration_client_uri"], managed["registration_access_token"]
    for _ in range(CONFIGURE):
        assert configure("GET", uri, A, token).status_code == 200
    clock.advance(WINDOW - 1)
    assert_limited(configure("GET", uri, A, token), 1, "client configuration requests")
    clock.advance(1)
    for _ in range(CONFIGURE):  # a new window, with the whole allowance
        assert configure("GET", uri, A, token).status_code == 200
    assert_limited(configure("GET", uri, A, token), WINDOW, "client configuration requests")
