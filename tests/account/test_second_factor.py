"""The last second factor stays while an app that requires two factors (a client with
require_mfa) is connected: consented to, or holding a live grant for the person; and the last
passkey of an account without a password stays. Also when two removals race: one wins, the
other gets the refusal page."""
from __future__ import annotations

from datetime import timedelta

import pytest
import requests

from idp import clock
from idp.extensions import db
from idp.models import AuditEvent, Client, Grant, SsoSession, TotpCredential, User, WebAuthnCredential
from idp.oauth import consent
from idp.security.tokens import random_token
from tests.authn.test_passkeys import add_passkey
from tests.authn.web import Web
from tests.helpers.authenticator import SoftAuthenticator
from tests.helpers.forms import csrf_token
from tests.helpers.mfa import code_at, give_passkey, give_totp
from tests.helpers.races import at_once


def _signed_in_with_totp(app, user) -> Web:
    secret = give_totp(app, user)
    web = Web(app)
    assert web.login(user["username"], user["password"]).headers["Location"] == "/login/totp"
    page = web.get("/login/totp").get_data(as_text=True)
    assert web.post("/login/totp", data={"csrf_token": csrf_token(page), "code": code_at(secret)}).status_code == 303
    return web


def _consent(app, user, client_id: str) -> None:
    with app.app_context():
        client = db.session.scalar(db.select(Client).where(Client.client_id == client_id))
        consent.record(db.session.get(User, user["id"]), client, "openid")
        db.session.commit()


def _grant(app, user, client_id: str, *, revoked=False, expired=False) -> None:
    with app.app_context():
        client = db.session.scalar(db.select(Client).where(Client.client_id == client_id))
        t = clock.now()
        db.session.add(Grant(id=random_token(16)[:32], client_id=client.id, user_id=user["id"], scope="openid",
                             auth_time=int(t.timestamp()), created_at=t,
                             expires_at=t - timedelta(seconds=1) if expired else t + timedelta(days=1),
                             revoked_at=t if revoked else None))
        db.session.commit()


def _count(app, model, user) -> int:
    with app.app_context():
        return len(db.session.scalars(db.select(model).where(model.user_id == user["id"])).all())


def _refusals(app, user, kind: str) -> list[dict]:
    with app.app_context():
        return [e.details for e in db.session.scalars(db.select(AuditEvent).where(
            AuditEvent.user_id == user["id"], AuditEvent.type == kind))]


def _remove_totp(web):
    return web.post("/account/security/totp/remove", data={"csrf_token": web.token("/account/security")})


@pytest.mark.parametrize("connect", ["consent", "grant"])
def test_the_app_stays_while_a_connected_app_requires_two_factors(app, make_user, make_client, connect):
    user = make_user()
    client = make_client(require_mfa=True, name="Payroll")
    web = _signed_in_with_totp(app, user)
    (_consent if connect == "consent" else _grant)(app, user, client["client_id"])
    refused = _remove_totp(web)
    assert refused.status_code == 409
    assert "Payroll requires two-step sign-in" in refused.get_data(as_text=True)
    assert _count(app, TotpCredential, user) == 1
    assert _refusals(app, user, "account.totp.remove_refused")[-1] == {"reason": "last_factor",
                                                                       "required_by": client["client_id"]}


def test_the_app_can_go_once_that_app_is_disconnected(app, make_user, make_client):
    user = make_user()
    client = make_client(require_mfa=True, name="Payroll")
    web = _signed_in_with_totp(app, user)
    _consent(app, user, client["client_id"])
    assert _remove_totp(web).status_code == 409
    revoked = web.post(f"/account/apps/{client['client_id']}/revoke", data={"csrf_token": web.token("/account/apps")})
    assert revoked.status_code == 303
    assert _remove_totp(web).status_code == 303 and _count(app, TotpCredential, user) == 0


@pytest.mark.parametrize("grant", [{"revoked": True}, {"expired": True}])
def test_a_revoked_or_expired_grant_does_not_hold_the_factor(app, make_user, make_client, grant):
    user = make_user()
    client = make_client(require_mfa=True)
    web = _signed_in_with_totp(app, user)
    _grant(app, user, client["client_id"], **grant)
    assert _remove_totp(web).status_code == 303 and _count(app, TotpCredential, user) == 0


def test_an_app_without_the_requirement_does_not_hold_the_factor(app, make_user, make_client):
    user = make_user()
    client = make_client()
    web = _signed_in_with_totp(app, user)
    _consent(app, user, client["client_id"])
    assert _remove_totp(web).status_code == 303


def test_another_second_factor_lets_the_app_go(app, make_user, make_client):
    user = make_user()
    client = make_client(require_mfa=True)
    web = _signed_in_with_totp(app, user)
    _consent(app, user, client["client_id"])
    assert add_passkey(web, SoftAuthenticator()).status_code in (200, 303)
    assert _remove_totp(web).status_code == 303


def test_the_last_passkey_stays_while_a_connected_app_requires_two_factors(app, make_user, make_client):
    user = make_user()
    client = make_client(require_mfa=True, name="Payroll")
    web = Web(app)
    web.login(user["username"], user["password"])
    add_passkey(web, SoftAuthenticator())
    _consent(app, user, client["client_id"])
    with app.app_context():
        [row] = db.session.scalars(db.select(WebAuthnCredential).where(WebAuthnCredential.user_id == user["id"]))
        credential = row.id
    refused = web.post(f"/account/passkeys/{credential}/delete", data={"csrf_token": web.token("/account/passkeys")})
    assert refused.status_code == 409 and "Payroll requires two-step sign-in" in refused.get_data(as_text=True)
    assert _count(app, WebAuthnCredential, user) == 1
    assert _refusals(app, user, "authn.passkey.removal_refused")[-1]["required_by"] == client["client_id"]


# --- removals at the same moment (over real HTTP, threads against the live server) -------------

ROUNDS = 3


def _signed_in_over_http(live_server, user) -> requests.Session:
    http = requests.Session()
    token = csrf_token(http.get(f"{live_server}/login?next=/account", timeout=10).text)
    signed_in = http.post(f"{live_server}/login", data={"csrf_token": token, "login": user["username"],
                                                        "password": user["password"]},
                          allow_redirects=False, timeout=30)
    assert signed_in.headers["Location"] == "/account"
    return http


def _as_if_two_factors(app, user) -> None:
    """The factors here are stored directly, so the password session is raised as if it had
    proved one of them (changes need two factors from someone who has a second)."""
    with app.app_context():
        for row in db.session.scalars(db.select(SsoSession).where(SsoSession.user_id == user["id"])):
            row.acr, row.amr = "urn:idp:acr:mfa", ["pwd", "otp", "mfa"]
            row.proofs = [["password", ["pwd"], 1], ["totp", ["otp"], 1]]
        db.session.commit()


def _remover(http, live_server, path: str, page: str):
    token = csrf_token(http.get(f"{live_server}{page}", timeout=10).text)
    return lambda: http.post(f"{live_server}{path}", data={"csrf_token": token}, allow_redirects=False, timeout=30)


def _remove_totp_over(http, live_server):
    return _remover(http, live_server, "/account/security/totp/remove", "/account/security")


def _remove_passkey_over(http, live_server, credential: int):
    return _remover(http, live_server, f"/account/passkeys/{credential}/delete", "/account/passkeys")


def _one_wins(responses) -> None:
    statuses = [r.status_code for r in responses]
    assert sorted(statuses) == [303, 409], statuses  # never both, never a 500
    refused = next(r for r in responses if r.status_code == 409)
    assert "two-step sign-in" in refused.text or "only way to sign in" in refused.text, refused.text[:500]


def test_removing_the_app_and_the_last_passkey_at_once_leaves_one_of_them(app, live_server, make_user,
                                                                          make_client):
    client = make_client(require_mfa=True, name="Payroll")
    for _ in range(ROUNDS):
        user = make_user()
        http = _signed_in_over_http(live_server, user)
        give_totp(app, user)
        credential = give_passkey(app, user)
        _consent(app, user, client["client_id"])
        _as_if_two_factors(app, user)
        _one_wins(at_once([_remove_totp_over(http, live_server),
                           _remove_passkey_over(http, live_server, credential)]))
        assert _count(app, TotpCredential, user) + _count(app, WebAuthnCredential, user) == 1
        assert len(_refusals(app, user, "account.totp.remove_refused")
                   + _refusals(app, user, "authn.passkey.removal_refused")) == 1


def test_removing_the_last_two_passkeys_at_once_leaves_one(app, live_server, make_user, make_client):
    client = make_client(require_mfa=True, name="Payroll")
    for _ in range(ROUNDS):
        user = make_user()
        http = _signed_in_over_http(live_server, user)
        first, second = give_passkey(app, user, "Laptop"), give_passkey(app, user, "Phone")
        _consent(app, user, client["client_id"])
        _as_if_two_factors(app, user)
        _one_wins(at_once([_remove_passkey_over(http, live_server, first),
                           _remove_passkey_over(http, live_server, second)]))
        assert _count(app, WebAuthnCredential, user) == 1
        assert _refusals(app, user, "authn.passkey.removal_refused")[-1]["required_by"] == client["client_id"]


def test_removing_both_passkeys_of_an_account_without_password_at_once_leaves_one(app, live_server, make_user):
    for _ in range(ROUNDS):
        user = make_user()
        http = _signed_in_over_http(live_server, user)
        first, second = give_passkey(app, user, "Laptop"), give_passkey(app, user, "Phone")
        with app.app_context():
            db.session.get(User, user["id"]).password_hash = None  # signs in with passkeys only
            db.session.commit()
        _as_if_two_factors(app, user)
        _one_wins(at_once([_remove_passkey_over(http, live_server, first),
                           _remove_passkey_over(http, live_server, second)]))
        assert _count(app, WebAuthnCredential, user) == 1
        assert _refusals(app, user, "authn.passkey.removal_refused")[-1]["required_by"] == "last_way_in"


def test_a_double_clicked_passkey_removal_removes_it_once_and_refuses_nothing(app, live_server, make_user,
                                                                              make_client):
    """The second click waits for the first: it finds the passkey gone (no error, or "does not
    exist" when it looked after the first committed), never "your last passkey" for the other."""
    client = make_client(require_mfa=True)
    user = make_user()
    http = _signed_in_over_http(live_server, user)
    first, _ = give_passkey(app, user, "Laptop"), give_passkey(app, user, "Phone")
    _consent(app, user, client["client_id"])
    _as_if_two_factors(app, user)
    remove = _remove_passkey_over(http, live_server, first)
    statuses = sorted(r.status_code for r in at_once([remove, remove]))
    assert statuses in ([303, 303], [303, 404]), statuses
    assert _count(app, WebAuthnCredential, user) == 1 and not _refusals(app, user, "authn.passkey.removal_refused")
