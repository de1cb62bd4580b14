"""Settings: parsing IDP_* values, start-up refusals, the generated secret key, and the README table."""
from __future__ import annotations

import dataclasses
import os
import re
import stat
from pathlib import Path

import pytest

from idp.config import PROJECT_ROOT, SETTINGS, ConfigError, Settings, from_env

KEY = "k" * 32
PROD = {"IDP_ISSUER": "https://idp.example.test", "IDP_SECRET_KEY": KEY}


@pytest.fixture
def env(tmp_path):
    """A minimal production environment with its own instance folder."""
    return {**PROD, "IDP_INSTANCE_PATH": str(tmp_path / "instance")}


def refused(environ, variable):
    """from_env refuses the environment, and the message names the variable."""
    with pytest.raises(ConfigError) as failure:
        from_env(environ)
    assert variable in str(failure.value)
    return str(failure.value)


# --- parsing ---------------------------------------------------------------------------------
@pytest.mark.parametrize("raw, expected", [
    ("1", True), ("true", True), ("TRUE", True), ("yes", True), ("on", True), (" True ", True),
    ("0", False), ("false", False), ("No", False), ("off", False),
])
def test_booleans_accept_the_usual_spellings(env, raw, expected):
    assert from_env({**env, "IDP_REGISTRATION_ENABLED": raw}).registration_enabled is expected


@pytest.mark.parametrize("raw", ["maybe", "", "2", "enabled"])
def test_a_bad_boolean_stops_start_up_naming_the_variable(env, raw):
    message = refused({**env, "IDP_REGISTRATION_ENABLED": raw}, "IDP_REGISTRATION_ENABLED")
    assert "true or false" in message


def test_integers_are_parsed(env):
    settings = from_env({**env, "IDP_TOKEN_ACCESS_TTL": "300", "IDP_TRUSTED_PROXIES": "2"})
    assert settings.token_access_ttl == 300 and settings.trusted_proxies == 2


@pytest.mark.parametrize("variable, raw", [
    ("IDP_TOKEN_ACCESS_TTL", "ten"), ("IDP_TOKEN_ACCESS_TTL", ""), ("IDP_TRUSTED_PROXIES", "1.5"),
    ("IDP_SESSION_IDLE_LIFETIME", "8h"),
])
def test_a_bad_integer_stops_start_up_naming_the_variable(env, variable, raw):
    assert "whole number" in refused({**env, variable: raw}, variable)


@pytest.mark.parametrize("variable, raw", [
    ("IDP_TOKEN_CODE_TTL", "0"), ("IDP_TOKEN_CODE_TTL", "61"), ("IDP_TOKEN_ACCESS_TTL", "0"),
    ("IDP_TOKEN_REFRESH_TTL", "-1"), ("IDP_SESSION_IDLE_LIFETIME", "0"), ("IDP_PENDING_TTL", "0"),
    ("IDP_TRUSTED_PROXIES", "-1"), ("IDP_PASSWORD_MIN_LENGTH", "7"), ("IDP_PASSWORD_MAX_LENGTH", "63"),
    ("IDP_PASSWORD_MAX_LENGTH", "1025"),
    ("IDP_KEYS_ALG", "HS256"), ("IDP_KEYS_ALG", "none"), ("IDP_ARGON2_MEMORY_KIB", "1024"),
    ("IDP_ARGON2_TIME_COST", "1"), ("IDP_ARGON2_PARALLELISM", "0"), ("IDP_LOG_LEVEL", "LOUD"),
    ("IDP_CLIENT_REGISTRATION_PER_IP", "-1"), ("IDP_CLIENT_REGISTRATION_TOTAL", "-1"),
    ("IDP_CLIENT_REGISTRATION_PER_NETWORK", "-1"),
    ("IDP_CLIENT_CONFIGURATION_PER_IP", "-1"),
    ("IDP_CLIENT_REGISTRATION_WINDOW", "59"), ("IDP_CLIENT_REGISTRATION_WINDOW", "86401"),
    ("IDP_REGISTRATION_PER_IP", "-1"), ("IDP_REGISTRATION_PER_NETWORK", "-1"), ("IDP_REGISTRATION_TOTAL", "-1"),
    ("IDP_REGISTRATION_WINDOW", "59"), ("IDP_REGISTRATION_WINDOW", "86401"),
    ("IDP_PASSWORD_RESET_PER_IP", "-1"), ("IDP_PASSWORD_RESET_PER_NETWORK", "-1"),
    ("IDP_PASSWORD_RESET_WINDOW", "59"), ("IDP_PASSWORD_RESET_WINDOW", "86401"),
    ("IDP_AUDIT_IP_RETENTION", "-1"), ("IDP_AUDIT_RETENTION", "-1"),
])
def test_an_out_of_range_value_stops_start_up_naming_the_variable(env, variable, raw):
    refused({**env, variable: raw}, variable)


def test_a_per_address_limit_raised_before_the_network_limit_existed_still_starts(env):
    """An upgrade must not stop a deployment that set IDP_CLIENT_REGISTRATION_PER_IP above the new
    network default: the network limit is then simply the tighter one."""
    assert from_env({**env, "IDP_CLIENT_REGISTRATION_PER_IP": "50"}).client_registration_per_network == 40
    assert from_env({**env, "IDP_CLIENT_REGISTRATION_PER_IP": "0",
                     "IDP_CLIENT_REGISTRATION_PER_NETWORK": "5"}).client_registration_per_network == 5


def test_unset_variables_take_the_dataclass_defaults(env):
    settings = from_env(env)
    for name, f in SETTINGS.items():
        if name not in env:
            assert getattr(settings, f.name) == f.default, name


def test_settings_are_frozen(env):
    with pytest.raises(dataclasses.FrozenInstanceError):
        from_env(env).issuer = "https://evil.example"


# --- issuer ----------------------------------------------------------------------------------
def test_development_defaults_the_issuer_to_local_http(tmp_path):
    settings = from_env({"IDP_ENV": "development", "IDP_INSTANCE_PATH": str(tmp_path)})
    assert settings.issuer == "http://127.0.0.1:5000"
    assert settings.is_development and settings.is_loopback_http


def test_production_is_the_default_environment(env):
    assert from_env(env).env == "production" and not from_env(env).is_development


def test_production_refuses_a_missing_issuer(env):
    del env["IDP_ISSUER"]
    assert "https" in refused(env, "IDP_ISSUER")


@pytest.mark.parametrize("issuer", ["http://127.0.0.1:5000", "http://localhost:5000", "http://idp.example.test"])
def test_production_refuses_an_http_issuer_even_on_loopback(env, issuer):
    assert "https" in refused({**env, "IDP_ISSUER": issuer}, "IDP_ISSUER")


@pytest.mark.parametrize("issuer", ["http://idp.example.test", "http://10.0.0.1:5000", "http://127.0.0.1.nip.io"])
def test_development_refuses_an_http_issuer_off_loopback(tmp_path, issuer):
    environ = {"IDP_ENV": "development", "IDP_INSTANCE_PATH": str(tmp_path), "IDP_ISSUER": issuer}
    assert "loopback" in refused(environ, "IDP_ISSUER")


@pytest.mark.parametrize("issuer", ["http://[::1]:5000", "http://localhost:8080", "http://127.0.0.2"])
def test_development_accepts_an_http_issuer_on_loopback(tmp_path, issuer):
    environ = {"IDP_ENV": "development", "IDP_INSTANCE_PATH": str(tmp_path), "IDP_ISSUER": issuer}
    assert from_env(environ).issuer == issuer


@pytest.mark.parametrize("issuer", [
    "https://idp.example.test/", "https://idp.example.test?x=1", "https://idp.example.test#top",
    "idp.example.test", "ftp://idp.example.test", "https://", "https://admin:pw@idp.example.test",
    "https://idp.example.test@evil.example",
])
def test_a_malformed_issuer_is_refused(env, issuer):
    refused({**env, "IDP_ISSUER": issuer}, "IDP_ISSUER")


def test_an_https_issuer_with_a_path_is_accepted(env):
    assert from_env({**env, "IDP_ISSUER": "https://example.test/idp"}).issuer == "https://example.test/idp"


# --- secret key ------------------------------------------------------------------------------
def test_a_short_secret_key_is_refused(env):
    assert "32" in refused({**env, "IDP_SECRET_KEY": "k" * 31}, "IDP_SECRET_KEY")


def test_a_given_secret_key_writes_no_file(env):
    assert from_env(env).secret_key == KEY
    assert not (Path(env["IDP_INSTANCE_PATH"]) / "secret_key").exists()


def test_the_secret_key_is_generated_once_with_mode_0600_and_reused(env):
    del env["IDP_SECRET_KEY"]
    first = from_env(env)
    path = Path(env["IDP_INSTANCE_PATH"]) / "secret_key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first.secret_key) >= 32 and path.read_text().strip() == first.secret_key
    written = path.stat().st_mtime_ns
    second = from_env(env)
    assert second.secret_key == first.secret_key
    assert path.stat().st_mtime_ns == written and stat.S_IMODE(path.stat().st_mode) == 0o600


def test_each_instance_gets_its_own_generated_secret_key(tmp_path):
    one = from_env({**PROD, "IDP_SECRET_KEY": "", "IDP_INSTANCE_PATH": str(tmp_path / "a")})
    two = from_env({**PROD, "IDP_SECRET_KEY": "", "IDP_INSTANCE_PATH": str(tmp_path / "b")})
    assert one.secret_key != two.secret_key


# --- database URL ----------------------------------------------------------------------------
@pytest.mark.parametrize("url, expected", [
    ("postgres://u:p@db:5432/idp", "postgresql+psycopg://u:p@db:5432/idp"),
    ("postgresql://u@db/idp", "postgresql+psycopg://u@db/idp"),
    ("postgresql+psycopg://u@db/idp", "postgresql+psycopg://u@db/idp"),
    ("sqlite:////var/lib/idp/idp.sqlite", "sqlite:////var/lib/idp/idp.sqlite"),
])
def test_database_urls_are_normalised_to_psycopg_3(env, url, expected):
    assert from_env({**env, "IDP_DATABASE_URL": url}).sqlalchemy_url == expected


def test_an_empty_database_url_means_sqlite_in_the_instance_folder(env):
    expected = Path(env["IDP_INSTANCE_PATH"]) / "idp.sqlite"
    assert from_env(env).sqlalchemy_url == f"sqlite:///{expected}"


# --- the README table ------------------------------------------------------------------------
ROW = re.compile(r"^\|\s*`(IDP_[A-Z0-9_]+)`\s*\|([^|]*)\|(.*)\|\s*$")


def readme_rows() -> list[tuple[str, str, str]]:
    text = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    rows = [ROW.match(line) for line in text.splitlines() if line.startswith("| `IDP_")]
    assert all(rows), "every | `IDP_...` | line is a three-column table row"
    return [(m.group(1), m.group(2).strip(), m.group(3).strip()) for m in rows]


def render_default(f: dataclasses.Field) -> str:
    """How the README shows a default: empty cell for "", else the value in backticks."""
    if f.name == "instance_path":
        return "`instance/`"  # the real default depends on where the checkout lives
    if f.default == "":
        return ""
    if isinstance(f.default, bool):
        return "`true`" if f.default else "`false`"
    return f"`{f.default}`"


def test_readme_lists_every_setting_exactly_once():
    names = [name for name, _, _ in readme_rows()]
    assert len(names) == len(set(names)), "a variable appears twice in README.md"
    assert set(names) == set(SETTINGS)


def test_readme_defaults_and_meanings_match_settings():
    for name, default, meaning in readme_rows():
        f = SETTINGS[name]
        assert default == render_default(f), name
        assert meaning == f.metadata["meaning"], name


def test_every_setting_has_a_meaning_and_an_idp_name():
    for name, f in SETTINGS.items():
        assert re.fullmatch(r"IDP_[A-Z0-9_]+", name) and f.metadata["meaning"].strip()
        assert f.name.upper() == name[len("IDP_"):], "IDP_<AREA>_<NAME> mirrors the field name"


def test_instance_path_defaults_to_the_checkout_instance_folder():
    assert Settings().instance_path == str(PROJECT_ROOT / "instance")
    assert os.path.isabs(Settings().instance_path)


@pytest.mark.parametrize("value", ["10.0.0.0/33", "intranet", "10.0.0.0/8;192.168.0.0/16"])
def test_outbound_allow_private_must_be_networks(env, value):
    assert "networks" in refused({**env, "IDP_OUTBOUND_ALLOW_PRIVATE": value}, "IDP_OUTBOUND_ALLOW_PRIVATE")


def test_outbound_allow_private_lists_networks(env):
    settings = from_env({**env, "IDP_OUTBOUND_ALLOW_PRIVATE": "10.20.0.0/16, fd00::/8"})
    assert [str(n) for n in settings.outbound_allowed_networks] == ["10.20.0.0/16", "fd00::/8"]
    assert from_env(env).outbound_allowed_networks == ()
