"""Every page people see, in Chromium: no CSP violation, no console error, one h1, a language,
labelled form controls; the login and register forms fit a phone screen."""
from __future__ import annotations

import pytest

from tests.conftest import PASSWORD
from tests.helpers.rp import RelyingParty

pytestmark = pytest.mark.browser

# Problems a person using a screen reader or the keyboard would meet; [] when there are none.
FIND_STRUCTURE_PROBLEMS = """() => {
  const problems = [];
  const h1 = document.querySelectorAll("h1").length;
  if (h1 !== 1) problems.push(`${h1} h1 elements`);
  if (!document.documentElement.lang) problems.push("html has no lang");
  if (!document.title.trim()) problems.push("no title");
  const controls = document.querySelectorAll(
    "input:not([type=hidden]):not([type=submit]):not([type=button]), select, textarea");
  for (const el of controls) {
    const names = [...el.labels].map(l => l.textContent.trim()).filter(Boolean);
    if (!names.length && !el.getAttribute("aria-label")) problems.push(`${el.name}: no label`);
    for (const id of (el.getAttribute("aria-describedby") || "").split(/\\s+/).filter(Boolean))
      if (!document.getElementById(id)) problems.push(`${el.name}: aria-describedby ${id} is missing`);
  }
  for (const label of document.querySelectorAll("label[for]"))
    if (!document.getElementById(label.htmlFor)) problems.push(`label for=${label.htmlFor} has no control`);
  for (const el of document.querySelectorAll("button, a[href]"))
    if (!el.textContent.trim() && !el.getAttribute("aria-label"))
      problems.push(`${el.tagName} without a name`);
  return problems;
}"""

LABELLED_CONTROLS = """() => [...document.querySelectorAll(
  "input:not([type=hidden]):not([type=submit]):not([type=button]), select, textarea")]
  .filter(el => el.labels.length).map(el => el.name)"""


def sign_in(page, user) -> None:
    page.goto("/login")
    page.get_by_label("Username or email").fill(user["username"])
    page.get_by_label("Password").fill(PASSWORD)
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()


def visit_login(page):
    return page.goto("/login")


def visit_register(page):
    return page.goto("/register")


def visit_register_with_field_errors(page):
    page.goto("/register")
    page.get_by_label("Username").fill("tooshort")
    page.get_by_label("Email").fill("tooshort@example.com")
    page.get_by_label("Password").fill("short")
    with page.expect_navigation() as navigation:
        page.get_by_role("button", name="Create account").click()
    assert page.locator("#e-password").is_visible()
    return navigation.value


def visit_authorization_error(page):
    return page.goto("/authorize?response_type=code&client_id=no-such-client"
                     "&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcallback&scope=openid")


def visit_expired_request(page):
    return page.goto("/authorize/resume/no-such-request")


def visit_not_found(page):
    return page.goto("/no-such-page")


ANONYMOUS_PAGES = {
    # name: (visit, status, heading, labelled controls in order)
    "login": (visit_login, 200, "Sign in", ["login", "password"]),
    "register": (visit_register, 200, "Create an account", ["username", "email", "password"]),
    "register-errors": (visit_register_with_field_errors, 400, "Create an account",
                        ["username", "email", "password"]),
    "authorize-error": (visit_authorization_error, 400, "This sign-in request cannot be used", []),
    "expired-request": (visit_expired_request, 400, "Something went wrong", []),
    "not-found": (visit_not_found, 404, "Something went wrong", []),
}


def check_page(page, response, status: int, heading: str, controls: list[str]) -> None:
    assert response.status == status, page.url
    assert response.headers["content-security-policy"].startswith("default-src 'self'")
    assert page.get_by_role("heading", level=1).inner_text() == heading
    assert page.evaluate(FIND_STRUCTURE_PROBLEMS) == [], page.url
    assert page.evaluate(LABELLED_CONTROLS) == controls, page.url


@pytest.mark.parametrize("name", ANONYMOUS_PAGES)
def test_page_is_clean_and_accessible(name, browser_page):
    page, watch = browser_page
    visit, status, heading, controls = ANONYMOUS_PAGES[name]
    check_page(page, visit(page), status, heading, controls)
    watch.assert_clean()


def test_signed_in_pages_are_clean_and_accessible(browser_page, live_server, make_user, make_client):
    """Consent, account, sign-out confirmation and signed-out pages, in one signed-in browser."""
    page, watch = browser_page
    user = make_user()
    sign_in(page, user)
    client = make_client(name="Stand-in Pages")
    response = page.goto(RelyingParty(live_server, client).authorization_url())
    check_page(page, response, 200, "Stand-in Pages wants to use your account", [])
    check_page(page, page.goto("/account"), 200, "Your account", [])
    assert page.get_by_text(user["email"]).is_visible()
    check_page(page, page.goto("/logout"), 200, "Sign out", [])
    with page.expect_navigation() as navigation:
        page.get_by_role("button", name="Sign out").click()
    check_page(page, navigation.value, 200, "You are signed out", [])
    watch.assert_clean()


def test_the_unverified_client_warning_is_clean_and_visible(browser_page, live_server, app, make_user):
    from idp.extensions import db
    from idp.oauth.initial_tokens import issue_initial_access_token
    from tests.oauth.test_registration import REDIRECT, as_rp_client, register

    with app.app_context():
        _, token = issue_initial_access_token(3600, "browser test")
        db.session.commit()
    client = register(live_server, {"redirect_uris": [REDIRECT], "client_name": "Lookalike"}, token).json()
    page, watch = browser_page
    sign_in(page, make_user())
    response = page.goto(RelyingParty(live_server, as_rp_client(client)).authorization_url())
    check_page(page, response, 200, "Lookalike wants to use your account", [])
    assert page.get_by_text("This application is not verified.").is_visible()
    watch.assert_clean()


def test_a_verification_link_in_another_browser_asks_for_the_password(browser_page, live_server, app, make_user,
                                                                     mailbox):
    """The pages of a verification link opened where the account is not signed in (authn.link_proof):
    signed in to another account, told to sign out first; then asked for the account's password."""
    from idp.extensions import db
    from idp.models import User
    from idp.users import recovery
    from tests.users.test_email_links import link_in

    user, other = make_user(), make_user()
    with app.app_context():
        recovery.send_verification(db.session.get(User, user["id"]))
        db.session.commit()
    link = link_in(mailbox.last(app, user["email"]), "/verify-email/")
    page, watch = browser_page
    sign_in(page, other)
    check_page(page, page.goto(link), 403, "This link is for another account", [])
    with page.expect_navigation():
        page.get_by_role("button", name="Sign out").click()
    check_page(page, page.goto(link), 200, "Confirm your email address", ["password"])
    assert page.get_by_text("If you did not create an account here, do not confirm").is_visible()
    assert page.get_by_role("link", name="Forgot your password?").is_visible()
    page.get_by_label("Password").fill("not the password")
    with page.expect_navigation() as navigation:
        page.get_by_role("button", name="Confirm my email address").click()
    check_page(page, navigation.value, 400, "Confirm your email address", ["password"])
    assert page.locator("#e-password").is_visible()
    page.get_by_label("Password").fill(PASSWORD)
    with page.expect_navigation() as navigation:
        page.get_by_role("button", name="Confirm my email address").click()
    check_page(page, navigation.value, 200, "Email address confirmed", [])
    watch.assert_clean()


def test_pages_name_an_icon_the_browser_can_load(browser_page):
    """Without one, the browser's own /favicon.ico request logs a 404 console error on every page."""
    page, _ = browser_page
    page.goto("/login")
    icon = page.evaluate("""() => {
      const link = document.querySelector("link[rel~=icon]");
      return link ? link.href : new URL("/favicon.ico", location.href).href;
    }""")
    if not icon.startswith("data:"):
        response = page.context.request.get(icon)
        assert response.status == 200, f"{icon} answers {response.status}"
        assert response.headers["content-type"].startswith("image/")


@pytest.mark.parametrize("path", ["/login", "/register"])
def test_form_fits_a_phone_screen_without_horizontal_scroll(path, new_context):
    context, watch = new_context(viewport={"width": 375, "height": 667}, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.goto(path)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    for control in page.locator("main input:not([type=hidden]), main button").all():
        box = control.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 375, (control.get_attribute("name"), box)
    watch.assert_clean()
