"""Password sign-in: one generic failure for every reason, constant work for unknown users, and
the throttle (per account, whichever login names it, unless this browser has signed in to the
account before: authn.known_devices)."""
from __future__ import annotations

from flask import current_app, request

from idp import audit
from idp.authn import known_devices, throttle
from idp.authn.errors import LoginFailed, Throttled
from idp.models import User
from idp.security import passwords
from idp.users.directory import find_by_login, hasher, identifier_key

# A real argon2 hash of a random value: verifying against it costs what a real check costs.
_DUMMY: dict[str, str] = {}


def _dummy_hash() -> str:
    if "hash" not in _DUMMY:
        _DUMMY["hash"] = passwords.hash_password(hasher(), "dummy-password-for-timing")
    return _DUMMY["hash"]


def _account_key(user: User | None, login: str) -> str:
    """Whose counters an attempt counts on: the account's when the login names one, so its
    username and email (in any case) share one allowance; an unknown login's own, as typed
    (normalised), so the throttle reveals nothing about which logins exist. The prefixes keep a
    typed login from ever naming another counter (an account's, or its second-factor step's)."""
    return f"user:{user.id}" if user is not None else f"login:{identifier_key(login)}"


def forget_counters(user: User) -> None:
    """The account's sign-in and second-step counters go with it (see throttle.forget_account)."""
    throttle.forget_account(_account_key(user, ""))
    throttle.forget_account(f"second-factor:{user.id}")


def authenticate(login: str, password: str) -> User:
    """The user whose login and password match, or LoginFailed / Throttled. The caller commits."""
    user = find_by_login(login) if login else None
    device = known_devices.trusted_nonce(user) if user is not None else None
    keys = throttle.keys_for(_account_key(user, login), request.remote_addr or "-", device)
    throttle.hold(keys, database_lock=False)  # PostgreSQL: parallel guesses at one account take turns
    wait, counted = throttle.check(keys)
    if wait:
        audit.record("authn.login.failed", outcome="failure", reason="throttled")
        raise Throttled(wait)
    ok, legacy = _verify(user, password)
    reason = None if ok else ("unknown_user" if user is None else "bad_password")
    if ok and user.disabled:
        reason = "disabled"
    if reason:
        throttle.record_failure(keys)
        audit.record("authn.login.failed", outcome="failure", user=user, reason=reason)
        raise LoginFailed(reason)
    throttle.record_success(keys, counted)
    known_devices.remember(user)
    if legacy or passwords.needs_rehash(hasher(), user.password_hash):
        user.password_hash = passwords.hash_password(hasher(), password)
        audit.record("authn.password.rehashed", user=user)
    return user


def _verify(user: User | None, password: str) -> tuple[bool, bool]:
    """(whether `password` is the account's, whether its hash predates normalisation:
    security.passwords.verify_typed_password). The same argon2 work whether there is no such
    account, an account without a password (passkey-only, federated) or a password too long to
    be anyone's (checked against the dummy hash, never matching), so the time taken tells none
    of them apart from a wrong password. Nothing is cut short: a password longer than
    IDP_PASSWORD_MAX_LENGTH (after normalisation) is no one's."""
    too_long = passwords.is_too_long(password, current_app.config["IDP_SETTINGS"].password_max_length)
    real = user is not None and bool(user.password_hash) and not too_long
    ok, legacy = passwords.verify_typed_password(hasher(), user.password_hash if real else _dummy_hash(), password)
    return ok and real, legacy and real


def confirm_password(user: User, password: str) -> bool:
    """Whether `password` is the account's, for a signed-in person confirming a change (email,
    password, deletion) or a browser using an emailed link of the account (authn.link_proof).
    Counted as a sign-in is, on the same account counters: a stolen or unattended session must not
    be a way to guess the password without the back-off, nor to make the server run argon2
    without limit. A browser holding the account's device cookie counts on the cookie's counter
    as at sign-in (authn.known_devices), so strangers' guesses elsewhere, which hold the
    account's counter back, never block the owner's own browser. Raises Throttled while the
    back-off lasts. The caller commits, also after a wrong password, so that it counts."""
    device = known_devices.trusted_nonce(user)
    keys = throttle.keys_for(_account_key(user, ""), request.remote_addr or "-", device)
    throttle.hold(keys, database_lock=False)
    wait, counted = throttle.check(keys)
    if wait:
        raise Throttled(wait)
    # An account without a password costs the same check (the link pages must not tell it apart).
    matches, legacy = _verify(user, password)
    if matches:
        throttle.record_success(keys, counted)
        if legacy:
            user.password_hash = passwords.hash_password(hasher(), password)
            audit.record("authn.password.rehashed", user=user)
        return True
    throttle.record_failure(keys)
    return False
