"""`idp users set-password`: an operator sets a password because the account is being recovered or
handed over, so every session of the person ends and every grant is revoked (offline_access ones
too); `--keep-sessions` changes the password alone. Run on the test database beside the live
server, with authlib's client as the app."""
from __future__ import annotations

from idp.models import AuditEvent, SsoSession
from tests.oauth.flows import assert_token_error, refresh, signed_in_browser, tokens_for, userinfo, with_db

NEW = "an operator chosen passphrase 9"


def set_password(idp_cli, user: dict, *options: str):
    return idp_cli("users", "set-password", user["username"], "--password-stdin", *options, input=NEW + "\n")


def sessions_of(app, user: dict) -> int:
    return with_db(app, lambda db: db.session.scalar(db.select(db.func.count()).select_from(SsoSession).where(
        SsoSession.user_id == user["id"])))


def password_changed_events(app, user: dict) -> list[dict]:
    return with_db(app, lambda db: list(db.session.scalars(db.select(AuditEvent.details).where(
        AuditEvent.user_id == user["id"], AuditEvent.type == "users.password.changed"))))


def test_set_password_ends_every_session_and_revokes_every_grant(app, live_server, make_user, make_client, idp_cli):
    user = make_user()
    client = make_client(first_party=True)
    _, thief, stolen = tokens_for(live_server, user, client, scope="openid offline_access")
    owner = signed_in_browser(live_server, user)
    result = set_password(idp_cli, user)
    assert f"password changed for {user['username']}; 2 session(s) ended, 1 grant(s) revoked" in result.output
    assert_token_error(refresh(live_server, client, stolen["refresh_token"]), "invalid_grant")
    response = userinfo(live_server, stolen["access_token"])
    assert response.status_code == 401 and 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert thief.get(f"{live_server}/account").status_code == 302
    assert owner.get(f"{live_server}/account").status_code == 302
    assert sessions_of(app, user) == 0
    assert password_changed_events(app, user) == [{"via": "cli", "sessions_ended": 2, "grants_revoked": 1}]
    assert signed_in_browser(live_server, {**user, "password": NEW})


def test_set_password_with_keep_sessions_changes_only_the_password(app, live_server, make_user, make_client,
                                                                     idp_cli):
    user = make_user()
    client = make_client(first_party=True)
    _, browser, tokens = tokens_for(live_server, user, client, scope="openid offline_access")
    result = set_password(idp_cli, user, "--keep-sessions")
    assert "sessions and grants kept" in result.output
    assert browser.get(f"{live_server}/account").status_code == 200
    assert refresh(live_server, client, tokens["refresh_token"]).status_code == 200
    assert userinfo(live_server, tokens["access_token"]).status_code == 200
    assert sessions_of(app, user) == 1
    assert password_changed_events(app, user) == [{"via": "cli", "sessions_ended": 0, "grants_revoked": 0}]


def test_a_refused_password_ends_nothing(app, live_server, make_user, make_client, idp_cli):
    user = make_user()
    client = make_client(first_party=True)
    _, browser, tokens = tokens_for(live_server, user, client, scope="openid offline_access")
    result = idp_cli("users", "set-password", user["username"], "--password-stdin", input="password1\n", ok=False)
    assert result.exit_code == 1
    assert browser.get(f"{live_server}/account").status_code == 200
    assert refresh(live_server, client, tokens["refresh_token"]).status_code == 200
    assert password_changed_events(app, user) == []
