"""Dynamically registered clients are unverified until an operator says otherwise: the consent
page warns in plain words and shows no logo; `idp clients verify` lifts that (audited), and a
client that changes its name, links or redirect URIs (RFC 7592) is unverified again."""
from __future__ import annotations

import html
import json

import pytest

from idp.extensions import db
from idp.oauth.clients import find_client, set_logo
from idp.oauth.initial_tokens import issue_initial_access_token
from tests.helpers.rp import Browser, RelyingParty
from tests.oauth.flows import (assert_error_page, assert_redirect_error, count_rows, is_consent_page,
                               raw_authorize_url, signed_in_browser)
from tests.oauth.test_registration import REDIRECT, as_rp_client, configure, events, register
from tests.test_branding import PNG

WARNING = "This application is not verified."
DETAIL = "Its name and logo were chosen by the application itself"


def _with_logo(app, client_id: str) -> None:
    with app.app_context():
        set_logo(find_client(client_id), PNG)
        db.session.commit()


@pytest.fixture
def dynamic_client(app, live_server):
    """A client registered through /oauth/register (with an initial access token), with a logo an
    operator uploaded, so the test can see that it is not shown."""
    with app.app_context():
        _, token = issue_initial_access_token(3600, "unverified test")
        db.session.commit()
    import uuid
    # Unique: a verified client's name cannot be registered again.
    response = register(live_server, {"redirect_uris": [REDIRECT], "client_name": f"Totally Your Bank {uuid.uuid4().hex[:6]}",
                                      "logo_uri": "https://bank.example/logo.png"}, token)
    assert response.status_code == 201, response.text
    _with_logo(app, response.json()["client_id"])
    return response.json()


def consent_page(live_server, make_user, client: dict, **headers):
    browser = signed_in_browser(live_server, make_user())
    page = browser.get(RelyingParty(live_server, client).authorization_url(), headers=headers)
    assert is_consent_page(page), page.status_code
    return page


def shows_warning(page) -> bool:
    text = html.unescape(page.text)
    warned = "data-unverified-client" in page.text
    assert warned == (WARNING in text) == (DETAIL in text)
    return warned


def shows_logo(page, client_id: str) -> bool:
    return f'src="/clients/{client_id}/logo"' in page.text


def test_consent_page_warns_about_a_dynamically_registered_client_and_shows_no_logo(live_server, make_user,
                                                                                     dynamic_client):
    page = consent_page(live_server, make_user, as_rp_client(dynamic_client))
    assert shows_warning(page)
    assert not shows_logo(page, dynamic_client["client_id"])
    assert "bank.example" not in page.text  # its logo_uri is never used


def test_consent_page_for_an_operator_created_client_has_no_warning(app, live_server, make_user, make_client):
    client = make_client(name="Operator app")
    _with_logo(app, client["client_id"])
    page = consent_page(live_server, make_user, client)
    assert not shows_warning(page)
    assert shows_logo(page, client["client_id"])


def test_the_warning_is_in_french(live_server, make_user, dynamic_client):
    page = consent_page(live_server, make_user, as_rp_client(dynamic_client), **{"Accept-Language": "fr"})
    text = html.unescape(page.text)
    assert '<html lang="fr">' in page.text and "data-unverified-client" in page.text
    assert "Cette application n'est pas vérifiée." in text
    assert "Son nom et son logo ont été choisis par l'application elle-même" in text
    assert "N'autorisez l'accès que si vous connaissez cette application" in text
    assert WARNING not in text


def test_verifying_a_client_removes_the_warning_and_withdrawing_brings_it_back(app, live_server, make_user,
                                                                               dynamic_client, idp_cli):
    client_id = dynamic_client["client_id"]
    assert idp_cli("clients", "verify", client_id).output.strip() == f"{client_id}: verified"
    assert idp_cli("clients", "verify", client_id).output.strip() == f"{client_id}: already verified"
    assert json.loads(idp_cli("clients", "show", client_id, "--json").output)["verified_at"]
    page = consent_page(live_server, make_user, as_rp_client(dynamic_client))
    assert not shows_warning(page)
    assert shows_logo(page, client_id)
    verified = [e for e in events(app, "oauth.client.verified") if e["client_id"] == client_id]
    assert len(verified) == 1

    assert idp_cli("clients", "verify", client_id, "--withdraw").output.strip() == f"{client_id}: unverified"
    assert json.loads(idp_cli("clients", "show", client_id, "--json").output)["verified_at"] is None
    assert shows_warning(consent_page(live_server, make_user, as_rp_client(dynamic_client)))
    withdrawn = [e for e in events(app, "oauth.client.unverified") if e["client_id"] == client_id]
    assert [e["details"]["reason"] for e in withdrawn] == ["operator"]


def test_clients_show_prints_what_the_operator_checks_before_verifying(app, live_server, idp_cli):
    """The README sends the operator to `idp clients show` for the name, links and contacts a
    registered app chose for itself."""
    with app.app_context():
        _, token = issue_initial_access_token(3600, "show test")
        db.session.commit()
    links = {"client_uri": "https://bank.example/", "policy_uri": "https://bank.example/privacy",
             "tos_uri": "https://bank.example/terms", "logo_uri": "https://bank.example/logo.png"}
    import uuid
    # Unique: a verified client's name cannot be registered again.
    response = register(live_server, {"redirect_uris": [REDIRECT], "client_name": f"Totally Your Bank {uuid.uuid4().hex[:6]}",
                                      "contacts": ["ops@bank.example"], **links}, token)
    assert response.status_code == 201, response.text
    client_id = response.json()["client_id"]
    shown = json.loads(idp_cli("clients", "show", client_id, "--json").output)
    assert {k: shown[k] for k in links} == links and shown["contacts"] == ["ops@bank.example"]
    text = idp_cli("clients", "show", client_id).output.splitlines()
    for name, value in {**links, "contacts": ["ops@bank.example"]}.items():
        assert f"{name}: {value}" in text


def test_a_verified_client_that_renames_itself_is_unverified_again(app, live_server, make_user, dynamic_client,
                                                                   idp_cli):
    client_id = dynamic_client["client_id"]
    uri, token = dynamic_client["registration_client_uri"], dynamic_client["registration_access_token"]
    idp_cli("clients", "verify", client_id)
    unchanged = {"client_id": client_id, "redirect_uris": [REDIRECT], "client_name": dynamic_client["client_name"],
                 "logo_uri": "https://bank.example/logo.png"}
    assert configure("PUT", uri, token, {**unchanged, "default_max_age": 3600}).status_code == 200
    assert not shows_warning(consent_page(live_server, make_user, as_rp_client(dynamic_client)))

    assert configure("PUT", uri, token, {**unchanged, "client_name": "Your Real Bank"}).status_code == 200
    assert shows_warning(consent_page(live_server, make_user, as_rp_client(dynamic_client)))
    withdrawn = [e for e in events(app, "oauth.client.unverified") if e["client_id"] == client_id]
    assert [(e["details"]["reason"], e["details"]["fields"]) for e in withdrawn] == \
           [("metadata_changed", ["client_name"])]


def test_a_verified_client_that_changes_where_logout_sends_people_is_unverified_again(
        app, live_server, make_user, dynamic_client, idp_cli):
    client_id = dynamic_client["client_id"]
    uri, token = dynamic_client["registration_client_uri"], dynamic_client["registration_access_token"]
    idp_cli("clients", "verify", client_id)
    unchanged = {"client_id": client_id, "redirect_uris": [REDIRECT], "client_name": dynamic_client["client_name"],
                 "logo_uri": "https://bank.example/logo.png"}
    assert configure("PUT", uri, token, {**unchanged, "post_logout_redirect_uris": [
        "https://elsewhere.example/after-logout"]}).status_code == 200
    assert shows_warning(consent_page(live_server, make_user, as_rp_client(dynamic_client)))
    withdrawn = [e for e in events(app, "oauth.client.unverified") if e["client_id"] == client_id]
    assert [(e["details"]["reason"], e["details"]["fields"]) for e in withdrawn] == \
           [("metadata_changed", ["post_logout_redirect_uris"])]


def test_verify_refuses_an_operator_created_or_unknown_client(app, make_client, idp_cli):
    client = make_client()
    result = idp_cli("clients", "verify", client["client_id"], ok=False)
    assert result.exit_code != 0 and "created by an operator" in result.output
    assert idp_cli("clients", "verify", "no-such-client", ok=False).exit_code != 0
    assert not [e for e in events(app, "oauth.client.verified") if e["client_id"] == client["client_id"]]


# --- RFC 9700 4.11.2: no error redirects for an unverified client -------------------------------

PHISH = "https://phish.example/landing"


@pytest.fixture
def unverified(make_client):
    """An unverified dynamically registered client whose redirect URI is the attacker's page."""
    return make_client(registered_via="dynamic", redirect_uris=[PHISH], name="Totally Your Bank")


def _verify(app, client_id: str) -> None:
    from idp.oauth.clients import set_verified

    with app.app_context():
        set_verified(find_client(client_id), True)
        db.session.commit()


def assert_unverified_error_page(response, error: str) -> None:
    """Our page (400), naming the app as unverified and the host it wanted, never a redirect."""
    assert_error_page(response, error)
    text = html.unescape(response.text)
    assert "Totally Your Bank is not a verified application." in text
    assert "phish.example" in text and 'href="https://phish.example' not in response.text


UNVERIFIED_ERRORS = [
    ({"scope": "openid nonsense"}, "invalid_scope"),
    ({"response_type": "token"}, "unsupported_response_type"),
    ({"code_challenge": None, "code_challenge_method": None}, "invalid_request"),
    ({"response_mode": "fragment"}, "invalid_request"),
    ({"max_age": "soon"}, "invalid_request"),
    ({"prompt": "none"}, "login_required"),
]


@pytest.mark.parametrize("params, error", UNVERIFIED_ERRORS)
def test_an_unverified_client_gets_its_errors_on_our_page_not_by_redirect(app, live_server, unverified, params,
                                                                          error):
    before = count_rows(app)
    response = Browser(live_server).get(raw_authorize_url(live_server, unverified, **params))
    assert_unverified_error_page(response, error)
    assert count_rows(app)["pending_authorizations"] == before["pending_authorizations"]


@pytest.mark.parametrize("params, error", UNVERIFIED_ERRORS[:2])
def test_the_same_errors_of_a_verified_client_go_back_by_redirect(app, live_server, unverified, params, error):
    _verify(app, unverified["client_id"])
    state = "st-verified"
    response = Browser(live_server).get(raw_authorize_url(live_server, unverified, state=state, **params))
    assert_redirect_error(response, unverified, live_server, error, state)


def test_an_unverified_client_gets_consent_required_on_our_page(live_server, make_user, unverified):
    browser = signed_in_browser(live_server, make_user())
    response = browser.get(raw_authorize_url(live_server, unverified, prompt="none"))
    assert_unverified_error_page(response, "consent_required")


def test_form_post_errors_of_an_unverified_client_are_not_posted_either(live_server, unverified):
    response = Browser(live_server).get(raw_authorize_url(live_server, unverified, response_mode="form_post",
                                                          scope="openid nonsense"))
    assert_unverified_error_page(response, "invalid_scope")
    assert 'action="https://phish.example' not in response.text


def test_deny_for_an_unverified_client_stays_on_our_page_and_is_recorded(app, live_server, make_user, unverified):
    user = make_user()
    browser = signed_in_browser(live_server, user)
    page = browser.get(raw_authorize_url(live_server, unverified))
    assert is_consent_page(page) and shows_warning(page)
    before = count_rows(app)
    response = browser.consent(page, "deny")
    assert_unverified_error_page(response, "access_denied")
    after = count_rows(app)
    assert (after["consents"], after["grants"]) == (before["consents"], before["grants"])
    assert after["pending_authorizations"] == before["pending_authorizations"] - 1
    denied = [e for e in events(app, "oauth.consent.denied") if e["client_id"] == unverified["client_id"]]
    assert len(denied) == 1


def test_deny_for_a_verified_client_goes_back_as_access_denied(app, live_server, make_user, unverified):
    _verify(app, unverified["client_id"])
    browser = signed_in_browser(live_server, make_user())
    page = browser.get(raw_authorize_url(live_server, unverified, state="st-deny"))
    assert_redirect_error(browser.consent(page, "deny"), unverified, live_server, "access_denied", "st-deny")


def test_allow_for_an_unverified_client_still_sends_the_code(live_server, make_user, unverified):
    """The person consented on a page that says the app is unverified: the code goes back."""
    browser = signed_in_browser(live_server, make_user())
    rp = RelyingParty(live_server, unverified, scope="openid")
    page = browser.get(rp.authorization_url())
    assert is_consent_page(page) and shows_warning(page)
    response = browser.consent(page, "allow")
    assert response.status_code == 302 and "code" in rp.callback_params(response)


def test_the_unverified_error_page_is_in_french(live_server, unverified):
    response = Browser(live_server).get(raw_authorize_url(live_server, unverified, scope="openid nonsense"),
                                        headers={"Accept-Language": "fr"})
    assert_error_page(response, "invalid_scope")
    assert '<html lang="fr">' in response.text
    text = html.unescape(response.text)
    assert "Totally Your Bank n'est pas une application vérifiée." in text
    assert "nous ne vous envoyons donc pas vers phish.example" in text


def test_the_consent_page_names_where_the_answer_goes_and_connected_apps_keep_the_warning(
        live_server, make_user, unverified):
    """An unverified client chose its name (it may be a first-party app's); where the code goes it
    cannot fake, so the person sees it; after Allow, Connected apps still says it is unverified
    (found by review)."""
    from urllib.parse import urlsplit

    browser = signed_in_browser(live_server, make_user())
    rp = RelyingParty(live_server, unverified, scope="openid")
    page = browser.get(rp.authorization_url())
    host = urlsplit(unverified["redirect_uri"]).hostname
    assert f"Your answer goes to {host}." in html.unescape(page.text)
    assert browser.consent(page, "allow").status_code == 302
    apps = html.unescape(browser.get(f"{live_server}/account/apps").text)
    assert "Not verified: its name was chosen by the application itself" in apps


def test_an_operator_created_client_gets_neither_line(live_server, make_user, make_client):
    browser = signed_in_browser(live_server, make_user())
    client = make_client()
    page = browser.get(RelyingParty(live_server, client, scope="openid").authorization_url())
    assert is_consent_page(page) and "Your answer goes to" not in page.text
    assert browser.consent(page, "allow").status_code == 302
    assert "Not verified" not in browser.get(f"{live_server}/account/apps").text


@pytest.mark.parametrize("taken", ["Payroll {t}", "PAYROLL  {t}", "\uff30ayroll {t}", "Payroll\u034f {t}",
                                   "Payroll\ufe0f {t}", "Pay\u200droll {t}"])
def test_an_application_cannot_register_the_name_of_an_operators_app_or_of_the_service(
        app, live_server, make_client, taken):
    import uuid

    from tests.oauth.test_registration import assert_registration_error

    t = uuid.uuid4().hex[:6]
    make_client(first_party=True, name=f"Payroll {t}")
    with app.app_context():
        _, token = issue_initial_access_token(3600, "impersonation test")
        db.session.commit()
    refused = register(live_server, {"redirect_uris": [REDIRECT], "client_name": taken.format(t=t)}, token)
    assert_registration_error(refused, "invalid_client_metadata", "client_name")
    product = app.config["IDP_SETTINGS"].product_name
    assert_registration_error(register(live_server, {"redirect_uris": [REDIRECT], "client_name": product.upper()}, token),
                              "invalid_client_metadata", "client_name")
    assert register(live_server, {"redirect_uris": [REDIRECT], "client_name": f"Payroll helper {t}"},
                    token).status_code == 201


@pytest.mark.parametrize("name", ["\u3164", "\u2800", "\u0456d\u0440", "pay\u0440al", "1\u0661"])
def test_an_application_cannot_register_a_blank_looking_or_mixed_script_name(app, live_server, name):
    """Names that show as nothing, or mix alphabets (Cyrillic "р" in a Latin word reads as "p"),
    or mix digits: the stuff of look-alikes."""
    from tests.oauth.test_registration import assert_registration_error
    with app.app_context():
        _, token = issue_initial_access_token(3600, "look-alike test")
        db.session.commit()
    assert_registration_error(register(live_server, {"redirect_uris": [REDIRECT], "client_name": name}, token),
                              "invalid_client_metadata", "client_name")


def test_an_application_cannot_take_the_name_of_a_verified_one(app, live_server, dynamic_client):
    from idp.models import Client
    from tests.oauth.test_registration import assert_registration_error
    client = dynamic_client
    name = client["client_name"]
    with app.app_context():
        db.session.execute(db.update(Client).where(Client.client_id == client["client_id"]).values(verified_at=db.func.now()))
        _, token = issue_initial_access_token(3600, "verified name test")
        db.session.commit()
    assert_registration_error(register(live_server, {"redirect_uris": [REDIRECT], "client_name": name}, token),
                              "invalid_client_metadata", "client_name")
