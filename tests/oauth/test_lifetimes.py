"""Per-client token lifetimes with global defaults: access token `exp` and `expires_in`, ID token
`exp`, the refresh family's absolute limit and each refresh token's idle limit (pinned clock)."""
from datetime import datetime, timedelta, timezone

import pytest

from idp import clock
from idp.oauth.clients import ClientRejected, find_client, set_token_lifetimes
from tests.helpers.rp import verify_access_token, verify_id_token
from tests.oauth.flows import assert_token_error, refresh, tokens_for
from tests.test_cli import Cli


def _pin():
    clock.set_now(datetime.now(timezone.utc).replace(microsecond=0))


def _offline(live_server, user, client):
    rp, _, token = tokens_for(live_server, user, client, scope="openid offline_access")
    assert "refresh_token" in token
    return rp, token


def _ok(response) -> dict:
    assert response.status_code == 200, response.text
    return response.json()


def test_default_client_gets_the_global_lifetimes(live_server, app, make_user, make_client):
    settings = app.config["IDP_SETTINGS"]
    client = make_client(first_party=True)
    rp, token = _offline(live_server, make_user(), client)
    access = verify_access_token(live_server, token["access_token"])
    id_claims = verify_id_token(live_server, token["id_token"], client["client_id"], rp.nonce)
    assert token["expires_in"] == access["exp"] - access["iat"] == settings.token_access_ttl
    assert id_claims["exp"] - id_claims["iat"] == settings.token_id_ttl


def test_per_client_access_and_id_token_lifetimes(live_server, make_user, make_client):
    client = make_client(first_party=True, access_token_ttl=120, id_token_ttl=3600)
    rp, token = _offline(live_server, make_user(), client)
    access = verify_access_token(live_server, token["access_token"])
    id_claims = verify_id_token(live_server, token["id_token"], client["client_id"], rp.nonce)
    assert token["expires_in"] == access["exp"] - access["iat"] == 120
    assert id_claims["exp"] - id_claims["iat"] == 3600
    refreshed = _ok(refresh(live_server, client, token["refresh_token"]))
    again = verify_access_token(live_server, refreshed["access_token"])
    assert refreshed["expires_in"] == again["exp"] - again["iat"] == 120


def test_per_client_access_lifetime_applies_to_client_credentials(live_server, make_client):
    import requests

    client = make_client(access_token_ttl=45)
    response = requests.post(f"{live_server}/token", data={"grant_type": "client_credentials"},
                             auth=(client["client_id"], client["client_secret"]), timeout=10)
    body = _ok(response)
    access = verify_access_token(live_server, body["access_token"])
    assert body["expires_in"] == access["exp"] - access["iat"] == 45


def test_refresh_token_unused_past_its_idle_limit_is_invalid_grant(live_server, make_user, make_client):
    client = make_client(first_party=True, refresh_token_idle_ttl=600)
    _pin()
    _, token = _offline(live_server, make_user(), client)
    clock.advance(601)
    assert_token_error(refresh(live_server, client, token["refresh_token"]), "invalid_grant")


def test_each_rotation_restarts_the_idle_limit(live_server, make_user, make_client):
    client = make_client(first_party=True, refresh_token_idle_ttl=600)
    _pin()
    _, token = _offline(live_server, make_user(), client)
    for _ in range(3):  # 1500 s in all, more than the idle limit, but never 600 s unused
        clock.advance(500)
        token = _ok(refresh(live_server, client, token["refresh_token"]))
    clock.advance(599)
    _ok(refresh(live_server, client, token["refresh_token"]))


def test_refresh_family_past_its_absolute_limit_is_invalid_grant(live_server, make_user, make_client):
    client = make_client(first_party=True, refresh_token_ttl=3600, refresh_token_idle_ttl=3000)
    _pin()
    _, token = _offline(live_server, make_user(), client)
    clock.advance(2000)
    token = _ok(refresh(live_server, client, token["refresh_token"]))  # idle until 5000 s, absolute 3600 s
    clock.advance(1601)
    assert_token_error(refresh(live_server, client, token["refresh_token"]), "invalid_grant")


def test_refresh_family_just_inside_its_absolute_limit_still_works(live_server, make_user, make_client):
    client = make_client(first_party=True, refresh_token_ttl=3600, refresh_token_idle_ttl=3000)
    _pin()
    _, token = _offline(live_server, make_user(), client)
    clock.advance(2000)
    token = _ok(refresh(live_server, client, token["refresh_token"]))
    clock.advance(1599)
    _ok(refresh(live_server, client, token["refresh_token"]))


def test_global_idle_limit_applies_without_a_client_value(live_server, app, make_user, make_client):
    idle = app.config["IDP_SETTINGS"].token_refresh_idle_ttl
    client = make_client(first_party=True)
    _pin()
    _, token = _offline(live_server, make_user(), client)
    clock.advance(idle + 1)
    assert_token_error(refresh(live_server, client, token["refresh_token"]), "invalid_grant")


def test_idle_limit_never_outlives_a_short_absolute_limit(live_server, make_user, make_client):
    """A client with a 300 s family and the global 14-day idle limit: the token ends at 300 s."""
    client = make_client(first_party=True, refresh_token_ttl=300)
    _pin()
    _, token = _offline(live_server, make_user(), client)
    clock.advance(301)
    assert_token_error(refresh(live_server, client, token["refresh_token"]), "invalid_grant")


# --- validation ------------------------------------------------------------------------------------
@pytest.mark.parametrize("values", [
    {"access_token_ttl": 0}, {"access_token_ttl": -5}, {"access_token_ttl": 86401}, {"id_token_ttl": 86401},
    {"refresh_token_ttl": 367 * 86400}, {"access_token_ttl": True}, {"id_token_ttl": "60"},
    {"refresh_token_ttl": 600, "refresh_token_idle_ttl": 601}, {"refresh_token_idle_ttl": 40 * 86400},
    {"code_ttl": 60},
], ids=str)
def test_unacceptable_lifetimes_are_refused(app, make_client, values):
    client_id = make_client()["client_id"]
    with app.app_context():
        client = find_client(client_id)
        with pytest.raises(ClientRejected):
            set_token_lifetimes(client, **values)
        assert client.access_token_ttl is None and client.refresh_token_idle_ttl is None


def test_idle_limit_is_checked_against_a_stored_absolute_limit(app, make_client):
    client_id = make_client(refresh_token_ttl=600)["client_id"]
    with app.app_context():
        with pytest.raises(ClientRejected, match="idle"):
            set_token_lifetimes(find_client(client_id), refresh_token_idle_ttl=900)


def test_acceptable_lifetimes_are_stored(app, make_client):
    from idp.extensions import db

    client_id = make_client()["client_id"]
    with app.app_context():
        client = find_client(client_id)
        set_token_lifetimes(client, access_token_ttl=3600, id_token_ttl=60, refresh_token_ttl=7200,
                            refresh_token_idle_ttl=7200)
        db.session.commit()
    with app.app_context():
        client = find_client(client_id)
        assert (client.access_token_ttl, client.id_token_ttl, client.refresh_token_ttl,
                client.refresh_token_idle_ttl) == (3600, 60, 7200, 7200)


def test_a_retired_key_stays_published_for_the_longest_client_access_lifetime(tmp_path):
    """A client whose access tokens live a day keeps a retired key in the JWKS for that day."""
    cli = Cli(tmp_path / "instance")
    cli("db", "upgrade")
    cli("clients", "create", "--name", "Long", "--grant-type", "client_credentials", "--access-token-ttl", "86400")
    _pin()
    old = [k["kid"] for k in cli.json("keys", "list")]
    cli("keys", "rotate", "--now")
    clock.advance(2 * 3600)  # far past the global access and ID lifetimes (600 s)
    assert set(old) <= {k["kid"] for k in cli.json("keys", "list")}
    clock.advance(86400)
    assert not set(old) & {k["kid"] for k in cli.json("keys", "list")}


def test_expires_in_matches_exp_after_time_passes(live_server, make_user, make_client):
    client = make_client(first_party=True, access_token_ttl=300)
    clock.set_now(datetime.now(timezone.utc) - timedelta(seconds=1000))
    _, token = _offline(live_server, make_user(), client)
    access = verify_access_token(live_server, token["access_token"])
    assert access["exp"] == int(clock.now().timestamp()) + 300


def test_clients_create_takes_the_lifetimes_and_refuses_bad_ones(tmp_path):
    from idp.models import Client

    cli = Cli(tmp_path / "instance")
    cli("db", "upgrade")
    made = cli.json("clients", "create", "--name", "Timed", "--redirect-uri", "https://timed.example/cb",
                    "--access-token-ttl", "120", "--id-token-ttl", "300", "--refresh-token-ttl", "86400",
                    "--refresh-token-idle-ttl", "3600")
    assert (made["access_token_ttl"], made["id_token_ttl"], made["refresh_token_ttl"],
            made["refresh_token_idle_ttl"]) == (120, 300, 86400, 3600)
    for bad in (["--access-token-ttl", "0"], ["--id-token-ttl", "90000"],
                ["--refresh-token-ttl", "600", "--refresh-token-idle-ttl", "700"]):
        result = cli("clients", "create", "--name", "Bad", "--redirect-uri", "https://bad.example/cb", *bad, ok=False)
        assert result.exit_code != 0 and "ttl" in result.output
    assert cli.count(Client, Client.client_name == "Bad") == 0
