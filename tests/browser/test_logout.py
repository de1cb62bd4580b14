"""RP-initiated logout in Chromium: the confirmation page (no inline code, CSP clean) and its
POST, whose redirect must reach the client application's post_logout_redirect_uri."""
from __future__ import annotations

from urllib.parse import urlencode

import pytest

from tests.conftest import PASSWORD
from tests.helpers.rp import RelyingParty

pytestmark = pytest.mark.browser


def _sign_in_to_the_app(page, live_server, user, client, client_app) -> str:
    """Sign in on our page, then a code flow for the stand-in app; its ID token."""
    page.goto("/login")
    page.get_by_label("Username or email").fill(user["username"])
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{live_server}/account")
    rp = RelyingParty(live_server, client)
    page.goto(rp.authorization_url())
    page.wait_for_url(lambda url: url.startswith(client_app.redirect_uri + "?"))
    id_token = rp.fetch_token(client_app.only_callback()["params"])["id_token"]
    client_app.received.clear()
    return id_token


def test_confirmed_logout_reaches_the_clients_post_logout_redirect_uri(
        live_server, make_user, make_client, stand_in_client, browser_page):
    page, watch = browser_page
    user = make_user()
    client_app = stand_in_client()
    after = client_app.redirect_uri + "?after=logout"
    client = make_client(name="Stand-in Wiki", first_party=True, redirect_uris=[client_app.redirect_uri],
                         post_logout_redirect_uris=[after])
    _sign_in_to_the_app(page, live_server, user, client, client_app)

    page.goto("/end-session?" + urlencode({"client_id": client["client_id"], "post_logout_redirect_uri": after,
                                            "state": "bye"}))
    assert page.get_by_role("heading", level=1).inner_text() == "Sign out"
    assert "Stand-in Wiki asks to sign you out." in page.locator("main").inner_text()
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(lambda url: url.startswith(client_app.redirect_uri + "?"))
    back = client_app.only_callback()
    assert back["method"] == "GET" and back["params"] == {"after": "logout", "state": "bye"}

    page.goto("/account")
    assert page.url.startswith(f"{live_server}/login"), "the session has ended"
    watch.assert_clean()


def test_a_logout_posted_from_the_apps_own_page_ends_the_session(
        app, live_server, make_user, make_client, stand_in_client, browser_page):
    """RP-Initiated Logout 1.0 2: the app may POST. From its page that POST is cross-site, so Chromium
    leaves out our SameSite=Lax session cookie; our page sends it again, same-site, and the session
    ends (before, the person was sent back as if signed out while the session lived on)."""
    import html

    from idp.extensions import db
    from idp.models import SsoSession

    page, watch = browser_page
    user = make_user()
    client_app = stand_in_client()
    after = client_app.redirect_uri + "?after=logout"
    client = make_client(name="Stand-in Mail", first_party=True, redirect_uris=[client_app.redirect_uri],
                         post_logout_redirect_uris=[after])
    id_token = _sign_in_to_the_app(page, live_server, user, client, client_app)

    params = {"id_token_hint": id_token, "post_logout_redirect_uri": after, "state": "bye"}
    fields = "".join(f'<input type="hidden" name="{k}" value="{html.escape(v)}">' for k, v in params.items())
    form = f'<form method="post" action="{live_server}/end-session">{fields}<button id="go">Sign out</button></form>'
    page.context.route("http://rp.example/**", lambda route: route.fulfill(
        status=200, content_type="text/html", body=f"<!doctype html><html><body>{form}</body></html>"))
    page.goto("http://rp.example/logout")
    page.click("#go")
    page.wait_for_url(lambda url: url.startswith(client_app.redirect_uri + "?"))
    assert client_app.only_callback()["params"] == {"after": "logout", "state": "bye"}
    with app.app_context():
        left = db.session.scalar(db.select(db.func.count()).select_from(SsoSession)
                                 .where(SsoSession.user_id == user["id"]))
    assert left == 0, "the session ended"
    page.goto(f"{live_server}/account")
    assert page.url.startswith(f"{live_server}/login")
    watch.assert_clean()
