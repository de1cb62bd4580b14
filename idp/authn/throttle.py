"""Exponential back-off after failed logins, per account+IP, per account and per IP.

Failures past a free allowance double the wait up to IDP_THROTTLE_MAX_DELAY; a success clears
the account+IP counter. There is no permanent lock, so nobody can lock a victim out for good,
and the account+IP key means an attacker elsewhere slows the victim only after many failures.
"""
from __future__ import annotations

import math
from datetime import timedelta

from flask import current_app

from idp.clock import now
from idp.extensions import db
from idp.models import LoginThrottle
from idp.security.tokens import digest

FREE_FAILURES = {"acct-ip": 3, "acct": 20, "ip": 30}


def keys_for(login_key: str, ip: str) -> list[str]:
    account = digest(login_key)[:32]
    return [f"acct-ip:{account}:{ip}", f"acct:{account}", f"ip:{ip}"]


def retry_after(keys: list[str]) -> int:
    """Whole seconds until another attempt is allowed (0 = now), rounded up so waiting that long is enough."""
    rows = db.session.scalars(db.select(LoginThrottle).where(LoginThrottle.key.in_(keys)))
    t = now()
    waits = [(r.blocked_until - t).total_seconds() for r in rows if r.blocked_until and r.blocked_until > t]
    return math.ceil(max(waits, default=0))


def record_failure(keys: list[str]) -> None:
    settings = current_app.config["IDP_SETTINGS"]
    t = now()
    for key in keys:
        row = db.session.get(LoginThrottle, key) or LoginThrottle(key=key, failures=0)
        row.failures += 1
        row.updated_at = t
        over = row.failures - FREE_FAILURES[key.split(":", 1)[0]]
        if over > 0:
            delay = min(settings.throttle_base_delay * 2 ** min(over - 1, 30), settings.throttle_max_delay)
            row.blocked_until = t + timedelta(seconds=delay)
        db.session.add(row)


def record_success(keys: list[str]) -> None:
    row = db.session.get(LoginThrottle, keys[0])
    if row is not None:
        db.session.delete(row)
