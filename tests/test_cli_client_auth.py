"""`idp clients create --auth-method ...`: JWT client authentication from the operator command."""
from __future__ import annotations

import json

import pytest
from joserfc.jwk import ECKey, RSAKey

from idp.models import Client
from idp.oauth.client_secrets import clear_secret
from idp.oauth.clients import find_client
from tests.test_cli import cli  # noqa: F401 - the module-scoped fixture

REDIRECT = "https://jwt.example.test/cb"


@pytest.fixture
def jwks_file(tmp_path):
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [ECKey.generate_key("P-256", parameters={"kid": "k1"}).as_dict(private=False)]}))
    return str(path)


def test_private_key_jwt_with_a_jwks_file_has_no_secret(cli, jwks_file):
    made = cli.json("clients", "create", "--name", "Keys", "--redirect-uri", REDIRECT,
                    "--auth-method", "private_key_jwt", "--jwks", jwks_file, "--signing-alg", "ES256")
    assert made["token_endpoint_auth_method"] == "private_key_jwt" and "client_secret" not in made
    assert made["token_endpoint_auth_signing_alg"] == "ES256" and made["jwks"]["keys"][0]["kid"] == "k1"
    with cli.app.app_context():
        stored = find_client(made["client_id"])
        assert stored.client_secret_digest is None and stored.client_secret_encrypted is None
    assert cli.json("clients", "show", made["client_id"])["jwks"] == made["jwks"]
    result = cli("clients", "rotate-secret", made["client_id"], ok=False)
    assert result.exit_code == 1 and "no secret" in result.output


def test_private_key_jwt_with_a_jwks_uri(cli):
    made = cli.json("clients", "create", "--name", "Uri", "--grant-type", "client_credentials",
                    "--auth-method", "private_key_jwt", "--jwks-uri", "https://keys.example.test/jwks")
    assert made["jwks_uri"] == "https://keys.example.test/jwks" and made["jwks"] is None


def test_client_secret_jwt_keeps_the_secret_encrypted_and_rotates_it_in_step(cli):
    made = cli.json("clients", "create", "--name", "Hmac", "--grant-type", "client_credentials",
                    "--auth-method", "client_secret_jwt")
    with cli.app.app_context():
        stored = find_client(made["client_id"])
        assert made["client_secret"] not in stored.client_secret_encrypted
        assert clear_secret(stored) == made["client_secret"].encode()
    rotated = cli.json("clients", "rotate-secret", made["client_id"])
    with cli.app.app_context():
        stored = find_client(made["client_id"])
        assert clear_secret(stored) == rotated["client_secret"].encode()
        assert stored.check_client_secret(rotated["client_secret"])
        assert not stored.check_client_secret(made["client_secret"])


def test_client_secret_post_is_a_choice(cli):
    made = cli.json("clients", "create", "--name", "Post", "--redirect-uri", REDIRECT, "--auth-method",
                    "client_secret_post")
    assert made["token_endpoint_auth_method"] == "client_secret_post" and made["client_secret"]


@pytest.mark.parametrize("args, message", [
    (["--auth-method", "private_key_jwt"], "exactly one of jwks and jwks_uri"),
    (["--auth-method", "private_key_jwt", "--jwks-uri", "http://keys.example.test/jwks"], "https"),
    (["--auth-method", "private_key_jwt", "--signing-alg", "HS256", "--jwks-uri", "https://k.example.test/j"],
     "must be one of RS256, PS256, ES256"),
    (["--auth-method", "client_secret_jwt", "--signing-alg", "RS256"], "must be one of HS256"),
    (["--auth-method", "client_secret_basic", "--jwks-uri", "https://k.example.test/j"], "only used with"),
    (["--jwks-uri", "https://k.example.test/j"], "need --auth-method"),
    (["--public", "--auth-method", "private_key_jwt"], "--public means"),
])
def test_bad_auth_method_options_are_refused_and_write_nothing(cli, args, message):
    before = cli.count(Client)
    result = cli("clients", "create", "--name", "Bad", "--redirect-uri", REDIRECT, *args, ok=False)
    assert result.exit_code != 0 and message in result.output, result.output
    assert cli.count(Client) == before


def test_a_private_key_in_the_jwks_file_is_refused(cli, tmp_path):
    path = tmp_path / "private.json"
    path.write_text(json.dumps({"keys": [RSAKey.generate_key(2048, private=True).as_dict(private=True)]}))
    before = cli.count(Client)
    result = cli("clients", "create", "--name", "Leak", "--redirect-uri", REDIRECT,
                 "--auth-method", "private_key_jwt", "--jwks", str(path), ok=False)
    assert result.exit_code == 1 and "private key members" in result.output
    assert cli.count(Client) == before


def test_a_jwks_file_that_is_not_json_is_refused(cli, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("not json")
    result = cli("clients", "create", "--name", "Bad", "--redirect-uri", REDIRECT,
                 "--auth-method", "private_key_jwt", "--jwks", str(path), ok=False)
    assert result.exit_code == 1 and "does not hold JSON" in result.output
