"""Device cookies (OWASP's "Slow Down Online Guessing Attacks with Device Cookies"): a browser in
which someone proved an account's password carries a signed cookie naming that account, and its
later password attempts for that account are throttled on a counter of their own (authn.throttle
`dev:` keys) instead of the account's. So someone guessing a person's password from elsewhere
slows only browsers the person never signed in with, never the person's own; a stolen cookie
gets its own small allowance and nothing more (it proves nothing, it only changes which counter
counts).

The cookie is `<user id>.<issued, unix seconds>.<random nonce>.<HMAC-SHA256>` with a key derived
from IDP_SECRET_KEY for this purpose only; it is valid for LIFETIME, and only for the account it
names. Nothing is stored server-side: the throttle counter is keyed by the nonce's digest."""
from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import timedelta

from flask import Flask, current_app, g, request

from idp.clock import now
from idp.models import User
from idp.security.derived import derive_key
from idp.security.tokens import constant_time_equal, random_token

LIFETIME = timedelta(days=365)
MAX_LENGTH = 200


def cookie_name() -> str:
    settings = current_app.config["IDP_SETTINGS"]
    return "idp_device" if settings.is_loopback_http else "__Host-idp_device"


def _mac(body: str) -> str:
    key = derive_key(current_app.config["IDP_SETTINGS"].secret_key, b"idp device cookie")
    return base64.urlsafe_b64encode(hmac.new(key, body.encode(), hashlib.sha256).digest()).rstrip(b"=").decode()


def trusted_nonce(user: User) -> str | None:
    """The nonce of this browser's device cookie when the cookie is genuine, unexpired and names
    this account; None otherwise. A cookie older than the account was made for an earlier
    account with the same numeric id (SQLite reuses the id of the newest row once deleted)."""
    raw = request.cookies.get(cookie_name(), "")
    parts = raw.split(".") if 0 < len(raw) <= MAX_LENGTH else []
    if len(parts) != 4 or parts[0] != str(user.id) or not parts[1].isdigit():
        return None
    body = ".".join(parts[:3])
    if not constant_time_equal(parts[3], _mac(body)):
        return None
    issued = int(parts[1])
    if not max(now().timestamp() - LIFETIME.total_seconds(), int(user.created_at.timestamp()) - 1) < issued \
            <= now().timestamp() + 60:
        return None
    return parts[2]


def remember(user: User) -> None:
    """After a correct password: this browser gets a device cookie for the account (a new one,
    unless it holds a valid one for this account already)."""
    if trusted_nonce(user) is None:
        body = f"{user.id}.{int(now().timestamp())}.{random_token(16)}"
        g.idp_device_cookie = f"{body}.{_mac(body)}"


def init_device_cookie(app: Flask) -> None:
    @app.after_request
    def _write_device_cookie(response):
        value = g.get("idp_device_cookie")
        if value:
            secure = not current_app.config["IDP_SETTINGS"].is_loopback_http
            response.set_cookie(cookie_name(), value, max_age=int(LIFETIME.total_seconds()), secure=secure,
                                httponly=True, samesite="Lax", path="/")
        return response
