"""Exponential back-off after failed logins, per account+IP, per account and per IP.

The account is the person the login names (authn.password: the username and the email share
one allowance), or, for a login that names nobody, the typed login itself.

Failures past a free allowance double the wait up to IDP_THROTTLE_MAX_DELAY; a success clears
the first counter (account+IP, or the device's), and a counter with no failure for a day (QUIET)
starts again from zero. There is no permanent lock, so nobody can lock a victim out for good,
and the account+IP key means an attacker elsewhere slows the victim only after many failures.
A browser with a device cookie for the account (authn.known_devices) is counted on its own
`dev:` key and the IP's instead of the account's, so the person's own browsers are never slowed
by someone guessing elsewhere.
"""
from __future__ import annotations

import ipaddress
import math
from datetime import timedelta

from flask import current_app
from sqlalchemy import and_, case, delete, or_, update

from idp.clock import now
from idp.extensions import db, lock_for_update, upsert
from idp.models import LoginThrottle
from idp.models.batches import delete_in_batches
from idp.security.tokens import digest

FREE_FAILURES = {"acct-ip": 3, "acct": 20, "ip": 30, "dev": 5}
QUIET = timedelta(days=1)


def keys_for(login_key: str, ip: str, device: str | None = None) -> list[str]:
    """The counters an attempt is checked against and counted on; `login_key` names the account
    (stored only as a digest); `device`: the nonce of a device cookie valid for this account
    (known_devices.trusted_nonce)."""
    network = client_network(ip)
    if device is not None:
        return [f"dev:{digest(device)[:32]}", f"ip:{network}"]
    account = digest(login_key)[:32]
    return [f"acct-ip:{account}:{network}", f"acct:{account}", f"ip:{network}"]


def client_network(ip: str) -> str:
    """What one client controls: an IPv4 address, or the /64 an IPv6 address belongs to.

    One IPv6 host is usually given a whole /64, so counting per address would hand it 2**64
    fresh allowances.
    """
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if address.version == 6 and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def check(keys: list[str]) -> tuple[int, set[str]]:
    """(whole seconds until another attempt is allowed, 0 = now, rounded up so waiting that long
    is enough; the keys that have a counter)."""
    rows = list(db.session.scalars(db.select(LoginThrottle).where(LoginThrottle.key.in_(keys))))
    t = now()
    waits = [(r.blocked_until - t).total_seconds() for r in rows if r.blocked_until and r.blocked_until > t]
    return math.ceil(max(waits, default=0)), {r.key for r in rows}


def hold(keys: list[str], *, database_lock: bool = True) -> None:
    """Make this transaction the only attempt on the account's counter (the `acct:` key, or the
    device's `dev:` key) until it ends, so that the check, the verification and the count are one
    step: attempts sent in parallel would otherwise all pass a check that only the first
    failure's count would have failed, multiplying the guesses a back-off allows. The counter
    row is made (with no failure) if missing, so that there is a row to lock. On SQLite this is
    the database's one write lock: `database_lock=False` skips it there (the password step, whose
    argon2 verification would hold every writer back). The caller commits."""
    if not database_lock and db.session.get_bind().dialect.name == "sqlite":
        return
    key = next(k for k in keys if k.startswith(("acct:", "dev:")))
    db.session.execute(upsert(LoginThrottle).values(key=key, failures=0, updated_at=now())
                       .on_conflict_do_nothing(index_elements=[LoginThrottle.key]))
    lock_for_update(LoginThrottle, key)


def retry_after(keys: list[str]) -> int:
    """Whole seconds until another attempt is allowed (0 = now)."""
    return check(keys)[0]


def record_failure(keys: list[str]) -> None:
    """Count one failure on every key; past the free allowance, block for a doubling delay."""
    settings = current_app.config["IDP_SETTINGS"]
    t = now()
    quiet = max(QUIET, timedelta(seconds=2 * settings.throttle_max_delay))
    for key in keys:  # always the same order, so concurrent logins lock rows in the same order
        over = _count_failure(key, t, quiet) - FREE_FAILURES[key.split(":", 1)[0]]
        if over > 0:
            delay = min(settings.throttle_base_delay * 2 ** min(over - 1, 30), settings.throttle_max_delay)
            db.session.execute(update(LoginThrottle).where(LoginThrottle.key == key)
                               .values(blocked_until=t + timedelta(seconds=delay)))


def _count_failure(key: str, t, quiet: timedelta) -> int:
    """Insert the counter or add one to it in a single statement and return the new count.

    A counter whose last failure is older than `quiet` restarts at one: otherwise the occasional
    typos of years would add up until every typo blocked the whole account.

    A read-then-write would lose counts when attempts run in parallel, and two first failures
    for one key would both insert it (IntegrityError on the primary key, a 500 for one of them).
    """
    statement = upsert(LoginThrottle).values(key=key, failures=1, updated_at=t)
    statement = statement.on_conflict_do_update(
        index_elements=[LoginThrottle.key],
        set_={"failures": case((LoginThrottle.updated_at < t - quiet, 1), else_=LoginThrottle.failures + 1),
              "updated_at": t})
    return db.session.execute(statement.returning(LoginThrottle.failures)).scalar_one()


def record_success(keys: list[str], counted: set[str] | None = None) -> None:
    """Clear the first counter (account+IP, or the device's) (one statement, so parallel successes cannot trip on each other).
    `counted`, from check(), skips the statement when there was no counter to clear (the usual
    login); a failure racing this success may then leave its one count, which is harmless."""
    if counted is not None and keys[0] not in counted:
        return
    db.session.execute(delete(LoginThrottle).where(LoginThrottle.key == keys[0]))


def forget_account(login_key: str) -> None:
    """Drop the counters of one account (its own and per network; `login_key` as for keys_for),
    when the account goes: on SQLite a new account may be given its numeric id, and must not
    inherit its back-off."""
    account = digest(login_key)[:32]
    db.session.execute(delete(LoginThrottle).where(or_(
        LoginThrottle.key == f"acct:{account}", LoginThrottle.key.startswith(f"acct-ip:{account}:", autoescape=True))))


def purge_quiet_throttles(batch: int = 1000) -> int:
    """Delete counters quiet for a day (QUIET, or twice the longest back-off) and no longer
    blocking: the next failure would start them again from zero anyway. For `idp purge`."""
    settings = current_app.config["IDP_SETTINGS"]
    t = now()
    quiet = max(QUIET, timedelta(seconds=2 * settings.throttle_max_delay))
    blocking_over = or_(LoginThrottle.blocked_until.is_(None), LoginThrottle.blocked_until <= t)
    return delete_in_batches(LoginThrottle, and_(LoginThrottle.updated_at < t - quiet, blocking_over), batch)
