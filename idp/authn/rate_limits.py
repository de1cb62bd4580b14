"""Requests counted in fixed windows, in the rate_limits table (so every instance counts the same
requests): the limits of self-registration at /register (count_registration, here), of passkey
sign-in options (count_passwordless, here), of /forgot-password (count_password_reset, here, and
allow_one: the reset links one network may ask for one account, see users.recovery) and of dynamic client registration
(oauth.registration_limits) share this counting.

A request adds one to each of its counters in turn, narrowest first (an address, its network,
everyone). Past a limit nothing else happens for it, and it counts only against the limit that
refused it: not against the narrower ones it had passed (a flood held back by the total does not
use up a bystander's own allowance), and never against the wider ones after it (one network
cannot use up everyone's allowance). The first refusal per counter and window is an audit event,
later ones are not (a flood must not fill the audit trail).
"""
from __future__ import annotations

import ipaddress
import math
from datetime import datetime, timedelta

from sqlalchemy import case, literal, update

from idp import audit
from idp.authn.errors import RateLimited
from idp.authn.throttle import client_network
from idp.clock import now
from idp.extensions import db, upsert
from idp.models import RateLimit
from idp.models.types import UtcDateTime

REGISTRATION_KEY_PREFIX = "registration"
# The network around an address: an IPv6 /48 is the largest block one end site is usually given
# (RFC 6177 2), an IPv4 /24 the smallest block routed on the internet; one operator, one share.
NETWORK_PREFIX = {4: 24, 6: 48}
# Passwordless sign-in options (POST /login/passwordless/options), per minute: each writes a
# challenge row, for anyone who has read a sign-in page. One person asks once per sign-in page
# and once per press of "Sign in with a passkey", a few times a minute; an address shared by
# many people (an office, a carrier's NAT) and a network get room for many more.
PASSWORDLESS_KEY_PREFIX = "passwordless"
PASSWORDLESS_PER_IP = 30
PASSWORDLESS_PER_NETWORK = 300
PASSWORDLESS_WINDOW = 60
# Requests at /forgot-password (IDP_PASSWORD_RESET_PER_IP, _PER_NETWORK, _WINDOW): each queues a
# job and, for a real account, a mail; the limit also stops testing logins at will.
PASSWORD_RESET_KEY_PREFIX = "password-reset"


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


def counters(prefix: str, ip: str, per_ip: int, per_network: int, total: int) -> list[tuple[str, str, int]]:
    """(name, key, limit) of each counter a request from `ip` adds to, narrowest first, so a
    request must pass the narrower limits before it reaches a wider one: its address (an IPv4
    address or an IPv6 /64, as for login throttling), its network (the IPv4 /24 or IPv6 /48: one
    site with many /64s gets one share) and everyone."""
    rows = [("ip", f"{prefix}:ip:{client_network(ip)[:64]}", per_ip)]
    network = wider_network(ip)
    if network is not None:
        rows.append(("network", f"{prefix}:network:{network}", per_network))
    rows.append(("total", f"{prefix}:total", total))
    return rows


def count(rows: list[tuple[str, str, int]], window_seconds: int, event: str, **details) -> None:
    """Add one to each (name, key, limit) counter in turn (a limit of 0: not counted) and commit
    the counts on their own, so a request that fails later still counts. At the first counter
    past its limit, take the request back out of the counters it had passed, record `event`
    (with `details`) on the first refusal of that counter's window, commit and raise RateLimited."""
    t = now()
    window = timedelta(seconds=window_seconds)
    passed: list[str] = []
    for name, key, limit in rows:
        if not limit:
            continue
        hits, window_ends_at = _hit(key, t, window)
        if hits > limit:
            _take_back(passed)
            if hits == limit + 1:
                audit.record(event, outcome="failure", **details, limit=name, window_ends_at=window_ends_at.isoformat())
            db.session.commit()
            raise RateLimited(max(1, math.ceil((window_ends_at - t).total_seconds())))
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


def count_registration(ip: str, settings) -> None:
    """Count one sign-up attempt (POST /register, before its password is hashed: each costs an
    argon2 hash, a row and a mail to any address) from `ip`; raise RateLimited past a limit."""
    rows = counters(REGISTRATION_KEY_PREFIX, ip, settings.registration_per_ip, settings.registration_per_network,
                    settings.registration_total)
    count(rows, settings.registration_window, "authn.registration.limited")


def count_passwordless(ip: str) -> None:
    """Count one request for passwordless sign-in options from `ip`, before its challenge row is
    written; raise RateLimited past a limit. Per address and per network only, with no total:
    a flood from many networks must not turn passkey sign-in off for everyone."""
    rows = counters(PASSWORDLESS_KEY_PREFIX, ip, PASSWORDLESS_PER_IP, PASSWORDLESS_PER_NETWORK, 0)
    count(rows, PASSWORDLESS_WINDOW, "authn.passwordless.limited")


def count_password_reset(ip: str, settings) -> None:
    """Count one request at /forgot-password from `ip`, whatever login it names (known or not:
    the same work either way); raise RateLimited past a limit. Per address and per network, with
    no total: a flood from many networks must not turn account recovery off for everyone."""
    rows = counters(PASSWORD_RESET_KEY_PREFIX, ip, settings.password_reset_per_ip, settings.password_reset_per_network, 0)
    count(rows, settings.password_reset_window, "authn.password_reset.limited")


def allow_one(key: str, limit: int, window_seconds: int) -> bool:
    """Add one to the counter `key` (fixed window) and say whether it is still within `limit`;
    past it, take the one back. In the caller's transaction (no commit): a caller holding a row
    lock keeps it until its own commit."""
    hits, _ = _hit(key, now(), timedelta(seconds=window_seconds))
    if hits > limit:
        _take_back([key])
        return False
    return True
