"""Rate limits of dynamic client registration (RFC 7591 3) and of the client configuration
endpoint (RFC 7592 2), counted in fixed windows of IDP_CLIENT_REGISTRATION_WINDOW. The counters
are rows in the database, so every instance counts the same requests.

Registration counts per address (an IPv4 address or an IPv6 /64, as for login throttling), per
network (the IPv4 /24 or IPv6 /48 around it: one site with many /64s gets one share) and for
everyone together. A request carrying a usable initial access token is not counted: an operator
issued that token for exactly one client. Every other request is, valid or not, before its body
is read. The configuration endpoint counts every request per address, before the registration
access token is checked, so wrong tokens count too.

Past a limit the answer is 429 with Retry-After and nothing happens. A refused request counts
only against the limit that refused it: not against the narrower ones it had passed (a flood
held back by the total does not use up a bystander's own allowance), and never against the wider
ones after it (one network cannot use up everyone's allowance). The first refusal per counter and
window is an audit event, later ones are not (a flood must not fill the audit trail).
"""
from __future__ import annotations

import ipaddress
import math
from datetime import datetime, timedelta

from authlib.consts import default_json_headers
from authlib.oauth2.rfc6749 import OAuth2Error
from sqlalchemy import case, literal, update

from idp import audit
from idp.authn.throttle import client_network
from idp.clock import now
from idp.extensions import db, upsert
from idp.models import RateLimit
from idp.models.types import UtcDateTime

KEY_PREFIX = "client-registration"
CONFIGURATION_KEY_PREFIX = "client-configuration"
# The network around an address: an IPv6 /48 is the largest block one end site is usually given
# (RFC 6177 2), an IPv4 /24 the smallest block routed on the internet; one operator, one share.
NETWORK_PREFIX = {4: 24, 6: 48}


class RegistrationLimited(OAuth2Error):
    """429 with Retry-After (RFC 6585 4). No OAuth error code is registered for rate limiting;
    temporarily_unavailable (RFC 6749 4.1.2.1) tells the client what to do: try again later."""

    error = "temporarily_unavailable"
    status_code = 429

    def __init__(self, retry_after: int, what: str = "client registrations"):
        super().__init__(f"too many {what}, try again after Retry-After seconds")
        self.retry_after = retry_after

    def get_headers(self):
        return [*default_json_headers, ("Retry-After", str(self.retry_after))]


def wider_network(ip: str) -> str | None:
    """The IPv4 /24 or IPv6 /48 an address belongs to (an IPv4-mapped IPv6 address as IPv4);
    None for what is not an address."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return str(ipaddress.ip_network(f"{address}/{NETWORK_PREFIX[address.version]}", strict=False))


def counters(ip: str, settings) -> list[tuple[str, str, int]]:
    """(name, key, limit) of each counter a registration request from `ip` adds to, narrowest
    first: a request must pass the narrower limits before it reaches a wider one."""
    rows = [("ip", f"{KEY_PREFIX}:ip:{client_network(ip)[:64]}", settings.client_registration_per_ip)]
    network = wider_network(ip)
    if network is not None:
        rows.append(("network", f"{KEY_PREFIX}:network:{network}", settings.client_registration_per_network))
    rows.append(("total", f"{KEY_PREFIX}:total", settings.client_registration_total))
    return rows


def configuration_counters(ip: str, settings) -> list[tuple[str, str, int]]:
    """(name, key, limit) of the counter a client configuration request from `ip` adds to."""
    return [("ip", f"{CONFIGURATION_KEY_PREFIX}:ip:{client_network(ip)[:64]}", settings.client_configuration_per_ip)]


def count_registration(ip: str, settings) -> None:
    """Count one registration request from `ip` and commit the count on its own (a request that
    fails later still counts); raise RegistrationLimited past a limit."""
    _count("register", counters(ip, settings), settings, "client registrations")


def count_configuration(ip: str, settings) -> None:
    """Count one client configuration request from `ip` (RFC 7592 2, any method, before its
    token is checked) and commit the count; raise RegistrationLimited past the limit."""
    _count("configure", configuration_counters(ip, settings), settings, "client configuration requests")


def _count(endpoint: str, rows: list[tuple[str, str, int]], settings, what: str) -> None:
    """Add one to each counter in turn; at the first one past its limit, take the request back
    out of the counters it had passed, record the first refusal, commit and raise."""
    t = now()
    window = timedelta(seconds=settings.client_registration_window)
    passed: list[str] = []
    for name, key, limit in rows:
        if not limit:  # 0: no limit
            continue
        hits, window_ends_at = _hit(key, t, window)
        if hits > limit:
            _take_back(passed)
            if hits == limit + 1:
                audit.record("oauth.registration.limited", outcome="failure", endpoint=endpoint, limit=name,
                             window_ends_at=window_ends_at.isoformat())
            db.session.commit()
            raise RegistrationLimited(max(1, math.ceil((window_ends_at - t).total_seconds())), what)
        passed.append(key)
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


def _take_back(keys: list[str]) -> None:
    """Subtract the one _hit added to each of `keys`, in the same transaction: the rows are still
    locked by that upsert (PostgreSQL row locks, SQLite's one writer) until the commit, so no
    other request saw the extra count or can change the window in between."""
    if keys:
        db.session.execute(update(RateLimit).where(RateLimit.key.in_(keys)).values(hits=RateLimit.hits - 1))
