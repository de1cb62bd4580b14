"""Find and create people. Usernames and emails are unique after NFKC and case folding; an
email's domain is compared in its IDNA form, so two different mailboxes never share a key."""
from __future__ import annotations

import re
import unicodedata

import idna
from flask import current_app
from sqlalchemy.exc import IntegrityError

from idp import audit
from idp.extensions import db
from idp.models import User
from idp.security import passwords
from idp.security.tokens import random_token
from idp.users import email_links
from idp.users.errors import RegistrationRejected
from idp.web.templating import N_
from idp.web.templating import gettext as _

USERNAME = re.compile(r"^[\w.\-]{3,32}$")
# One mailbox: a local part that is an RFC 5321 dot-string (RFC 5322 atext, and any non-ASCII
# letter, RFC 6531), at most 64 characters; no quoted strings, commas, brackets or parentheses,
# which would make one address several recipients (a relay completes a bare "postmaster").
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-]|[^\x00-\x7f\s]"
EMAIL = re.compile(rf"^(?=[^@]{{1,64}}@)(?:{_ATEXT})+(?:\.(?:{_ATEXT})+)*@[^@\s]+\.[^@\s]+$")
TAKEN = N_("This username or email cannot be used. If it is yours, sign in instead.")


# Scripts that people write together (UTS 39, "highly restrictive"): Japanese, Chinese with
# Bopomofo, Korean, each with Latin. Any other mix of two scripts in one username is refused.
_SCRIPT_MIXES = (frozenset({"LATIN", "CJK", "HIRAGANA", "KATAKANA"}), frozenset({"LATIN", "CJK", "BOPOMOFO"}),
                 frozenset({"LATIN", "CJK", "HANGUL"}))


def _script(char: str) -> str:
    """The script of a letter, from its Unicode name ("CYRILLIC SMALL LETTER A" -> CYRILLIC)."""
    name = unicodedata.name(char, "UNKNOWN")
    if name.startswith(("CJK ", "IDEOGRAPHIC")):
        return "CJK"
    if name.startswith("KATAKANA-HIRAGANA"):
        return "KATAKANA"
    return name.split()[0]


def username_problem(username: str) -> str | None:
    """What is wrong with a username (already NFKC), in the person's language, or None. Besides
    the shape, letters from scripts that are not written together (Latin "a" beside Cyrillic "а")
    and digits from two numbering systems are refused: they make names that look like another
    person's."""
    if not USERNAME.match(username):
        return _("Use 3 to 32 letters, digits, dots, dashes or underscores.")
    if mixes_scripts(username):
        return _("Use letters from one alphabet, and one kind of digits.")
    return None


def mixes_scripts(text: str) -> bool:
    """Letters from scripts that are not written together (UTS 39 "highly restrictive": Latin
    with CJK and its companions only), or digits from two numbering systems: the stuff of names
    that look like someone else's."""
    scripts = {_script(c) for c in text if c.isalpha()}
    digits = {unicodedata.name(c, "?").rsplit("DIGIT", 1)[0] for c in text if c.isdecimal()}
    return (len(scripts) > 1 and not any(scripts <= mix for mix in _SCRIPT_MIXES)) or len(digits) > 1


def identifier_key(value: str) -> str:
    """The comparison form of a username (NFKC, then case folding) or of an email (email_key).
    NFKC first: a fullwidth "＠" makes an email address too, as it does at registration."""
    value = unicodedata.normalize("NFKC", value)
    if "@" in value:
        return email_key(value)
    return value.casefold().strip()


def email_key(value: str) -> str:
    """The comparison form of an email address. The local part: NFKC and lower case, but not full
    case folding, which turns "ß" into "ss" and would give two mailboxes one account. The domain:
    its IDNA A-label (UTS 46, non-transitional, so "straße.de" is xn--strae-oqa.de and not
    strasse.de, as DNS sees it). A domain that is not a valid IDN keeps the old NFKC + case folding
    (it cannot receive mail, and valid_email refuses it for new addresses).
    migrations/versions/0007_email_keys.py has a frozen copy of this function: change both."""
    text = unicodedata.normalize("NFKC", value).strip()
    local, _at, domain = text.rpartition("@")
    try:
        domain = idna.encode(domain, uts46=True, transitional=False).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError, ValueError):
        domain = domain.casefold()
    return f"{local.lower()}@{domain}"


def valid_email(value: str) -> bool:
    """An address we accept for an account: the usual shape, at most 254 characters, and a domain
    that is a valid (internationalised) domain name."""
    if len(value) > 254 or not EMAIL.match(value):
        return False
    try:
        idna.encode(value.rpartition("@")[2], uts46=True, transitional=False)
    except (idna.IDNAError, UnicodeError, ValueError):
        return False
    return True


def hasher():
    s = current_app.config["IDP_SETTINGS"]
    ring = current_app.extensions.get("idp.hasher")
    if ring is None:
        ring = passwords.make_hasher(s.argon2_memory_kib, s.argon2_time_cost, s.argon2_parallelism)
        current_app.extensions["idp.hasher"] = ring
    return ring


def find_by_login(login: str) -> User | None:
    """A user by username or email (an email contains '@', a username never does)."""
    key = identifier_key(login)
    column = User.email_key if "@" in key else User.username_key
    return db.session.scalar(db.select(User).where(column == key))


def find_by_email(email: str) -> User | None:
    return db.session.scalar(db.select(User).where(User.email_key == email_key(email)))


def find_by_subject(subject: str) -> User | None:
    return db.session.scalar(db.select(User).where(User.subject == subject))


def validate_new_password(password: str, *, username: str = "", email: str = "") -> str | None:
    s = current_app.config["IDP_SETTINGS"]
    try:
        passwords.check_password_rules(password, min_length=s.password_min_length,
                                       max_length=s.password_max_length,
                                       context=(username, email, email.split("@")[0]))
    except passwords.PasswordRejected as rejected:
        return _password_problem(rejected)
    return None


def _password_problem(rejected) -> str:
    """The rule a password broke, in the person's language."""
    if rejected.reason == "too_short":
        return _("Use at least %(n)s characters.", n=rejected.limit)
    if rejected.reason == "too_long":
        return _("Use at most %(n)s characters.", n=rejected.limit)
    if rejected.reason == "breached":
        return _("This password appears in lists of leaked passwords. Choose another.")
    return _("Do not use your username or email as your password.")


def create_user(username: str, email: str, password: str, *, name: str | None = None,
                email_verified: bool = False) -> User:
    """Validate and add a user; raises RegistrationRejected with field errors. The caller commits."""
    username = unicodedata.normalize("NFKC", username).strip()
    email = unicodedata.normalize("NFKC", email).strip()
    errors = {}
    if problem := username_problem(username):
        errors["username"] = problem
    if not valid_email(email):
        errors["email"] = _("Enter an email address like name@example.com.")
    problem = validate_new_password(password, username=username, email=email)
    if problem:
        errors["password"] = problem
    # Hash before the uniqueness check so "taken" and "free" take the same time.
    password_hash = passwords.hash_password(hasher(), password)
    if errors:
        raise RegistrationRejected(errors)
    user = User(subject=random_token(16), username=username, username_key=identifier_key(username),
                email=email, email_key=email_key(email), password_hash=password_hash, name=name)
    try:
        with db.session.begin_nested():
            db.session.add(user)
            db.session.flush()
    except IntegrityError:
        raise RegistrationRejected({"form": _(TAKEN)}) from None
    return user


def register(username: str, email: str, password: str) -> User:
    """Self-registration: create the user and record it; the caller commits."""
    user = create_user(username, email, password)
    audit.record("users.user.registered", user=user)
    return user


def set_password(user: User, password: str, **details) -> None:
    """Replace the password after the rules pass; raises RegistrationRejected on a bad one.
    `details` go into the users.password.changed audit event (how, and what ended with it)."""
    problem = validate_new_password(password, username=user.username, email=user.email)
    if problem:
        raise RegistrationRejected({"password": problem})
    user.password_hash = passwords.hash_password(hasher(), password)
    # Pending reset and email-change links die with the old password: whoever held it (and asked
    # for a link) must not finish what they started once the owner has taken the account back.
    email_links.cancel(user, email_links.RESET_PASSWORD)
    email_links.cancel(user, email_links.CHANGE_EMAIL)
    audit.record("users.password.changed", user=user, **details)


def _username_base(preferred: str | None, email: str) -> str:
    """A username from what the upstream suggested, or the email's local part, made valid."""
    raw = unicodedata.normalize("NFKC", preferred or email.split("@")[0])
    base = re.sub(r"[^\w.\-]", "", raw)[:24]
    base = base if len(base) >= 3 else f"user{base}"
    return base if username_problem(base) is None else "user"


def provision(email: str, *, preferred_username: str | None = None, name: str | None = None,
              email_verified: bool = False) -> User:
    """Create an account for a person who signed in through an upstream provider (just-in-time):
    no password, a free username derived from the upstream's; raises RegistrationRejected when
    the email is taken or invalid. The caller commits and records how the account came to be."""
    email = unicodedata.normalize("NFKC", email).strip()
    if not valid_email(email):
        raise RegistrationRejected({"email": _("Enter an email address like name@example.com.")})
    base = _username_base(preferred_username, email)
    for attempt in range(6):
        username = base if attempt == 0 else f"{base[:24]}-{random_token(3).lower()}"
        if username_problem(username) is not None or db.session.scalar(
                db.select(User.id).where(User.username_key == identifier_key(username))) is not None:
            continue
        user = User(subject=random_token(16), username=username, username_key=identifier_key(username),
                    email=email, email_key=email_key(email), email_verified=email_verified,
                    name=(name or None) and name[:256], password_hash=None)
        try:
            with db.session.begin_nested():
                db.session.add(user)
                db.session.flush()
        except IntegrityError:
            raise RegistrationRejected({"form": _(TAKEN)}) from None
        return user
    raise RegistrationRejected({"username": _("No free username could be found.")})
