"""The last second factor stays while an app that requires two factors (a client with
require_mfa) is connected: consented to, or holding a live grant for the person."""
from __future__ import annotations

from datetime import timedelta

import pytest

from idp import clock
from idp.extensions import db
from idp.models import AuditEvent, Client, Grant, TotpCredential, User, WebAuthnCredential
from idp.oauth import consent
from idp.security.tokens import random_token
from tests.authn.test_passkeys import add_passkey
from tests.authn.web import Web
from tests.helpers.authenticator import SoftAuthenticator
from tests.helpers.forms import csrf_token
from tests.helpers.mfa import code_at, give_totp


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
