"""Bounds on what passkeys may make the server store, over Flask's test client with a software
authenticator: a credential id of at most 1023 bytes (WebAuthn L3 7.1) and at most 20 passkeys
per account (passkeys.MAX_PER_ACCOUNT)."""
from __future__ import annotations

import dataclasses
import json
import secrets

import pytest
from webauthn.helpers import base64url_to_bytes

from idp import create_app
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
