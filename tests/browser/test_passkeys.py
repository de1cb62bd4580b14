"""Passkeys in Chromium with its WebAuthn virtual authenticator (DevTools WebAuthn domain):
registration on the account page, passwordless sign-in through an authorization request (the
button and the autofill), a passkey as the second factor after the password, one set up during
a login that must reach two factors, and a removed passkey that no longer works.
Every ID token is verified against /jwks, and its acr/amr checked.

WebAuthn needs an RP ID that is a domain: Chromium refuses an IP address such as 127.0.0.1.
So these tests run a second instance of the app, on the same database, whose issuer is
http://localhost:<port> (a secure context, like every loopback origin)."""
from __future__ import annotations

import dataclasses
import threading

import pytest
from werkzeug.serving import make_server

from tests.browser.conftest import TIMEOUT_MS, Watch
from tests.conftest import PASSWORD, _free_port
from tests.browser.test_pages import FIND_STRUCTURE_PROBLEMS
from tests.helpers.rp import RelyingParty, verify_id_token

pytestmark = pytest.mark.browser

VIRTUAL_AUTHENTICATOR = {"protocol": "ctap2", "transport": "internal", "hasResidentKey": True,
                         "hasUserVerification": True, "isUserVerified": True,
                         "automaticPresenceSimulation": True}
ACR_PHISHING_RESISTANT = "urn:idp:acr:phr"
# Chromium's virtual authenticator answers a conditional (autofill) request at once, where a
# person would first pick the passkey; tests of the other paths switch autofill off this way.
NO_AUTOFILL = "PublicKeyCredential.isConditionalMediationAvailable = () => Promise.resolve(false);"


@pytest.fixture(scope="session")
def localhost_issuer(app, settings):
    """The app again, as http://localhost:<port>, on the database the `app` fixture migrated."""
    from idp import create_app

    port = _free_port()
    other = create_app(dataclasses.replace(settings, issuer=f"http://localhost:{port}"))
    server = make_server("127.0.0.1", port, other, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://localhost:{port}"
    server.shutdown()


class Passkeys:
    """A watched page on the localhost issuer with a virtual platform authenticator attached."""

    def __init__(self, context, watch: Watch, issuer: str):
        self.context, self.watch, self.issuer = context, watch, issuer
        self.page = context.new_page()
        self.cdp = context.new_cdp_session(self.page)
        self.cdp.send("WebAuthn.enable")
        self.authenticator = self.cdp.send("WebAuthn.addVirtualAuthenticator",
                                           {"options": VIRTUAL_AUTHENTICATOR})["authenticatorId"]

    def without_autofill(self) -> None:
        self.page.add_init_script(NO_AUTOFILL)

    def credentials(self) -> list[dict]:
        return self.cdp.send("WebAuthn.getCredentials", {"authenticatorId": self.authenticator})["credentials"]

    def sign_in_with_password(self, user: dict, next_path: str = "/account/passkeys") -> None:
        self.page.goto(f"/login?next={next_path}")
        self.page.get_by_label("Username or email").fill(user["username"])
        self.page.get_by_label("Password").fill(PASSWORD)
        with self.page.expect_navigation():
            self.page.get_by_role("button", name="Sign in", exact=True).click()

    def add_passkey(self, name: str) -> None:
        """Adds the first passkey of an account: the recovery codes follow, then the list."""
        self.page.goto("/account/passkeys")
        self.page.get_by_label("Name for the new passkey").fill(name)
        with self.page.expect_navigation():
            self.page.get_by_role("button", name="Add a passkey").click()
        assert self.page.get_by_role("heading", level=1).inner_text() == "Your recovery codes"
        assert self.page.get_by_test_id("recovery-codes").locator("li").count() == 10
        self.page.goto("/account/passkeys")

    def sign_out(self) -> None:
        self.page.goto("/logout")
        with self.page.expect_navigation():
            self.page.get_by_role("button", name="Sign out").click()


@pytest.fixture
def passkeys_browser(_playwright, localhost_issuer):
    browser, loop = _playwright
    loop.enter()
    context = browser.new_context(base_url=localhost_issuer)
    context.set_default_timeout(TIMEOUT_MS)
    watch = Watch(localhost_issuer)
    watch.attach(context)
    try:
        yield Passkeys(context, watch, localhost_issuer)
    finally:
        context.close()
        loop.leave()


def authorize(browser: Passkeys, rp: RelyingParty, **params) -> None:
    browser.page.goto(rp.authorization_url(**params))
    browser.page.wait_for_url(lambda url: url.startswith(f"{browser.issuer}/login?"))


def redeem(issuer: str, rp: RelyingParty, client_app) -> dict:
    token = rp.fetch_token(client_app.only_callback()["params"])
    return verify_id_token(issuer, token["id_token"], rp.client["client_id"], rp.nonce)


def test_register_a_passkey_then_sign_in_with_it_alone(localhost_issuer, make_user, make_client,
                                                       stand_in_client, passkeys_browser):
    browser, page = passkeys_browser, passkeys_browser.page
    browser.without_autofill()
    user = make_user()
    browser.sign_in_with_password(user)
    assert page.get_by_role("heading", level=1).inner_text() == "Passkeys and security keys"
    browser.add_passkey("Test laptop")
    assert page.get_by_label("Name").first.input_value() == "Test laptop"
    [stored] = browser.credentials()
    assert stored["isResidentCredential"] and stored["rpId"] == "localhost"
    assert page.evaluate(FIND_STRUCTURE_PROBLEMS) == []
    browser.sign_out()

    client_app = stand_in_client()
    rp = RelyingParty(localhost_issuer, make_client(first_party=True, redirect_uris=[client_app.redirect_uri]))
    authorize(browser, rp)
    assert page.get_attribute("#f-login", "autocomplete") == "username webauthn"
    assert page.evaluate(FIND_STRUCTURE_PROBLEMS) == []
    page.get_by_role("button", name="Sign in with a passkey").click()
    page.wait_for_url(lambda url: url.startswith(client_app.redirect_uri))
    claims = redeem(localhost_issuer, rp, client_app)
    assert claims["sub"] == user["subject"]
    assert claims["amr"] == ["hwk", "user", "mfa"] and claims["acr"] == ACR_PHISHING_RESISTANT
    assert browser.credentials()[0]["signCount"] >= 2
    browser.watch.assert_clean()


def test_passkey_autofill_signs_in_from_the_username_field(localhost_issuer, make_user, make_client,
                                                          stand_in_client, passkeys_browser):
    browser, page = passkeys_browser, passkeys_browser.page
    user = make_user()
    browser.sign_in_with_password(user)
    browser.add_passkey("Phone")
    browser.sign_out()  # the sign-out pages have no passkey form: nothing answers there

    client_app = stand_in_client()
    rp = RelyingParty(localhost_issuer, make_client(first_party=True, redirect_uris=[client_app.redirect_uri]))
    page.goto(rp.authorization_url())
    # The sign-in page starts a conditional request (mediation "conditional"); the browser offers
    # the passkey in the username field's autofill, and the virtual authenticator picks it.
    page.wait_for_url(lambda url: url.startswith(client_app.redirect_uri))
    assert "/login/passwordless" in browser.watch.paths_navigated()
    claims = redeem(localhost_issuer, rp, client_app)
    assert claims["sub"] == user["subject"] and claims["acr"] == ACR_PHISHING_RESISTANT
    browser.watch.assert_clean()


def test_a_passkey_as_the_second_factor_after_the_password(localhost_issuer, make_user, make_client,
                                                         stand_in_client, passkeys_browser):
    browser, page = passkeys_browser, passkeys_browser.page
    browser.without_autofill()
    user = make_user()
    browser.sign_in_with_password(user)
    browser.add_passkey("Security key")
    browser.sign_out()

    client_app = stand_in_client()
    rp = RelyingParty(localhost_issuer, make_client(first_party=True, redirect_uris=[client_app.redirect_uri]))
    authorize(browser, rp, acr_values=ACR_PHISHING_RESISTANT)
    page.get_by_label("Username or email").fill(user["username"])
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_url(f"{localhost_issuer}/login/passkey")
    assert page.get_by_role("heading", level=1).inner_text() == "Use your passkey"
    assert page.evaluate(FIND_STRUCTURE_PROBLEMS) == []
    page.get_by_role("button", name="Use a passkey").click()
    page.wait_for_url(lambda url: url.startswith(client_app.redirect_uri))
    claims = redeem(localhost_issuer, rp, client_app)
    assert claims["sub"] == user["subject"]
    assert claims["amr"] == ["pwd", "hwk", "user", "mfa"] and claims["acr"] == ACR_PHISHING_RESISTANT
    browser.watch.assert_clean()


def test_a_removed_passkey_no_longer_signs_in(localhost_issuer, make_user, make_client, stand_in_client,
                                             passkeys_browser):
    browser, page = passkeys_browser, passkeys_browser.page
    browser.without_autofill()
    user = make_user()
    browser.sign_in_with_password(user)
    browser.add_passkey("Old phone")
    with page.expect_navigation():
        page.get_by_role("button", name="Remove Old phone").click()
    assert page.get_by_text("You have no passkeys yet.").is_visible()
    browser.sign_out()
    assert len(browser.credentials()) == 1  # the authenticator still holds it; the server forgot it

    client_app = stand_in_client()
    rp = RelyingParty(localhost_issuer, make_client(first_party=True, redirect_uris=[client_app.redirect_uri]))
    authorize(browser, rp)
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in with a passkey").click()
    assert page.url == f"{localhost_issuer}/login/passwordless"
    assert "That passkey did not work here" in page.get_by_role("alert").first.inner_text()
    assert client_app.received == []
    # The password still works, and the login then completes as before.
    page.get_by_label("Username or email").fill(user["username"])
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_url(lambda url: url.startswith(client_app.redirect_uri))
    assert redeem(localhost_issuer, rp, client_app)["amr"] == ["pwd"]
    browser.watch.assert_clean()


def test_a_passkey_set_up_when_the_client_requires_two_factors(localhost_issuer, make_user, make_client,
                                                              stand_in_client, passkeys_browser):
    browser, page = passkeys_browser, passkeys_browser.page
    browser.without_autofill()
    user = make_user()
    client_app = stand_in_client()
    rp = RelyingParty(localhost_issuer, make_client(first_party=True, require_mfa=True,
                                                    redirect_uris=[client_app.redirect_uri]))
    authorize(browser, rp)
    page.get_by_label("Username or email").fill(user["username"])
    page.get_by_label("Password").fill(PASSWORD)
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in", exact=True).click()
    with page.expect_navigation():
        page.get_by_role("link", name="Add a passkey instead").click()
    assert page.url == f"{localhost_issuer}/login/passkey/enrol"
    assert page.evaluate(FIND_STRUCTURE_PROBLEMS) == []
    page.get_by_label("Name for the new passkey").fill("Phone")
    with page.expect_navigation():
        page.get_by_role("button", name="Add a passkey").click()
    assert page.get_by_test_id("recovery-codes").locator("li").count() == 10
    page.get_by_role("button", name="I saved them, continue").click()
    page.wait_for_url(lambda url: url.startswith(client_app.redirect_uri))
    claims = redeem(localhost_issuer, rp, client_app)
    assert claims["amr"] == ["pwd", "hwk", "user", "mfa"] and claims["acr"] == ACR_PHISHING_RESISTANT
    assert len(browser.credentials()) == 1
    browser.watch.assert_clean()
