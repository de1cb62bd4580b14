"""Pairwise subject identifiers (OIDC Core 8.1): one `sub` per (sector, user), the same in the ID
token, UserInfo and the JWT access token, stable across logins, different across sectors."""
import pytest
import requests

from idp.oauth.subjects import pairwise_subject, sector_from_redirect_uris
from tests.helpers.rp import RelyingParty, discovery, verify_access_token, verify_id_token
from tests.oauth.flows import (TIMEOUT, assert_redirect_error, raw_authorize_url, signed_in_browser,
                               tokens_for, userinfo)
from tests.test_cli import Cli


def _pairwise(make_client, host: str, path="/callback", **extra):
    return make_client(first_party=True, redirect_uris=[f"https://{host}{path}"], subject_type="pairwise",
                       sector_identifier=host, **extra)


def _subs(live_server, user, client, browser=None) -> dict:
    """The sub of the ID token, the access token and UserInfo for one code flow."""
    rp, browser, token = tokens_for(live_server, user, client, scope="openid profile", browser=browser)
    info = userinfo(live_server, token["access_token"])
    assert info.status_code == 200
    return {"id_token": verify_id_token(live_server, token["id_token"], client["client_id"], rp.nonce)["sub"],
            "access_token": verify_access_token(live_server, token["access_token"])["sub"],
            "userinfo": info.json()["sub"], "browser": browser, "token": token}


def _one(subs: dict) -> str:
    values = {subs["id_token"], subs["access_token"], subs["userinfo"]}
    assert len(values) == 1, values
    return values.pop()


def test_discovery_advertises_public_and_pairwise(live_server):
    assert discovery(live_server)["subject_types_supported"] == ["public", "pairwise"]


def test_id_token_userinfo_and_access_token_agree_and_hide_the_public_subject(live_server, make_user,
                                                                              make_client):
    user = make_user()
    sub = _one(_subs(live_server, user, _pairwise(make_client, "rp-one.example")))
    assert sub != user["subject"]
    assert len(sub) == 43  # base64url of a 256-bit HMAC, opaque


def test_different_sectors_see_different_subjects(live_server, make_user, make_client):
    user = make_user()
    browser = signed_in_browser(live_server, user)
    first = _one(_subs(live_server, user, _pairwise(make_client, "sector-a.example"), browser))
    second = _one(_subs(live_server, user, _pairwise(make_client, "sector-b.example"), browser))
    assert first != second


def test_clients_of_one_sector_see_the_same_subject(live_server, make_user, make_client):
    user = make_user()
    browser = signed_in_browser(live_server, user)
    first = _one(_subs(live_server, user, _pairwise(make_client, "shared.example", "/a"), browser))
    second = _one(_subs(live_server, user, _pairwise(make_client, "shared.example", "/b"), browser))
    assert first == second


def test_two_users_in_one_sector_get_different_subjects(live_server, make_user, make_client):
    client = _pairwise(make_client, "two-users.example")
    assert _one(_subs(live_server, make_user(), client)) != _one(_subs(live_server, make_user(), client))


def test_pairwise_subject_is_stable_across_logins(live_server, make_user, make_client):
    user = make_user()
    client = _pairwise(make_client, "stable.example")
    first = _one(_subs(live_server, user, client))
    second = _one(_subs(live_server, user, client))  # a new browser: a new sign-in
    assert first == second


def test_sector_defaults_to_the_single_redirect_host(live_server, make_user, make_client):
    """A pairwise client without a stored sector uses the host of its redirect URIs (OIDC Core 8.1)."""
    user = make_user()
    browser = signed_in_browser(live_server, user)
    stored = _one(_subs(live_server, user, _pairwise(make_client, "implicit.example"), browser))
    implicit = make_client(first_party=True, redirect_uris=["https://implicit.example/other"],
                           subject_type="pairwise")
    assert _one(_subs(live_server, user, implicit, browser)) == stored


def test_public_client_sees_the_public_subject(live_server, make_user, make_client):
    user = make_user()
    assert _one(_subs(live_server, user, make_client(first_party=True))) == user["subject"]


def test_client_credentials_token_of_a_pairwise_client_names_the_client(live_server, make_client):
    client = _pairwise(make_client, "machine.example")
    response = requests.post(f"{live_server}/token", data={"grant_type": "client_credentials"},
                             auth=(client["client_id"], client["client_secret"]), timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    assert verify_access_token(live_server, response.json()["access_token"])["sub"] == client["client_id"]


def test_refreshed_access_token_keeps_the_pairwise_subject(live_server, make_user, make_client):
    user = make_user()
    client = _pairwise(make_client, "refresh-sub.example")
    rp, _, token = tokens_for(live_server, user, client, scope="openid offline_access")
    sub = verify_id_token(live_server, token["id_token"], client["client_id"], rp.nonce)["sub"]
    refreshed = requests.post(f"{live_server}/token", data={"grant_type": "refresh_token",
                              "refresh_token": token["refresh_token"]},
                              auth=(client["client_id"], client["client_secret"]), timeout=TIMEOUT)
    assert refreshed.status_code == 200, refreshed.text
    assert verify_access_token(live_server, refreshed.json()["access_token"])["sub"] == sub


def test_id_token_hint_of_a_pairwise_client_matches_the_signed_in_user(live_server, make_user, make_client):
    user = make_user()
    client = _pairwise(make_client, "hint.example")
    subs = _subs(live_server, user, client)
    rp = RelyingParty(live_server, client)
    response = subs["browser"].get(rp.authorization_url(id_token_hint=subs["token"]["id_token"], prompt="none"))
    assert rp.callback_params(response)["code"]


def test_id_token_hint_of_another_user_at_a_pairwise_client_is_login_required(live_server, make_user,
                                                                              make_client):
    alice, bob = make_user(), make_user()
    client = _pairwise(make_client, "hint-other.example")
    hint = _subs(live_server, bob, client)["token"]["id_token"]
    browser = signed_in_browser(live_server, alice)
    response = browser.get(raw_authorize_url(live_server, client, id_token_hint=hint, prompt="none", state="st-p"))
    assert_redirect_error(response, client, live_server, "login_required", "st-p")


def test_id_token_hint_from_another_sector_does_not_match(live_server, make_user, make_client):
    """The hint carries the sub of its own sector; at a client of another sector it names nobody here."""
    user = make_user()
    other = _pairwise(make_client, "hint-sector-a.example")
    client = _pairwise(make_client, "hint-sector-b.example")
    subs = _subs(live_server, user, other)
    response = subs["browser"].get(raw_authorize_url(live_server, client, id_token_hint=subs["token"]["id_token"],
                                                     prompt="none", state="st-s"))
    assert_redirect_error(response, client, live_server, "login_required", "st-s")


def test_pairwise_subject_depends_on_the_secret_key_sector_and_user():
    base = pairwise_subject("k" * 40, "a.example", "user-1")
    assert base == pairwise_subject("k" * 40, "a.example", "user-1")
    assert base != pairwise_subject("j" * 40, "a.example", "user-1")
    assert base != pairwise_subject("k" * 40, "b.example", "user-1")
    assert base != pairwise_subject("k" * 40, "a.example", "user-2")
    # the separator keeps (sector, subject) pairs from running into each other
    assert pairwise_subject("k" * 40, "a.example", "b") != pairwise_subject("k" * 40, "a.exampleb", "")


def test_sector_from_redirect_uris_is_the_single_host():
    assert sector_from_redirect_uris(["https://App.Example/cb", "https://app.example:8443/x"]) == "app.example"
    assert sector_from_redirect_uris(["https://a.example/cb", "https://b.example/cb"]) is None
    assert sector_from_redirect_uris([]) is None


# --- the operator command -----------------------------------------------------------------------
def test_clients_create_pairwise_takes_the_single_redirect_host_as_sector(tmp_path):
    cli = Cli(tmp_path / "instance")
    cli("db", "upgrade")
    made = cli.json("clients", "create", "--name", "P", "--subject-type", "pairwise",
                    "--redirect-uri", "https://App.Example/cb", "--redirect-uri", "https://app.example/other")
    assert (made["subject_type"], made["sector_identifier"]) == ("pairwise", "app.example")
    public = cli.json("clients", "create", "--name", "Q", "--redirect-uri", "https://app.example/cb")
    assert (public["subject_type"], public["sector_identifier"]) == ("public", None)


def test_clients_create_pairwise_on_several_hosts_needs_the_sector_named(tmp_path):
    from idp.models import Client

    cli = Cli(tmp_path / "instance")
    cli("db", "upgrade")
    hosts = ["--redirect-uri", "https://a.example/cb", "--redirect-uri", "https://b.example/cb"]
    refused = cli("clients", "create", "--name", "Multi", "--subject-type", "pairwise", *hosts, ok=False)
    assert refused.exit_code != 0 and "sector" in refused.output
    assert cli.count(Client, Client.client_name == "Multi") == 0
    made = cli.json("clients", "create", "--name", "Multi", "--subject-type", "pairwise", "--sector",
                    "Example.COM", *hosts)
    assert made["sector_identifier"] == "example.com"


@pytest.mark.parametrize("args", [
    ["--sector", "app.example"],                                  # a sector on a public client
    ["--subject-type", "pairwise", "--sector", "not a host"],
    ["--subject-type", "pairwise", "--sector", "https://app.example/"],
    ["--subject-type", "secret"],
], ids=str)
def test_clients_create_refuses_bad_subject_settings(tmp_path, args):
    from idp.models import Client

    cli = Cli(tmp_path / "instance")
    cli("db", "upgrade")
    result = cli("clients", "create", "--name", "Bad", "--redirect-uri", "https://app.example/cb", *args, ok=False)
    assert result.exit_code != 0
    assert cli.count(Client) == 0


def test_native_app_with_a_private_scheme_needs_the_sector_named(tmp_path):
    cli = Cli(tmp_path / "instance")
    cli("db", "upgrade")
    args = ["clients", "create", "--name", "Native", "--public", "--subject-type", "pairwise",
            "--redirect-uri", "com.example.app:/cb"]
    assert cli(*args, ok=False).exit_code != 0
    assert cli.json(*args, "--sector", "app.example.com")["sector_identifier"] == "app.example.com"
