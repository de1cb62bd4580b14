"""Pairwise subject identifiers (OIDC Core 8.1): one `sub` per (sector, user), the same in the ID
token, UserInfo and the JWT access token, stable across logins, different across sectors; and a
client's sector, like its subject type, never changes once it exists."""
import pytest
import requests

from idp.extensions import db
from idp.models import User
from idp.oauth.clients import ClientRejected, find_client, set_subject_type
from idp.oauth.initial_tokens import issue_initial_access_token
from idp.oauth.subjects import pairwise_subject, sector_from_redirect_uris, subject_for
from tests.helpers.rp import RelyingParty, discovery, verify_access_token, verify_id_token
from tests.oauth.flows import (TIMEOUT, assert_redirect_error, raw_authorize_url, refresh, signed_in_browser,
                               tokens_for, userinfo, with_db)
from tests.oauth.test_registration import (REDIRECT, as_rp_client, assert_registration_error, client_row,
                                           configure, events, register)
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


@pytest.mark.parametrize("redirect_uris", [
    ["com.attacker.app://victim-rp.example/cb"],                           # the app wrote that host itself
    ["https://victim-rp.example/cb", "com.attacker.app:/cb"],              # its codes may go to the app
    ["http://127.0.0.1:9999/cb"], ["http://localhost:9999/cb"], ["http://[::1]:9999/cb"],
    ["https://127.0.0.1/cb"], ["https://localhost/cb"], ["https://app.localhost/cb"],  # every machine's own
], ids=str)
def test_a_host_nobody_has_to_own_is_no_sector(redirect_uris):
    from idp.oauth.subjects import derived_sector

    assert sector_from_redirect_uris(redirect_uris) is None
    assert derived_sector("the-client", redirect_uris) == "client:the-client"


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


@pytest.mark.parametrize("redirect_uri", [
    "com.example.app:/cb",
    "com.attacker.app://victim-rp.example/cb",  # a host in a private-use scheme proves nothing
    "http://127.0.0.1:8765/cb",                  # nor does loopback, where every native app listens
    "http://localhost:8765/cb",
], ids=str)
def test_native_app_with_a_private_scheme_or_loopback_needs_the_sector_named(tmp_path, redirect_uri):
    from idp.models import Client

    cli = Cli(tmp_path / "instance")
    cli("db", "upgrade")
    args = ["clients", "create", "--name", "Native", "--public", "--subject-type", "pairwise",
            "--redirect-uri", redirect_uri]
    refused = cli(*args, ok=False)
    assert refused.exit_code != 0 and "--sector" in refused.output
    assert cli.count(Client) == 0
    assert cli.json(*args, "--sector", "app.example.com")["sector_identifier"] == "app.example.com"


# --- a registered client keeps its sector and subject type (RFC 7592 updates) -------------------
def _register(app, live_server, **metadata) -> dict:
    with app.app_context():
        _, token = issue_initial_access_token(3600, "pairwise test")
        db.session.commit()
    response = register(live_server, {"redirect_uris": [REDIRECT], "grant_types": ["authorization_code",
                                      "refresh_token"], "scope": "openid offline_access", **metadata}, token)
    assert response.status_code == 201, response.text
    return response.json()


def _update(registered: dict, **metadata) -> requests.Response:
    """RFC 7592 2.2: PUT the whole metadata to registration_client_uri with the registration token."""
    body = {"client_id": registered["client_id"], "grant_types": registered["grant_types"],
            "scope": registered["scope"], "redirect_uris": registered["redirect_uris"],
            "subject_type": registered["subject_type"], **metadata}
    return configure("PUT", registered["registration_client_uri"], registered["registration_access_token"], body)


def _signed_in(live_server, user, registered) -> tuple[dict, dict]:
    """A code flow for the registered client: its tokens, and the sub of its ID token (checked against /jwks)."""
    client = as_rp_client(registered)
    rp, _, token = tokens_for(live_server, user, client, scope="openid offline_access")
    return token, verify_id_token(live_server, token["id_token"], client["client_id"], rp.nonce)["sub"]


def _sub_elsewhere(app, user: dict, client_id: str) -> str:
    with app.app_context():
        return subject_for(db.session.get(User, user["id"]), find_client(client_id))


HOME = "https://rp-home.example/cb"


def test_a_pairwise_client_cannot_move_its_redirect_uris_to_another_sector(app, live_server, make_user,
                                                                           make_client):
    """The client holds tokens, so it needs no code delivered on the new host: moving there would
    let UserInfo tell it the other sector's `sub` (OIDC Core 8.1), unlike its ID token's (5.3.2)."""
    user = make_user()
    registered = _register(app, live_server, subject_type="pairwise", redirect_uris=[HOME])
    other_sector = make_client(redirect_uris=["https://sector-victim.example/cb"], subject_type="pairwise",
                               sector_identifier="sector-victim.example")
    token, sub = _signed_in(live_server, user, registered)
    before = client_row(app, registered["client_id"])
    assert before["sector_identifier"] == "rp-home.example"

    response = _update(registered, redirect_uris=["https://sector-victim.example/cb"])
    assert_registration_error(response, "invalid_redirect_uri", "redirect_uris")
    assert "rp-home.example" in response.json()["error_description"]  # names the host it must stay on
    assert client_row(app, registered["client_id"]) == before
    refused = events(app, "oauth.registration.refused")[-1]
    assert refused["client_id"] == registered["client_id"] and refused["details"]["reason"] == "sector_changed"

    info = userinfo(live_server, token["access_token"])
    assert info.status_code == 200 and info.json()["sub"] == sub
    assert sub != _sub_elsewhere(app, user, other_sector["client_id"])
    refreshed = refresh(live_server, as_rp_client(registered), token["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    assert verify_access_token(live_server, refreshed.json()["access_token"])["sub"] == sub
    assert userinfo(live_server, refreshed.json()["access_token"]).json()["sub"] == sub


@pytest.mark.parametrize("redirect_uris", [
    [HOME, "https://sector-victim.example/cb"],           # several hosts: no sector at all
    ["https://www.rp-home.example/cb"],                    # another name
    [HOME, "com.attacker.app://rp-home.example/cb"],       # an app that writes the host into its scheme
    [HOME, "http://127.0.0.1:9999/callback"],              # any native app on the person's machine
], ids=["adds-a-host", "another-name", "adds-a-private-scheme", "adds-loopback"])
def test_a_pairwise_client_cannot_add_or_rename_its_host(app, live_server, redirect_uris):
    registered = _register(app, live_server, subject_type="pairwise", redirect_uris=[HOME])
    before = client_row(app, registered["client_id"])
    response = _update(registered, redirect_uris=redirect_uris)
    assert response.status_code == 400 and response.json()["error"] in ("invalid_redirect_uri",
                                                                       "invalid_client_metadata")
    assert client_row(app, registered["client_id"]) == before


@pytest.mark.parametrize("registered_as, change", [
    ("public", {"subject_type": "pairwise"}),
    ("public", {"subject_type": "pairwise", "redirect_uris": ["https://sector-victim.example/cb"]}),
    ("pairwise", {"subject_type": "public"}),
    ("pairwise", {"subject_type": None}),  # left out of the PUT: the default, public (RFC 7592 2.2)
], ids=["to-pairwise", "to-pairwise-elsewhere", "to-public", "omitted"])
def test_the_subject_type_cannot_change_after_registration(app, live_server, make_user, registered_as, change):
    user = make_user()
    registered = _register(app, live_server, subject_type=registered_as)
    token, sub = _signed_in(live_server, user, registered)
    before = client_row(app, registered["client_id"])
    body = {"client_id": registered["client_id"], "grant_types": registered["grant_types"],
            "scope": registered["scope"], "redirect_uris": registered["redirect_uris"], **change}
    response = configure("PUT", registered["registration_client_uri"], registered["registration_access_token"],
                         {k: v for k, v in body.items() if v is not None})
    assert_registration_error(response, "invalid_client_metadata", "subject_type")
    assert client_row(app, registered["client_id"]) == before
    assert events(app, "oauth.registration.refused")[-1]["details"]["reason"] == "subject_type_changed"
    assert userinfo(live_server, token["access_token"]).json()["sub"] == sub


def test_a_pairwise_client_may_change_its_redirect_uris_on_its_own_host(app, live_server, make_user):
    user = make_user()
    registered = _register(app, live_server, subject_type="pairwise", redirect_uris=[HOME])
    token, sub = _signed_in(live_server, user, registered)
    moved = ["https://rp-home.example:8443/elsewhere", "https://rp-home.example/callback"]
    response = _update(registered, redirect_uris=moved, client_name="Renamed")
    assert response.status_code == 200, response.text
    assert response.json()["redirect_uris"] == moved and response.json()["subject_type"] == "pairwise"
    assert client_row(app, registered["client_id"])["sector_identifier"] == "rp-home.example"
    assert userinfo(live_server, token["access_token"]).json()["sub"] == sub
    _, again = _signed_in(live_server, user, {**registered, "redirect_uris": moved[1:]})
    assert again == sub


# --- a sector comes only from a host the client must own ----------------------------------------
def test_a_private_use_scheme_naming_a_host_does_not_join_that_hosts_sector(app, live_server, make_user,
                                                                            make_client):
    """Any app may register `com.attacker.app://victim-rp.example/cb`: the host in it proves
    nothing, so the client gets a sector of its own, never victim-rp's `sub` for a person."""
    user = make_user()
    victim = _pairwise(make_client, "victim-rp.example")
    registered = _register(app, live_server, subject_type="pairwise",
                           redirect_uris=["com.attacker.app://victim-rp.example/cb"])
    assert client_row(app, registered["client_id"])["sector_identifier"] == f"client:{registered['client_id']}"
    token, sub = _signed_in(live_server, user, registered)
    assert sub != _sub_elsewhere(app, user, victim["client_id"])
    assert sub != user["subject"] and userinfo(live_server, token["access_token"]).json()["sub"] == sub


def test_a_private_use_scheme_beside_a_host_does_not_join_that_hosts_sector(app, live_server, make_user,
                                                                            make_client):
    """The victim's https URI alone would deliver the codes to the victim; beside the app's own
    scheme, the codes may go to the app, so the host is no sector for it either."""
    user = make_user()
    victim = _pairwise(make_client, "victim-rp2.example")
    registered = _register(app, live_server, subject_type="pairwise",
                           redirect_uris=["com.attacker.app:/cb", "https://victim-rp2.example/callback"])
    assert client_row(app, registered["client_id"])["sector_identifier"] == f"client:{registered['client_id']}"
    _, sub = _signed_in(live_server, user, registered)
    assert sub != _sub_elsewhere(app, user, victim["client_id"])


def test_native_apps_on_loopback_do_not_share_a_sector(app, live_server, make_user):
    """Every native app listens on 127.0.0.1: two of them must not be able to link a person."""
    user = make_user()
    first = _register(app, live_server, subject_type="pairwise", redirect_uris=["http://127.0.0.1:9999/callback"])
    second = _register(app, live_server, subject_type="pairwise", redirect_uris=["http://127.0.0.1:8888/cb"])
    assert _signed_in(live_server, user, first)[1] != _signed_in(live_server, user, second)[1]
    assert _signed_in(live_server, user, first)[1] == _signed_in(live_server, user, first)[1]  # stable


def test_a_client_in_a_sector_of_its_own_may_change_its_redirect_uris(app, live_server, make_user, make_client):
    """Its `sub` is no one else's whatever its redirect URIs, so moving them reads nobody's."""
    user = make_user()
    registered = _register(app, live_server, subject_type="pairwise")  # loopback: a sector of its own
    other_sector = make_client(redirect_uris=["https://sector-victim.example/cb"], subject_type="pairwise",
                               sector_identifier="sector-victim.example")
    token, sub = _signed_in(live_server, user, registered)
    response = _update(registered, redirect_uris=["https://sector-victim.example/cb"])
    assert response.status_code == 200, response.text
    assert client_row(app, registered["client_id"])["sector_identifier"] == f"client:{registered['client_id']}"
    assert userinfo(live_server, token["access_token"]).json()["sub"] == sub
    assert sub != _sub_elsewhere(app, user, other_sector["client_id"])


def test_a_public_client_may_move_to_another_host(app, live_server, make_user):
    """A public `sub` is the same for every client, so the host does not change it."""
    user = make_user()
    registered = _register(app, live_server)
    token, sub = _signed_in(live_server, user, registered)
    response = _update(registered, redirect_uris=["https://moved.example/cb"])
    assert response.status_code == 200, response.text
    assert userinfo(live_server, token["access_token"]).json()["sub"] == sub == user["subject"]


def test_an_existing_clients_subject_type_and_sector_cannot_be_set_again(app, make_client):
    """The one function that sets them (`idp clients create`) refuses a client already stored."""
    made = make_client(redirect_uris=["https://fixed.example/cb"])
    with app.app_context():
        client = find_client(made["client_id"])
        for subject_type, sector in (("pairwise", None), ("pairwise", "other.example"), ("public", None)):
            with pytest.raises(ClientRejected, match="fixed when it was created"):
                set_subject_type(client, subject_type, sector)
        assert (client.subject_type, client.sector_identifier) == ("public", None)


def test_a_client_registered_before_the_rule_keeps_its_sector_but_cannot_update(app, live_server, make_user):
    """Stored clients are not migrated: one given the sector 127.0.0.1 keeps seeing the same `sub`
    values, and no update can keep its loopback redirect URIs in that sector."""
    from idp.models import Client

    user = make_user()
    registered = _register(app, live_server, subject_type="pairwise")

    def as_before(_db):
        _db.session.scalar(_db.select(Client).where(Client.client_id == registered["client_id"])) \
            .sector_identifier = "127.0.0.1"
    with_db(app, as_before)
    _, sub = _signed_in(live_server, user, registered)
    assert sub == pairwise_subject(app.config["IDP_SETTINGS"].secret_key, "127.0.0.1", user["subject"])
    response = _update(registered, client_name="Renamed")
    assert_registration_error(response, "invalid_redirect_uri", "redirect_uris")
    assert events(app, "oauth.registration.refused")[-1]["details"]["reason"] == "sector_changed"
    assert client_row(app, registered["client_id"])["sector_identifier"] == "127.0.0.1"
