"""RFC 7662 token introspection at /introspect, over real HTTP with authlib's client: every field of
an active token, `{"active": false}` for everything else, confidential clients only, each client
sees its own tokens and a resource server sees every access token, and UserInfo always agrees."""
import json
from datetime import datetime, timedelta, timezone

import pytest
import requests

from idp import clock
from idp.models import Client, Grant, RefreshToken, User
from idp.security.tokens import digest
from tests.helpers.rp import verify_access_token
from tests.oauth.flows import (TIMEOUT, assert_token_error, introspect, refresh, revoke, token_request, tokens_for,
                               userinfo, with_db)

SCOPE = "openid profile offline_access"
INACTIVE = {"active": False}


@pytest.fixture
def issued(live_server, make_user, make_client):
    user = make_user()
    client = make_client(first_party=True)
    _, _, token = tokens_for(live_server, user, client, scope=SCOPE)
    return {"user": user, "client": client, "token": token}


def _ok(response) -> dict:
    """RFC 7662 2.2: 200, a JSON object, never cached (section 4)."""
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers.get("Pragma") == "no-cache"
    return response.json()


def _set(app, model, where, **values):
    def change(db):
        row = db.session.scalar(db.select(model).where(where))
        for key, value in values.items():
            setattr(row, key, value)
    with_db(app, change)


# --- active tokens -------------------------------------------------------------------------------

def test_active_access_token_is_described_with_every_field(live_server, app, issued):
    client, token = issued["client"], issued["token"]
    body = _ok(introspect(live_server, client, token["access_token"], "access_token"))
    claims = verify_access_token(live_server, token["access_token"])
    assert body == {"active": True, "token_type": "Bearer", "scope": claims["scope"], "client_id": client["client_id"],
                    "sub": issued["user"]["subject"], "exp": claims["exp"], "iat": claims["iat"],
                    "aud": live_server, "iss": live_server, "jti": claims["jti"]}
    assert set(body["scope"].split()) == set(SCOPE.split())
    assert body["exp"] - body["iat"] == app.config["IDP_SETTINGS"].token_access_ttl


def test_active_refresh_token_is_described_and_marked_as_a_refresh_token(live_server, app, issued):
    client, token = issued["client"], issued["token"]
    body = _ok(introspect(live_server, client, token["refresh_token"], "refresh_token"))
    row = with_db(app, lambda db: (lambda r: (r.created_at, r.expires_at, r.grant.expires_at))(
        db.session.scalar(db.select(RefreshToken).where(RefreshToken.token_digest == digest(token["refresh_token"])))))
    created, idle_until, grant_until = row
    expected_exp = min(t for t in (idle_until, grant_until) if t is not None)
    assert body == {"active": True, "token_type": "refresh_token", "scope": token["scope"],
                    "client_id": client["client_id"], "sub": issued["user"]["subject"],
                    "iat": int(created.timestamp()), "exp": int(expected_exp.timestamp()),
                    "iss": live_server, "aud": live_server}


def test_client_credentials_token_has_the_client_as_subject(live_server, make_client):
    client = make_client()
    access = token_request(live_server, {"grant_type": "client_credentials", "scope": "profile"},
                           auth=(client["client_id"], client["client_secret"])).json()["access_token"]
    body = _ok(introspect(live_server, client, access))
    assert body["active"] is True and body["sub"] == body["client_id"] == client["client_id"]
    assert body["scope"] == "profile" and body["token_type"] == "Bearer"


def test_client_credentials_token_of_a_deleted_client_is_inactive(live_server, app, make_client):
    doomed = make_client(name="Doomed")
    api = make_client(resource_server=True, grant_types=["client_credentials"])
    access = token_request(live_server, {"grant_type": "client_credentials"},
                           auth=(doomed["client_id"], doomed["client_secret"])).json()["access_token"]
    assert _ok(introspect(live_server, api, access))["active"] is True
    with_db(app, lambda db: db.session.delete(
        db.session.scalar(db.select(Client).where(Client.client_id == doomed["client_id"]))))
    assert _ok(introspect(live_server, api, access)) == INACTIVE


def test_a_deleted_clients_token_stays_inactive_when_its_client_id_is_created_again(live_server, app, make_client,
                                                                                     idp_cli):
    """`idp clients create --client-id` can give a new client the id of a deleted one: the old
    client's client_credentials tokens (which name it only by client_id) must not come back."""
    api = make_client(resource_server=True, grant_types=["client_credentials"])
    doomed = make_client(name="Doomed")
    clock.set_now(clock.now())
    old = token_request(live_server, {"grant_type": "client_credentials"},
                        auth=(doomed["client_id"], doomed["client_secret"])).json()["access_token"]
    idp_cli("clients", "delete", doomed["client_id"])
    clock.advance(1)
    again = json.loads(idp_cli("clients", "create", "--name", "Reborn", "--client-id", doomed["client_id"],
                               "--grant-type", "client_credentials", "--json").output)
    assert _ok(introspect(live_server, api, old)) == INACTIVE
    assert userinfo(live_server, old).status_code == 401
    new = token_request(live_server, {"grant_type": "client_credentials"},
                        auth=(again["client_id"], again["client_secret"])).json()["access_token"]
    assert _ok(introspect(live_server, api, new))["active"] is True


def test_a_client_id_may_not_be_a_persons_subject(live_server, app, make_user, idp_cli):
    """A client_credentials token's `sub` is its client_id: an API would take it for the person."""
    user = make_user()
    refused = idp_cli("clients", "create", "--name", "Impostor", "--client-id", user["subject"],
                      "--grant-type", "client_credentials", ok=False)
    assert refused.exit_code != 0 and "subject of a user" in refused.output
    assert with_db(app, lambda db: db.session.scalar(db.select(Client).where(Client.client_id == user["subject"]))) \
        is None


# --- inactive tokens -----------------------------------------------------------------------------

@pytest.mark.parametrize("token", ["no-such-token", "a.b.c", "x" * 10000, "eyJhbGciOiJub25lIn0.e30.", " "])
def test_unknown_or_malformed_tokens_are_inactive(live_server, issued, token):
    assert _ok(introspect(live_server, issued["client"], token)) == INACTIVE


def test_expired_access_token_is_inactive(live_server, app, issued):
    clock.set_now(datetime.now(timezone.utc) + timedelta(seconds=app.config["IDP_SETTINGS"].token_access_ttl + 1))
    assert _ok(introspect(live_server, issued["client"], issued["token"]["access_token"])) == INACTIVE
    assert _ok(introspect(live_server, issued["client"], issued["token"]["refresh_token"]))["active"] is True


def test_expired_refresh_token_is_inactive(live_server, app, issued):
    clock.set_now(datetime.now(timezone.utc) + timedelta(seconds=app.config["IDP_SETTINGS"].token_refresh_ttl + 1))
    assert _ok(introspect(live_server, issued["client"], issued["token"]["refresh_token"])) == INACTIVE


def test_idle_expired_refresh_token_is_inactive(live_server, app, issued):
    refresh_token = issued["token"]["refresh_token"]
    _set(app, RefreshToken, RefreshToken.token_digest == digest(refresh_token),
         expires_at=datetime.now(timezone.utc) - timedelta(seconds=1))
    assert _ok(introspect(live_server, issued["client"], refresh_token)) == INACTIVE


def test_rotated_refresh_token_is_inactive_and_its_successor_active(live_server, issued):
    client, token = issued["client"], issued["token"]
    renewed = refresh(live_server, client, token["refresh_token"]).json()
    assert _ok(introspect(live_server, client, token["refresh_token"])) == INACTIVE
    assert _ok(introspect(live_server, client, renewed["refresh_token"]))["active"] is True
    assert _ok(introspect(live_server, client, token["access_token"]))["active"] is True  # same live grant


def test_revoked_tokens_are_inactive(live_server, issued):
    client, token = issued["client"], issued["token"]
    revoke(live_server, client, token["access_token"])
    assert _ok(introspect(live_server, client, token["access_token"])) == INACTIVE
    assert _ok(introspect(live_server, client, token["refresh_token"]))["active"] is True
    revoke(live_server, client, token["refresh_token"])
    assert _ok(introspect(live_server, client, token["refresh_token"])) == INACTIVE


def test_an_id_token_is_not_an_active_token(live_server, issued):
    assert _ok(introspect(live_server, issued["client"], issued["token"]["id_token"])) == INACTIVE


@pytest.mark.parametrize("hint", ["refresh_token", "access_token", "id_token", "no-such-type"])
def test_the_hint_never_hides_a_token(live_server, issued, hint):
    client, token = issued["client"], issued["token"]
    assert _ok(introspect(live_server, client, token["access_token"], hint))["token_type"] == "Bearer"
    assert _ok(introspect(live_server, client, token["refresh_token"], hint))["token_type"] == "refresh_token"


# --- one decision for UserInfo and introspection ---------------------------------------------------

def _make_inactive(how, app, issued, live_server):
    token = issued["token"]
    gid = verify_access_token(live_server, token["access_token"])["gid"]
    if how == "revoked access token":
        revoke(live_server, issued["client"], token["access_token"])
    elif how == "revoked grant":
        _set(app, Grant, Grant.id == gid, revoked_at=datetime.now(timezone.utc))
    elif how == "expired grant":
        _set(app, Grant, Grant.id == gid, expires_at=datetime.now(timezone.utc) - timedelta(seconds=1))
    elif how == "disabled account":
        _set(app, User, User.id == issued["user"]["id"], disabled=True)
    elif how == "expired access token":
        clock.set_now(datetime.now(timezone.utc) + timedelta(seconds=app.config["IDP_SETTINGS"].token_access_ttl))


@pytest.mark.parametrize("how", ["still active", "revoked access token", "revoked grant", "expired grant",
                                 "disabled account", "expired access token"])
def test_userinfo_and_introspection_always_agree(live_server, app, issued, how):
    _make_inactive(how, app, issued, live_server)
    access = issued["token"]["access_token"]
    active = _ok(introspect(live_server, issued["client"], access))["active"]
    status = userinfo(live_server, access).status_code
    assert (active, status) == ((True, 200) if how == "still active" else (False, 401))
    if how in ("revoked grant", "expired grant", "disabled account"):
        assert _ok(introspect(live_server, issued["client"], issued["token"]["refresh_token"])) == INACTIVE


# --- who may introspect what ---------------------------------------------------------------------

def test_a_client_cannot_see_another_clients_tokens(live_server, app, issued, make_client):
    other = make_client()
    for kind in ("access_token", "refresh_token"):
        assert _ok(introspect(live_server, other, issued["token"][kind])) == INACTIVE
    assert _ok(introspect(live_server, issued["client"], issued["token"]["access_token"]))["active"] is True


def test_a_resource_server_sees_every_access_token_but_no_refresh_token(live_server, issued, make_client):
    api = make_client(resource_server=True, grant_types=["client_credentials"])
    body = _ok(introspect(live_server, api, issued["token"]["access_token"]))
    assert body["active"] is True and body["client_id"] == issued["client"]["client_id"]
    assert body["sub"] == issued["user"]["subject"]
    assert _ok(introspect(live_server, api, issued["token"]["refresh_token"])) == INACTIVE


def test_a_public_client_may_not_introspect_at_all(live_server, make_user, make_client):
    user = make_user()
    public = make_client(public=True, first_party=True)
    _, _, token = tokens_for(live_server, user, public, scope=SCOPE)
    response = requests.post(f"{live_server}/introspect", data={"token": token["access_token"],
                             "client_id": public["client_id"]}, timeout=TIMEOUT)
    assert_token_error(response, "invalid_client", 401)
    assert_token_error(introspect(live_server, public, token["access_token"]), "invalid_client", 401)


def test_wrong_secret_is_401_invalid_client_with_a_basic_challenge(live_server, issued):
    client = issued["client"]
    response = requests.post(f"{live_server}/introspect", data={"token": issued["token"]["access_token"]},
                             auth=(client["client_id"], client["client_secret"] + "x"), timeout=TIMEOUT)
    assert_token_error(response, "invalid_client", 401)
    assert response.headers["WWW-Authenticate"].startswith("Basic ")
    assert "active" not in response.json()


def test_no_credentials_is_401_invalid_client(live_server, issued):
    response = requests.post(f"{live_server}/introspect", data={"token": issued["token"]["access_token"]},
                             timeout=TIMEOUT)
    assert_token_error(response, "invalid_client", 401)


def test_missing_token_is_invalid_request(live_server, issued):
    client = issued["client"]
    response = requests.post(f"{live_server}/introspect", data={}, auth=(client["client_id"], client["client_secret"]),
                             timeout=TIMEOUT)
    assert_token_error(response, "invalid_request", 400)


def test_introspection_is_post_only_and_not_offered_to_browsers(live_server, issued):
    response = requests.get(f"{live_server}/introspect", params={"token": issued["token"]["access_token"]},
                            headers={"Origin": "https://spa.example"}, timeout=TIMEOUT)
    assert response.status_code == 405
    assert "Access-Control-Allow-Origin" not in response.headers
