"""App wiring: security headers on every page type, trusted hosts, error pages that never leak,
health checks, and the flags of the SSO cookie."""
from __future__ import annotations

import dataclasses
import logging
import re
import socket

import pytest
import requests

from idp import create_app
from idp.extensions import db
from idp.models import AuditEvent
from tests.conftest import PASSWORD
from tests.helpers.forms import csrf_token
from tests.helpers.rp import Browser, RelyingParty

HTTPS_ISSUER = "https://idp.example.test"
EVIL_HOST = "evil.example"


def get(url, **kw):
    return requests.get(url, allow_redirects=False, timeout=10, **kw)


def assert_security_headers(response, *, forms_may_leave: bool = False):
    """forms_may_leave: a page whose form may end at another origin, which sends no form-action
    (tests/web/test_headers.py); every other answer has form-action 'self' (no default-src fallback)."""
    csp = response.headers.get("Content-Security-Policy", "")
    directives = {d.strip().split(" ", 1)[0]: d.strip() for d in csp.split(";") if d.strip()}
    assert directives.get("frame-ancestors") == "frame-ancestors 'none'", csp
    assert directives.get("form-action") == (None if forms_may_leave else "form-action 'self'"), csp
    assert "default-src" in directives and "script-src" in directives, csp
    assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp, csp
    assert response.headers.get("X-Content-Type-Options") == "nosniff"
    assert response.headers.get("Referrer-Policy") == "no-referrer"


def assert_no_store(response):
    assert "no-store" in response.headers.get("Cache-Control", "")


def set_cookie_headers(response) -> list[str]:
    """Every Set-Cookie header line of a requests or Werkzeug response."""
    raw = getattr(response, "raw", None)
    if raw is not None and hasattr(raw, "headers"):
        return raw.headers.getlist("Set-Cookie")
    return response.headers.getlist("Set-Cookie")


def cookie_line(response, name: str) -> str:
    lines = [line for line in set_cookie_headers(response) if line.startswith(f"{name}=")]
    assert len(lines) == 1, set_cookie_headers(response)
    return lines[0]


def attributes(line: str) -> dict:
    parts = [p.strip() for p in line.split(";")[1:]]
    return {p.split("=", 1)[0].lower(): (p.split("=", 1)[1] if "=" in p else True) for p in parts}


def login_events(app) -> int:
    with app.app_context():
        return db.session.scalar(db.select(db.func.count()).select_from(AuditEvent)
                                 .where(AuditEvent.type.like("authn.login%")))


@pytest.fixture
def consent_page(live_server, make_user, make_client):
    """A signed-in browser looking at the consent screen of a third-party client."""
    user = make_user()
    rp = RelyingParty(live_server, make_client(first_party=False))
    browser = Browser(live_server)
    assert browser.login(user["username"], PASSWORD).status_code == 303
    page = browser.get(rp.authorization_url())
    assert page.status_code == 200 and 'name="pending_id"' in page.text
    return page


# --- headers on every page type --------------------------------------------------------------
HTML_PAGES = {
    "login": "/login",
    "register": "/register",
    "account redirect": "/account",
    "404 page": "/no-such-page",
    "oauth error page": "/authorize?response_type=code&client_id=unknown&redirect_uri=https%3A%2F%2Fevil.example%2Fcb",
    "logout confirmation": "/logout",
}


@pytest.mark.parametrize("path", HTML_PAGES.values(), ids=HTML_PAGES.keys())
def test_html_pages_carry_security_headers_and_no_store(live_server, path):
    response = get(live_server + path)
    assert response.status_code in (200, 302, 400, 404)
    assert response.headers["Content-Type"].startswith("text/html")
    assert_security_headers(response)
    assert_no_store(response)


def test_consent_page_carries_security_headers_and_no_store(consent_page):
    assert_security_headers(consent_page, forms_may_leave=True)  # Allow and Deny answer the client
    assert_no_store(consent_page)


def test_oauth_error_page_is_shown_on_the_provider_not_redirected(live_server):
    response = get(live_server + HTML_PAGES["oauth error page"])
    assert response.status_code == 400 and "Location" not in response.headers
    assert "invalid_client" in response.text and EVIL_HOST not in response.text


def test_token_json_carries_security_headers_and_no_store(live_server, make_client):
    client = make_client()
    ok = requests.post(f"{live_server}/token", auth=(client["client_id"], client["client_secret"]),
                       data={"grant_type": "client_credentials", "scope": "profile"}, timeout=10)
    assert ok.status_code == 200 and ok.headers["Content-Type"].startswith("application/json")
    failed = requests.post(f"{live_server}/token", data={"grant_type": "client_credentials"}, timeout=10)
    assert failed.status_code == 401 and failed.json()["error"] == "invalid_client"
    for response in (ok, failed):
        assert_security_headers(response)
        assert_no_store(response)
        assert response.headers.get("Pragma") == "no-cache"


@pytest.mark.parametrize("path", ["/jwks", "/.well-known/openid-configuration",
                                  "/.well-known/oauth-authorization-server"])
def test_json_documents_carry_security_headers(live_server, path):
    response = get(live_server + path)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("application/json")
    assert_security_headers(response)
    assert response.headers["Access-Control-Allow-Origin"] == "*"


@pytest.mark.parametrize("method, path, kwargs, challenge", [
    ("GET", "/userinfo", {"headers": {"Authorization": "Bearer not-a-token"}}, 'Bearer error="invalid_token"'),
    ("GET", "/userinfo", {}, "Bearer"),
    ("POST", "/token", {"data": {"grant_type": "client_credentials"}, "auth": ("no-such-client", "x")},
     'Basic error="invalid_client"'),
    ("POST", "/revoke", {"data": {"token": "x"}, "auth": ("no-such-client", "x")}, 'Basic error="invalid_client"'),
], ids=["userinfo-invalid-token", "userinfo-no-token", "token-invalid-client", "revoke-invalid-client"])
def test_browser_apps_can_read_the_www_authenticate_challenge(live_server, method, path, kwargs, challenge):
    """RFC 6750 3 / RFC 6749 5.2: the challenge says why a request was refused; a cross-origin
    script only sees it when the CORS answer exposes the header."""
    response = requests.request(method, live_server + path, timeout=10,
                                headers={"Origin": "https://spa.example", **kwargs.pop("headers", {})}, **kwargs)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith(challenge)
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    exposed = [h.strip().lower() for h in response.headers.get("Access-Control-Expose-Headers", "").split(",")]
    assert "www-authenticate" in exposed


@pytest.mark.parametrize("path", ["/jwks", "/.well-known/openid-configuration",
                                  "/.well-known/oauth-authorization-server", "/branding.css"])
def test_public_documents_may_be_cached(live_server, path):
    response = get(live_server + path)
    assert response.status_code == 200 and response.headers["Cache-Control"].startswith("public, max-age=")


def test_the_data_download_is_never_cached(live_server, make_user):
    user = make_user()
    browser = Browser(live_server)
    assert browser.login(user["username"], PASSWORD).status_code == 303
    token = csrf_token(browser.get(f"{live_server}/account/privacy").text)
    response = browser.post(f"{live_server}/account/export", data={"csrf_token": token})
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("application/json")
    assert_no_store(response)
    assert response.headers.get("Pragma") == "no-cache"


def test_the_recovery_codes_file_is_never_cached(live_server):
    browser = Browser(live_server)
    token = csrf_token(browser.get(f"{live_server}/login").text)
    response = browser.post(f"{live_server}/recovery-codes.txt", data={"csrf_token": token, "code": "abcd-efgh"})
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/plain")
    assert_no_store(response)


@pytest.mark.parametrize("method, path", [("GET", "/userinfo"), ("GET", "/scim/v2/Users"), ("GET", "/no-such-file.json")])
def test_other_answers_that_are_not_pages_are_never_cached(live_server, method, path):
    response = requests.request(method, live_server + path, timeout=10, allow_redirects=False)
    assert_no_store(response)


def test_static_files_carry_security_headers(live_server):
    response = get(f"{live_server}/static/css/idp.css")
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/css")
    assert_security_headers(response)


def test_pages_hold_no_inline_script_or_style(live_server, consent_page):
    for page in (get(live_server + "/login"), get(live_server + "/register"), consent_page):
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page.text), "inline <script>"
        assert not re.search(r"<style\b|\sstyle=|\son[a-z]+=", page.text), "inline style or handler"


# --- trusted hosts ---------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/login", "/.well-known/openid-configuration", "/account", "/token"])
def test_a_foreign_host_header_is_rejected_and_never_reflected(live_server, path):
    response = get(live_server + path, headers={"Host": EVIL_HOST})
    assert response.status_code == 400
    assert EVIL_HOST not in response.text
    assert all(EVIL_HOST not in value for value in response.headers.values())


def test_forwarded_host_headers_are_ignored_without_a_trusted_proxy(live_server):
    forged = {"X-Forwarded-Host": EVIL_HOST, "X-Forwarded-Proto": "https", "Forwarded": f"host={EVIL_HOST}"}
    account = get(f"{live_server}/account", headers=forged)
    assert account.status_code == 302 and EVIL_HOST not in account.headers["Location"]
    meta = get(f"{live_server}/.well-known/openid-configuration", headers=forged).json()
    assert meta["issuer"] == live_server and EVIL_HOST not in str(meta)


# --- error pages -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def crashing_app(settings):
    """A second app on the same database with a route that fails like a bug would."""
    application = create_app(settings)

    @application.route("/boom")
    def boom():
        raise RuntimeError("kaboom-detail-do-not-show dsn=postgresql://u:hunter2@db/idp")

    return application


def test_a_server_error_shows_the_request_id_and_nothing_else(crashing_app, settings, caplog):
    with caplog.at_level(logging.ERROR, logger="idp.web"):
        response = crashing_app.test_client().get("/boom", base_url=settings.issuer)
    body = response.get_data(as_text=True)
    assert response.status_code == 500 and response.mimetype == "text/html"
    logged = [r for r in caplog.records if "unhandled error" in r.getMessage()]
    assert len(logged) == 1 and logged[0].exc_info is not None, "the traceback goes to the log"
    request_id = re.search(r"request_id=(\S+)", logged[0].getMessage()).group(1)
    assert f"<code>{request_id}</code>" in body
    for leak in ("kaboom", "hunter2", "RuntimeError", "Traceback", "File \"", "boom()"):
        assert leak not in body
    assert_security_headers(response)
    assert_no_store(response)


def test_each_error_page_has_its_own_request_id(live_server):
    ids = {re.search(r"<code>([^<]+)</code>", get(f"{live_server}/nope").text).group(1) for _ in range(3)}
    assert len(ids) == 3


def test_not_found_is_a_friendly_page(live_server):
    response = get(f"{live_server}/no-such-page")
    assert response.status_code == 404 and response.headers["Content-Type"].startswith("text/html")
    assert "This page does not exist" in response.text and "<h1>" in response.text
    assert "Werkzeug" not in response.text and "The requested URL" not in response.text


def test_wrong_method_is_a_friendly_page(live_server):
    response = requests.delete(f"{live_server}/login", timeout=10)
    assert response.status_code == 405 and response.headers["Content-Type"].startswith("text/html")
    assert "cannot be used that way" in response.text
    assert "GET" in response.headers["Allow"] and "POST" in response.headers["Allow"]
    assert "Werkzeug" not in response.text and "The method is not allowed" not in response.text
    assert_security_headers(response)


def test_login_post_without_csrf_gets_our_400_page_and_signs_no_one_in(app, live_server, make_user):
    user = make_user()
    before = login_events(app)
    response = requests.post(f"{live_server}/login", data={"login": user["username"], "password": PASSWORD},
                             allow_redirects=False, timeout=10)
    assert response.status_code == 400 and response.headers["Content-Type"].startswith("text/html")
    assert "This form has expired or was sent from elsewhere" in response.text
    assert "The CSRF token is missing" not in response.text
    assert not [c for c in set_cookie_headers(response) if "idp_session=" in c]
    assert login_events(app) == before
    assert_security_headers(response)


def test_login_post_with_a_forged_csrf_token_is_refused(app, live_server, make_user):
    user = make_user()
    browser = Browser(live_server)
    csrf_token(browser.get(f"{live_server}/login").text)
    before = login_events(app)
    response = browser.post(f"{live_server}/login", data={"csrf_token": "forged." + "A" * 40,
                            "login": user["username"], "password": PASSWORD})
    assert response.status_code == 400 and "This form has expired" in response.text
    assert "idp_session" not in browser.http.cookies
    assert login_events(app) == before


# --- health ----------------------------------------------------------------------------------
def test_healthz_answers_ok(live_server):
    response = get(f"{live_server}/healthz")
    assert response.status_code == 200 and response.text == "ok\n"
    assert_security_headers(response)


def test_readyz_answers_ok_when_the_database_answers(live_server):
    response = get(f"{live_server}/readyz")
    assert response.status_code == 200 and response.text == "ok\n"


def test_readyz_answers_503_when_the_database_is_unreachable(settings):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]  # bound but not listening: connections are refused
        url = f"postgresql://postgres:not-this@127.0.0.1:{closed}/idp"
        broken = create_app(dataclasses.replace(settings, database_url=url))
        response = broken.test_client().get("/readyz", base_url=settings.issuer)
    assert response.status_code == 503
    body = response.get_data(as_text=True)
    assert "database unavailable" in body and "not-this" not in body and str(closed) not in body


# --- cookies ---------------------------------------------------------------------------------
def test_sso_cookie_on_loopback_http_is_httponly_lax_and_host_only(live_server, make_user):
    user = make_user()
    browser = Browser(live_server)
    page = browser.get(f"{live_server}/login")
    browser_cookie = attributes(cookie_line(page, "idp_browser"))
    assert browser_cookie.get("httponly") is True and browser_cookie.get("samesite", "").lower() == "lax"
    response = browser.post(f"{live_server}/login", data={"csrf_token": csrf_token(page.text),
                            "login": user["username"], "password": PASSWORD})
    assert response.status_code == 303
    flags = attributes(cookie_line(response, "idp_session"))
    assert flags.get("httponly") is True and flags.get("samesite", "").lower() == "lax"
    assert flags.get("path") == "/" and "domain" not in flags


@pytest.fixture(scope="module")
def https_app(settings):
    """The same app behind an https issuer, as in production."""
    return create_app(dataclasses.replace(settings, issuer=HTTPS_ISSUER))


def test_sso_cookie_on_https_is_host_prefixed_secure_httponly_lax(https_app, make_user):
    user = make_user()
    web = https_app.test_client()
    page = web.get("/login", base_url=HTTPS_ISSUER)
    assert page.status_code == 200
    browser_cookie = attributes(cookie_line(page, "__Host-idp_browser"))
    assert browser_cookie.get("secure") is True and browser_cookie.get("httponly") is True
    assert browser_cookie.get("path") == "/" and "domain" not in browser_cookie
    response = web.post("/login", base_url=HTTPS_ISSUER, data={
        "csrf_token": csrf_token(page.get_data(as_text=True)), "login": user["username"], "password": PASSWORD})
    assert response.status_code == 303
    flags = attributes(cookie_line(response, "__Host-idp_session"))
    assert flags.get("secure") is True and flags.get("httponly") is True
    assert flags.get("samesite", "").lower() == "lax"
    assert flags.get("path") == "/" and "domain" not in flags
    assert not [c for c in set_cookie_headers(response) if c.startswith("idp_session=")]
    assert "max-age=" in response.headers.get("Strict-Transport-Security", "")
    assert_security_headers(response)


def test_https_app_rejects_the_loopback_host(https_app):
    response = https_app.test_client().get("/login", base_url="https://127.0.0.1")
    assert response.status_code == 400


def test_the_client_fixture_talks_to_the_issuer_host(client):
    assert client.get("/healthz").status_code == 200
    assert client.get("/healthz", base_url="http://evil.example").status_code == 400


def test_datetimes_in_other_zones_are_stored_as_the_same_instant(app, make_client):
    """UtcDateTime converts an aware value to UTC before it is stored (SQLite keeps no zone)."""
    from datetime import datetime, timedelta, timezone

    from idp.models import Client
    instant = datetime(2026, 6, 1, 12, 0, tzinfo=timezone(timedelta(hours=5)))
    with app.app_context():
        row = db.session.scalar(db.select(Client).where(Client.client_id == make_client()["client_id"]))
        row.updated_at = instant
        db.session.commit()
        db.session.expire_all()
        stored = db.session.get(Client, row.id).updated_at
        assert stored == instant and stored.utcoffset() == timedelta(0)
        assert db.session.scalar(db.select(db.func.count()).select_from(Client).where(
            Client.updated_at == datetime(2026, 6, 1, 7, 0, tzinfo=timezone.utc))) == 1


def test_a_rollback_undoes_writes_made_in_a_released_savepoint(app):
    """On SQLite a savepoint used to be the outermost transaction, so its release committed and a
    later rollback (a form error after the row was written) left a partial write behind."""
    from idp.models import User

    with app.app_context():
        db.session.rollback()
        with db.session.begin_nested():
            db.session.add(User(subject="savepoint-probe", username="savepoint_probe",
                                username_key="savepoint_probe", email="sp@example.test", email_key="sp@example.test"))
            db.session.flush()
        db.session.rollback()
        assert db.session.scalar(db.select(User).where(User.subject == "savepoint-probe")) is None
