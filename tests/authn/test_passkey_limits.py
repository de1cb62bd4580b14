"""Bounds on what passkeys may make the server store, over Flask's test client with a software
authenticator: a credential id of at most 1023 bytes (WebAuthn L3 7.1), at most 20 passkeys per
account (passkeys.MAX_PER_ACCOUNT), and passwordless sign-in options (a challenge row each, for
anyone who has read the sign-in page) counted per address and per network."""
from __future__ import annotations

import dataclasses
import json
import secrets
from datetime import datetime, timezone

import pytest
from webauthn.helpers import base64url_to_bytes

from idp import clock, create_app
from idp.extensions import db
from idp.models import AuditEvent, RateLimit, WebAuthnChallenge
from tests.authn.test_passkeys import add_passkey, credential_rows, failures, options
from tests.authn.web import Web
from tests.helpers.authenticator import SoftAuthenticator

MAX_PASSKEYS = 20
FULL = "You have 20 passkeys, the most one account can have. Remove one you no longer use to add another."


# --- credential ids --------------------------------------------------------------------------------

def test_a_credential_id_of_1023_bytes_is_the_longest_accepted(app, make_user):
    user = make_user()
    web = Web(app)
    web.login(user["username"], user["password"])
    authenticator = SoftAuthenticator()
    authenticator.credential_id = secrets.token_bytes(1023)
    assert add_passkey(web, authenticator).status_code == 200
    assert base64url_to_bytes(credential_rows(app, user["id"])[0].credential_id) == authenticator.credential_id


@pytest.mark.parametrize("size", [1024, 1100])  # 1100: past the column on PostgreSQL
def test_a_longer_credential_id_is_a_malformed_registration(app, make_user, size):
    user = make_user()
    web = Web(app)
    web.login(user["username"], user["password"])
    authenticator = SoftAuthenticator()
    authenticator.credential_id = secrets.token_bytes(size)
    response = add_passkey(web, authenticator)
    assert response.status_code == 400 and "could not be added" in response.get_data(as_text=True)
    assert credential_rows(app, user["id"]) == [] and failures(app, user["id"]) == ["malformed"]


# --- passkeys per account --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def named(settings, app):
    """The app at a domain name (http://localhost:<port>), as passkeys need, so the account page
    offers to add one; on the test database (app first: the schema is migrated)."""
    return create_app(dataclasses.replace(settings, issuer=settings.issuer.replace("127.0.0.1", "localhost")))


def test_an_account_holds_at_most_twenty_passkeys(named, make_user):
    user = make_user()
    web = Web(named)
    web.login(user["username"], user["password"])
    for number in range(1, MAX_PASSKEYS):
        assert add_passkey(web, SoftAuthenticator(), name=f"Key {number}").status_code in (200, 303)
    page = web.get("/account/passkeys").get_data(as_text=True)
    assert 'data-passkey="register"' in page and FULL not in page
    early = options(web, "/account/passkeys/options").get_json()  # asked for while a place was left
    assert add_passkey(web, SoftAuthenticator(), name="Key 20").status_code == 303

    page = web.get("/account/passkeys").get_data(as_text=True)
    assert FULL in page and 'data-passkey="register"' not in page  # said, and no longer offered
    refused = options(web, "/account/passkeys/options")
    assert refused.status_code == 409 and FULL in refused.get_data(as_text=True)
    # An answer to options from before the account filled up (another tab) is refused too.
    late = web.post("/account/passkeys", data={"csrf_token": web.token(), "name": "Key 21", "credential": json.dumps(
        SoftAuthenticator().create(early, web.issuer))})
    assert late.status_code == 409 and FULL in late.get_data(as_text=True)
    assert len(credential_rows(named, user["id"])) == MAX_PASSKEYS
    assert failures(named, user["id"]) == ["too_many_passkeys"]

    # Removing one makes room again.
    first = credential_rows(named, user["id"])[0]
    assert web.post(f"/account/passkeys/{first.id}/delete", data={"csrf_token": web.token()}).status_code == 303
    sent = options(web, "/account/passkeys/options").get_json()
    assert len(sent["excludeCredentials"]) == MAX_PASSKEYS - 1
    assert add_passkey(web, SoftAuthenticator(), name="Key 21").status_code == 303


# --- passwordless options --------------------------------------------------------------------------

PER_IP, PER_NETWORK, WINDOW = 30, 300, 60  # authn.rate_limits: a minute, generous for people
LIMITED = "Too many passkey sign-ins were started from your network. Wait 60 seconds and try again"


def _clear_counters(app) -> None:
    with app.app_context():
        db.session.execute(db.delete(RateLimit).where(RateLimit.key.startswith("passwordless:")))
        db.session.commit()


@pytest.fixture
def counting(app):
    """No passwordless counter yet and a pinned clock; the counters this test made go after it."""
    _clear_counters(app)
    clock.set_now(datetime.now(timezone.utc).replace(microsecond=0))
    yield clock
    clock.set_now(None)
    _clear_counters(app)


def challenges(app) -> int:
    with app.app_context():
        return db.session.scalar(db.select(db.func.count()).select_from(WebAuthnChallenge))


def ask(web: Web, token: str):
    return web.post("/login/passwordless/options", headers={"X-CSRFToken": token, "Accept": "application/json"})


def asked(web: Web, times: int) -> None:
    token = web.token()
    for _ in range(times):
        response = ask(web, token)
        assert response.status_code == 200, response.status_code


def assert_limited(app, web: Web, retry_after: int = WINDOW) -> None:
    """429 with Retry-After (RFC 6585 4), and no challenge written."""
    before = challenges(app)
    response = ask(web, web.token())
    assert response.status_code == 429 and response.headers["Retry-After"] == str(retry_after)
    assert LIMITED.replace("60", str(retry_after)) in response.get_data(as_text=True)
    assert challenges(app) == before


def limited_events(app) -> list[dict]:
    with app.app_context():
        return [e.details for e in db.session.scalars(
            db.select(AuditEvent).where(AuditEvent.type == "authn.passwordless.limited").order_by(AuditEvent.id))]


def test_passwordless_options_are_limited_per_address(app, counting):
    web = Web(app, ip="198.51.100.20")
    asked(web, PER_IP)
    events = len(limited_events(app))
    assert_limited(app, web)
    counting.advance(15)
    assert_limited(app, web, WINDOW - 15)
    assert [e["limit"] for e in limited_events(app)[events:]] == ["ip"]  # the first refusal only
    asked(Web(app, ip="198.51.100.21"), 1)  # a neighbour has their own allowance
    counting.advance(WINDOW - 15)
    asked(web, 1)  # a new window


def test_passwordless_options_are_limited_per_network(app, counting):
    """Many /64s of one IPv6 /48 (or addresses of one IPv4 /24) share the network's allowance."""
    for site in range(PER_NETWORK // PER_IP):
        asked(Web(app, ip=f"2001:db8:77:{site:x}::1"), PER_IP)
    events = len(limited_events(app))
    assert_limited(app, Web(app, ip="2001:db8:77:ffff::1"))
    assert [e["limit"] for e in limited_events(app)[events:]] == ["network"]
    asked(Web(app, ip="2001:db8:78::1"), 1)  # another network
