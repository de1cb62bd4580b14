"""acr, amr and auth_time over real HTTP with authlib's client: what each login path proves, what a
client or a request can require, and step-up within one SSO session (OIDC Core 2, 3.1.2.1,
5.5.1.1; RFC 8176)."""
import json
from datetime import datetime, timedelta, timezone

from idp import clock
from tests.helpers.forms import csrf_token
from tests.helpers.mfa import code_at, give_totp
from tests.helpers.rp import Browser, RelyingParty, discovery, verify_id_token
from tests.oauth.flows import (absolute, assert_redirect_error, is_login_redirect, query_of, sign_in,
                               signed_in_browser, with_db)

PWD, MFA, PHR = "urn:idp:acr:pwd", "urn:idp:acr:mfa", "urn:idp:acr:phr"


def _pin_now() -> None:
    """Pin the clock in the recent past, so tests can move it forward and tokens are still valid."""
    clock.set_now(datetime.now(timezone.utc).replace(microsecond=0) - timedelta(seconds=200))


def _submit_code(browser: Browser, page, code: str, stop: str):
    """On the TOTP page (a 200 at /login/totp): post the code and follow back to the client."""
    assert page.status_code == 200 and 'name="code"' in page.text, page.status_code
    posted = browser.post(page.url if page.url.startswith(browser.issuer) else f"{browser.issuer}/login/totp",
                          data={"csrf_token": csrf_token(page.text), "code": code})
    assert posted.status_code == 303, posted.status_code
    return browser.follow(posted, stop)


def _claims(live_server, rp, response) -> dict:
    assert response.status_code == 302, response.status_code
    token = rp.fetch_token(rp.callback_params(response))
    return verify_id_token(live_server, token["id_token"], rp.client["client_id"], rp.nonce)


def _session_sid(app, user) -> list[str]:
    def read(db):
        from idp.models import SsoSession
        return [r.sid for r in db.session.scalars(db.select(SsoSession).where(SsoSession.user_id == user["id"]))]
    return with_db(app, read)


def test_discovery_lists_the_levels(live_server):
    assert discovery(live_server)["acr_values_supported"] == [PWD, MFA, PHR]


def test_password_only_login_reports_the_password_level(live_server, make_user, make_client):
    _pin_now()
    user, client = make_user(), make_client(first_party=True)
    rp = RelyingParty(live_server, client)
    browser = Browser(live_server)
    response = sign_in(browser, browser.get(rp.authorization_url()), user, client["redirect_uri"])
    claims = _claims(live_server, rp, response)
    assert (claims["acr"], claims["amr"], claims["auth_time"]) == (PWD, ["pwd"], clock.timestamp())


def test_client_requiring_mfa_asks_for_totp_after_the_password(app, live_server, make_user, make_client):
    _pin_now()
    user, client = make_user(), make_client(first_party=True, require_mfa=True)
    secret = give_totp(app, user)
    rp = RelyingParty(live_server, client)
    browser = Browser(live_server)
    page = sign_in(browser, browser.get(rp.authorization_url()), user, client["redirect_uri"])
    assert page.url.endswith("/login/totp")
    claims = _claims(live_server, rp, _submit_code(browser, page, code_at(secret), client["redirect_uri"]))
    assert (claims["acr"], claims["amr"], claims["auth_time"]) == (MFA, ["pwd", "otp", "mfa"], clock.timestamp())


def test_client_requiring_mfa_leads_a_person_without_a_factor_through_enrolment(app, live_server, make_user,
                                                                                make_client):
    import pyotp
    _pin_now()
    user, client = make_user(), make_client(first_party=True, require_mfa=True)
    rp = RelyingParty(live_server, client)
    browser = Browser(live_server)
    page = sign_in(browser, browser.get(rp.authorization_url()), user, client["redirect_uri"])
    assert page.status_code == 200 and page.url.endswith("/login/totp/enrol")
    assert "<svg" in page.text and "otpauth" not in page.text.split("<svg", 1)[0]
    secret = page.text.split('data-testid="totp-secret">', 1)[1].split("<", 1)[0].strip()
    wrong = browser.post(page.url, data={"csrf_token": csrf_token(page.text), "code": "12345"})
    assert wrong.status_code == 400
    codes_page = browser.post(page.url, data={"csrf_token": csrf_token(page.text),
                                              "code": pyotp.TOTP(secret).at(clock.timestamp())})
    assert codes_page.status_code == 200 and codes_page.text.count("<li><code>") == 10
    cont = browser.post(f"{live_server}/login/continue", data={"csrf_token": csrf_token(codes_page.text)})
    claims = _claims(live_server, rp, browser.follow(cont, client["redirect_uri"]))
    assert (claims["acr"], claims["amr"]) == (MFA, ["pwd", "otp", "mfa"])


def test_step_up_with_acr_values_keeps_the_sso_session(app, live_server, make_user, make_client):
    _pin_now()
    user, client = make_user(), make_client(first_party=True)
    browser = signed_in_browser(live_server, user)  # password only: no second factor yet
    sid = _session_sid(app, user)
    secret = give_totp(app, user)
    clock.advance(40)
    rp = RelyingParty(live_server, client)
    response = browser.get(rp.authorization_url(acr_values=MFA))
    assert is_login_redirect(live_server, response)
    page = browser.follow(response, client["redirect_uri"])
    assert page.url.endswith("/login/totp"), "only the missing factor is asked"
    claims = _claims(live_server, rp, _submit_code(browser, page, code_at(secret), client["redirect_uri"]))
    assert (claims["acr"], claims["amr"], claims["auth_time"]) == (MFA, ["pwd", "otp", "mfa"], clock.timestamp())
    assert _session_sid(app, user) == sid and claims["sid"] == sid[0]
    # Now at MFA, the same request is answered at once.
    rp = RelyingParty(live_server, client)
    assert _claims(live_server, rp, browser.get(rp.authorization_url(acr_values=MFA)))["acr"] == MFA


def test_step_up_with_an_essential_acr_claim(app, live_server, make_user, make_client):
    _pin_now()
    user, client = make_user(), make_client(first_party=True)
    browser = signed_in_browser(live_server, user)
    secret = give_totp(app, user)
    rp = RelyingParty(live_server, client)
    claims_param = json.dumps({"id_token": {"acr": {"essential": True, "values": [MFA, "urn:other:gold"]}}})
    response = browser.get(rp.authorization_url(claims=claims_param))
    page = browser.follow(response, client["redirect_uri"])
    assert page.url.endswith("/login/totp")
    claims = _claims(live_server, rp, _submit_code(browser, page, code_at(secret), client["redirect_uri"]))
    assert (claims["acr"], claims["amr"]) == (MFA, ["pwd", "otp", "mfa"])


def test_essential_acr_reports_one_of_the_requested_values(app, live_server, make_user, make_client):
    _pin_now()
    user, client = make_user(), make_client(first_party=True)
    browser = signed_in_browser(live_server, user)
    rp = RelyingParty(live_server, client)
    claims_param = json.dumps({"id_token": {"acr": {"essential": True, "values": [PWD]}}})
    assert _claims(live_server, rp, browser.get(rp.authorization_url(claims=claims_param)))["acr"] == PWD


def test_essential_acr_that_cannot_be_met_is_an_error(app, live_server, make_user, make_client):
    _pin_now()
    user, client = make_user(), make_client(first_party=True)
    browser = signed_in_browser(live_server, user)
    rp = RelyingParty(live_server, client)
    unknown = json.dumps({"id_token": {"acr": {"essential": True, "values": ["urn:other:gold"]}}})
    response = browser.get(rp.authorization_url(claims=unknown, state="st-unknown"))
    assert_redirect_error(response, client, live_server, "unmet_authentication_requirements", "st-unknown")
    # MFA is essential, and this person has no second factor: the login made for it falls short.
    mfa = json.dumps({"id_token": {"acr": {"essential": True, "values": [MFA]}}})
    response = browser.get(rp.authorization_url(claims=mfa, state="st-mfa"))
    assert is_login_redirect(live_server, response)
    page = browser.follow(response, client["redirect_uri"])
    if page.status_code == 200 and page.url.endswith("/enrol"):  # led to enrol: walk away and come back
        resume = query_of(response.headers["Location"])["next"]
        page = browser.get(absolute(live_server, resume))
        page = browser.follow(page, client["redirect_uri"])
    assert_redirect_error(page, client, live_server, "unmet_authentication_requirements", "st-mfa")


def test_voluntary_acr_values_above_what_the_person_has_is_not_an_error(live_server, make_user, make_client):
    _pin_now()
    user, client = make_user(), make_client(first_party=True)
    browser = signed_in_browser(live_server, user)
    for acr_values in (MFA, "urn:other:gold", f"{PHR} {MFA}"):
        rp = RelyingParty(live_server, client)
        response = browser.follow(browser.get(rp.authorization_url(acr_values=acr_values)), client["redirect_uri"])
        claims = _claims(live_server, rp, response)
        assert (claims["acr"], claims["amr"]) == (PWD, ["pwd"])


def test_prompt_none_with_a_step_up_needed_answers_login_required(app, live_server, make_user, make_client):
    _pin_now()
    user, client = make_user(), make_client(first_party=True, require_mfa=True)
    browser = signed_in_browser(live_server, user)
    give_totp(app, user)
    rp = RelyingParty(live_server, client)
    response = browser.get(rp.authorization_url(prompt="none", state="st-none"))
    assert_redirect_error(response, client, live_server, "login_required", "st-none")


def test_max_age_forces_the_whole_login_again(app, live_server, make_user, make_client):
    _pin_now()
    user, client = make_user(), make_client(first_party=True)
    secret = give_totp(app, user)
    rp = RelyingParty(live_server, client)
    browser = Browser(live_server)
    page = sign_in(browser, browser.get(rp.authorization_url()), user, client["redirect_uri"])
    first = _claims(live_server, rp, _submit_code(browser, page, code_at(secret), client["redirect_uri"]))
    clock.advance(120)
    rp = RelyingParty(live_server, client)
    response = browser.get(rp.authorization_url(max_age="60"))
    assert is_login_redirect(live_server, response)
    assert "step_up" not in query_of(response.headers["Location"]), "max_age needs the password again"
    page = sign_in(browser, response, user, client["redirect_uri"])
    claims = _claims(live_server, rp, _submit_code(browser, page, code_at(secret), client["redirect_uri"]))
    assert claims["auth_time"] == clock.timestamp() == first["auth_time"] + 120
    assert (claims["acr"], claims["amr"]) == (MFA, ["pwd", "otp", "mfa"])


def test_step_up_page_cannot_be_skipped_by_resuming_the_request(app, live_server, make_user, make_client):
    _pin_now()
    user, client = make_user(), make_client(first_party=True, require_mfa=True)
    browser = signed_in_browser(live_server, user)
    give_totp(app, user)
    rp = RelyingParty(live_server, client)
    response = browser.get(rp.authorization_url(state="st-skip"))
    resume = absolute(live_server, query_of(response.headers["Location"])["next"])
    again = browser.get(resume)  # back to /authorize without the TOTP: the session is still below MFA
    assert again.status_code in (302, 303)
    assert_redirect_error(again, client, live_server, "unmet_authentication_requirements", "st-skip")
    assert _session_sid(app, user), "the SSO session itself is kept"

