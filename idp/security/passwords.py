"""argon2id hashing with configurable cost, plus the NIST SP 800-63B acceptance rules."""
from __future__ import annotations

import unicodedata
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


def normalise(password: str) -> str:
    """The one form of a password that is hashed, verified and checked against the rules: NFKC.
    SP 800-63B 5.1.1.2: "If Unicode characters are accepted in memorized secrets, the verifier
    SHOULD apply the Normalization Process for Stabilized Strings [...] using either the NFKC or
    NFKD normalization. [...] This process is applied prior to hashing of the byte string
    representing the memorized secret." So "café" typed composed or decomposed, and fullwidth
    "ｐａｓｓｗｏｒｄ", are one password each. The NFKC form of ASCII text is itself."""
    return unicodedata.normalize("NFKC", password)


def hash_password(hasher: PasswordHasher, password: str) -> str:
    """The hash of the password's normalised form."""
    return hasher.hash(normalise(password))


def verify_password(hasher: PasswordHasher, stored_hash: str | None, password: str) -> bool:
    """True when password matches; False for a mismatch or a malformed/missing hash."""
    if not stored_hash:
        return False
    try:
        return hasher.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def verify_typed_password(hasher: PasswordHasher, stored_hash: str | None, password: str) -> tuple[bool, bool]:
    """(whether the password as typed matches, whether the stored hash was made from its
    un-normalised form). Hashes from before normalisation are of the password as it was typed:
    the NFKC form is tried first and, only when it differs (never for ASCII, so argon2 runs once
    there), the typed form; a match that way needs a new hash of the NFKC form."""
    normal = normalise(password)
    if verify_password(hasher, stored_hash, normal):
        return True, False
    if normal != password and verify_password(hasher, stored_hash, password):
        return True, True
    return False, False


def needs_rehash(hasher: PasswordHasher, stored_hash: str) -> bool:
    return hasher.check_needs_rehash(stored_hash)


@lru_cache(maxsize=1)
def breached_passwords() -> frozenset[str]:
    """The 30,000 most common leaked passwords shipped by the zxcvbn package (MIT licence),
    normalised and case-folded."""
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(normalise(p).casefold() for p in FREQUENCY_LISTS["passwords"])


def is_too_long(password: str, max_length: int) -> bool:
    """Whether the password's normalised form has more than max_length code points (a sign-in
    with such a password fails like a wrong one: nothing is ever cut short)."""
    return len(normalise(password)) > max_length


def check_password_rules(password: str, *, min_length: int, max_length: int, context: tuple[str, ...] = ()) -> None:
    """Length limits and the breached list, and nothing else (no composition rules, SP 800-63B 5.1.1.2),
    on the normalised form: lengths count its code points, the breached list and the context
    compare case-insensitively."""
    normal = normalise(password)
    if len(normal) < min_length:
        raise PasswordRejected(f"Use at least {min_length} characters.", "too_short", min_length)
    if len(normal) > max_length:
        raise PasswordRejected(f"Use at most {max_length} characters.", "too_long", max_length)
    lowered = normal.casefold()
    if lowered in breached_passwords():
        raise PasswordRejected("This password appears in lists of leaked passwords. Choose another.", "breached")
    if any(c and lowered == normalise(c).casefold() for c in context):
        raise PasswordRejected("Do not use your username or email as your password.", "personal")
