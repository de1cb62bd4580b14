"""TOTP in Chromium: set up an authenticator app from the security page (QR code drawn on our own
origin, secret as text, confirmed by a code), then sign in to a client that requires MFA with
password and code; the ID token says pwd + otp at the MFA level."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pyotp
import pytest

from idp import clock
from tests.helpers.rp import RelyingParty, verify_id_token

pytestmark = pytest.mark.browser


def test_enrol_totp_then_sign_in_with_it_to_a_client_requiring_mfa(
        live_server, make_user, make_client, stand_in_client, new_context):
    clock.set_now(datetime.now(timezone.utc).replace(microsecond=0) - timedelta(seconds=120))
    user = make_user()
    context, watch = new_context()
    page = context.new_page()
    page.goto("/login?next=/account/security")
    page.get_by_label("Username or email").fill(user["username"])
    page.get_by_label("Password").fill(user["password"])
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_url(f"{live_server}/account/security")
    assert page.get_by_test_id("totp-status").inner_text() == "Off."

    page.get_by_role("link", name="Set up an authenticator app").click()
    page.wait_for_url(f"{live_server}/account/security/totp")
    assert page.locator("figure.qr svg").is_visible()
    secret = page.get_by_test_id("totp-secret").inner_text().strip()
    page.get_by_label("Code").fill("000000" if pyotp.TOTP(secret).at(clock.timestamp()) != "000000" else "111111")
    page.get_by_role("button", name="Turn on").click()
    assert page.locator("#e-code").inner_text().startswith("That code is not right")
    page.get_by_label("Code").fill(pyotp.TOTP(secret).at(clock.timestamp()))
    page.get_by_role("button", name="Turn on").click()
    assert page.get_by_role("heading", level=1).inner_text() == "Your recovery codes"
    assert page.get_by_test_id("recovery-codes").locator("li").count() == 10
    with page.expect_download() as download:
        page.get_by_role("button", name="Download as a text file").click()
    assert download.value.suggested_filename == "recovery-codes.txt"
    page.get_by_role("link", name="Back to security").click()
    assert page.get_by_test_id("totp-status").inner_text().startswith("On")
    watch.assert_clean()

    # Another browser, a client that requires MFA: password, then the code.
    clock.advance(30)  # a later time step than the one used to confirm
    app_server = stand_in_client()
    client = make_client(name="Payroll", first_party=True, require_mfa=True, redirect_uris=[app_server.redirect_uri])
    rp = RelyingParty(live_server, client)
    other, other_watch = new_context()
    page = other.new_page()
    page.goto(rp.authorization_url())
    page.get_by_label("Username or email").fill(user["username"])
    page.get_by_label("Password").fill(user["password"])
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_url(f"{live_server}/login/totp")
    page.get_by_label("Code").fill(pyotp.TOTP(secret).at(clock.timestamp()))
    page.get_by_role("button", name="Continue").click()
    callback = app_server.only_callback()
    token = rp.fetch_token(callback["params"])
    claims = verify_id_token(live_server, token["id_token"], client["client_id"], rp.nonce)
    assert (claims["acr"], claims["amr"]) == ("urn:idp:acr:mfa", ["pwd", "otp", "mfa"])
    other_watch.assert_clean()
