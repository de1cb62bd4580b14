"""Whole sign-in flows in Chromium: register, consent (deny, allow), redirect back, SSO into a
second client, response_mode=form_post through our CSP, a native app's private-use scheme, a
broker whose callback redirects on to its own client, and a keyboard-only login. Chromium checks a
page's CSP form-action against the form's post and every redirect that follows it, so these pass
only because the pages whose forms may end at a client send none. The client application is a
stand-in HTTP server; authlib's client redeems the code and every ID token is verified against
/jwks."""
from __future__ import annotations

import re
import uuid

import pytest

from tests.conftest import PASSWORD
from tests.helpers.rp import RelyingParty, verify_id_token

pytestmark = pytest.mark.browser


def subject_of(app, username: str) -> str:
    from idp.extensions import db
    from idp.models import User

    with app.app_context():
        return db.session.scalar(db.select(User.subject).where(User.username == username))


def arrive(page, prefix: str) -> None:
    """Waits until the page has loaded a URL that starts with prefix."""
    page.wait_for_url(lambda url: url.startswith(prefix))


def redeem(live_server, rp: RelyingParty, callback: dict) -> dict:
    """authlib's client exchanges the code; returns the verified ID token claims."""
    token = rp.fetch_token(callback["params"])
    return verify_id_token(live_server, token["id_token"], rp.client["client_id"], rp.nonce)


def test_register_consent_and_single_sign_on_into_a_second_client(
        live_server, app, make_client, stand_in_client, browser_page):
    page, watch = browser_page
    first_app, second_app = stand_in_client(), stand_in_client()
    first = make_client(name="Stand-in Notes", redirect_uris=[first_app.redirect_uri])
    second = make_client(name="Stand-in Calendar", redirect_uris=[second_app.redirect_uri])
    rp = RelyingParty(live_server, first, scope="openid profile email")

    page.goto(rp.authorization_url())
    assert re.fullmatch(rf"{live_server}/login\?next=/authorize/resume/[^&]+", page.url), page.url
    page.get_by_role("link", name="Create one").click()
    arrive(page, f"{live_server}/register?")
    username = f"walker{uuid.uuid4().hex[:8]}"
    page.get_by_label("Username").fill(username)
    page.get_by_label("Email").fill(f"{username}@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()

    arrive(page, f"{live_server}/authorize/resume/")
    assert page.get_by_role("heading", level=1).inner_text() == "Stand-in Notes wants to use your account"
    scopes = page.locator("ul.scopes li").all_inner_texts()
    assert scopes == ["Confirm who you are (a stable identifier for your account)",
                      "See your name, username and the profile details you filled in (such as picture, birth date, time zone and language)", "See your email address"]
    page.get_by_role("button", name="Allow").click()

    arrive(page, f"{first_app.redirect_uri}?")
    callback = first_app.only_callback()
    assert callback["method"] == "GET"
    assert set(callback["params"]) == {"code", "state", "iss"}
    assert callback["params"]["state"] == rp.state and callback["params"]["iss"] == live_server
    claims = redeem(live_server, rp, callback)
    subject = subject_of(app, username)
    assert claims["sub"] == subject != username and claims["amr"] == ["pwd"]

    # Single sign-on: the same browser reaches the second client without a password. Deny, then
    # Allow: both answers reach the client (the consent page sends no form-action).
    denied = RelyingParty(live_server, second, scope="openid profile")
    page.goto(denied.authorization_url())
    page.get_by_role("button", name="Deny").click()
    arrive(page, f"{second_app.redirect_uri}?")
    answer = second_app.only_callback()["params"]
    assert (answer["error"], answer["state"], answer["iss"]) == ("access_denied", denied.state, live_server)
    second_app.received.clear()
    rp2 = RelyingParty(live_server, second, scope="openid profile")
    seen_before = len(watch.provider_pages)
    page.goto(rp2.authorization_url())
    assert page.url.startswith(f"{live_server}/authorize?"), "the signed-in browser goes straight to consent"
    assert page.locator("input[type=password]").count() == 0
    assert page.get_by_role("heading", level=1).inner_text() == "Stand-in Calendar wants to use your account"
    page.get_by_role("button", name="Allow").click()
    arrive(page, f"{second_app.redirect_uri}?")
    assert not [p for p in watch.paths_navigated()[seen_before:] if p in ("/login", "/register")]
    claims2 = redeem(live_server, rp2, second_app.only_callback())
    assert claims2["sub"] == subject and claims2["sid"] == claims["sid"]
    watch.assert_clean()


def test_first_party_client_is_signed_in_without_any_page(
        live_server, make_user, make_client, stand_in_client, browser_page):
    page, watch = browser_page
    user = make_user()
    client_app = stand_in_client()
    client = make_client(first_party=True, redirect_uris=[client_app.redirect_uri])
    page.goto("/login")
    page.get_by_label("Username or email").fill(user["username"])
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{live_server}/account")

    rp = RelyingParty(live_server, client)
    seen_before = len(watch.provider_pages)
    page.goto(rp.authorization_url())
    arrive(page, f"{client_app.redirect_uri}?")
    assert watch.paths_navigated()[seen_before:] == ["/authorize"]
    assert redeem(live_server, rp, client_app.only_callback())["sub"] == user["subject"]
    watch.assert_clean()


def test_form_post_response_reaches_the_client_through_our_csp(
        live_server, make_user, make_client, stand_in_client, browser_page):
    page, watch = browser_page
    user = make_user()
    client_app = stand_in_client()
    client = make_client(name="Stand-in Forms", redirect_uris=[client_app.redirect_uri])
    rp = RelyingParty(live_server, client)

    page.goto(rp.authorization_url(response_mode="form_post"))
    page.get_by_label("Username or email").fill(user["username"])
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    arrive(page, f"{live_server}/authorize/resume/")
    page.get_by_role("button", name="Allow").click()

    # The consent POST answers with the auto-submitting form; static/js/form-post.js posts it.
    page.wait_for_url(client_app.redirect_uri)
    callback = client_app.only_callback()
    assert callback["method"] == "POST"
    assert callback["content_type"].startswith("application/x-www-form-urlencoded")
    assert set(callback["params"]) == {"code", "state", "iss"}
    assert callback["params"]["iss"] == live_server
    assert redeem(live_server, rp, callback)["sub"] == user["subject"]
    watch.assert_clean()


def test_keyboard_alone_signs_in_through_the_authorization_request(
        live_server, make_user, make_client, stand_in_client, browser_page):
    page, watch = browser_page
    user = make_user()
    client_app = stand_in_client()
    client = make_client(first_party=True, redirect_uris=[client_app.redirect_uri])
    rp = RelyingParty(live_server, client)
    page.goto(rp.authorization_url())
    arrive(page, f"{live_server}/login?")

    def focused() -> str:
        return page.evaluate("document.activeElement.id || document.activeElement.className")

    assert focused() == "f-login", "the login field has focus when the page opens"
    page.keyboard.press("Shift+Tab")
    assert focused() == "skip", "the skip link comes first"
    assert page.locator("a.skip").bounding_box()["x"] >= 0, "the focused skip link is on screen"
    page.keyboard.press("Tab")
    assert focused() == "f-login"
    page.keyboard.type(user["email"])
    page.keyboard.press("Tab")
    assert focused() == "f-password"
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")

    arrive(page, f"{client_app.redirect_uri}?")
    assert redeem(live_server, rp, client_app.only_callback())["sub"] == user["subject"]
    watch.assert_clean()


def test_a_native_app_gets_its_answer_at_its_private_use_scheme(
        live_server, make_user, make_client, new_context):
    """RFC 8252 7.1: the consent page's Allow, and later the sign-in form itself (consent is
    remembered), end in a redirect to com.example.app:/..., which a form-action 'self' would
    block. Chromium has no handler for the scheme; the attempt is what we see."""
    user = make_user()
    client = make_client(public=True, name="Stand-in Phone", redirect_uris=["com.example.app:/oauth2redirect"])

    def sign_in_and_reach_the_app(rp: RelyingParty, consent: bool):
        context, watch = new_context()
        page = context.new_page()
        page.goto(rp.authorization_url())
        arrive(page, f"{live_server}/login?")
        page.get_by_label("Username or email").fill(user["username"])
        page.get_by_label("Password").fill(PASSWORD)
        with context.expect_event("request", lambda r: r.url.startswith("com.example.app:")) as reached:
            page.get_by_role("button", name="Sign in").click()
            if consent:
                arrive(page, f"{live_server}/authorize/resume/")
                page.get_by_role("button", name="Allow").click()
        watch.assert_clean()
        return dict(pair.split("=", 1) for pair in reached.value.url.split("?", 1)[1].split("&"))

    first = RelyingParty(live_server, client)
    params = sign_in_and_reach_the_app(first, consent=True)
    assert params["state"] == first.state
    again = RelyingParty(live_server, client)
    params = sign_in_and_reach_the_app(again, consent=False)  # another browser; the consent is kept
    assert params["state"] == again.state


def test_a_broker_whose_callback_redirects_on_to_its_own_client_gets_the_person_there(
        live_server, make_user, make_client, stand_in_client, new_context):
    """A broker (Keycloak, authentik, Auth0, another idp) that uses this provider upstream: its
    callback answers its own client with a 302 to another origin, in the same navigation as the
    post of our form. Chromium checks form-action against that redirect too, and our page cannot
    know where the broker goes next, so a page whose form may end at a client sends no form-action.
    The consent page's Allow, then (consent remembered) the sign-in form itself, reach the broker's
    client on another port, with no CSP violation."""
    user = make_user()
    its_client = stand_in_client()
    broker = stand_in_client(forward_to=its_client.redirect_uri)
    client = make_client(name="Stand-in Broker", redirect_uris=[broker.redirect_uri])

    def sign_in_and_reach_the_brokers_client(rp: RelyingParty, consent: bool) -> None:
        context, watch = new_context()
        page = context.new_page()
        page.goto(rp.authorization_url())
        arrive(page, f"{live_server}/login?")
        page.get_by_label("Username or email").fill(user["username"])
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        if consent:
            arrive(page, f"{live_server}/authorize/resume/")
            page.get_by_role("button", name="Allow").click()
        arrive(page, f"{its_client.redirect_uri}?")
        watch.assert_clean()
        assert its_client.only_callback()["params"]["state"] == rp.state
        assert redeem(live_server, rp, broker.only_callback())["sub"] == user["subject"]
        broker.received.clear()
        its_client.received.clear()

    sign_in_and_reach_the_brokers_client(RelyingParty(live_server, client), consent=True)
    sign_in_and_reach_the_brokers_client(RelyingParty(live_server, client), consent=False)
