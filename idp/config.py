"""Every IDP_* setting in one frozen dataclass: its type, default, meaning and validation.

Nothing else in idp reads the environment; create_app() calls from_env() once and hands the
Settings on. The README configuration table is checked against SETTINGS by a test.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

PROJECT_ROOT = Path(__file__).resolve().parents[1]
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class ConfigError(ValueError):
    """A setting has a value we cannot start with; the message names the variable."""


def setting(env: str, default, meaning: str):
    """Declare one setting: its environment variable, its default and a one-line meaning."""
    return field(default=default, metadata={"env": env, "meaning": meaning})


@dataclass(frozen=True)
class Settings:
    env: str = setting("IDP_ENV", "production",
                       "`development` relaxes start-up checks (http issuer, generated secret key); anything else is production.")
    issuer: str = setting("IDP_ISSUER", "",
                          "Public base URL and OpenID issuer; every absolute URL is built from it. Required (https) in production; defaults to http://127.0.0.1:5000 in development.")
    secret_key: str = setting("IDP_SECRET_KEY", "",
                              "Secret for cookies, CSRF and key encryption. When empty, a random key is generated once into `instance/secret_key` (mode 0600).")
    instance_path: str = setting("IDP_INSTANCE_PATH", str(PROJECT_ROOT / "instance"),
                                 "Folder for the SQLite database and the generated secret key.")
    database_url: str = setting("IDP_DATABASE_URL", "",
                                "SQLAlchemy database URL, e.g. `postgresql+psycopg://user@host/idp`. Empty means SQLite at `instance/idp.sqlite`.")
    trusted_proxies: int = setting("IDP_TRUSTED_PROXIES", 0,
                                   "Number of reverse proxies in front whose X-Forwarded-For/-Proto are trusted (0 = none).")
    registration_enabled: bool = setting("IDP_REGISTRATION_ENABLED", True,
                                         "Whether people may create their own account at /register.")
    password_min_length: int = setting("IDP_PASSWORD_MIN_LENGTH", 8,
                                       "Minimum password length in characters (NIST SP 800-63B: at least 8).")
    password_max_length: int = setting("IDP_PASSWORD_MAX_LENGTH", 256,
                                       "Maximum password length in characters (at least 64).")
    argon2_memory_kib: int = setting("IDP_ARGON2_MEMORY_KIB", 19456,
                                     "argon2id memory cost in KiB (OWASP minimum 19456).")
    argon2_time_cost: int = setting("IDP_ARGON2_TIME_COST", 2, "argon2id iterations (OWASP minimum 2).")
    argon2_parallelism: int = setting("IDP_ARGON2_PARALLELISM", 1, "argon2id lanes.")
    session_idle_lifetime: int = setting("IDP_SESSION_IDLE_LIFETIME", 8 * 3600,
                                         "Seconds an SSO session stays valid without use.")
    session_absolute_lifetime: int = setting("IDP_SESSION_ABSOLUTE_LIFETIME", 7 * 24 * 3600,
                                             "Seconds after sign-in when an SSO session ends regardless of use.")
    throttle_base_delay: int = setting("IDP_THROTTLE_BASE_DELAY", 1,
                                       "Seconds of the first back-off after repeated failed logins; doubles with each further failure.")
    throttle_max_delay: int = setting("IDP_THROTTLE_MAX_DELAY", 900,
                                      "Upper bound in seconds for a login back-off.")
    mfa_required: bool = setting("IDP_MFA_REQUIRED", False,
                                 "Whether every login must reach two factors (urn:idp:acr:mfa); people without a second factor set one up at login.")
    mfa_recent_auth_seconds: int = setting("IDP_MFA_RECENT_AUTH_SECONDS", 300,
                                           "Seconds after a login during which a person may add or remove factors, regenerate recovery codes or change the password without signing in again.")
    token_access_ttl: int = setting("IDP_TOKEN_ACCESS_TTL", 600, "Lifetime of access tokens in seconds.")
    token_id_ttl: int = setting("IDP_TOKEN_ID_TTL", 600, "Lifetime of ID tokens in seconds.")
    token_refresh_ttl: int = setting("IDP_TOKEN_REFRESH_TTL", 30 * 24 * 3600,
                                     "Absolute lifetime of a refresh token family in seconds.")
    token_code_ttl: int = setting("IDP_TOKEN_CODE_TTL", 60, "Lifetime of authorization codes in seconds (at most 60).")
    pending_ttl: int = setting("IDP_PENDING_TTL", 600,
                               "Seconds a pending authorization request waits for login and consent.")
    webauthn_challenge_ttl: int = setting("IDP_WEBAUTHN_CHALLENGE_TTL", 300,
                                          "Seconds a passkey challenge stays valid (30 to 900); each is single use.")
    keys_alg: str = setting("IDP_KEYS_ALG", "RS256", "Algorithm of newly created signing keys: RS256 or ES256.")
    keys_cache_seconds: int = setting("IDP_KEYS_CACHE_SECONDS", 30,
                                      "How long each process caches the signing keys before looking for a rotation.")
    log_level: str = setting("IDP_LOG_LEVEL", "INFO", "Python logging level.")

    @property
    def is_development(self) -> bool:
        return self.env == "development"

    @property
    def is_loopback_http(self) -> bool:
        parts = urlsplit(self.issuer)
        return parts.scheme == "http" and _is_loopback(parts.hostname or "")

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            url = self.database_url
            if url.startswith("postgres://"):
                url = "postgresql://" + url[len("postgres://"):]
            if url.startswith("postgresql://"):
                url = "postgresql+psycopg://" + url[len("postgresql://"):]
            return url
        return f"sqlite:///{Path(self.instance_path) / 'idp.sqlite'}"


SETTINGS = {f.metadata["env"]: f for f in dataclasses.fields(Settings)}


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _parse(f: dataclasses.Field, raw: str):
    name = f.metadata["env"]
    if f.type in ("bool", bool):
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name} must be true or false, not {raw!r}")
    if f.type in ("int", int):
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a whole number, not {raw!r}") from None
    return raw


def from_env(environ=None, **overrides) -> Settings:
    """Read every IDP_* variable once, apply overrides (used by tests), validate, return Settings."""
    environ = os.environ if environ is None else environ
    values = {}
    for name, f in SETTINGS.items():
        if name in environ:
            values[f.name] = _parse(f, environ[name])
    values.update(overrides)
    settings = Settings(**values)
    if settings.is_development and not settings.issuer:
        settings = dataclasses.replace(settings, issuer="http://127.0.0.1:5000")
    if not settings.secret_key:
        settings = dataclasses.replace(settings, secret_key=load_or_create_secret(settings.instance_path))
    validate(settings)
    return settings


def load_or_create_secret(instance_path: str) -> str:
    """Read instance/secret_key, or create it once with 0600 permissions."""
    path = Path(instance_path) / "secret_key"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        # Write a complete temporary file, then link it into place: a process starting at the same
        # moment either sees no file or the whole key, never an empty one.
        tmp = path.with_name(f".secret_key.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48))
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip()


def validate(s: Settings) -> None:
    """Refuse to start with a value that is wrong, or unsafe outside development."""
    parts = urlsplit(s.issuer)
    if not s.issuer:
        raise ConfigError("IDP_ISSUER is required in production (an https:// URL); "
                          "set IDP_ENV=development to run locally on http://127.0.0.1:5000")
    if (parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment
            or "@" in parts.netloc):
        raise ConfigError(f"IDP_ISSUER must be an absolute http(s) URL without user, query or fragment, "
                          f"not {s.issuer!r}")
    if s.issuer.endswith("/"):
        raise ConfigError("IDP_ISSUER must not end with a slash")
    if parts.scheme != "https" and not s.is_development:
        raise ConfigError("IDP_ISSUER must use https:// in production (set IDP_ENV=development for local http)")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ConfigError("IDP_ISSUER may only use http:// on a loopback address (127.0.0.1, ::1, localhost)")
    if len(s.secret_key) < 32:
        raise ConfigError("IDP_SECRET_KEY must be at least 32 characters")
    if s.password_min_length < 8:
        raise ConfigError("IDP_PASSWORD_MIN_LENGTH must be at least 8")
    if s.password_max_length < 64 or s.password_max_length < s.password_min_length:
        raise ConfigError("IDP_PASSWORD_MAX_LENGTH must be at least 64 and not below the minimum")
    if s.argon2_memory_kib < 19456:
        raise ConfigError("IDP_ARGON2_MEMORY_KIB must be at least 19456 (the OWASP minimum)")
    if s.argon2_time_cost < 2:
        raise ConfigError("IDP_ARGON2_TIME_COST must be at least 2 (the OWASP minimum)")
    if s.argon2_parallelism < 1:
        raise ConfigError("IDP_ARGON2_PARALLELISM must be at least 1")
    if not 1 <= s.token_code_ttl <= 60:
        raise ConfigError("IDP_TOKEN_CODE_TTL must be between 1 and 60 seconds")
    if s.keys_alg not in ("RS256", "ES256"):
        raise ConfigError("IDP_KEYS_ALG must be RS256 or ES256")
    for name in ("session_idle_lifetime", "session_absolute_lifetime", "token_access_ttl", "token_id_ttl",
                 "token_refresh_ttl", "pending_ttl", "keys_cache_seconds", "throttle_base_delay", "throttle_max_delay",
                 "mfa_recent_auth_seconds"):
        if getattr(s, name) <= 0:
            raise ConfigError(f"{Settings.__dataclass_fields__[name].metadata['env']} must be positive")
    if not 30 <= s.webauthn_challenge_ttl <= 900:
        raise ConfigError("IDP_WEBAUTHN_CHALLENGE_TTL must be between 30 and 900 seconds")
    if s.trusted_proxies < 0:
        raise ConfigError("IDP_TRUSTED_PROXIES must be 0 or more")
    if s.log_level not in LOG_LEVELS:
        raise ConfigError(f"IDP_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, not {s.log_level!r}")
