"""A person at a browser, over Flask's test client: reads each form's CSRF token and posts it back.

Every Web gets its own client IP (REMOTE_ADDR), so login throttling in one test never reaches
another; the Host is the issuer's, because TRUSTED_HOSTS is on.
"""
from __future__ import annotations

import random
import re
from html import unescape

from tests.helpers.forms import csrf_token

USER_AGENT = "idp-tests/1.0 (people and sessions)"


def random_ip() -> str:
    return "10.%d.%d.%d" % (random.randrange(256), random.randrange(256), random.randrange(1, 255))


def field_value(html: str, name: str) -> str | None:
    """The value attribute of the input called name, or None when it has none."""
    match = re.search(rf'<input[^>]*name="{re.escape(name)}"[^>]*>', html)
    assert match, f"page has no input {name}"
    value = re.search(r'value="([^"]*)"', match.group(0))
    return unescape(value.group(1)) if value else None


def without_csrf(html: str) -> str:
    return re.sub(r'name="csrf_token" value="[^"]*"', 'name="csrf_token" value=""', html)


class Web:
    def __init__(self, app, ip: str | None = None):
        self.app = app
        self.issuer = app.config["IDP_SETTINGS"].issuer
        self.host = self.issuer.split("://", 1)[1].split(":")[0]
        self.ip = ip or random_ip()
        self.http = app.test_client()
        self.http.environ_base.update({"REMOTE_ADDR": self.ip, "HTTP_USER_AGENT": USER_AGENT})

    def get(self, path: str, **kw):
        return self.http.get(path, base_url=self.issuer, **kw)

    def post(self, path: str, **kw):
        return self.http.post(path, base_url=self.issuer, **kw)

    def token(self, path: str = "/login") -> str:
        return csrf_token(self.get(path).get_data(as_text=True))

    def login(self, login: str, password: str, next_path: str | None = None):
        data = {"csrf_token": self.token(), "login": login, "password": password}
        if next_path is not None:
            data["next"] = next_path
        return self.post("/login", data=data)

    def register(self, username: str, email: str, password: str, next_path: str | None = None):
        data = {"csrf_token": self.token("/login"), "username": username, "email": email, "password": password}
        if next_path is not None:
            data["next"] = next_path
        return self.post("/register", data=data)

    def logout(self):
        return self.post("/logout", data={"csrf_token": self.token("/logout")})

    @property
    def cookie_name(self) -> str:
        settings = self.app.config["IDP_SETTINGS"]
        return "idp_session" if settings.is_loopback_http else "__Host-idp_session"

    @property
    def session_cookie(self) -> str | None:
        cookie = self.http.get_cookie(self.cookie_name, domain=self.host)
        return cookie.value if cookie is not None else None

    def set_session_cookie(self, value: str) -> None:
        self.http.set_cookie(self.cookie_name, value, domain=self.host)

    def is_signed_in(self) -> bool:
        """/account answers 200 for a live session and redirects to /login otherwise."""
        response = self.get("/account")
        assert response.status_code in (200, 302), response.status_code
        return response.status_code == 200


def signed_in_as(app, cookie_value: str) -> bool:
    """Whether a bare browser presenting only this cookie value is signed in."""
    stranger = Web(app)
    stranger.set_session_cookie(cookie_value)
    return stranger.is_signed_in()
