"""Passkeys over HTTP (Flask's test client) with a software authenticator: registration on the
account page, passwordless sign-in, and every server-side check of issue 4 item 3: the
challenge is ours, single use, short-lived and bound to the browser; origin and RP ID match the
issuer; user verification is required for passwordless; a credential belongs to one user; a
sign-count regression is refused and audited."""
from __future__ import annotations

import dataclasses
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from idp.extensions import db
from idp.models import AuditEvent, SsoSession, WebAuthnChallenge, WebAuthnCredential
from idp.security.tokens import digest
from tests.authn.web import Web
from tests.helpers.authenticator import SoftAuthenticator
from tests.helpers.forms import csrf_token


def options(web: Web, path: str, page: str = "/login"):
    return web.post(path, headers={"X-CSRFToken": web.token(page), "Accept": "application/json"})


def add_passkey(web: Web, authenticator: SoftAuthenticator, name: str = "Laptop"):
    """Registers a passkey from the account page of a signed-in browser; returns the final response."""
    answer = authenticator.create(options(web, "/account/passkeys/options").get_json(), web.issuer)
    return web.post("/account/passkeys", data={"csrf_token": web.token(), "name": name,
                                               "credential": json.dumps(answer)})


def passwordless(web: Web, authenticator: SoftAuthenticator, next_path: str = "/account", **get):
    """Signs in with the passkey alone, as the sign-in page's script does."""
    answer = authenticator.get(options(web, "/login/passwordless/options").get_json(), web.issuer, **get)
    return post_assertion(web, answer, next_path)


def post_assertion(web: Web, answer: dict, next_path: str = "/account"):
    """Posts the answer from the sign-in page (which starts the login in progress, like a browser)."""
    return web.post("/login/passwordless", data={"csrf_token": web.token(f"/login?next={next_path}"), "next": next_path,
                                            "credential": json.dumps(answer)})


@pytest.fixture
def enrolled(app, make_user):
    """A user with one passkey (registered over HTTP), the authenticator holding it, and the
    browser that registered it."""
    user = make_user()
    web = Web(app)
    assert web.login(user["username"], user["password"]).status_code == 303
    authenticator = SoftAuthenticator()
    first = add_passkey(web, authenticator)
    assert first.status_code == 200 and "Your recovery codes" in first.get_data(as_text=True)
    return user, authenticator, web


def credential_rows(app, user_id: int) -> list[WebAuthnCredential]:
    with app.app_context():
        return list(db.session.scalars(db.select(WebAuthnCredential).where(WebAuthnCredential.user_id == user_id)))


def passkey_events(app, user_id: int | None, prefix: str = "authn.passkey") -> list[tuple[str, dict]]:
    """This user's events (None: those of nobody known yet, as in a refused passwordless try)."""
    with app.app_context():
        query = (db.select(AuditEvent).where(AuditEvent.type.startswith(prefix)).order_by(AuditEvent.id)
                 .where(AuditEvent.user_id == user_id if user_id is not None else AuditEvent.user_id.is_(None)))
        return [(e.type, e.details) for e in db.session.scalars(query)]


def session_of(app, web: Web) -> SsoSession | None:
    with app.app_context():
        row = db.session.scalar(db.select(SsoSession).where(SsoSession.token_digest == digest(web.session_cookie)))
        if row is not None:
            db.session.expunge(row)
        return row


def failures(app, user_id: int | None) -> list[str]:
    return [details["reason"] for kind, details in passkey_events(app, user_id, "authn.passkey.failed")]


# --- registration and management -------------------------------------------------------------

def test_registered_passkey_is_listed_renamed_and_removed_with_audit(app, enrolled):
    user, authenticator, web = enrolled
    [row] = credential_rows(app, user["id"])
    assert row.name == "Laptop" and row.device_type == "single_device" and row.transports == ["internal"]
    assert row.sign_count == 1 and len(row.user_handle) >= 43
    assert "Laptop" in web.get("/account/passkeys").get_data(as_text=True)

    renamed = web.post(f"/account/passkeys/{row.id}/rename", data={"csrf_token": web.token(), "name": "Work key"})
    assert renamed.status_code == 303
    assert "Work key" in web.get("/account/passkeys").get_data(as_text=True)
    removed = web.post(f"/account/passkeys/{row.id}/delete", data={"csrf_token": web.token()})
    assert removed.status_code == 303 and credential_rows(app, user["id"]) == []
    assert [kind for kind, _ in passkey_events(app, user["id"])] == [
        "authn.passkey.registered", "authn.passkey.renamed", "authn.passkey.removed"]


def test_the_first_passkey_brings_recovery_codes_and_the_last_one_takes_them(app, enrolled):
    from idp.models import RecoveryCode

    def codes_left() -> int:
        with app.app_context():
            return len(db.session.scalars(db.select(RecoveryCode).where(RecoveryCode.user_id == user["id"],
                                                                        RecoveryCode.used_at.is_(None))).all())

    user, _, web = enrolled
    assert codes_left() == 10
    assert add_passkey(web, SoftAuthenticator(), name="Spare").status_code == 303  # codes exist: none new
    first, second = credential_rows(app, user["id"])
    web.post(f"/account/passkeys/{first.id}/delete", data={"csrf_token": web.token()})
    assert codes_left() == 10
    web.post(f"/account/passkeys/{second.id}/delete", data={"csrf_token": web.token()})
    assert codes_left() == 0 and credential_rows(app, user["id"]) == []


def test_registration_options_name_the_issuer_and_exclude_known_keys(app, enrolled):
    user, authenticator, web = enrolled
    sent = options(web, "/account/passkeys/options").get_json()
    assert sent["rp"]["id"] == "127.0.0.1" and sent["user"]["name"] == user["username"]
    assert sent["authenticatorSelection"]["residentKey"] == "preferred"
    assert [c["id"] for c in sent["excludeCredentials"]] == [credential_rows(app, user["id"])[0].credential_id]
    assert sent["user"]["id"] == credential_rows(app, user["id"])[0].user_handle  # one handle per user


def test_adding_or_removing_a_passkey_needs_a_recent_sign_in(app, enrolled, pinned):
    user, authenticator, web = enrolled
    [row] = credential_rows(app, user["id"])
    pinned.advance(app.config["IDP_SETTINGS"].mfa_recent_auth_seconds + 1)
    assert options(web, "/account/passkeys/options").status_code == 403
    assert web.post(f"/account/passkeys/{row.id}/delete", data={"csrf_token": web.token()}).status_code == 403
    assert f"/account/passkeys/{row.id}/delete" not in web.get("/account/passkeys").get_data(as_text=True)
    assert len(credential_rows(app, user["id"])) == 1
    # Renaming changes no factor: it stays allowed.
    assert web.post(f"/account/passkeys/{row.id}/rename",
                    data={"csrf_token": web.token(), "name": "Old laptop"}).status_code == 303


def test_a_credential_already_registered_to_someone_cannot_be_registered_again(app, enrolled, make_user):
    owner, authenticator, _ = enrolled
    other = make_user()
    web = Web(app)
    web.login(other["username"], other["password"])
    response = add_passkey(web, authenticator, name="Borrowed")
    assert response.status_code == 400 and "could not be added" in response.get_data(as_text=True)
    assert credential_rows(app, other["id"]) == [] and len(credential_rows(app, owner["id"])) == 1
    assert failures(app, other["id"]) == ["credential_taken"]


def test_registration_from_another_origin_is_refused(app, make_user):
    user = make_user()
    web = Web(app)
    web.login(user["username"], user["password"])
    sent = options(web, "/account/passkeys/options").get_json()
    answer = SoftAuthenticator().create(sent, "http://evil.example")
    response = web.post("/account/passkeys", data={"csrf_token": web.token(), "name": "x",
                                                   "credential": json.dumps(answer)})
    assert response.status_code == 400 and credential_rows(app, user["id"]) == []
    assert failures(app, user["id"]) == ["invalid_attestation"]


def test_someone_elses_passkey_cannot_be_renamed_or_removed(app, enrolled, make_user):
    owner, _, _ = enrolled
    [row] = credential_rows(app, owner["id"])
    other = make_user()
    web = Web(app)
    web.login(other["username"], other["password"])
    assert web.post(f"/account/passkeys/{row.id}/delete", data={"csrf_token": web.token()}).status_code == 404
    assert web.post(f"/account/passkeys/{row.id}/rename",
                    data={"csrf_token": web.token(), "name": "Mine now"}).status_code == 404
    assert credential_rows(app, owner["id"])[0].name == "Laptop"


def test_passkey_pages_need_a_session_and_csrf(app, enrolled):
    assert Web(app).get("/account/passkeys").status_code == 302
    assert Web(app).post("/account/passkeys/options", headers={"X-CSRFToken": "x"}).status_code in (400, 403)
    _, _, web = enrolled
    assert web.post("/account/passkeys/options").status_code == 400  # no CSRF header


# --- passwordless sign-in --------------------------------------------------------------------

def test_passwordless_sign_in_is_phishing_resistant_mfa(app, enrolled):
    user, authenticator, _ = enrolled
    web = Web(app)
    response = passwordless(web, authenticator, next_path="/account/passkeys")
    assert response.status_code == 303 and response.headers["Location"] == "/account/passkeys"
    row = session_of(app, web)
    assert row.user_id == user["id"] and row.amr == ["hwk", "user", "mfa"] and row.acr == "urn:idp:acr:phr"
    assert credential_rows(app, user["id"])[0].sign_count == 2
    assert credential_rows(app, user["id"])[0].last_used_at is not None


def test_a_synced_passkey_is_a_software_key(app, make_user):
    user = make_user()
    web = Web(app)
    web.login(user["username"], user["password"])
    authenticator = SoftAuthenticator(synced=True)
    add_passkey(web, authenticator)
    assert credential_rows(app, user["id"])[0].device_type == "multi_device"
    fresh = Web(app)
    assert passwordless(fresh, authenticator).status_code == 303
    assert session_of(app, fresh).amr == ["swk", "user", "mfa"]


def test_passwordless_options_require_user_verification_and_allow_any_passkey(app):
    sent = options(Web(app), "/login/passwordless/options").get_json()
    assert sent["userVerification"] == "required" and sent["allowCredentials"] == []
    assert sent["rpId"] == "127.0.0.1" and len(sent["challenge"]) >= 43


def test_passwordless_without_user_verification_is_refused(app, make_user):
    user = make_user()
    web = Web(app)
    web.login(user["username"], user["password"])
    authenticator = SoftAuthenticator(user_verification=False)
    assert add_passkey(web, authenticator).status_code == 200  # fine as a second factor
    fresh = Web(app)
    response = passwordless(fresh, authenticator)
    assert response.status_code == 400 and fresh.session_cookie is None
    assert failures(app, user["id"]) == ["user_not_verified"]


def test_a_challenge_is_single_use(app, enrolled):
    user, authenticator, _ = enrolled
    web = Web(app)
    answer = authenticator.get(options(web, "/login/passwordless/options").get_json(), web.issuer)
    assert post_assertion(web, answer).status_code == 303
    web.logout()
    replay = post_assertion(web, answer)
    assert replay.status_code == 400 and not web.is_signed_in()
    assert failures(app, None)[-1] == "unknown_challenge"


def test_a_failed_attempt_spends_the_challenge_too(app, enrolled):
    user, authenticator, _ = enrolled
    web = Web(app)
    sent = options(web, "/login/passwordless/options").get_json()
    assert post_assertion(web, authenticator.get(sent, "http://evil.example")).status_code == 400
    assert post_assertion(web, authenticator.get(sent, web.issuer)).status_code == 400
    assert failures(app, user["id"])[-1:] == ["invalid_assertion"] and failures(app, None)[-1] == "unknown_challenge"
    with app.app_context():
        assert db.session.get(WebAuthnChallenge, digest(sent["challenge"])) is None


def test_an_expired_challenge_is_refused(app, enrolled, pinned):
    user, authenticator, _ = enrolled
    web = Web(app)
    sent = options(web, "/login/passwordless/options").get_json()
    assert sent["timeout"] == app.config["IDP_SETTINGS"].webauthn_challenge_ttl * 1000
    pinned.advance(app.config["IDP_SETTINGS"].webauthn_challenge_ttl)
    response = post_assertion(web, authenticator.get(sent, web.issuer))
    assert response.status_code == 400 and web.session_cookie is None
    assert failures(app, None)[-1] == "expired_challenge"


def test_a_challenge_issued_to_another_browser_is_refused(app, enrolled):
    user, authenticator, _ = enrolled
    mine, theirs = Web(app), Web(app)
    sent = options(theirs, "/login/passwordless/options").get_json()
    response = post_assertion(mine, authenticator.get(sent, mine.issuer))
    assert response.status_code == 400 and mine.session_cookie is None
    assert failures(app, None)[-1] == "foreign_challenge"


def test_a_challenge_we_never_issued_is_refused(app, enrolled):
    user, authenticator, _ = enrolled
    web = Web(app)
    options(web, "/login/passwordless/options")
    forged = {"challenge": "A" * 43, "rpId": "127.0.0.1"}
    assert post_assertion(web, authenticator.get(forged, web.issuer)).status_code == 400
    assert failures(app, None)[-1] == "unknown_challenge"


@pytest.mark.parametrize("origin, rp_id", [("http://evil.example", None), ("https://127.0.0.1", None),
                                           (None, "evil.example"), (None, "localhost")])
def test_origin_and_rp_id_must_be_the_issuers(app, enrolled, origin, rp_id):
    user, authenticator, _ = enrolled
    web = Web(app)
    sent = options(web, "/login/passwordless/options").get_json()
    response = post_assertion(web, authenticator.get(sent, origin or web.issuer, rp_id=rp_id))
    assert response.status_code == 400 and web.session_cookie is None
    assert failures(app, user["id"])[-1] == "invalid_assertion"


def test_a_passkey_for_another_user_handle_is_refused(app, enrolled):
    user, authenticator, _ = enrolled
    authenticator.user_handle = b"someone else entirely"
    response = passwordless(Web(app), authenticator)
    assert response.status_code == 400 and failures(app, user["id"])[-1] == "user_handle_mismatch"


def test_passwordless_needs_the_user_handle_of_a_discoverable_credential(app, enrolled):
    user, authenticator, _ = enrolled
    response = passwordless(Web(app), authenticator, user_handle=False)
    assert response.status_code == 400 and failures(app, user["id"])[-1] == "user_handle_mismatch"


def test_sign_count_regression_is_refused_and_audited(app, enrolled):
    user, authenticator, _ = enrolled
    assert passwordless(Web(app), authenticator).status_code == 303  # the count is now 2
    cloned = Web(app)
    response = passwordless(cloned, authenticator, sign_count=2)
    assert response.status_code == 400 and cloned.session_cookie is None
    [(kind, details)] = passkey_events(app, user["id"], "authn.passkey.sign_count_regressed")
    assert details["stored_count"] == 2 and details["presented_count"] == 2
    assert credential_rows(app, user["id"])[0].sign_count == 2
    assert passwordless(Web(app), authenticator).status_code == 303  # the real one counts on


def test_an_authenticator_that_never_counts_is_accepted(app, make_user):
    user = make_user()
    web = Web(app)
    web.login(user["username"], user["password"])
    authenticator = SoftAuthenticator(counts=False)
    add_passkey(web, authenticator)
    assert passwordless(Web(app), authenticator).status_code == 303
    assert passwordless(Web(app), authenticator).status_code == 303
    assert credential_rows(app, user["id"])[0].sign_count == 0


def test_a_removed_passkey_no_longer_signs_in(app, enrolled):
    user, authenticator, web = enrolled
    [row] = credential_rows(app, user["id"])
    web.post(f"/account/passkeys/{row.id}/delete", data={"csrf_token": web.token()})
    fresh = Web(app)
    assert passwordless(fresh, authenticator).status_code == 400 and fresh.session_cookie is None
    assert failures(app, None)[-1] == "unknown_credential"


def test_a_disabled_account_cannot_sign_in_with_its_passkey(app, enrolled):
    user, authenticator, _ = enrolled
    from idp.models import User
    with app.app_context():
        db.session.get(User, user["id"]).disabled = True
        db.session.commit()
    assert passwordless(Web(app), authenticator).status_code == 400
    assert failures(app, user["id"])[-1] == "disabled"


@pytest.mark.parametrize("credential", ["", "not json", "[]", '{"id": "x"}', json.dumps({
    "id": "AA", "rawId": "AA", "type": "public-key", "response": {
        "clientDataJSON": "e30", "authenticatorData": "", "signature": ""}})])
def test_malformed_answers_get_our_page_not_an_error(app, credential):
    web = Web(app)
    options(web, "/login/passwordless/options")
    response = web.post("/login/passwordless", data={"csrf_token": web.token(), "credential": credential})
    assert response.status_code == 400 and "did not work" in response.get_data(as_text=True)


# --- second factor and set-up during a login ------------------------------------------------------

def password_first(web: Web, user: dict, query: str):
    """Starts a login at /login?<query> and proves the password; returns the response."""
    page = web.get(f"/login?{query}")
    assert page.status_code == 200
    return web.post("/login", data={"csrf_token": csrf_token(page.get_data(as_text=True)),
                                    "login": user["username"], "password": user["password"]})


def test_a_passkey_after_the_password_makes_the_login_phishing_resistant(app, enrolled):
    user, authenticator, _ = enrolled
    web = Web(app)
    asked = password_first(web, user, "acr=urn:idp:acr:phr&next=/account")
    assert asked.status_code == 303 and asked.headers["Location"] == "/login/passkey"
    assert web.session_cookie is None
    page = web.get("/login/passkey").get_data(as_text=True)
    assert 'data-passkey="get"' in page and "/login/passkey/options" in page
    sent = options(web, "/login/passkey/options", "/login/passkey").get_json()
    assert [c["id"] for c in sent["allowCredentials"]] == [credential_rows(app, user["id"])[0].credential_id]
    assert sent["userVerification"] == "preferred"
    done = web.post("/login/passkey", data={"csrf_token": web.token("/login/passkey"),
                                            "credential": json.dumps(authenticator.get(sent, web.issuer))})
    assert done.status_code == 303 and done.headers["Location"] == "/account"
    row = session_of(app, web)
    assert row.amr == ["pwd", "hwk", "user", "mfa"] and row.acr == "urn:idp:acr:phr"


def test_a_second_factor_must_come_from_the_users_own_passkey(app, enrolled, make_user):
    _, intruder_key, _ = enrolled  # registered to someone else
    victim = make_user()
    setup = Web(app)
    setup.login(victim["username"], victim["password"])
    add_passkey(setup, SoftAuthenticator())
    web = Web(app)
    assert password_first(web, victim, "acr=urn:idp:acr:phr").headers["Location"] == "/login/passkey"
    sent = options(web, "/login/passkey/options", "/login/passkey").get_json()
    refused = web.post("/login/passkey", data={"csrf_token": web.token("/login/passkey"),
                                               "credential": json.dumps(intruder_key.get(sent, web.issuer))})
    assert refused.status_code == 400 and web.session_cookie is None
    assert failures(app, victim["id"])[-1] == "foreign_credential"


def test_passkey_steps_cannot_be_reached_out_of_turn(app, make_user):
    web = Web(app)
    assert web.get("/login/passkey").status_code == 400
    assert options(web, "/login/passkey/options").status_code == 400
    assert options(web, "/login/passkey/enrol/options").status_code == 400
    user = make_user()  # no passkey: after the password nothing asks for one
    password_first(web, user, "acr=urn:idp:acr:phr")
    assert web.get("/login/passkey").status_code == 400


def test_a_passkey_can_be_set_up_when_the_login_must_reach_two_factors(app, make_user):
    user = make_user()
    web = Web(app)
    asked = password_first(web, user, "required=urn:idp:acr:mfa&next=/account")
    assert asked.status_code == 303 and asked.headers["Location"].startswith("/login/")
    page = web.get("/login/passkey/enrol")
    assert page.status_code == 200 and 'data-passkey="register"' in page.get_data(as_text=True)
    authenticator = SoftAuthenticator()
    sent = options(web, "/login/passkey/enrol/options", "/login/passkey/enrol").get_json()
    codes = web.post("/login/passkey/enrol", data={"csrf_token": web.token("/login/passkey/enrol"), "name": "Phone",
                                                   "credential": json.dumps(authenticator.create(sent, web.issuer))})
    assert codes.status_code == 200 and "recovery" in codes.get_data(as_text=True).lower()
    assert credential_rows(app, user["id"])[0].name == "Phone"
    done = web.post("/login/continue", data={"csrf_token": csrf_token(codes.get_data(as_text=True))})
    assert done.status_code == 303 and done.headers["Location"] == "/account"
    assert session_of(app, web).acr == "urn:idp:acr:phr"


def test_the_last_passkey_of_an_account_without_password_stays(app, enrolled):
    from idp.models import User

    user, _, web = enrolled
    with app.app_context():
        db.session.get(User, user["id"]).password_hash = None
        db.session.commit()
    [row] = credential_rows(app, user["id"])
    refused = web.post(f"/account/passkeys/{row.id}/delete", data={"csrf_token": web.token()})
    assert refused.status_code == 409 and "only way to sign in" in refused.get_data(as_text=True)
    assert len(credential_rows(app, user["id"])) == 1
    assert passkey_events(app, user["id"], "authn.passkey.removal_refused")


def test_the_last_second_factor_stays_where_mfa_is_required(app, enrolled, monkeypatch):
    user, authenticator, web = enrolled
    [row] = credential_rows(app, user["id"])
    monkeypatch.setitem(app.config, "IDP_SETTINGS", dataclasses.replace(app.config["IDP_SETTINGS"], mfa_required=True))
    # Setting the passkey up proved it, so the password session was raised then: no step-up now.
    assert session_of(app, web).acr == "urn:idp:acr:phr"
    assert web.get("/account/passkeys").status_code == 200
    refused = web.post(f"/account/passkeys/{row.id}/delete", data={"csrf_token": web.token("/account/passkeys")})
    assert refused.status_code == 409 and len(credential_rows(app, user["id"])) == 1
    add_passkey(web, SoftAuthenticator(), name="Spare")
    allowed = web.post(f"/account/passkeys/{row.id}/delete", data={"csrf_token": web.token("/account/passkeys")})
    assert allowed.status_code == 303 and [r.name for r in credential_rows(app, user["id"])] == ["Spare"]


def test_an_issuer_at_an_ip_address_offers_no_passkeys(app, enrolled):
    """Browsers refuse an IP address as RP ID, so the pages must not offer what cannot work."""
    login = Web(app).get("/login").get_data(as_text=True)
    assert "data-passkey" not in login and 'autocomplete="username"' in login
    _, _, web = enrolled
    page = web.get("/account/passkeys").get_data(as_text=True)
    assert "Laptop" in page and 'data-passkey="register"' not in page and "IP address" in page


def test_one_assertion_sent_by_several_threads_signs_in_once(app, live_server, enrolled):
    """The challenge is consumed atomically (DELETE ... RETURNING): of four identical answers sent
    together over real HTTP, one signs in and three are refused."""
    user, authenticator, _ = enrolled
    http = requests.Session()
    token = csrf_token(http.get(f"{live_server}/login?next=/account", timeout=10).text)
    sent = http.post(f"{live_server}/login/passwordless/options", headers={"X-CSRFToken": token}, timeout=10).json()
    form = {"csrf_token": token, "next": "/account", "credential": json.dumps(authenticator.get(sent, live_server))}
    cookies = http.cookies.get_dict()
    barrier = threading.Barrier(4)

    def send(_):
        barrier.wait(timeout=10)
        return requests.post(f"{live_server}/login/passwordless", data=form, cookies=cookies, allow_redirects=False,
                             timeout=30).status_code

    with ThreadPoolExecutor(4) as pool:
        assert sorted(pool.map(send, range(4))) == [303, 400, 400, 400]
    assert failures(app, None)[-3:] == ["unknown_challenge"] * 3


def test_one_second_factor_answer_sent_by_several_threads_counts_once(app, live_server, enrolled):
    user, authenticator, _ = enrolled
    http = requests.Session()
    page = http.get(f"{live_server}/login?acr=urn:idp:acr:phr&next=/account", timeout=10)
    asked = http.post(f"{live_server}/login", data={"csrf_token": csrf_token(page.text), "login": user["username"],
                                                    "password": user["password"]}, allow_redirects=False, timeout=10)
    assert asked.headers["Location"] == "/login/passkey"
    token = csrf_token(http.get(f"{live_server}/login/passkey", timeout=10).text)
    sent = http.post(f"{live_server}/login/passkey/options", headers={"X-CSRFToken": token}, timeout=10).json()
    form = {"csrf_token": token, "credential": json.dumps(authenticator.get(sent, live_server))}
    cookies = http.cookies.get_dict()
    barrier = threading.Barrier(4)

    def send(_):
        barrier.wait(timeout=10)
        return requests.post(f"{live_server}/login/passkey", data=form, cookies=cookies, allow_redirects=False,
                             timeout=30).status_code

    with ThreadPoolExecutor(4) as pool:
        codes = sorted(pool.map(send, range(4)))
    # One signs in; the others find the challenge spent (400) or the login already over (400).
    assert codes == [303, 400, 400, 400]
