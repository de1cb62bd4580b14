"""argon2id hashing with configurable cost, plus the NIST SP 800-63B acceptance rules."""
from __future__ import annotations

from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError


class PasswordRejected(ValueError):
    """The password breaks a rule: `reason` names it (too_short, too_long, breached, personal),
    `limit` is the length limit broken; the message is the English sentence for a person."""

    def __init__(self, message: str, reason: str, limit: int | None = None):
        super().__init__(message)
        self.reason, self.limit = reason, limit


def make_hasher(memory_kib: int, time_cost: int, parallelism: int) -> PasswordHasher:
    return PasswordHasher(memory_cost=memory_kib, time_cost=time_cost, parallelism=parallelism)


def hash_password(hasher: PasswordHasher, password: str) -> str:
    return hasher.hash(password)


def verify_password(hasher: PasswordHasher, stored_hash: str | None, password: str) -> bool:
    """True when password matches; False for a mismatch or a malformed/missing hash."""
    if not stored_hash:
        return False
    try:
        return hasher.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(hasher: PasswordHasher, stored_hash: str) -> bool:
    return hasher.check_needs_rehash(stored_hash)


@lru_cache(maxsize=1)
def breached_passwords() -> frozenset[str]:
    """The 30,000 most common leaked passwords shipped by the zxcvbn package (MIT licence), lowercased."""
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(p.lower() for p in FREQUENCY_LISTS["passwords"])


def check_password_rules(password: str, *, min_length: int, max_length: int, context: tuple[str, ...] = ()) -> None:
    """Length limits and the breached list, and nothing else (no composition rules, SP 800-63B 5.1.1.2)."""
    if len(password) < min_length:
        raise PasswordRejected(f"Use at least {min_length} characters.", "too_short", min_length)
    if len(password) > max_length:
        raise PasswordRejected(f"Use at most {max_length} characters.", "too_long", max_length)
    lowered = password.lower()
    if lowered in breached_passwords():
        raise PasswordRejected("This password appears in lists of leaked passwords. Choose another.", "breached")
    if any(c and lowered == c.lower() for c in context):
        raise PasswordRejected("Do not use your username or email as your password.", "personal")
