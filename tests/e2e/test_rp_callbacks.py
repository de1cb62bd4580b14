"""What comes back to a relying party, read by authlib's own client in a real app
(tests/helpers/rp_app.py, configured by discovery): response_mode=form_post, prompt=none, and
error callbacks, each carrying the exact state and iss (RFC 9207)."""
import pytest

from tests.helpers.rp import Browser, verify_access_token, verify_id_token
from tests.helpers.rp_app import deliver, sign_in_through, start_sign_in
from tests.oauth.flows import is_consent_page, is_login_redirect, sign_in, signed_in_browser

# A state with every kind of character a query string or an HTML attribute must escape: it has
# to come back byte for byte, by redirect and by form post alike (RFC 6749 4.1.2).
STATE = "st \"<&>' +/=?%;#"
MODES = pytest.mark.parametrize("response_mode", ["query", "form_post"])


def _method(response_mode: str) -> str:
    return "POST" if response_mode == "form_post" else "GET"


def _assert_signed_in(answer, issuer: str, rp, user: dict, sent: dict) -> dict:
    """The app accepted the callback (authlib: state, code, ID token with nonce and at_hash;
    the app: iss) and the tokens are what a relying party can rely on."""
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["state"] == sent["state"] and body["iss"] == issuer
    token, claims = body["token"], body["claims"]
    assert claims["sub"] == user["subject"] and claims["nonce"] == sent["nonce"]
    assert claims["aud"] == rp.client["client_id"] or claims["aud"] == [rp.client["client_id"]]
    verify_id_token(issuer, token["id_token"], rp.client["client_id"], sent["nonce"],
                    access_token=token["access_token"])
    assert verify_access_token(issuer, token["access_token"])["sub"] == user["subject"]
    return body


def _assert_refused(answer, issuer: str, sent: dict, error: str, method: str) -> dict:
    """The app got an error, by the expected method, with its own state and the issuer."""
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert body["error"] == error, body
    assert body["method"] == method
    assert body["state"] == sent["state"] and body["iss"] == issuer
    assert "token" not in body
    return body


# --- response_mode=form_post ------------------------------------------------------------------

def test_a_form_post_answer_submitted_like_a_browser_signs_the_person_in_to_the_app(
        live_server, make_user, make_rp):
    user = make_user()
    rp = make_rp(first_party=True)
    browser = Browser(live_server)
    sent, response = start_sign_in(browser, rp, response_mode="form_post", state=STATE)
    assert is_login_redirect(live_server, response)
    page = sign_in(browser, response, user, rp.redirect_uri)
    assert page.status_code == 200 and "Location" not in page.headers  # no code in any URL
    answer = deliver(browser, page, rp)
    body = _assert_signed_in(answer, live_server, rp, user, sent)
    assert body["method"] == "POST" and body["state"] == STATE == sent["state"]
    assert set(body["token"]) >= {"access_token", "id_token", "token_type", "expires_in"}


# --- prompt=none ------------------------------------------------------------------------------

@MODES
def test_prompt_none_without_a_session_answers_login_required_to_the_app(live_server, make_rp, response_mode):
    """OIDC Core 3.1.2.6: no page is shown; the error goes to the app with state and iss."""
    rp = make_rp(first_party=True)
    browser = Browser(live_server)
    sent, response = start_sign_in(browser, rp, prompt="none", response_mode=response_mode, state=STATE)
    assert not is_login_redirect(live_server, response)
    answer = deliver(browser, response, rp)
    _assert_refused(answer, live_server, sent, "login_required", _method(response_mode))


@MODES
def test_prompt_none_with_a_session_signs_in_without_any_page(live_server, make_user, make_rp, response_mode):
    user = make_user()
    rp = make_rp(first_party=True)
    browser = signed_in_browser(live_server, user)
    sent, response = start_sign_in(browser, rp, prompt="none", response_mode=response_mode)
    expected = 200 if response_mode == "form_post" else 302
    assert response.status_code == expected and not is_consent_page(response)
    answer = deliver(browser, response, rp)
    assert _assert_signed_in(answer, live_server, rp, user, sent)["method"] == _method(response_mode)


def test_prompt_none_answers_consent_required_until_the_person_has_consented(live_server, make_user, make_rp):
    user = make_user()
    rp = make_rp()  # a third-party app: consent is asked
    browser = signed_in_browser(live_server, user)
    sent, response = start_sign_in(browser, rp, prompt="none")
    _assert_refused(deliver(browser, response, rp), live_server, sent, "consent_required", "GET")
    sent, answer = sign_in_through(rp, browser, None)
    _assert_signed_in(answer, live_server, rp, user, sent)
    sent, answer = sign_in_through(rp, browser, None, decision=None, prompt="none")  # remembered now
    _assert_signed_in(answer, live_server, rp, user, sent)


# --- error callbacks ----------------------------------------------------------------------------

@MODES
def test_deny_answers_access_denied_to_the_app_and_is_not_remembered_as_consent(
        live_server, make_user, make_rp, response_mode):
    user = make_user()
    rp = make_rp()
    browser = Browser(live_server)
    sent, answer = sign_in_through(rp, browser, user, decision="deny", response_mode=response_mode, state=STATE)
    body = _assert_refused(answer, live_server, sent, "access_denied", _method(response_mode))
    assert body["state"] == STATE
    sent, response = start_sign_in(browser, rp, prompt="none")
    _assert_refused(deliver(browser, response, rp), live_server, sent, "consent_required", "GET")


# --- state and iss: checked before the code is redeemed ---------------------------------------------

def test_the_app_refuses_a_callback_with_a_state_it_did_not_send_and_the_code_stays_unspent(
        live_server, make_user, make_rp):
    """authlib checks state against the app's session (MismatchingStateError) before it redeems
    the code: a callback planted in another browser (login CSRF) signs nobody in, and spends
    nothing."""
    user = make_user()
    rp = make_rp(first_party=True)
    attacker = signed_in_browser(live_server, user)
    sent, response = start_sign_in(attacker, rp)
    assert response.status_code == 302
    victim = Browser(live_server)
    start_sign_in(victim, rp)  # the victim's app session holds a state of its own
    planted = victim.get(response.headers["Location"])
    assert planted.status_code == 400 and planted.json()["error"] == "mismatching_state"
    answer = deliver(attacker, response, rp)  # where it belongs, the same code still works
    _assert_signed_in(answer, live_server, rp, user, sent)


def test_the_app_refuses_a_callback_whose_iss_is_not_the_issuer_and_the_code_stays_unspent(
        live_server, make_user, make_rp):
    """RFC 9207 2.4, mix-up defence. authlib 1.9's client never reads iss, so the app compares it
    (tests/helpers/rp_app.py); discovery says we always send it."""
    user = make_user()
    rp = make_rp(first_party=True)
    browser = signed_in_browser(live_server, user)
    sent, response = start_sign_in(browser, rp)
    location = response.headers["Location"]
    assert rp.metadata()["authorization_response_iss_parameter_supported"] is True
    for forged in (location.replace("iss=", "iss=x"), location.replace("iss=", "other=")):
        refused = browser.get(forged)
        assert refused.status_code == 400 and refused.json()["error"] == "iss_mismatch", refused.text
    _assert_signed_in(deliver(browser, response, rp), live_server, rp, user, sent)
