"""`idp providers ...`: add each kind, list/show as JSON, enable/disable/delete; the client
secret is stored encrypted and printed never."""
from __future__ import annotations

import json

import pytest

from idp.extensions import db
from idp.federation.providers import decrypt
from idp.models import AuditEvent, UpstreamProvider
from tests.test_cli import Cli

SECRET = "upstream-client-secret-value"


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    tool = Cli(tmp_path_factory.mktemp("providers-cli"))
    tool("db", "upgrade")
    return tool


def stored(cli, provider_id):
    with cli.app.app_context():
        row = db.session.get(UpstreamProvider, provider_id)
        return None if row is None else (row.client_secret_encrypted, decrypt(row.client_secret_encrypted), row.issuer)


def test_add_oidc_prompts_for_the_secret_stores_it_encrypted_and_never_prints_it(cli):
    result = cli("providers", "add-oidc", "--id", "corp", "--name", "Corp SSO", "--issuer", "https://sso.corp.example",
                 "--client-id", "idp-at-corp", "--allow-registration", "--map", "preferred_username=upn",
                 input=SECRET + "\n")
    assert SECRET not in result.stdout
    assert "redirect_uri: http://127.0.0.1:5000/federation/corp/callback" in result.stdout
    encrypted, clear, issuer = stored(cli, "corp")
    assert clear == SECRET and SECRET not in encrypted and issuer == "https://sso.corp.example"
    shown = cli.json("providers", "show", "corp")
    assert shown["claim_mapping"]["preferred_username"] == "upn" and shown["allow_registration"] is True
    assert shown["trust_email_verified"] is False and shown["enabled"] is True
    listed = cli("providers", "list", "--json").stdout
    assert SECRET not in listed and encrypted not in listed and "corp" in json.loads(listed)[0]["id"]
    with cli.app.app_context():
        assert db.session.scalar(db.select(AuditEvent).where(AuditEvent.type == "federation.provider.created")
                                 ).details == {"provider": "corp", "kind": "oidc", "via": "cli"}


def test_presets_fill_in_their_issuers(cli):
    cli("providers", "add-google", "--id", "google", "--client-id", "g", "--client-secret", SECRET,
        "--trust-email-verified")
    cli("providers", "add-microsoft", "--id", "entra", "--tenant", "contoso.onmicrosoft.com", "--client-id", "m",
        "--client-secret", SECRET)
    cli("providers", "add-github", "--id", "github", "--client-id", "gh", "--client-secret", SECRET)
    assert stored(cli, "google")[2] == "https://accounts.google.com"
    assert stored(cli, "entra")[2] == "https://login.microsoftonline.com/contoso.onmicrosoft.com/v2.0"
    github = cli.json("providers", "show", "github")
    assert github["issuer"] == "https://github.com" and github["api_base_url"] == "https://api.github.com"
    assert github["scopes"] == "read:user user:email" and github["claim_mapping"]["preferred_username"] == "login"
    assert cli.json("providers", "show", "google")["trust_email_verified"] is True


@pytest.mark.parametrize("args,message", [
    (("add-oidc", "--id", "plain", "--issuer", "http://sso.example"), "https"),
    (("add-oidc", "--id", "Bad Id", "--issuer", "https://sso.example"), "id must be"),
    (("add-oidc", "--id", "link", "--issuer", "https://sso.example"), "id must be"),
    (("add-microsoft", "--id", "ms", "--tenant", "../evil"), "tenant"),
    (("add-github", "--id", "gh2", "--api-url", "http://api.example"), "https"),
    (("add-oidc", "--id", "mapped", "--issuer", "https://sso.example", "--map", "password_hash=x"), "claim mapping"),
    (("add-oidc", "--id", "levels", "--issuer", "https://sso.example", "--acr-map", "gold=urn:made:up"), "acr"),
])
def test_bad_provider_settings_are_refused_and_nothing_is_stored(cli, args, message):
    result = cli("providers", *args, "--client-id", "x", "--client-secret", SECRET, ok=False)
    assert result.exit_code != 0 and message in result.output
    with cli.app.app_context():
        assert db.session.get(UpstreamProvider, args[2]) is None


def test_a_taken_id_is_refused(cli):
    cli("providers", "add-oidc", "--id", "twice", "--issuer", "https://a.example", "--client-id", "a",
        "--client-secret", SECRET)
    result = cli("providers", "add-oidc", "--id", "twice", "--issuer", "https://b.example", "--client-id", "b",
                 "--client-secret", SECRET, ok=False)
    assert result.exit_code != 0 and "exists already" in result.output
    assert stored(cli, "twice")[2] == "https://a.example"


def test_disable_enable_and_delete(cli):
    cli("providers", "add-oidc", "--id", "toggle", "--issuer", "https://t.example", "--client-id", "t",
        "--client-secret", SECRET)
    cli("providers", "disable", "toggle")
    assert cli.json("providers", "show", "toggle")["enabled"] is False
    cli("providers", "enable", "toggle")
    assert cli.json("providers", "show", "toggle")["enabled"] is True
    cli("providers", "delete", "toggle")
    assert stored(cli, "toggle") is None
    assert "no provider" in cli("providers", "show", "toggle", ok=False).output
