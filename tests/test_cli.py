"""The operator command `idp`: help on every command, db, seed-demo, clients, users, keys, audit.

Commands run in-process through click's CliRunner (the installed entry point is checked once),
against a development instance of their own: a temporary instance folder and SQLite file."""
from __future__ import annotations

import contextvars
import json
import os
import stat
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from flask.globals import _cv_app

from idp import create_app
from idp.cli import main
from idp.config import SETTINGS, from_env
from idp.extensions import db
from idp.models import Client, OutboxMessage, SigningKey, SsoSession, User
from idp.oauth.clients import find_client
from idp.security.passwords import breached_passwords
from idp.security.tokens import digest
from tests.helpers.forms import csrf_token

PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "a different long passphrase"
BREACHED = "password1"
ISSUER = "http://127.0.0.1:5000"


class Cli:
    """Runs `idp ...` in-process with an environment of its own, and opens the same database."""

    def __init__(self, instance: Path):
        self.instance = instance
        self.env = {name: None for name in SETTINGS}  # nothing leaks in from the caller's environment
        self.env.update({"IDP_ENV": "development", "IDP_INSTANCE_PATH": str(instance),
                         "IDP_DATABASE_URL": f"sqlite:///{instance / 'cli.sqlite'}", "IDP_LOG_LEVEL": "WARNING",
                         "IDP_OUTBOX_WORKER": "off"})  # no worker thread in the test process
        self.runner = CliRunner()
        self._app = None

    def __call__(self, *args: str, input: str | None = None, ok: bool = True):
        """Run one command; the app context it pushes is popped, so nothing leaks into other tests."""
        def run():
            outer = _cv_app.get(None)
            result = self.runner.invoke(main, list(args), input=input, env=self.env)
            while (ctx := _cv_app.get(None)) is not None and ctx is not outer:
                db.engine.dispose()
                ctx.pop()
            return result
        result = contextvars.copy_context().run(run)
        if ok:
            assert result.exit_code == 0, (args, result.output, result.exception)
        return result

    def json(self, *args: str, input: str | None = None):
        return json.loads(self(*args, "--json", input=input).stdout)

    @property
    def app(self):
        """An app on the CLI's database, for checking what the commands wrote."""
        if self._app is None:
            environ = {k: v for k, v in self.env.items() if v is not None}
            self._app = create_app(from_env(environ))
        return self._app

    def count(self, model, *where) -> int:
        with self.app.app_context():
            return db.session.scalar(db.select(db.func.count()).select_from(model).where(*where))


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    tool = Cli(tmp_path_factory.mktemp("cli-instance"))
    tool("db", "upgrade")
    return tool


@pytest.fixture
def fresh_cli(tmp_path):
    tool = Cli(tmp_path / "instance")
    tool("db", "upgrade")
    return tool


def new_user(cli, username, password=PASSWORD):
    return cli.json("users", "create", "--username", username, "--email", f"{username}@example.test",
                    "--password-stdin", input=password + "\n")


def sign_in(cli, login, password):
    """Sign in through the login page of an app on the CLI's database; returns the test client."""
    web = cli.app.test_client()
    page = web.get("/login", base_url=ISSUER)
    response = web.post("/login", base_url=ISSUER, data={"csrf_token": csrf_token(page.get_data(as_text=True)),
                                                         "login": login, "password": password})
    return web, response


def check_secret(cli, client_id, secret) -> bool:
    with cli.app.app_context():
        return find_client(client_id).check_client_secret(secret)


# --- help ------------------------------------------------------------------------------------
def command_paths(group=main, prefix=()):
    for name, command in sorted(group.commands.items()):
        yield prefix + (name,)
        if isinstance(command, click.Group):
            yield from command_paths(command, prefix + (name,))


@pytest.mark.parametrize("path", [()] + list(command_paths()), ids=lambda p: " ".join(p) or "idp")
def test_every_command_has_help(cli, path):
    result = cli(*path, "--help")
    assert result.stdout.startswith("Usage: ") and "--help" in result.stdout


def test_the_documented_commands_exist():
    paths = {" ".join(p) for p in command_paths()}
    assert {"serve", "db upgrade", "seed-demo", "clients create", "clients list", "clients show",
            "clients delete", "clients rotate-secret", "users create", "users list", "users disable",
            "users enable", "users set-password", "keys rotate", "keys list", "audit list",
            "providers add-oidc", "providers add-google", "providers add-microsoft", "providers add-github",
            "providers list", "providers show", "providers disable", "providers enable", "providers delete"} <= paths


def test_the_installed_idp_command_runs():
    idp = Path(sys.executable).with_name("idp")
    result = subprocess.run([str(idp), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "clients" in result.stdout and "users" in result.stdout


# --- db and seed-demo ------------------------------------------------------------------------
def test_db_upgrade_twice_is_fine(fresh_cli):
    again = fresh_cli("db", "upgrade")
    assert "latest revision" in again.stdout


def test_seed_demo_twice_prints_the_same_clients_and_secret_and_adds_nothing(fresh_cli):
    first = fresh_cli("seed-demo").stdout
    second = fresh_cli("seed-demo").stdout
    assert first == second
    assert "client_id=demo-confidential" in first and "client_id=demo-public" in first
    assert f"Issuer:          {ISSUER}" in first and f"{ISSUER}/.well-known/openid-configuration" in first
    secret = first.split("client_secret=", 1)[1].split()[0]
    assert check_secret(fresh_cli, "demo-confidential", secret)
    clients = fresh_cli.json("clients", "list")
    assert sorted(c["client_id"] for c in clients) == ["demo-confidential", "demo-public"]
    for client in clients:
        assert all(uri.startswith(("http://127.0.0.1:", "http://localhost:")) for uri in client["redirect_uris"])
    assert {c["client_id"]: c["type"] for c in clients} == {"demo-confidential": "confidential",
                                                           "demo-public": "public"}
    assert fresh_cli.count(SigningKey) == 1
    secret_file = fresh_cli.instance / "demo_client_secret"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600


# --- clients ---------------------------------------------------------------------------------
def test_clients_create_public_has_no_secret_and_requires_pkce(cli):
    client = cli.json("clients", "create", "--name", "SPA", "--public", "--redirect-uri",
                      "http://127.0.0.1:8080/cb", "--redirect-uri", "com.example.app:/cb")
    assert client["type"] == "public" and client["token_endpoint_auth_method"] == "none"
    assert "client_secret" not in client and client["require_pkce"] is True
    assert client["redirect_uris"] == ["http://127.0.0.1:8080/cb", "com.example.app:/cb"]
    with cli.app.app_context():
        assert find_client(client["client_id"]).client_secret_digest is None


def test_clients_create_confidential_prints_the_secret_once_and_stores_a_digest(cli):
    result = cli("clients", "create", "--name", "Web app", "--redirect-uri", "https://app.example.test/cb")
    assert "Store the client_secret now" in result.output
    client = cli.json("clients", "create", "--name", "Web app", "--redirect-uri", "https://app.example.test/cb",
                      "--first-party", "--grant-type", "authorization_code", "--grant-type", "refresh_token")
    secret = client["client_secret"]
    assert client["type"] == "confidential" and client["first_party"] is True and len(secret) >= 32
    assert client["grant_types"] == ["authorization_code", "refresh_token"]
    with cli.app.app_context():
        stored = find_client(client["client_id"])
        assert stored.client_secret_digest == digest(secret) != secret
        assert stored.check_client_secret(secret) and not stored.check_client_secret(secret + "x")
    shown = cli.json("clients", "show", client["client_id"])
    assert "client_secret" not in shown and secret not in json.dumps(shown)


def test_clients_create_with_require_mfa(cli):
    client = cli.json("clients", "create", "--name", "Payroll", "--redirect-uri", "https://app.example.test/cb",
                      "--require-mfa")
    assert client["require_mfa"] is True
    with cli.app.app_context():
        assert find_client(client["client_id"]).require_mfa is True
    plain = cli.json("clients", "create", "--name", "Wiki", "--redirect-uri", "https://app.example.test/cb")
    assert plain["require_mfa"] is False


@pytest.mark.parametrize("uri", [
    "https://app.example.test/cb#fragment",
    "https://*.example.test/cb",
    "https://app.example.test/*",
    "http://app.example.test/cb",
    "http://localhost.evil.example/cb",
    "javascript:alert(1)",
    "javascript://app.example.test/%0aalert(1)",
    "data:text/html,hi",
    "/relative/cb",
    "",
    "https://bank.example.test@evil.example.test/cb",  # reads as the bank, goes elsewhere
    'https://app.example.test/cb?x="<b>',
    "https://app.example.test/c\x01b",
])
def test_clients_create_rejects_a_bad_redirect_uri_and_writes_nothing(cli, uri):
    before = cli.count(Client)
    result = cli("clients", "create", "--name", "Bad", "--redirect-uri", uri, ok=False)
    assert result.exit_code == 1 and "redirect URI" in result.output
    assert cli.count(Client) == before


def test_clients_create_rejects_a_taken_client_id(cli):
    cli("clients", "create", "--name", "First", "--client-id", "taken-id", "--redirect-uri", "https://a.example.test/cb")
    result = cli("clients", "create", "--name", "Second", "--client-id", "taken-id",
                 "--redirect-uri", "https://b.example.test/cb", ok=False)
    assert result.exit_code == 1 and "exists already" in result.output
    assert cli.count(Client, Client.client_id == "taken-id") == 1


def test_clients_list_and_show_print_json(cli):
    made = cli.json("clients", "create", "--name", "Listed", "--redirect-uri", "https://listed.example.test/cb")
    listed = {c["client_id"]: c for c in cli.json("clients", "list")}
    assert listed[made["client_id"]]["client_name"] == "Listed"
    assert all("client_secret" not in c for c in listed.values())
    shown = cli.json("clients", "show", made["client_id"])
    assert shown == {k: v for k, v in made.items() if k != "client_secret"}


def test_clients_show_of_an_unknown_client_fails(cli):
    result = cli("clients", "show", "no-such-client", ok=False)
    assert result.exit_code == 1 and "no client" in result.output


def test_clients_rotate_secret_makes_the_old_secret_useless(cli):
    made = cli.json("clients", "create", "--name", "Rotating", "--redirect-uri", "https://r.example.test/cb")
    rotated = cli.json("clients", "rotate-secret", made["client_id"])
    assert rotated["client_id"] == made["client_id"] and rotated["client_secret"] != made["client_secret"]
    assert not check_secret(cli, made["client_id"], made["client_secret"])
    assert check_secret(cli, made["client_id"], rotated["client_secret"])


def test_clients_set_logo_stores_a_png_and_refuses_svg(cli, tmp_path):
    import base64
    made = cli.json("clients", "create", "--name", "Logo", "--redirect-uri", "https://logo.example.test/cb")
    png = tmp_path / "logo.png"
    png.write_bytes(base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="))
    svg = tmp_path / "logo.svg"
    svg.write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    assert "logo set" in cli("clients", "set-logo", made["client_id"], str(png)).output
    result = cli("clients", "set-logo", made["client_id"], str(svg), ok=False)
    assert result.exit_code == 1 and "PNG, JPEG, GIF or WebP" in result.output
    with cli.app.app_context():
        assert find_client(made["client_id"]).logo_content_type == "image/png"
    cli("clients", "set-logo", made["client_id"], "--remove")
    with cli.app.app_context():
        assert find_client(made["client_id"]).logo_image is None


def test_clients_rotate_secret_of_a_public_client_fails(cli):
    made = cli.json("clients", "create", "--name", "Public", "--public", "--redirect-uri", "http://[::1]:8080/cb")
    result = cli("clients", "rotate-secret", made["client_id"], ok=False)
    assert result.exit_code == 1 and "no secret" in result.output
    with cli.app.app_context():
        assert find_client(made["client_id"]).client_secret_digest is None


def test_clients_create_resource_server_is_confidential_and_may_introspect_every_access_token(cli):
    api = cli.json("clients", "create", "--name", "API", "--grant-type", "client_credentials", "--resource-server")
    plain = cli.json("clients", "create", "--name", "App", "--redirect-uri", "https://app.example.test/cb")
    assert api["resource_server"] is True and plain["resource_server"] is False
    with cli.app.app_context():
        assert find_client(api["client_id"]).resource_server is True
    before = cli.count(Client)
    result = cli("clients", "create", "--name", "SPA", "--public", "--resource-server",
                 "--redirect-uri", "http://127.0.0.1:8080/cb", ok=False)
    assert result.exit_code == 1 and "confidential" in result.output
    assert cli.count(Client) == before


def test_clients_delete_removes_the_client(cli):
    made = cli.json("clients", "create", "--name", "Doomed", "--redirect-uri", "https://d.example.test/cb")
    assert made["client_id"] in cli("clients", "delete", made["client_id"]).stdout
    assert cli.count(Client, Client.client_id == made["client_id"]) == 0
    assert cli("clients", "show", made["client_id"], ok=False).exit_code == 1
    assert cli("clients", "delete", made["client_id"], ok=False).exit_code == 1


# --- users -----------------------------------------------------------------------------------
def test_users_create_reads_the_password_from_stdin_and_prints_no_secret(cli):
    user = new_user(cli, "stdin-user")
    assert user["username"] == "stdin-user" and user["disabled"] is False and user["subject"]
    assert PASSWORD not in json.dumps(user) and "password" not in json.dumps(user)
    _, response = sign_in(cli, "stdin-user", PASSWORD)
    assert response.status_code == 303


def test_users_create_rejects_a_breached_password_and_writes_nothing(cli):
    assert BREACHED in breached_passwords()
    result = cli("users", "create", "--username", "breached-user", "--email", "breached@example.test",
                 "--password-stdin", input=BREACHED + "\n", ok=False)
    assert result.exit_code == 1 and "leaked" in result.output
    assert cli.count(User, User.username == "breached-user") == 0


def test_users_list_prints_json_without_password_hashes(cli):
    new_user(cli, "listed-user")
    users = cli.json("users", "list")
    assert "listed-user" in {u["username"] for u in users}
    assert all(set(u) == {"subject", "username", "email", "disabled", "created_at"} for u in users)


def test_users_disable_ends_sessions_and_blocks_sign_in_and_enable_restores_it(cli):
    new_user(cli, "disabled-user")
    web, response = sign_in(cli, "disabled-user", PASSWORD)
    assert response.status_code == 303
    with cli.app.app_context():
        user_id = db.session.scalar(db.select(User.id).where(User.username == "disabled-user"))
    assert cli.count(SsoSession, SsoSession.user_id == user_id) == 1
    cli("users", "disable", "disabled-user")
    assert cli.count(SsoSession, SsoSession.user_id == user_id) == 0
    account = web.get("/account", base_url=ISSUER)
    assert account.status_code == 302 and "/login" in account.headers["Location"]
    assert sign_in(cli, "disabled-user", PASSWORD)[1].status_code == 400
    assert {u["username"]: u["disabled"] for u in cli.json("users", "list")}["disabled-user"] is True
    cli("users", "enable", "disabled-user@example.test")
    assert sign_in(cli, "disabled-user", PASSWORD)[1].status_code == 303


def test_users_set_password_replaces_the_password_and_tells_the_person(cli):
    new_user(cli, "renamed-pw")
    notices = cli.count(OutboxMessage, OutboxMessage.payload["template"].as_string() == "security_changed")
    cli("users", "set-password", "renamed-pw", "--password-stdin", input=NEW_PASSWORD + "\r\n")  # a CRLF line too
    assert sign_in(cli, "renamed-pw", PASSWORD)[1].status_code == 400
    assert sign_in(cli, "renamed-pw", NEW_PASSWORD)[1].status_code == 303
    assert cli.count(OutboxMessage, OutboxMessage.payload["template"].as_string() == "security_changed") \
        == notices + 1  # queued for `idp worker`, which delivers it


def test_users_set_password_rejects_a_breached_password_and_keeps_the_old_one(cli):
    new_user(cli, "kept-pw")
    with cli.app.app_context():
        before = db.session.scalar(db.select(User.password_hash).where(User.username == "kept-pw"))
    result = cli("users", "set-password", "kept-pw", "--password-stdin", input=BREACHED + "\n", ok=False)
    assert result.exit_code == 1 and "leaked" in result.output
    with cli.app.app_context():
        assert db.session.scalar(db.select(User.password_hash).where(User.username == "kept-pw")) == before


def test_users_commands_on_an_unknown_login_fail(cli):
    for command in (("users", "disable", "nobody"), ("users", "enable", "nobody"),
                    ("users", "set-password", "nobody", "--password-stdin")):
        result = cli(*command, input=NEW_PASSWORD + "\n", ok=False)
        assert result.exit_code == 1 and "no user" in result.output


# --- keys ------------------------------------------------------------------------------------
def test_keys_rotate_now_adds_an_active_key_and_keeps_the_old_one_published(fresh_cli):
    fresh_cli("seed-demo")
    [first] = fresh_cli.json("keys", "list")
    assert first["active"] is True and first["alg"] == "RS256" and first["state"] == "signing"
    rotated = fresh_cli("keys", "rotate", "--now").stdout
    keys = fresh_cli.json("keys", "list")
    assert len(keys) == 2 and [k["active"] for k in keys].count(True) == 1
    active = next(k for k in keys if k["active"])
    assert active["kid"] != first["kid"] and active["kid"] in rotated
    assert {k["kid"] for k in keys if k["state"] == "retired"} == {first["kid"]}
    with fresh_cli.app.app_context():
        from idp.keys import keyring
        assert keyring().default.kid == active["kid"]
        assert {k["kid"] for k in json.loads(keyring().jwks_json)["keys"]} == {first["kid"], active["kid"]}


def test_keys_rotate_publishes_first_and_signs_after_the_cache_window(fresh_cli):
    from idp import clock
    fresh_cli("seed-demo")
    [first] = fresh_cli.json("keys", "list")
    fresh_cli("keys", "rotate")
    keys = fresh_cli.json("keys", "list")
    staged = next(k for k in keys if k["kid"] != first["kid"])
    assert staged["state"] == "next" and staged["activates_at"]
    assert next(k for k in keys if k["kid"] == first["kid"])["state"] == "signing"
    with fresh_cli.app.app_context():
        from idp.keys import keyring, publish_lead
        ring = keyring()
        assert ring.default.kid == first["kid"]
        assert {k["kid"] for k in json.loads(ring.jwks_json)["keys"]} == {first["kid"], staged["kid"]}
        lead = publish_lead(fresh_cli.app.config["IDP_SETTINGS"])
        assert lead >= 60 + fresh_cli.app.config["IDP_SETTINGS"].keys_cache_seconds  # the JWKS max-age too
        clock.set_now(clock.now() + timedelta(seconds=lead - 2))
        assert keyring().default.kid == first["kid"]  # a relying party may still hold a JWKS without the new key
        clock.set_now(clock.now() + timedelta(seconds=3))
        assert keyring().default.kid == staged["kid"]  # the ring reloads at the switch, not a cache period later
    states = {k["kid"]: k["state"] for k in fresh_cli.json("keys", "list")}
    assert states == {first["kid"]: "retired", staged["kid"]: "signing"}


def _by_alg(keys: list, state: str = "signing") -> dict:
    return {k["alg"]: k["kid"] for k in keys if k["state"] == state}


def test_with_es256_the_first_start_makes_an_rs256_and_an_es256_key_that_both_sign(fresh_cli):
    """OIDC Discovery 3 / Registration 2: RS256 is always offered for ID tokens, whatever IDP_KEYS_ALG."""
    fresh_cli.env["IDP_KEYS_ALG"] = "ES256"
    fresh_cli("seed-demo")
    keys = fresh_cli.json("keys", "list")
    assert sorted(k["alg"] for k in keys) == ["ES256", "RS256"] and all(k["state"] == "signing" for k in keys)
    with fresh_cli.app.app_context():
        from idp.keys import keyring
        ring = keyring()
        assert ring.algs == ["RS256", "ES256"] and ring.default.alg == "ES256"
        assert {alg: s.kid for alg, s in ring.signers.items()} == _by_alg(keys)


def test_keys_rotate_under_es256_rotates_both_algs_and_keeps_the_old_keys_published(fresh_cli):
    from idp import clock
    fresh_cli.env["IDP_KEYS_ALG"] = "ES256"
    fresh_cli("seed-demo")
    first = _by_alg(fresh_cli.json("keys", "list"))
    out = fresh_cli("keys", "rotate", "--now").stdout
    keys = fresh_cli.json("keys", "list")
    second = _by_alg(keys)
    assert set(second) == {"RS256", "ES256"} and not set(second.values()) & set(first.values())
    assert _by_alg(keys, "retired") == first and all(kid in out for kid in second.values())

    fresh_cli("keys", "rotate")  # staged: both new keys are published before either signs
    keys = fresh_cli.json("keys", "list")
    staged = _by_alg(keys, "next")
    assert set(staged) == {"RS256", "ES256"} and _by_alg(keys) == second
    with fresh_cli.app.app_context():
        from idp.keys import keyring, publish_lead
        ring = keyring()
        assert {s.kid for s in ring.signers.values()} == set(second.values())
        published = {k["kid"] for k in json.loads(ring.jwks_json)["keys"]}
        assert published == {*first.values(), *second.values(), *staged.values()}  # the retired ones too
        clock.set_now(clock.now() + timedelta(seconds=publish_lead(fresh_cli.app.config["IDP_SETTINGS"]) + 1))
        assert {alg: s.kid for alg, s in keyring().signers.items()} == staged
    assert _by_alg(fresh_cli.json("keys", "list")) == staged

    rotated = fresh_cli("keys", "rotate", "--alg", "ES256", "--now").stdout  # one alg alone
    now_signing = _by_alg(fresh_cli.json("keys", "list"))
    assert now_signing["RS256"] == staged["RS256"] and now_signing["ES256"] not in staged.values()
    assert rotated.count("new key") == 1 and now_signing["ES256"] in rotated


def test_keys_rotate_refuses_an_alg_that_is_not_in_use(fresh_cli):
    fresh_cli("seed-demo")
    refused = fresh_cli("keys", "rotate", "--alg", "ES256", "--now", ok=False)
    assert refused.exit_code != 0 and "no ES256 keys are in use: IDP_KEYS_ALG is RS256" in refused.output
    assert [k["alg"] for k in fresh_cli.json("keys", "list")] == ["RS256"]


def test_giving_up_es256_and_rotating_retires_the_es256_keys(fresh_cli):
    fresh_cli.env["IDP_KEYS_ALG"] = "ES256"
    fresh_cli("seed-demo")
    first = _by_alg(fresh_cli.json("keys", "list"))
    fresh_cli.env["IDP_KEYS_ALG"] = "RS256"
    fresh_cli("keys", "rotate", "--now")
    keys = fresh_cli.json("keys", "list")
    assert list(_by_alg(keys)) == ["RS256"] and _by_alg(keys, "retired") == first


def test_an_es256_only_deployment_gets_an_rs256_key_published_before_it_signs(fresh_cli):
    """What an earlier version left with IDP_KEYS_ALG=ES256: one ES256 key. The next load adds
    RS256 as a rotation would, so no relying party meets its kid before its JWKS has it; until
    then tokens are signed as before."""
    from idp import clock
    from idp.keys import create_key, keyring, publish_lead
    fresh_cli.env["IDP_KEYS_ALG"] = "ES256"
    with fresh_cli.app.app_context():
        settings = fresh_cli.app.config["IDP_SETTINGS"]
        es256 = create_key(settings, "ES256").kid
        db.session.commit()
        ring = keyring()
        rs256 = [k["kid"] for k in json.loads(ring.jwks_json)["keys"] if k["alg"] == "RS256"]
        assert len(rs256) == 1, "published at once"
        [rs256] = rs256
        assert {s.kid for s in ring.signers.values()} == {es256} and ring.default.kid == es256
        assert keyring() is ring  # created once, not at every load
        clock.set_now(clock.now() + timedelta(seconds=publish_lead(settings) + 1))
        assert {alg: s.kid for alg, s in keyring().signers.items()} == {"RS256": rs256, "ES256": es256}
    assert fresh_cli.count(SigningKey) == 2


def test_instances_that_race_to_make_the_first_keys_sign_with_the_same_ones(fresh_cli):
    """Two instances starting at once may each find no key and each add a pair: every key is
    published, and every instance signs with the newest of each alg."""
    from idp.keys import create_key, ensure_keys, keyring
    fresh_cli.env["IDP_KEYS_ALG"] = "ES256"
    with fresh_cli.app.app_context():
        settings = fresh_cli.app.config["IDP_SETTINGS"]
        ensure_keys(settings)  # the first instance
        for alg in ("RS256", "ES256"):  # the second, which looked before the first committed
            create_key(settings, alg)
        db.session.commit()
        ring = keyring()
        assert len(json.loads(ring.jwks_json)["keys"]) == 4
    other = create_app(fresh_cli.app.config["IDP_SETTINGS"])
    with other.app_context():
        assert {a: s.kid for a, s in keyring().signers.items()} == {a: s.kid for a, s in ring.signers.items()}
    assert fresh_cli.count(SigningKey) == 4


def test_keys_revoke_under_es256_replaces_only_the_key_of_its_alg(fresh_cli):
    fresh_cli.env["IDP_KEYS_ALG"] = "ES256"
    fresh_cli("seed-demo")
    first = _by_alg(fresh_cli.json("keys", "list"))
    assert set(first) == {"RS256", "ES256"}
    out = fresh_cli("keys", "revoke", "--", first["ES256"]).output  # a kid may start with "-"
    now_signing = _by_alg(fresh_cli.json("keys", "list"))
    assert now_signing["RS256"] == first["RS256"] and now_signing["ES256"] != first["ES256"]
    assert out.strip() == f"key {first['ES256']} is revoked; new key {now_signing['ES256']} (ES256) signs now"


def test_keys_revoke_replaces_the_signing_key_and_unpublishes_it(fresh_cli):
    fresh_cli("seed-demo")
    [first] = fresh_cli.json("keys", "list")
    out = fresh_cli("keys", "revoke", "--", first["kid"]).output
    [now_signing] = fresh_cli.json("keys", "list")
    assert now_signing["kid"] != first["kid"] and now_signing["state"] == "signing"
    assert out.strip() == f"key {first['kid']} is revoked; new key {now_signing['kid']} (RS256) signs now"
    assert fresh_cli("keys", "revoke", "--", first["kid"], ok=False).exit_code != 0
    events = [json.loads(line)["type"] for line in fresh_cli("audit", "list", "--type", "keys.").stdout.splitlines()]
    assert events.count("keys.key.revoked") == 1 and "keys.key.rotated" in events


# --- audit -----------------------------------------------------------------------------------
def test_audit_list_prints_json_lines_without_any_secret(cli):
    made = cli.json("clients", "create", "--name", "Audited", "--redirect-uri", "https://au.example.test/cb")
    rotated = cli.json("clients", "rotate-secret", made["client_id"])
    output = cli("audit", "list", "--type", "oauth.client", "--since", "2000-01-01").stdout
    events = [json.loads(line) for line in output.splitlines()]
    assert events and all(e["type"].startswith("oauth.client.") for e in events)
    mine = [e for e in events if e["client_id"] == made["client_id"]]
    assert {e["type"] for e in mine} == {"oauth.client.created", "oauth.client.changed"}
    for secret in (made["client_secret"], rotated["client_secret"]):
        assert secret not in output and digest(secret) not in output


def test_audit_list_filters_by_user_and_time(cli):
    new_user(cli, "audited-user")
    sign_in(cli, "audited-user", PASSWORD)
    lines = cli("audit", "list", "--user", "audited-user", "--since", "2000-01-01T00:00").stdout.splitlines()
    types = {json.loads(line)["type"] for line in lines}
    assert {"users.user.created", "authn.login.succeeded"} <= types
    assert PASSWORD not in "\n".join(lines)
    assert cli("audit", "list", "--since", "2999-01-01").stdout == ""


def test_audit_list_rejects_a_bad_since(cli):
    result = cli("audit", "list", "--since", "yesterday", ok=False)
    assert result.exit_code == 2 and "ISO 8601" in result.output


def test_cli_uses_its_own_instance_folder(cli):
    assert (cli.instance / "cli.sqlite").exists()
    assert stat.S_IMODE((cli.instance / "secret_key").stat().st_mode) == 0o600
    assert os.environ.get("IDP_INSTANCE_PATH") != str(cli.instance)


def test_generated_client_ids_never_look_like_an_option():
    from idp.oauth.clients import new_client_id
    ids = {new_client_id() for _ in range(3000)}
    assert len(ids) == 3000 and not any(i.startswith("-") for i in ids)
