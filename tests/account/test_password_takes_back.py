"""A new password takes the account back: with "Sign out everywhere else" (ticked at first) every
other session ends and every grant not issued in this browser's session is revoked, offline_access
included, so a thief's refresh and access tokens stop working at once; the apps the owner uses in
this very session keep theirs. Over real HTTP, with authlib's client as the apps."""
from __future__ import annotations

import re

from idp.models import AuditEvent, SsoSession
from tests.helpers.forms import csrf_token
from tests.oauth.flows import assert_token_error, refresh, signed_in_browser, tokens_for, userinfo, with_db

NEW = "a fresh passphrase for the owner 7"
PAGE = "/account/security/password"


def box_is_ticked(html: str) -> bool:
    box = re.search(r'<input type="checkbox" name="end_other_sessions"[^>]*>', html)
    assert box, "the page has no end_other_sessions box"
    return re.search(r"\schecked[\s>]", box.group(0)) is not None


def change_password(issuer: str, browser, current: str, tick: bool | None = None, new: str = NEW):
    """Submit the page's form as a browser does: the box is sent when ticked (as the page renders
    it, unless `tick` says otherwise)."""
    page = browser.get(issuer + PAGE)
    assert page.status_code == 200
    data = {"csrf_token": csrf_token(page.text), "current_password": current, "new_password": new}
    if box_is_ticked(page.text) if tick is None else tick:
        data["end_other_sessions"] = "1"
    return browser.post(issuer + PAGE, data=data)


def assert_rejected_at_userinfo(issuer: str, access_token: str) -> None:
    response = userinfo(issuer, access_token)
    assert response.status_code == 401, response.status_code
    assert response.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')


def details(app, user: dict, event: str) -> list[dict]:
    return with_db(app, lambda db: list(db.session.scalars(db.select(AuditEvent.details).where(
        AuditEvent.user_id == user["id"], AuditEvent.type == event).order_by(AuditEvent.id))))


def sessions_of(app, user: dict) -> int:
    return with_db(app, lambda db: db.session.scalar(db.select(db.func.count()).select_from(SsoSession).where(
        SsoSession.user_id == user["id"])))


def test_a_new_password_ends_the_thief_s_session_and_offline_tokens_but_keeps_this_session_s_app(
        app, live_server, make_user, make_client):
    user = make_user()
    client = make_client(first_party=True)
    _, thief, stolen = tokens_for(live_server, user, client, scope="openid offline_access")
    owner = signed_in_browser(live_server, user)
    _, _, own = tokens_for(live_server, user, client, scope="openid offline_access", browser=owner)
    before = refresh(live_server, client, stolen["refresh_token"])  # works until the owner acts
    assert before.status_code == 200
    stolen = before.json()
    assert change_password(live_server, owner, user["password"]).status_code == 303  # the box as the page has it
    # The thief: signed out, the refresh token is dead, the access token too (its grant is revoked).
    assert thief.get(f"{live_server}/account").status_code == 302
    assert_token_error(refresh(live_server, client, stolen["refresh_token"]), "invalid_grant")
    assert_rejected_at_userinfo(live_server, stolen["access_token"])
    # The owner: still signed in here, and the app used in this session keeps working.
    assert owner.get(f"{live_server}/account").status_code == 200
    assert userinfo(live_server, own["access_token"]).status_code == 200
    renewed = refresh(live_server, client, own["refresh_token"])
    assert renewed.status_code == 200, renewed.text
    assert userinfo(live_server, renewed.json()["access_token"]).status_code == 200
    assert sessions_of(app, user) == 1
    assert details(app, user, "account.password.changed") == [{"other_sessions_ended": 1, "grants_revoked": 1}]
    revoked = details(app, user, "oauth.grant.revoked")
    assert [d["reason"] for d in revoked] == ["password_changed"]


def test_the_box_is_ticked_at_first_and_unticking_it_keeps_other_sessions_and_their_apps(
        app, live_server, make_user, make_client):
    """Documented choice: the person may keep their other devices signed in (nothing is revoked)."""
    user = make_user()
    client = make_client(first_party=True)
    _, other, tokens = tokens_for(live_server, user, client, scope="openid offline_access")
    owner = signed_in_browser(live_server, user)
    assert box_is_ticked(owner.get(live_server + PAGE).text)
    assert change_password(live_server, owner, user["password"], tick=False).status_code == 303
    assert other.get(f"{live_server}/account").status_code == 200
    assert userinfo(live_server, tokens["access_token"]).status_code == 200
    assert refresh(live_server, client, tokens["refresh_token"]).status_code == 200
    assert sessions_of(app, user) == 2
    assert details(app, user, "account.password.changed") == [{"other_sessions_ended": 0, "grants_revoked": 0}]
    assert details(app, user, "oauth.grant.revoked") == []


def test_a_refused_change_keeps_the_box_as_the_person_left_it(live_server, make_user):
    user = make_user()
    owner = signed_in_browser(live_server, user)
    for tick in (False, True):
        refused = change_password(live_server, owner, "not the password", tick=tick)
        assert refused.status_code == 400 and box_is_ticked(refused.text) is tick
