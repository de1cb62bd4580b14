"""A completed password reset takes the account back for whoever reads its mailbox: every grant
is revoked (offline_access included), the address counts as verified, and on the first proof of
the mailbox every way to sign in set up before it is removed (pre-account hijacking)."""
from __future__ import annotations

from idp.extensions import db
from idp.models import (AuditEvent, Grant, LinkedIdentity, RecoveryCode, TotpCredential, UpstreamProvider, User,
                        WebAuthnCredential)
from tests.authn.web import Web
from tests.conftest import PASSWORD, unique
from tests.helpers.forms import csrf_token
from tests.helpers.mfa import give_passkey, give_recovery_codes, give_totp
from tests.oauth.flows import assert_token_error, refresh, tokens_for
from tests.users.test_email_links import link_in, local, post_page

NEW = "a brand new passphrase 42"


def reset_through_mail(app, mailbox, email: str, password: str = NEW) -> None:
    web = Web(app)
    page = web.get("/forgot-password").get_data(as_text=True)
    web.post("/forgot-password", data={"csrf_token": csrf_token(page), "login": email})
    path = local(app.config["IDP_SETTINGS"].issuer, link_in(mailbox.last(app, email), "/reset-password/"))
    assert post_page(Web(app), path, password=password).status_code == 200


def count(app, model, user_id: int) -> int:
    with app.app_context():
        return db.session.scalar(db.select(db.func.count()).select_from(model).where(model.user_id == user_id))


def set_verified(app, user_id: int) -> None:
    with app.app_context():
        db.session.get(User, user_id).email_verified = True
        db.session.commit()


def add_linked_identity(app, user_id: int) -> None:
    with app.app_context():
        slug = unique("up")[:20]
        db.session.add(UpstreamProvider(id=slug, display_name="Upstream", kind="oidc", issuer="https://up.example",
                                        client_id="c", client_secret_encrypted="x", scopes="openid"))
        db.session.add(LinkedIdentity(user_id=user_id, provider_id=slug, subject=unique("sub")))
        db.session.commit()


def test_a_reset_revokes_offline_refresh_tokens(app, live_server, make_user, make_client, mailbox):
    user = make_user()
    client = make_client(first_party=True)
    _, _, tokens = tokens_for(live_server, user, client, scope="openid offline_access")
    assert "refresh_token" in tokens
    reset_through_mail(app, mailbox, user["email"])
    assert_token_error(refresh(live_server, client, tokens["refresh_token"]), "invalid_grant")
    with app.app_context():
        live = db.session.scalar(db.select(db.func.count()).select_from(Grant).where(
            Grant.user_id == user["id"], Grant.revoked_at.is_(None)))
        reasons = db.session.scalars(db.select(AuditEvent.details).where(
            AuditEvent.user_id == user["id"], AuditEvent.type == "oauth.grant.revoked")).all()
    assert live == 0 and any(d.get("reason") == "password_reset" for d in reasons)


def test_a_reset_marks_the_address_verified(app, make_user, mailbox):
    user = make_user()
    reset_through_mail(app, mailbox, user["email"])
    with app.app_context():
        assert db.session.get(User, user["id"]).email_verified
        assert db.session.scalar(db.select(AuditEvent.id).where(
            AuditEvent.user_id == user["id"], AuditEvent.type == "users.email.verified")) is not None


def test_a_first_reset_removes_what_was_set_up_before_the_mailbox_was_proved(app, mailbox):
    victim_mail = unique("victim") + "@example.com"
    squatter = Web(app)
    assert squatter.register(unique("squat"), victim_mail, "attacker chosen passphrase 1").status_code == 303
    with app.app_context():
        uid = db.session.scalar(db.select(User.id).where(User.email == victim_mail))
    person = {"id": uid}
    give_passkey(app, person)
    give_totp(app, person)
    give_recovery_codes(app, person)
    add_linked_identity(app, uid)
    reset_through_mail(app, mailbox, victim_mail)
    for model in (WebAuthnCredential, TotpCredential, RecoveryCode, LinkedIdentity):
        assert count(app, model, uid) == 0, model
    assert not squatter.is_signed_in()
    with app.app_context():
        details = db.session.scalar(db.select(AuditEvent.details).where(
            AuditEvent.user_id == uid, AuditEvent.type == "users.credentials.removed"))
    assert details["passkeys"] == 1 and details["totp"] == 1 and details["linked_identities"] == 1


def test_a_reset_of_a_verified_account_keeps_its_factors(app, make_user, mailbox):
    user = make_user()
    set_verified(app, user["id"])
    give_passkey(app, user)
    give_totp(app, user)
    add_linked_identity(app, user["id"])
    reset_through_mail(app, mailbox, user["email"])
    for model in (WebAuthnCredential, TotpCredential, LinkedIdentity):
        assert count(app, model, user["id"]) == 1, model
    response = Web(app).login(user["username"], NEW)
    assert response.status_code == 303 and response.headers["Location"].startswith("/login/")  # a second factor next


def reset_link(app, mailbox, email: str) -> str:
    web = Web(app)
    page = web.get("/forgot-password").get_data(as_text=True)
    web.post("/forgot-password", data={"csrf_token": csrf_token(page), "login": email})
    return local(app.config["IDP_SETTINGS"].issuer, link_in(mailbox.last(app, email), "/reset-password/"))


def refused(app, path: str) -> bool:
    """The link's page is gone, or posting a good password to it is refused."""
    web = Web(app)
    token = csrf_token(web.get("/forgot-password").get_data(as_text=True))
    return web.post(path, data={"csrf_token": token, "password": NEW}).status_code == 410


def test_a_reset_link_to_the_old_address_dies_with_an_email_change(app, make_user, mailbox):
    user = make_user()
    path = reset_link(app, mailbox, user["email"])
    owner = Web(app)
    owner.login(user["username"], PASSWORD)
    new_email = unique("new") + "@example.com"
    page = owner.get("/account/profile").get_data(as_text=True)
    assert owner.post("/account/email", data={"csrf_token": csrf_token(page), "email": new_email,
                                              "current_password": PASSWORD}).status_code == 200
    confirm = local(app.config["IDP_SETTINGS"].issuer, link_in(mailbox.last(app, new_email), "/confirm-email-change/"))
    assert post_page(owner, confirm).status_code == 200
    assert Web(app).get(path).status_code == 410
    assert refused(app, path)
    assert Web(app).login(user["username"], PASSWORD).status_code == 303


def test_a_reset_link_is_refused_once_the_account_has_another_address(app, make_user, mailbox):
    """However the address changed (an administrator, SCIM), a link sent to the old one is refused."""
    user = make_user()
    path = reset_link(app, mailbox, user["email"])
    with app.app_context():
        from idp.users.directory import identifier_key
        row = db.session.get(User, user["id"])
        row.email = unique("moved") + "@example.com"
        row.email_key = identifier_key(row.email)
        db.session.commit()
    assert refused(app, path)
    assert Web(app).login(user["username"], PASSWORD).status_code == 303
