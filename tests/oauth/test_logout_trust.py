"""When /end-session may act without asking, and where it may send the person afterwards
(RP-Initiated Logout 1.0 2, 3 and 4): a hint is trusted only for the session it was issued in;
post-logout redirection needs a valid hint or an operator-trusted client, and never follows a hint
that failed validation. Over real HTTP, with the helpers of test_logout."""
from __future__ import annotations

from tests.helpers.forms import csrf_token
from tests.oauth.flows import with_db
from tests.oauth.test_logout import (PLR, assert_signed_in, assert_signed_out, confirmation_page, end_session,  # noqa: F401
                                     logout_client, messages_for, receivers, sessions_of, sign_in_to)


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
