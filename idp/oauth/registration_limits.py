"""Rate limits of dynamic client registration (RFC 7591 3): how many registration requests one
network (an IPv4 address or an IPv6 /64, as for login throttling) and everyone together may make
in a fixed window (IDP_CLIENT_REGISTRATION_PER_IP, _TOTAL, _WINDOW). The counters are rows in the
database, so every instance counts the same requests.

A request carrying a usable initial access token is not counted: an operator issued that token
for exactly one client. Every other request is, valid or not, before its body is read. Past a
limit the answer is 429 with Retry-After and nothing is registered; the first refusal per counter
and window is an audit event, later ones are not (a flood must not fill the audit trail).
"""
from __future__ import annotations

import math
from datetime import datetime, timedelta

from authlib.consts import default_json_headers
from authlib.oauth2.rfc6749 import OAuth2Error
from sqlalchemy import case, literal

from idp import audit
from idp.authn.throttle import client_network
from idp.clock import now
from idp.extensions import db, upsert
from idp.models import RateLimit
from idp.models.types import UtcDateTime

KEY_PREFIX = "client-registration"


class RegistrationLimited(OAuth2Error):
    """429 with Retry-After (RFC 6585 4). No OAuth error code is registered for rate limiting;
    temporarily_unavailable (RFC 6749 4.1.2.1) tells the client what to do: try again later."""

    error = "temporarily_unavailable"
    status_code = 429

    def __init__(self, retry_after: int):
        super().__init__("too many client registrations, try again after Retry-After seconds")
        self.retry_after = retry_after

    def get_headers(self):
        return [*default_json_headers, ("Retry-After", str(self.retry_after))]


def counters(ip: str, settings) -> list[tuple[str, str, int]]:
    """(name, key, limit) of each counter a request from `ip` adds to, per-network first."""
    return [("ip", f"{KEY_PREFIX}:ip:{client_network(ip)[:64]}", settings.client_registration_per_ip),
            ("total", f"{KEY_PREFIX}:total", settings.client_registration_total)]


def count_registration(ip: str, settings) -> None:
    """Count one registration request from `ip` and commit the count on its own (a request that
    fails later still counts); raise RegistrationLimited past a limit. A network already over its
    own limit does not add to the total, so one network cannot use up everyone's allowance."""
    t = now()
    window = timedelta(seconds=settings.client_registration_window)
    for name, key, limit in counters(ip, settings):
        if not limit:  # 0: no limit
            continue
        hits, window_ends_at = _hit(key, t, window)
        if hits > limit:
            if hits == limit + 1:
                audit.record("oauth.registration.limited", outcome="failure", limit=name,
                             window_ends_at=window_ends_at.isoformat())
            db.session.commit()
            raise RegistrationLimited(max(1, math.ceil((window_ends_at - t).total_seconds())))
    db.session.commit()


def _hit(key: str, t: datetime, window: timedelta) -> tuple[int, datetime]:
    """Add one to the counter, or start it at one when its window has ended, in one statement
    (as authn.throttle does: a read-then-write would lose counts under parallel requests);
    returns the new count and when its window ends."""
    ends = literal(t + window, UtcDateTime())
    restart = RateLimit.window_ends_at <= t
    statement = upsert(RateLimit).values(key=key, hits=1, window_ends_at=t + window)
    statement = statement.on_conflict_do_update(
        index_elements=[RateLimit.key],
        set_={"hits": case((restart, 1), else_=RateLimit.hits + 1),
              "window_ends_at": case((restart, ends), else_=RateLimit.window_ends_at)})
    hits, window_ends_at = db.session.execute(statement.returning(RateLimit.hits, RateLimit.window_ends_at)).one()
    return hits, window_ends_at
