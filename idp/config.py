"""Every IDP_* setting in one frozen dataclass: its type, default, meaning and validation.

Nothing else in idp reads the environment; create_app() calls from_env() once and hands the
Settings on. The README configuration table is checked against SETTINGS by a test.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

PROJECT_ROOT = Path(__file__).resolve().parents[1]
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOGO_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
              ".webp": "image/webp"}
CLIENT_REGISTRATION_MODES = ("protected", "open", "disabled")
OUTBOX_WORKER_MODES = ("auto", "inline", "off")


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
                              "Secret for cookies, CSRF, key encryption and pairwise subjects (changing it changes every pairwise `sub`). When empty, a random key is generated once into `instance/secret_key` (mode 0600).")
    instance_path: str = setting("IDP_INSTANCE_PATH", str(PROJECT_ROOT / "instance"),
                                 "Folder for the SQLite database and the generated secret key.")
    database_url: str = setting("IDP_DATABASE_URL", "",
                                "SQLAlchemy database URL, e.g. `postgresql+psycopg://user@host/idp`. Empty means SQLite at `instance/idp.sqlite`.")
    trusted_proxies: int = setting("IDP_TRUSTED_PROXIES", 0,
                                   "Number of reverse proxies in front whose X-Forwarded-For/-Proto are trusted (0 = none).")
    registration_enabled: bool = setting("IDP_REGISTRATION_ENABLED", True,
                                         "Whether people may create their own account at /register.")
    registration_per_ip: int = setting("IDP_REGISTRATION_PER_IP", 10,
                                       "Sign-up attempts (POST /register, accepted or not) from one IP address (IPv6: one /64) per IDP_REGISTRATION_WINDOW; more get the form again with 429 (0 = no limit).")
    registration_per_network: int = setting("IDP_REGISTRATION_PER_NETWORK", 50,
                                            "Sign-up attempts from one IPv4 /24 or IPv6 /48 together per IDP_REGISTRATION_WINDOW, so one site cannot use up the total; more get the form again with 429 (0 = no limit; below IDP_REGISTRATION_PER_IP it is the tighter limit for every address).")
    registration_total: int = setting("IDP_REGISTRATION_TOTAL", 1000,
                                      "Sign-up attempts from everyone together per IDP_REGISTRATION_WINDOW; more get the form again with 429 (0 = no limit).")
    registration_window: int = setting("IDP_REGISTRATION_WINDOW", 3600,
                                       "Seconds of the fixed window the sign-up limits count in (60 to 86400).")
    password_reset_per_ip: int = setting("IDP_PASSWORD_RESET_PER_IP", 10,
                                         "Password reset requests (POST /forgot-password, for any login) from one IP address (IPv6: one /64) per IDP_PASSWORD_RESET_WINDOW; more get the form again with 429 (0 = no limit).")
    password_reset_per_network: int = setting("IDP_PASSWORD_RESET_PER_NETWORK", 100,
                                              "Password reset requests from one IPv4 /24 or IPv6 /48 together per IDP_PASSWORD_RESET_WINDOW; more get the form again with 429 (0 = no limit).")
    password_reset_window: int = setting("IDP_PASSWORD_RESET_WINDOW", 3600,
                                         "Seconds of the fixed window the password reset request limits count in (60 to 86400).")
    client_registration: str = setting("IDP_CLIENT_REGISTRATION", "protected",
                                       "Dynamic client registration (RFC 7591/7592) at /oauth/register for applications, not people: `protected` (needs an initial access token from `idp clients initial-token`), `open` (anyone may register a client) or `disabled` (not served, not advertised).")
    client_registration_per_ip: int = setting("IDP_CLIENT_REGISTRATION_PER_IP", 20,
                                              "Registration requests without a valid initial access token accepted from one IP address (IPv6: one /64) per IDP_CLIENT_REGISTRATION_WINDOW; more get 429 (0 = no limit).")
    client_registration_per_network: int = setting("IDP_CLIENT_REGISTRATION_PER_NETWORK", 40,
                                                   "Registration requests without a valid initial access token accepted from one IPv4 /24 or IPv6 /48 together per IDP_CLIENT_REGISTRATION_WINDOW, so one site cannot use up the total; more get 429 (0 = no limit; below IDP_CLIENT_REGISTRATION_PER_IP it is the tighter limit for every address).")
    client_registration_total: int = setting("IDP_CLIENT_REGISTRATION_TOTAL", 200,
                                             "Registration requests without a valid initial access token accepted from everyone together per IDP_CLIENT_REGISTRATION_WINDOW; more get 429 (0 = no limit).")
    client_configuration_per_ip: int = setting("IDP_CLIENT_CONFIGURATION_PER_IP", 60,
                                               "Requests to a client configuration endpoint (RFC 7592: GET, PUT, DELETE of registration_client_uri, right or wrong registration access token) accepted from one IP address (IPv6: one /64) per IDP_CLIENT_REGISTRATION_WINDOW; more get 429 (0 = no limit).")
    client_registration_window: int = setting("IDP_CLIENT_REGISTRATION_WINDOW", 3600,
                                              "Seconds of the fixed window the registration and client configuration limits count in (60 to 86400).")
    password_min_length: int = setting("IDP_PASSWORD_MIN_LENGTH", 8,
                                       "Minimum password length in characters, counted as Unicode code points after NFKC normalisation (NIST SP 800-63B: at least 8).")
    password_max_length: int = setting("IDP_PASSWORD_MAX_LENGTH", 256,
                                       "Maximum password length in characters, counted as Unicode code points after NFKC normalisation (64 to 1024); a longer password is refused, at sign-in too, never cut short.")
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
    token_refresh_idle_ttl: int = setting("IDP_TOKEN_REFRESH_IDLE_TTL", 14 * 24 * 3600,
                                          "Seconds a refresh token stays usable without being used (never past the absolute lifetime).")
    token_code_ttl: int = setting("IDP_TOKEN_CODE_TTL", 60, "Lifetime of authorization codes in seconds (at most 60).")
    pending_ttl: int = setting("IDP_PENDING_TTL", 600,
                               "Seconds a pending authorization request waits for login and consent.")
    outbox_retention: int = setting("IDP_OUTBOX_RETENTION", 7 * 24 * 3600,
                                    "Seconds a delivered or failed outbox message is kept before `idp purge` deletes it.")
    audit_ip_retention: int = setting("IDP_AUDIT_IP_RETENTION", 90 * 24 * 3600,
                                      "Seconds an audit event keeps its IP address and user agent before `idp purge` blanks them (0: kept for good).")
    audit_retention: int = setting("IDP_AUDIT_RETENTION", 0,
                                   "Seconds an audit event is kept before `idp purge` deletes it (0: kept for good).")
    webauthn_challenge_ttl: int = setting("IDP_WEBAUTHN_CHALLENGE_TTL", 300,
                                          "Seconds a passkey challenge stays valid (30 to 900); each is single use.")
    keys_alg: str = setting("IDP_KEYS_ALG", "RS256",
                            "Algorithm of access tokens: RS256 or ES256. An RS256 key is always kept as well: ID and logout tokens use a client's registered `id_token_signed_response_alg`, else RS256.")
    keys_cache_seconds: int = setting("IDP_KEYS_CACHE_SECONDS", 30,
                                      "How long each process caches the signing keys before looking for a rotation.")
    client_assertion_max_lifetime: int = setting("IDP_CLIENT_ASSERTION_MAX_LIFETIME", 300,
                                                 "Latest `exp` accepted in a client authentication JWT (private_key_jwt, client_secret_jwt), in seconds from now.")
    jwks_fetch_timeout: int = setting("IDP_JWKS_FETCH_TIMEOUT", 3,
                                      "Seconds allowed for fetching a client's jwks_uri, the whole response included.")
    jwks_cache_seconds: int = setting("IDP_JWKS_CACHE_SECONDS", 300,
                                      "How long each process keeps a key set fetched from a client's jwks_uri.")
    outbox_worker: str = setting("IDP_OUTBOX_WORKER", "auto",
                                 "Where outbox deliveries (back-channel logout) are retried and expired sessions swept: `inline` (a thread in each web process), `off` (only by `idp worker`), or `auto` (inline when IDP_ENV=development, else off).")
    outbox_wait_ms: int = setting("IDP_OUTBOX_WAIT_MS", 2000,
                                  "Milliseconds a page that ended a session waits for its back-channel logout deliveries before answering; the rest is left to the worker.")
    outbox_poll_seconds: int = setting("IDP_OUTBOX_POLL_SECONDS", 2,
                                       "Seconds the worker sleeps when nothing is due.")
    session_sweep_seconds: int = setting("IDP_SESSION_SWEEP_SECONDS", 60,
                                         "Seconds between two sweeps by the worker: expired sessions (each ended one is announced to its apps) and expired logins in progress.")
    backchannel_logout_timeout: int = setting("IDP_BACKCHANNEL_LOGOUT_TIMEOUT", 5,
                                              "Seconds a client's backchannel_logout_uri has to answer as a whole (connection, status line and headers; the body is not read) before the delivery counts as failed and is retried.")
    federation_timeout: int = setting("IDP_FEDERATION_TIMEOUT", 10,
                                      "Seconds each request to an upstream identity provider (discovery, JWKS, token, user info) may take as a whole, body included; a body over 1 MiB is refused.")
    federation_state_ttl: int = setting("IDP_FEDERATION_STATE_TTL", 300,
                                        "Seconds a sign-in through an upstream provider may take, and an upstream identity may wait to be linked.")
    federation_cache_seconds: int = setting("IDP_FEDERATION_CACHE_SECONDS", 3600,
                                            "How long each process caches an upstream provider's discovery document and JWKS.")
    outbound_allow_private: str = setting("IDP_OUTBOUND_ALLOW_PRIVATE", "",
                                          "Comma-separated networks (CIDR, e.g. `10.20.0.0/16`) that outbound requests (client jwks_uri, backchannel_logout_uri, upstream providers) may reach although they are not public. Empty: only public addresses outside development.")
    log_level: str = setting("IDP_LOG_LEVEL", "INFO", "Python logging level.")
    smtp_url: str = setting("IDP_SMTP_URL", "",
                            "Outgoing mail server: `smtp://user:password@host:587` (STARTTLS), `smtps://...:465` (TLS) or `smtp://host:25?tls=none` (plain, local relays only). Empty: in development each message is written to the log; in production nothing is sent (and the log says so).")
    mail_from: str = setting("IDP_MAIL_FROM", "idp <no-reply@localhost>",
                             "The From address of every message idp sends.")
    email_verification_required: bool = setting("IDP_EMAIL_VERIFICATION_REQUIRED", False,
                                                "Whether a person must confirm their email address before they can sign in.")
    email_verify_ttl: int = setting("IDP_EMAIL_VERIFY_TTL", 24 * 3600,
                                    "Seconds an email verification link stays valid.")
    password_reset_ttl: int = setting("IDP_PASSWORD_RESET_TTL", 30 * 60,
                                      "Seconds a password reset link stays valid.")
    product_name: str = setting("IDP_PRODUCT_NAME", "idp",
                                "The name people see in page titles, the header and emails.")
    accent_color: str = setting("IDP_ACCENT_COLOR", "#2651a6",
                                "Accent colour of the pages (header, buttons, links), as #rrggbb.")
    logo_file: str = setting("IDP_LOGO_FILE", "",
                             "Path to a PNG, JPEG, GIF or WebP logo (at most 256 KiB) shown in the page header, served from our own origin. Empty: the product name only.")
    terms_url: str = setting("IDP_TERMS_URL", "",
                             "https address of the terms of service, linked from every page when set.")
    privacy_url: str = setting("IDP_PRIVACY_URL", "",
                               "https address of the privacy policy, linked from every page when set.")
    terms_version: str = setting("IDP_TERMS_VERSION", "",
                                 "Version of the terms people must accept (with IDP_TERMS_URL); when it changes, everyone is asked again at their next sign-in or app login. Empty: nobody is asked.")

    @property
    def is_development(self) -> bool:
        return self.env == "development"

    @property
    def runs_inline_worker(self) -> bool:
        return self.outbox_worker == "inline" or (self.outbox_worker == "auto" and self.is_development)

    @property
    def is_loopback_http(self) -> bool:
        parts = urlsplit(self.issuer)
        return parts.scheme == "http" and is_loopback(parts.hostname or "")

    @property
    def outbound_allowed_networks(self) -> tuple:
        """IDP_OUTBOUND_ALLOW_PRIVATE as networks (validated at start-up)."""
        return tuple(ipaddress.ip_network(part.strip(), strict=False)
                     for part in self.outbound_allow_private.split(",") if part.strip())

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


def is_loopback(host: str | None) -> bool:
    """localhost or a loopback IP address (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
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
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ConfigError("IDP_ISSUER may only use http:// on a loopback address (127.0.0.1, ::1, localhost)")
    if len(s.secret_key) < 32:
        raise ConfigError("IDP_SECRET_KEY must be at least 32 characters")
    if s.password_min_length < 8:
        raise ConfigError("IDP_PASSWORD_MIN_LENGTH must be at least 8")
    if not 64 <= s.password_max_length <= 1024 or s.password_max_length < s.password_min_length:
        raise ConfigError("IDP_PASSWORD_MAX_LENGTH must be between 64 and 1024 and not below the minimum")
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
    if not 30 <= s.client_assertion_max_lifetime <= 3600:
        raise ConfigError("IDP_CLIENT_ASSERTION_MAX_LIFETIME must be between 30 and 3600 seconds")
    if not 1 <= s.jwks_fetch_timeout <= 30:
        raise ConfigError("IDP_JWKS_FETCH_TIMEOUT must be between 1 and 30 seconds")
    if s.jwks_cache_seconds < 0:
        raise ConfigError("IDP_JWKS_CACHE_SECONDS must be 0 or more")
    for name in ("session_idle_lifetime", "session_absolute_lifetime", "token_access_ttl", "token_id_ttl",
                 "token_refresh_ttl", "token_refresh_idle_ttl", "pending_ttl", "outbox_retention", "keys_cache_seconds",
                 "throttle_base_delay", "throttle_max_delay", "email_verify_ttl", "password_reset_ttl",
                 "federation_timeout", "federation_state_ttl", "federation_cache_seconds", "mfa_recent_auth_seconds"):
        if getattr(s, name) <= 0:
            raise ConfigError(f"{Settings.__dataclass_fields__[name].metadata['env']} must be positive")
    if s.audit_ip_retention < 0 or s.audit_retention < 0:
        raise ConfigError("IDP_AUDIT_IP_RETENTION and IDP_AUDIT_RETENTION must be 0 or more")
    if not 30 <= s.webauthn_challenge_ttl <= 900:
        raise ConfigError("IDP_WEBAUTHN_CHALLENGE_TTL must be between 30 and 900 seconds")
    if s.trusted_proxies < 0:
        raise ConfigError("IDP_TRUSTED_PROXIES must be 0 or more")
    if s.smtp_url:
        smtp = urlsplit(s.smtp_url)
        if smtp.scheme not in ("smtp", "smtps") or not smtp.hostname:
            raise ConfigError("IDP_SMTP_URL must look like smtp://user:password@host:587 or smtps://host:465")
        try:
            smtp.port
        except ValueError:
            raise ConfigError("IDP_SMTP_URL has a port that is not a number") from None
        if smtp.query not in ("", "tls=none", "tls=starttls"):
            raise ConfigError("IDP_SMTP_URL accepts only ?tls=none or ?tls=starttls")
    if "@" not in s.mail_from or "\n" in s.mail_from or "\r" in s.mail_from:
        raise ConfigError("IDP_MAIL_FROM must be an email address, optionally with a display name")
    if not s.product_name.strip() or len(s.product_name) > 60:
        raise ConfigError("IDP_PRODUCT_NAME must be 1 to 60 characters")
    if not re.fullmatch(r"#[0-9a-fA-F]{6}", s.accent_color):
        raise ConfigError(f"IDP_ACCENT_COLOR must look like #2651a6, not {s.accent_color!r}")
    if s.logo_file:
        logo = Path(s.logo_file)
        if logo.suffix.lower() not in LOGO_TYPES or not logo.is_file() or logo.stat().st_size > 256 * 1024:
            raise ConfigError("IDP_LOGO_FILE must be an existing .png, .jpg, .gif or .webp file of at most 256 KiB")
    for name, value in (("IDP_TERMS_URL", s.terms_url), ("IDP_PRIVACY_URL", s.privacy_url)):
        link = urlsplit(value)
        if value and (link.scheme != "https" or not link.hostname):
            raise ConfigError(f"{name} must be an https:// address")
    if s.terms_version and (not s.terms_url or len(s.terms_version) > 32):
        raise ConfigError("IDP_TERMS_VERSION needs IDP_TERMS_URL, and at most 32 characters")
    if s.outbox_worker not in OUTBOX_WORKER_MODES:
        raise ConfigError(f"IDP_OUTBOX_WORKER must be one of {', '.join(OUTBOX_WORKER_MODES)}, not {s.outbox_worker!r}")
    if not 0 <= s.outbox_wait_ms <= 10000:
        raise ConfigError("IDP_OUTBOX_WAIT_MS must be between 0 and 10000")
    if not 1 <= s.backchannel_logout_timeout <= 30:
        raise ConfigError("IDP_BACKCHANNEL_LOGOUT_TIMEOUT must be between 1 and 30 seconds")
    if s.outbox_poll_seconds <= 0 or s.session_sweep_seconds <= 0:
        raise ConfigError("IDP_OUTBOX_POLL_SECONDS and IDP_SESSION_SWEEP_SECONDS must be positive")
    if min(s.registration_per_ip, s.registration_per_network, s.registration_total) < 0:
        raise ConfigError("IDP_REGISTRATION_PER_IP, IDP_REGISTRATION_PER_NETWORK and IDP_REGISTRATION_TOTAL "
                          "must be 0 (no limit) or more")
    if not 60 <= s.registration_window <= 86400:
        raise ConfigError("IDP_REGISTRATION_WINDOW must be between 60 and 86400 seconds")
    if min(s.password_reset_per_ip, s.password_reset_per_network) < 0:
        raise ConfigError("IDP_PASSWORD_RESET_PER_IP and IDP_PASSWORD_RESET_PER_NETWORK must be 0 (no limit) or more")
    if not 60 <= s.password_reset_window <= 86400:
        raise ConfigError("IDP_PASSWORD_RESET_WINDOW must be between 60 and 86400 seconds")
    if s.client_registration not in CLIENT_REGISTRATION_MODES:
        raise ConfigError(f"IDP_CLIENT_REGISTRATION must be one of {', '.join(CLIENT_REGISTRATION_MODES)}, "
                          f"not {s.client_registration!r}")
    if s.client_registration_per_ip < 0 or s.client_registration_total < 0:
        raise ConfigError("IDP_CLIENT_REGISTRATION_PER_IP and IDP_CLIENT_REGISTRATION_TOTAL must be 0 (no limit) or more")
    if s.client_registration_per_network < 0:
        # Below the per-address limit is allowed (it is then the tighter one), so a deployment
        # that raised IDP_CLIENT_REGISTRATION_PER_IP before this setting existed still starts.
        raise ConfigError("IDP_CLIENT_REGISTRATION_PER_NETWORK must be 0 (no limit) or more")
    if s.client_configuration_per_ip < 0:
        raise ConfigError("IDP_CLIENT_CONFIGURATION_PER_IP must be 0 (no limit) or more")
    if not 60 <= s.client_registration_window <= 86400:
        raise ConfigError("IDP_CLIENT_REGISTRATION_WINDOW must be between 60 and 86400 seconds")
    try:
        s.outbound_allowed_networks
    except ValueError:
        raise ConfigError("IDP_OUTBOUND_ALLOW_PRIVATE must be comma-separated networks like 10.20.0.0/16, "
                          f"not {s.outbound_allow_private!r}") from None
    if s.log_level not in LOG_LEVELS:
        raise ConfigError(f"IDP_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, not {s.log_level!r}")
