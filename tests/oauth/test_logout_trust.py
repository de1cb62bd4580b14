"""When /end-session may act without asking, and where it may send the person afterwards
(RP-Initiated Logout 1.0 2, 3 and 4): a hint is trusted only for the session it was issued in;
post-logout redirection needs a valid hint or an operator-trusted client, and never follows a hint
that failed validation. Over real HTTP, with the helpers of test_logout."""
from __future__ import annotations

import html
from urllib.parse import urlencode

import pytest

from idp import clock
from tests.helpers.forms import csrf_token
from tests.helpers.rp import Browser
from tests.oauth.flows import with_db
from tests.oauth.test_logout import (PLR, assert_signed_in, assert_signed_out, confirmation_page, end_session,  # noqa: F401
                                     logout_client, receivers, sessions_of, sign_in_to, tampered)


def confirm(browser, issuer: str, page):
    fields = confirmation_page(page)
    return browser.post(f"{issuer}/end-session/confirm", data={**fields, "csrf_token": csrf_token(page.text)})


# --- a hint counts only for the session it was issued in (M2) -----------------------------------
def test_a_hint_from_an_ended_session_of_the_same_person_asks_for_confirmation(live_server, app, make_user,
                                                                                logout_client, receivers):
    user = make_user()
    receiver = receivers()
    client = logout_client(receiver)
    browser, old_tokens, old = sign_in_to(live_server, user, client)
    assert end_session(browser, live_server, id_token_hint=old_tokens["id_token"]).status_code == 302
    receiver.wait_for(posts=1)
    browser, tokens, current = sign_in_to(live_server, user, client, browser=browser)
    assert current["sid"] != old["sid"] and current["sub"] == old["sub"]

    page = end_session(browser, live_server, id_token_hint=old_tokens["id_token"], post_logout_redirect_uri=PLR,
                       state="stale")
    confirmation_page(page)                              # RP-Initiated Logout 1.0 2: the OP MUST ask
    assert_signed_in(live_server, browser, client)
    assert sessions_of(app, user) == 1 and len(receiver.posts) == 1   # no logout token for the live session

    response = end_session(browser, live_server, id_token_hint=tokens["id_token"], post_logout_redirect_uri=PLR,
                           state="now")
    assert response.status_code == 302 and response.headers["Location"] == PLR + "?state=now"
    assert sessions_of(app, user) == 0


def test_a_hint_of_an_app_that_took_no_part_in_this_session_asks_for_confirmation(live_server, app, make_user,
                                                                                  logout_client):
    """The review's reproduction: app B's ID token from an earlier session, while the current
    session was used by app A only."""
    user = make_user()
    client_a, client_b = logout_client(), logout_client()
    browser, tokens_a, _ = sign_in_to(live_server, user, client_a)
    _, tokens_b, _ = sign_in_to(live_server, user, client_b, browser=browser)
    assert end_session(browser, live_server, id_token_hint=tokens_a["id_token"]).status_code == 302
    browser, _, _ = sign_in_to(live_server, user, client_a, browser=browser)

    page = end_session(browser, live_server, id_token_hint=tokens_b["id_token"], post_logout_redirect_uri=PLR)
    confirmation_page(page)
    assert_signed_in(live_server, browser, client_a)
    assert sessions_of(app, user) == 1
    confirmed = confirm(browser, live_server, page)         # the person agrees: a valid hint, so back to B
    assert confirmed.status_code == 303 and confirmed.headers["Location"] == PLR
    assert_signed_out(live_server, browser, client_a)


def test_a_hint_with_the_current_sid_but_no_trace_of_its_app_in_the_session_asks_for_confirmation(
        live_server, app, make_user, logout_client):
    """The sid alone is not enough: the hint's app must have a grant in this session (as before
    the purge kept those, an app whose grant is gone is not known to have taken part)."""
    from idp.models import Client, Grant

    user = make_user()
    client = logout_client()
    browser, tokens, claims = sign_in_to(live_server, user, client)

    def forget_grants(db):
        client_pk = db.session.scalar(db.select(Client.id).where(Client.client_id == client["client_id"]))
        db.session.execute(db.delete(Grant).where(Grant.client_id == client_pk, Grant.sid == claims["sid"]))
    with_db(app, forget_grants)
    confirmation_page(end_session(browser, live_server, id_token_hint=tokens["id_token"]))
    assert sessions_of(app, user) == 1


# --- where the person goes afterwards (L1, L2) ---------------------------------------------------
ELSEWHERE = "http://127.0.0.1:9997/landing"   # what an unverified client registered


@pytest.fixture
def unverified_client(make_client):
    """A dynamically registered client nobody checked, under a name of its own choosing."""
    def make(**extra):
        return make_client(name="Your Bank", registered_via="dynamic", post_logout_redirect_uris=[ELSEWHERE],
                           **extra)
    return make


def warned(page) -> bool:
    text = html.unescape(page.text)
    shown = "data-unverified-client" in page.text
    assert shown == ("This application is not verified." in text) == ("Its name was chosen by the application" in text)
    return shown


def test_without_hint_an_unverified_client_is_not_followed(live_server, app, make_user, unverified_client,
                                                           logout_client):
    """RP-Initiated Logout 1.0 3: no hint, no redirection unless the OP can trust the target."""
    client = unverified_client()
    response = end_session(Browser(live_server), live_server, client_id=client["client_id"],
                           post_logout_redirect_uri=ELSEWHERE, state="s")
    assert response.status_code == 302 and response.headers["Location"] == "/logged-out"

    user = make_user()
    browser, _, _ = sign_in_to(live_server, user, logout_client())
    page = end_session(browser, live_server, client_id=client["client_id"], post_logout_redirect_uri=ELSEWHERE)
    assert warned(page) and "Your Bank asks to sign you out." in page.text
    confirmed = confirm(browser, live_server, page)
    assert confirmed.status_code == 303 and confirmed.headers["Location"] == "/logged-out"
    assert sessions_of(app, user) == 0


def test_the_confirmation_page_of_an_operator_created_client_has_no_warning(live_server, make_user, logout_client):
    user = make_user()
    client = logout_client()
    browser, _, _ = sign_in_to(live_server, user, client)
    page = end_session(browser, live_server, client_id=client["client_id"])
    confirmation_page(page)
    assert not warned(page)


def test_the_warning_on_the_confirmation_page_is_in_french(live_server, make_user, unverified_client, logout_client):
    client = unverified_client()
    browser, _, _ = sign_in_to(live_server, make_user(), logout_client())
    page = browser.get(f"{live_server}/end-session?" + urlencode({"client_id": client["client_id"]}),
                       headers={"Accept-Language": "fr"})
    text = html.unescape(page.text)
    assert '<html lang="fr">' in page.text and "data-unverified-client" in page.text
    assert "Cette application n'est pas vérifiée." in text and "Son nom a été choisi par l'application" in text


def test_a_verified_client_without_hint_is_followed(live_server, app, unverified_client):
    client = unverified_client(verified_at=clock.now())
    response = end_session(Browser(live_server), live_server, client_id=client["client_id"],
                           post_logout_redirect_uri=ELSEWHERE, state="s")
    assert response.status_code == 302 and response.headers["Location"] == ELSEWHERE + "?state=s"


def test_an_unverified_client_is_followed_with_a_hint_of_this_session(live_server, app, make_user,
                                                                      unverified_client):
    user = make_user()
    client = unverified_client()
    browser, tokens, _ = sign_in_to(live_server, user, client)   # the person used it (and consented)
    response = end_session(browser, live_server, id_token_hint=tokens["id_token"], post_logout_redirect_uri=ELSEWHERE,
                           state="s")
    assert response.status_code == 302 and response.headers["Location"] == ELSEWHERE + "?state=s"
    assert sessions_of(app, user) == 0


def test_an_unverified_clients_own_hint_sends_nobody_else_to_it(live_server, app, make_user, unverified_client,
                                                                logout_client):
    """Its owner signs in to it with an account of their own and gets a perfectly valid ID token;
    as a hint for someone else's browser, it earns no redirection."""
    client = unverified_client()
    _, owner_tokens, _ = sign_in_to(live_server, make_user(), client)
    request = {"id_token_hint": owner_tokens["id_token"], "post_logout_redirect_uri": ELSEWHERE, "state": "s"}

    nobody = end_session(Browser(live_server), live_server, **request)
    assert nobody.status_code == 302 and nobody.headers["Location"] == "/logged-out"

    victim = make_user()
    browser, _, _ = sign_in_to(live_server, victim, logout_client())
    page = end_session(browser, live_server, **request)
    assert warned(page)
    confirmed = confirm(browser, live_server, page)
    assert confirmed.status_code == 303 and confirmed.headers["Location"] == "/logged-out"


@pytest.mark.parametrize("kind", ["tampered", "access_token", "garbage"])
def test_a_hint_that_fails_validation_is_never_followed_by_a_redirect(live_server, app, make_user, logout_client,
                                                                      kind):
    """RP-Initiated Logout 1.0 4: when the hint fails validation, the OP does not use it and does
    not perform post-logout redirection, although client_id names a trusted client."""
    user = make_user()
    client = logout_client()
    browser, tokens, _ = sign_in_to(live_server, user, client)
    hint = {"tampered": tampered(tokens["id_token"]), "access_token": tokens["access_token"],
            "garbage": "not-a-jwt"}[kind]
    request = {"id_token_hint": hint, "client_id": client["client_id"], "post_logout_redirect_uri": PLR,
               "state": "s"}

    nobody = end_session(Browser(live_server), live_server, **request)
    assert nobody.status_code == 302 and nobody.headers["Location"] == "/logged-out"

    page = end_session(browser, live_server, **request)
    assert confirmation_page(page)["id_token_hint"] == hint
    assert_signed_in(live_server, browser, client)
    confirmed = confirm(browser, live_server, page)
    assert confirmed.status_code == 303 and confirmed.headers["Location"] == "/logged-out"
    assert sessions_of(app, user) == 0


# --- values too long ---------------------------------------------------------------------------
@pytest.mark.parametrize("name, length", [("state", 4097), ("post_logout_redirect_uri", 4097),
                                          ("logout_hint", 4097), ("id_token_hint", 8193)])
def test_a_value_too_long_is_refused_not_cut(live_server, app, make_user, logout_client, name, length):
    user = make_user()
    client = logout_client()
    browser, tokens, _ = sign_in_to(live_server, user, client)
    request = {"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": PLR, "state": "s"}
    request[name] = "x" * length
    for method in ("GET", "POST"):
        response = end_session(browser, live_server, method=method, **request)
        assert response.status_code == 400 and "Location" not in response.headers
        assert "This sign-out request is not valid." in response.text
    assert_signed_in(live_server, browser, client)
    assert sessions_of(app, user) == 1


def test_a_long_state_within_the_limit_comes_back_whole(live_server, app, make_user, logout_client):
    user = make_user()
    client = logout_client()
    browser, tokens, _ = sign_in_to(live_server, user, client)
    state = "s" * 4096
    response = end_session(browser, live_server, id_token_hint=tokens["id_token"], post_logout_redirect_uri=PLR,
                           state=state)
    assert response.status_code == 302 and response.headers["Location"] == f"{PLR}?state={state}"
