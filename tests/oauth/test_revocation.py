"""RFC 7009 token revocation at /revoke, over real HTTP with authlib's client: access tokens die
alone, refresh tokens take their grant with them, other clients' and unknown tokens are 200 and
change nothing, client authentication is the token endpoint's."""
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session

from idp import clock
from idp.models import AuditEvent, Grant, RevokedToken
from tests.helpers.rp import verify_access_token
from tests.oauth.flows import (TIMEOUT, assert_token_error, count_rows, introspect, is_active, jwt_payload,
                               refresh, revoke, token_request, tokens_for, userinfo, with_db)

SCOPE = "openid profile offline_access"


@pytest.fixture
def issued(live_server, make_user, make_client):
    """A confidential client with an access and a refresh token from one grant."""
    user = make_user()
    client = make_client(first_party=True)
    _, _, token = tokens_for(live_server, user, client, scope=SCOPE)
    assert token["refresh_token"]
    return {"user": user, "client": client, "token": token}


def _events(app, event_type: str, client_id: str) -> list[tuple]:
    """(outcome, user_id, details) of each event of this type about this client, oldest first."""
    return with_db(app, lambda db: [(e.outcome, e.user_id, e.details) for e in db.session.scalars(
        db.select(AuditEvent).where(AuditEvent.type == event_type, AuditEvent.client_id == client_id)
        .order_by(AuditEvent.id))])


def _assert_revoked_ok(response) -> None:
    """RFC 7009 2.2: 200, and nothing in the body a client must read; never cached."""
    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"
    assert response.json() == {}


def _grant_revoked(app, access_token: str) -> bool:
    gid = jwt_payload(access_token)["gid"]
    return with_db(app, lambda db: db.session.get(Grant, gid).revoked_at is not None)


# --- access tokens -------------------------------------------------------------------------------

def test_revoked_access_token_fails_at_userinfo_and_introspects_inactive(live_server, app, issued):
    client, token = issued["client"], issued["token"]
    assert userinfo(live_server, token["access_token"]).status_code == 200
    _assert_revoked_ok(revoke(live_server, client, token["access_token"], "access_token"))
    response = userinfo(live_server, token["access_token"])
    assert response.status_code == 401 and 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert introspect(live_server, client, token["access_token"]).json() == {"active": False}
    claims = verify_access_token(live_server, token["access_token"])
    kept_until = with_db(app, lambda db: db.session.get(RevokedToken, claims["jti"]).expires_at)
    assert int(kept_until.timestamp()) == claims["exp"]  # kept only until the token would expire
    outcome, user_id, details = _events(app, "oauth.token.revoked", client["client_id"])[-1]
    assert (outcome, user_id, details) == ("success", issued["user"]["id"], {"token_type": "access_token"})


def test_revoking_an_access_token_leaves_the_rest_of_the_grant_alone(live_server, app, issued):
    client, token = issued["client"], issued["token"]
    _assert_revoked_ok(revoke(live_server, client, token["access_token"]))
    assert not _grant_revoked(app, token["access_token"])
    assert is_active(live_server, client, token["refresh_token"])
    renewed = refresh(live_server, client, token["refresh_token"])
    assert renewed.status_code == 200
    assert userinfo(live_server, renewed.json()["access_token"]).status_code == 200


def test_revoking_the_same_access_token_again_is_200_and_writes_nothing(live_server, app, issued):
    client, access = issued["client"], issued["token"]["access_token"]
    _assert_revoked_ok(revoke(live_server, client, access))
    before = count_rows(app)
    _assert_revoked_ok(revoke(live_server, client, access))
    assert count_rows(app) == before


def test_racing_revocations_of_one_access_token_all_answer_200(live_server, app, issued):
    client, access = issued["client"], issued["token"]["access_token"]
    with ThreadPoolExecutor(max_workers=6) as pool:
        responses = list(pool.map(lambda _: revoke(live_server, client, access), range(6)))
    for response in responses:
        _assert_revoked_ok(response)
    jti = jwt_payload(access)["jti"]
    assert with_db(app, lambda db: db.session.scalar(db.select(db.func.count()).select_from(RevokedToken)
                                                     .where(RevokedToken.jti == jti))) == 1
    assert userinfo(live_server, access).status_code == 401


def test_client_credentials_access_token_can_be_revoked(live_server, make_client):
    client = make_client()
    response = token_request(live_server, {"grant_type": "client_credentials"},
                             auth=(client["client_id"], client["client_secret"]))
    access = response.json()["access_token"]
    assert is_active(live_server, client, access)
    _assert_revoked_ok(revoke(live_server, client, access))
    assert not is_active(live_server, client, access)


# --- refresh tokens ------------------------------------------------------------------------------

def test_revoked_refresh_token_ends_the_grant_and_its_access_tokens(live_server, app, issued):
    client, token = issued["client"], issued["token"]
    _assert_revoked_ok(revoke(live_server, client, token["refresh_token"], "refresh_token"))
    assert_token_error(refresh(live_server, client, token["refresh_token"]), "invalid_grant")
    assert _grant_revoked(app, token["access_token"])
    assert introspect(live_server, client, token["access_token"]).json() == {"active": False}
    assert introspect(live_server, client, token["refresh_token"]).json() == {"active": False}
    assert userinfo(live_server, token["access_token"]).status_code == 401
    assert [e[2] for e in _events(app, "oauth.token.revoked", client["client_id"])] == [
        {"token_type": "refresh_token"}]
    assert _events(app, "oauth.grant.revoked", client["client_id"])[-1][2] == {"reason": "refresh_token_revoked"}


def test_revoking_a_rotated_refresh_token_still_ends_the_live_grant(live_server, app, issued):
    client, token = issued["client"], issued["token"]
    renewed = refresh(live_server, client, token["refresh_token"]).json()
    _assert_revoked_ok(revoke(live_server, client, token["refresh_token"]))
    assert_token_error(refresh(live_server, client, renewed["refresh_token"]), "invalid_grant")
    assert userinfo(live_server, renewed["access_token"]).status_code == 401


def test_revoking_a_refresh_token_twice_is_200_and_audited_once(live_server, app, issued):
    client, refresh_token = issued["client"], issued["token"]["refresh_token"]
    _assert_revoked_ok(revoke(live_server, client, refresh_token))
    _assert_revoked_ok(revoke(live_server, client, refresh_token))
    assert len(_events(app, "oauth.token.revoked", client["client_id"])) == 1


# --- hints ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind,hint", [("access_token", "refresh_token"), ("refresh_token", "access_token"),
                                       ("access_token", "id_token"), ("refresh_token", "no-such-type")])
def test_a_wrong_or_unknown_hint_does_not_stop_the_revocation(live_server, issued, kind, hint):
    """RFC 7009 2.1: the hint only helps the lookup; the search extends to every type we issue."""
    client, token = issued["client"], issued["token"]
    _assert_revoked_ok(revoke(live_server, client, token[kind], hint))
    assert not is_active(live_server, client, token[kind])


def test_an_id_token_is_unsupported_token_type(live_server, app, issued):
    """RFC 7009 2.2.1: we issue ID tokens but cannot revoke them; the client is told so."""
    client, token = issued["client"], issued["token"]
    before = count_rows(app)
    response = revoke(live_server, client, token["id_token"])
    assert_token_error(response, "unsupported_token_type", 400)
    assert count_rows(app) == before
    assert is_active(live_server, client, token["access_token"])


# --- which tokens a client may revoke ------------------------------------------------------------

def test_another_clients_tokens_are_200_and_stay_active(live_server, app, issued, make_client):
    owner, token = issued["client"], issued["token"]
    other = make_client()
    for kind in ("access_token", "refresh_token"):
        _assert_revoked_ok(revoke(live_server, other, token[kind]))
        assert is_active(live_server, owner, token[kind])
    assert userinfo(live_server, token["access_token"]).status_code == 200
    assert not _grant_revoked(app, token["access_token"])
    refused = _events(app, "oauth.token.revoked", other["client_id"])
    assert [(e[0], e[2]["token_type"], e[2]["reason"]) for e in refused] == [
        ("failure", "access_token", "issued_to_another_client"),
        ("failure", "refresh_token", "issued_to_another_client")]
    assert _events(app, "oauth.token.revoked", owner["client_id"]) == []


@pytest.mark.parametrize("token", ["no-such-token", "a.b.c", "x" * 10000, "eyJhbGciOiJub25lIn0.e30."])
def test_unknown_or_malformed_tokens_are_200_and_change_nothing(live_server, app, issued, token):
    before = count_rows(app)
    _assert_revoked_ok(revoke(live_server, issued["client"], token))
    assert count_rows(app) == before


def test_an_expired_access_token_is_200_and_writes_nothing(live_server, app, issued):
    clock.set_now(datetime.now(timezone.utc) + timedelta(seconds=app.config["IDP_SETTINGS"].token_access_ttl + 1))
    before = count_rows(app)
    _assert_revoked_ok(revoke(live_server, issued["client"], issued["token"]["access_token"]))
    assert count_rows(app) == before


def test_a_forged_access_token_with_another_jti_revokes_nothing(live_server, app, issued):
    access = issued["token"]["access_token"]
    head, body, signature = access.split(".")
    forged = ".".join([head, body[:-4] + ("AAAA" if body[-4:] != "AAAA" else "BBBB"), signature])
    before = count_rows(app)
    _assert_revoked_ok(revoke(live_server, issued["client"], forged))
    assert count_rows(app) == before
    assert is_active(live_server, issued["client"], access)


# --- client authentication -----------------------------------------------------------------------

def test_wrong_secret_is_401_invalid_client_and_revokes_nothing(live_server, app, issued):
    client, token = issued["client"], issued["token"]
    before = count_rows(app)
    response = requests.post(f"{live_server}/revoke", data={"token": token["refresh_token"]},
                             auth=(client["client_id"], client["client_secret"] + "x"), timeout=TIMEOUT)
    assert_token_error(response, "invalid_client", 401)
    assert response.headers["WWW-Authenticate"].startswith("Basic ")
    assert count_rows(app) == before
    assert is_active(live_server, client, token["refresh_token"])


@pytest.mark.parametrize("how", ["nothing", "unknown client", "confidential client_id only",
                                 "post for a basic client"])
def test_a_client_that_does_not_authenticate_as_registered_is_refused(live_server, app, issued, how):
    client, token = issued["client"], issued["token"]
    data, auth = {"token": token["refresh_token"]}, None
    if how == "unknown client":
        auth = ("no-such-client", "secret")
    elif how == "confidential client_id only":
        data["client_id"] = client["client_id"]
    elif how == "post for a basic client":
        data.update(client_id=client["client_id"], client_secret=client["client_secret"])
    response = requests.post(f"{live_server}/revoke", data=data, auth=auth, timeout=TIMEOUT)
    assert_token_error(response, "invalid_client", 401)
    assert is_active(live_server, client, token["refresh_token"])


def test_client_secret_post_client_revokes_with_its_own_method(live_server, make_client):
    client = make_client(token_endpoint_auth_method="client_secret_post")
    credentials = {"client_id": client["client_id"], "client_secret": client["client_secret"]}
    access = token_request(live_server, {"grant_type": "client_credentials", **credentials}).json()["access_token"]
    by_basic = requests.post(f"{live_server}/revoke", data={"token": access},
                             auth=(client["client_id"], client["client_secret"]), timeout=TIMEOUT)
    assert_token_error(by_basic, "invalid_client", 401)
    session = OAuth2Session(client["client_id"], client["client_secret"],
                            revocation_endpoint_auth_method="client_secret_post")
    _assert_revoked_ok(session.revoke_token(f"{live_server}/revoke", token=access))
    assert introspect(live_server, {**client, "public": True}, access).status_code == 401  # no secret: refused
    by_post = requests.post(f"{live_server}/introspect", data={"token": access, **credentials}, timeout=TIMEOUT)
    assert by_post.json() == {"active": False}


def test_public_client_revokes_its_own_tokens_with_its_client_id(live_server, app, make_user, make_client):
    user = make_user()
    client = make_client(public=True, first_party=True)
    _, _, token = tokens_for(live_server, user, client, scope=SCOPE)
    _assert_revoked_ok(revoke(live_server, client, token["access_token"]))
    assert userinfo(live_server, token["access_token"]).status_code == 401
    _assert_revoked_ok(revoke(live_server, client, token["refresh_token"]))
    assert_token_error(refresh(live_server, client, token["refresh_token"]), "invalid_grant")


def test_public_client_cannot_revoke_a_confidential_clients_token(live_server, app, issued, make_client):
    public = make_client(public=True)
    _assert_revoked_ok(revoke(live_server, public, issued["token"]["refresh_token"]))
    assert is_active(live_server, issued["client"], issued["token"]["refresh_token"])


# --- the request itself --------------------------------------------------------------------------

def test_missing_token_is_invalid_request(live_server, issued):
    client = issued["client"]
    for data in ({}, {"token": ""}, {"token_type_hint": "access_token"}):
        response = requests.post(f"{live_server}/revoke", data=data,
                                 auth=(client["client_id"], client["client_secret"]), timeout=TIMEOUT)
        assert_token_error(response, "invalid_request", 400)


def test_revocation_is_post_only(live_server, issued):
    response = requests.get(f"{live_server}/revoke", params={"token": issued["token"]["access_token"]},
                            timeout=TIMEOUT)
    assert response.status_code == 405
    assert is_active(live_server, issued["client"], issued["token"]["access_token"])


def test_browser_apps_may_call_revocation_across_origins(live_server):
    response = requests.options(f"{live_server}/revoke", timeout=TIMEOUT, headers={
        "Origin": "https://spa.example", "Access-Control-Request-Method": "POST"})
    assert response.status_code in (200, 204)
    assert response.headers.get("Access-Control-Allow-Origin") == "*"
    assert "POST" in response.headers.get("Access-Control-Allow-Methods", "")
