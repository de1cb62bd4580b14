"""The CSP's form-action: 'self' on every page, except a page whose form may end at another
origin, which sends none (Chromium checks form-action against every redirect after the form's
post too, and a client's redirect URI may redirect on to an origin we cannot know: a broker's
callback). Whether a page may leave comes from server-side state only: this browser's live
pending request, the registered post_logout_redirect_uri; never from the request's own values.
The browser flows that must still finish are in tests/browser."""
from __future__ import annotations

import dataclasses
from urllib.parse import urlencode, urlsplit

import pytest

from tests.authn.conftest import pinned  # noqa: F401  (the clock the TOTP back-off is read from)
from tests.authn.web import Web
from tests.conftest import PASSWORD
from tests.helpers.forms import csrf_token
from tests.helpers.mfa import code_at, give_totp
from tests.helpers.rp import Browser, RelyingParty
from tests.oauth.flows import raw_authorize_url, signed_in_browser

EVIL = "https://evil.example/cb"
SELF = ["'self'"]


def form_action(response) -> list[str] | None:
    """The sources of the response's CSP form-action directive; None when it has none."""
    csp = response.headers["Content-Security-Policy"]
    directives = [d.split() for d in csp.split(";") if d.split()[:1] == ["form-action"]]
    assert len(directives) <= 1, csp
    return directives[0][1:] if directives else None


PAGES_THAT_STAY = {
    "sign-in, nothing pending": "/login",
    "sign-in, next to the account": "/login?next=/account",
    "sign-in, an outside next": "/login?" + urlencode({"next": EVIL}),
    "sign-in, an outside redirect_uri": "/login?" + urlencode({"redirect_uri": EVIL, "next": EVIL}),
    "sign-in, someone's resume": "/login?next=/authorize/resume/not-this-browsers-request",
    "registration": "/register?next=/authorize/resume/not-this-browsers-request",
    "forgot password": "/forgot-password",
    "sign-out page": "/logout",
    "signed out": "/logged-out",
    "404": "/no-such-page",
    "resume of nothing": "/authorize/resume/not-this-browsers-request",
    "sign-out without an app": "/end-session",
}


@pytest.mark.parametrize("path", PAGES_THAT_STAY.values(), ids=PAGES_THAT_STAY.keys())
def test_a_page_whose_forms_stay_here_sends_form_action_self(live_server, path):
    assert form_action(Browser(live_server).get(live_server + path)) == SELF


def test_account_pages_send_form_action_self(live_server, make_user):
    browser = signed_in_browser(live_server, make_user())
    for path in ("/account", "/account/security", "/account/security/password", "/account/sessions", "/account/apps",
                 "/account/profile", "/account/privacy", "/account/passkeys"):
        page = browser.get(live_server + path)
        assert page.status_code == 200 and form_action(page) == SELF, path


def test_emailed_link_pages_send_form_action_self_even_with_a_request_pending(
        app, live_server, make_user, make_client):
    from idp.extensions import db
    from idp.models import User
    from idp.users import email_links

    user = make_user()
    with app.app_context():
        person = db.session.get(User, user["id"])
        links = [email_links.issue(person, purpose) for purpose in (email_links.VERIFY_EMAIL,
                                                                    email_links.RESET_PASSWORD)]
        db.session.commit()
    browser = Browser(live_server)
    browser.get(RelyingParty(live_server, make_client()).authorization_url())  # a request of this browser waits
    for link in links:
        page = browser.get(link)
        assert page.status_code == 200 and 'method="post"' in page.text and form_action(page) == SELF, link


def test_the_sign_in_consent_path_of_this_browsers_request_sends_no_form_action(
        live_server, make_user, make_client):
    user, client = make_user(), make_client(first_party=False)
    rp = RelyingParty(live_server, client)
    browser = Browser(live_server)
    to_login = browser.get(rp.authorization_url() + "&" + urlencode({"next": "/account"}))
    assert to_login.status_code == 302 and to_login.headers["Location"].startswith("/login?next=/authorize/resume/")
    resume = to_login.headers["Location"].split("next=", 1)[1]

    login = browser.get(live_server + to_login.headers["Location"])
    assert login.status_code == 200 and form_action(login) is None  # signing in may end at the client
    wrong = browser.post(f"{live_server}/login", data={"csrf_token": csrf_token(login.text), "login": user["username"],
                                                       "password": "not it", "next": resume})
    assert wrong.status_code == 400 and form_action(wrong) is None  # the form again, for the same request
    posted = browser.post(f"{live_server}/login", data={"csrf_token": csrf_token(login.text), "login": user["username"],
                                                        "password": PASSWORD, "next": resume})
    assert posted.status_code == 303 and posted.headers["Location"] == resume

    consent = browser.get(live_server + resume + "?" + urlencode({"redirect_uri": EVIL, "next": EVIL}))
    assert consent.status_code == 200 and 'name="pending_id"' in consent.text
    assert form_action(consent) is None  # Allow and Deny answer the client

    # The same request's path from another browser (an attacker's link), or a request that is not
    # pending, or a request that was answered: form-action 'self'.
    assert form_action(Browser(live_server).get(f"{live_server}/login?next={resume}")) == SELF
    assert form_action(Browser(live_server).get(f"{live_server}/register?next={resume}")) == SELF
    assert form_action(browser.get(f"{live_server}/login?next=/authorize/resume/not-a-request")) == SELF
    assert form_action(browser.get(f"{live_server}/login?next=/account")) == SELF
    assert browser.consent(consent).status_code == 302
    assert form_action(browser.get(f"{live_server}/login?next={resume}")) == SELF  # used up


def test_registration_resuming_this_browsers_request_sends_no_form_action(live_server, make_client):
    browser = Browser(live_server)
    to_login = browser.get(RelyingParty(live_server, make_client()).authorization_url())
    resume = to_login.headers["Location"].split("next=", 1)[1]
    page = browser.get(f"{live_server}/register?next={resume}")
    assert page.status_code == 200 and form_action(page) is None


def test_a_sign_in_going_on_through_the_terms_page_to_this_browsers_request_sends_no_form_action(
        live_server, make_client):
    """/terms goes straight on to its `next` when nothing is left to accept, so a sign-in whose
    `next` is /terms?next=<this browser's resume> may end at the client too."""
    browser = Browser(live_server)
    to_login = browser.get(RelyingParty(live_server, make_client()).authorization_url())
    resume = to_login.headers["Location"].split("next=", 1)[1]
    via_terms = "/terms?" + urlencode({"next": resume})
    assert form_action(browser.get(f"{live_server}/login?" + urlencode({"next": via_terms}))) is None
    for other in ("/terms?" + urlencode({"next": "/authorize/resume/not-this-browsers-request"}),
                  "/terms?" + urlencode({"next": resume + "?x=1"}),
                  "/terms?" + urlencode([("next", resume), ("next", resume)]),
                  "/terms?" + urlencode({"next": via_terms})):
        assert form_action(browser.get(f"{live_server}/login?" + urlencode({"next": other}))) == SELF, other
    assert form_action(Browser(live_server).get(f"{live_server}/login?" + urlencode({"next": via_terms}))) == SELF


def test_the_steps_of_a_login_for_a_pending_request_send_none_and_its_error_page_self(
        app, live_server, make_user, make_client, pinned):  # noqa: F811
    """The TOTP page's form may finish the login and answer the client; the page that replaces
    it when the login starts over (five wrong codes) keeps form-action 'self'."""
    user = make_user()
    secret = give_totp(app, user)
    web = Web(app)  # its own client IP: the wrong codes count on no other test's back-off
    resume = pending_request(web, live_server, make_client())
    assert web.login(user["username"], PASSWORD, next_path=resume).headers["Location"] == "/login/totp"
    wrong = "000000" if code_at(secret) != "000000" else "111111"
    for _ in range(4):
        page = web.get("/login/totp")
        assert page.status_code == 200 and form_action(page) is None
        refused = web.post("/login/totp", data={"csrf_token": csrf_token(page.get_data(as_text=True)), "code": wrong})
        assert refused.status_code == 400 and form_action(refused) is None
        pinned.advance(5)  # past the back-off
    page = web.get("/login/totp")
    over = web.post("/login/totp", data={"csrf_token": csrf_token(page.get_data(as_text=True)), "code": wrong})
    assert over.status_code == 400 and "Sign in again" in over.get_data(as_text=True)
    assert form_action(over) == SELF


def test_the_verify_first_page_at_the_end_of_a_step_sends_form_action_self(
        app, settings, live_server, make_user, make_client, monkeypatch):
    """With IDP_EMAIL_VERIFICATION_REQUIRED the TOTP step's post ends on a page whose only form
    asks for a new link, here: not the step's page, so 'self'."""
    monkeypatch.setitem(app.config, "IDP_SETTINGS", dataclasses.replace(settings, email_verification_required=True))
    user = make_user()
    secret = give_totp(app, user)
    web = Web(app)
    resume = pending_request(web, live_server, make_client())
    assert web.login(user["username"], PASSWORD, next_path=resume).headers["Location"] == "/login/totp"
    page = web.get("/login/totp")
    assert form_action(page) is None
    stopped = web.post("/login/totp", data={"csrf_token": csrf_token(page.get_data(as_text=True)),
                                            "code": code_at(secret)})
    assert stopped.status_code == 403 and "verify-email" in stopped.get_data(as_text=True)
    assert form_action(stopped) == SELF


def pending_request(web: Web, live_server: str, client: dict) -> str:
    """Start an authorization request in `web`; returns its /authorize/resume/<id> path."""
    url = urlsplit(RelyingParty(live_server, client).authorization_url())
    to_login = web.get(f"{url.path}?{url.query}")
    assert to_login.status_code == 302, to_login.status_code
    return urlsplit(to_login.headers["Location"]).query.split("next=", 1)[1].split("&", 1)[0]


def test_an_unregistered_redirect_uri_gets_our_error_page_with_form_action_self(
        live_server, make_user, make_client):
    user, client = make_user(), make_client(first_party=False)
    browser = signed_in_browser(live_server, user)
    response = browser.get(raw_authorize_url(live_server, client, redirect_uri=EVIL))
    assert response.status_code == 400 and "Location" not in response.headers
    assert form_action(response) == SELF


def test_the_form_post_page_sends_no_form_action(live_server, make_user, make_client):
    user = make_user()
    client = make_client(first_party=True, redirect_uris=["http://127.0.0.1:9999/callback?tenant=a"])
    browser = signed_in_browser(live_server, user)
    response = browser.get(RelyingParty(live_server, client).authorization_url(response_mode="form_post"))
    assert response.status_code == 200 and 'data-autosubmit' in response.text
    assert form_action(response) is None


@pytest.mark.parametrize("target, sources", [
    ("https://rp.example/bye?from=idp", None),
    ("https://evil.example/bye", SELF),  # not registered: no redirect after signing out
])
def test_the_logout_confirmation_sends_none_only_on_its_way_to_a_registered_post_logout_redirect_uri(
        live_server, make_user, make_client, target, sources):
    user = make_user()
    client = make_client(first_party=True, post_logout_redirect_uris=["https://rp.example/bye?from=idp"])
    browser = signed_in_browser(live_server, user)
    page = browser.get(f"{live_server}/end-session?" + urlencode({"client_id": client["client_id"],
                                                                 "post_logout_redirect_uri": target}))
    assert page.status_code == 200 and 'action="/end-session/confirm"' in page.text
    assert form_action(page) == sources


@pytest.mark.parametrize("target, sources", [
    ("https://rp.example/bye?from=idp", None),
    ("https://evil.example/bye", SELF),
])
def test_the_logout_re_send_page_sends_none_only_on_its_way_to_a_registered_post_logout_redirect_uri(
        live_server, make_client, target, sources):
    """A logout POSTed from the app's page comes without our cookie and is sent again from ours;
    that re-sent POST may 303 to the registered post_logout_redirect_uri."""
    client = make_client(first_party=True, post_logout_redirect_uris=["https://rp.example/bye?from=idp"])
    page = Browser(live_server).post(f"{live_server}/end-session", data={"client_id": client["client_id"],
                                                                        "post_logout_redirect_uri": target})
    assert page.status_code == 200 and "data-autosubmit" in page.text
    assert form_action(page) == sources


def test_the_authorization_re_send_page_sends_none(live_server, make_client):
    """A request POSTed from the app's page comes without our cookies and is sent again from ours;
    that re-sent POST may redirect straight to the client with a code."""
    client = make_client(first_party=True)
    page = Browser(live_server).post(f"{live_server}/authorize", data={
        "client_id": client["client_id"], "redirect_uri": client["redirect_uri"], "response_type": "code"})
    assert page.status_code == 200 and "data-autosubmit" in page.text
    assert form_action(page) is None
