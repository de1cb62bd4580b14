"""The person's own profile: the standard claims we keep (OIDC Core 5.1), each validated, and an
email change that takes effect only once the new address is proved.

Every email change request mails an address someone typed (the link, or "email_in_use" to the
address's owner) and a notice to the account's own: at most one per CHANGE_INTERVAL and
CHANGES_PER_DAY per account and day, counted under a lock on the account's row so parallel
requests cannot pass together."""
from __future__ import annotations

import re
import unicodedata
import zoneinfo
from datetime import date
from urllib.parse import urlsplit

from sqlalchemy.exc import IntegrityError

from idp import audit, mail
from idp.clock import now
from idp.extensions import db, lock_for_update
from idp.models import User
from idp.users import directory, email_links
from idp.users.email_links import CHANGE_EMAIL
from idp.users.errors import LinkInvalid, RegistrationRejected
from idp.web.templating import gettext as _

TEXT_FIELDS = ("name", "given_name", "family_name", "middle_name", "nickname", "gender")
URL_FIELDS = ("picture", "website")
ADDRESS_FIELDS = ("street_address", "locality", "region", "postal_code", "country")
PROFILE_FIELDS = TEXT_FIELDS + URL_FIELDS + ("preferred_username", "birthdate", "zoneinfo", "locale",
                                             "phone_number") + tuple(f"address_{f}" for f in ADDRESS_FIELDS)
# re.ASCII: \d is 0-9 only, not every script's digits (these values go to apps as claims).
BIRTHDATE = re.compile(r"^(\d{4})(-(\d{2})-(\d{2}))?$", re.ASCII)
LOCALE = re.compile(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")   # BCP 47, as OIDC Core 5.1 asks
PHONE = re.compile(r"^\+[1-9]\d{6,14}$", re.ASCII)                # E.164, as OIDC Core 5.1 recommends
MAX_TEXT = 200
CHANGE_INTERVAL = 60   # seconds between two email change requests of one account
CHANGES_PER_DAY = 5    # email change requests per account and day: each mails an address someone typed
_ZONES: frozenset | None = None


def _zones() -> frozenset:
    global _ZONES
    if _ZONES is None:
        _ZONES = frozenset(zoneinfo.available_timezones())
    return _ZONES


def _check_birthdate(value: str) -> str | None:
    match = BIRTHDATE.match(value)
    if not match:
        return _("Use YYYY-MM-DD, or just the year.")
    if match.group(2):
        year = int(match.group(1)) or 2000  # 0000-MM-DD hides the year (OIDC Core 5.1)
        try:
            born = date(year, int(match.group(3)), int(match.group(4)))
        except ValueError:
            return _("That date does not exist.")
        if match.group(1) != "0000" and born > now().date():
            return _("That date is in the future.")
    elif not 1900 <= int(match.group(1)) <= now().year:
        return _("Enter a year between 1900 and this year.")
    return None


def _max_length(field: str) -> int:
    """The longest value a field takes: its column's width where the column is narrower (gender,
    locale: a longer value was a 500 on PostgreSQL and silently stored on SQLite)."""
    limit = 2048 if field in URL_FIELDS else MAX_TEXT
    column = User.__table__.columns.get(field)
    width = getattr(column.type, "length", None) if column is not None else None
    return min(limit, width) if width else limit


def _check(field: str, value: str) -> str | None:
    """One sentence saying what is wrong with `value`, or None."""
    if len(value) > _max_length(field):
        return _("This is too long.")
    if any(ord(c) < 0x20 for c in value):
        return _("Remove the control characters.")
    if field in URL_FIELDS:
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError:  # "https://[", an IPv6 literal left open, a host NFKC would change
            return _("Enter an https:// address.")
        if parts.scheme != "https" or not parts.hostname or parts.username or parts.password:
            return _("Enter an https:// address.")
    elif field == "birthdate":
        return _check_birthdate(value)
    elif field == "zoneinfo" and value not in _zones():
        return _("Choose a time zone like Europe/Paris.")
    elif field == "locale" and not LOCALE.match(value):
        return _("Use a language tag like en-GB or fr.")
    elif field == "phone_number" and not PHONE.match(value):
        return _("Use the international format, like +33123456789.")
    elif field == "preferred_username":
        return directory.username_problem(value)
    return None


def update_profile(user: User, values: dict[str, str], *, may_rename: bool = True) -> list[str]:
    """Set the given fields (an empty value clears an optional one); returns the names that
    changed. Raises RegistrationRejected with field errors and changes nothing then. The username
    is a way to sign in: without `may_rename` (no recent sign-in) a new one is refused. The caller
    commits."""
    values = {k: (values.get(k) or "").strip() for k in PROFILE_FIELDS}
    values["preferred_username"] = unicodedata.normalize("NFKC", values["preferred_username"])
    errors = {k: problem for k, v in values.items() if v and (problem := _check(k.removeprefix("address_")
                                                                                 if k.startswith("address_") else k, v))}
    if values["preferred_username"] == user.username:
        errors.pop("preferred_username", None)  # a name from before today's rules may stay
    elif not may_rename:
        errors = {"preferred_username": _("Sign in again to change your username.")}
    elif not values["preferred_username"]:
        errors["preferred_username"] = _("A username is required.")
    if errors:
        raise RegistrationRejected(errors)
    changed = []
    for field in TEXT_FIELDS + URL_FIELDS + ("birthdate", "zoneinfo", "locale"):
        if (getattr(user, field) or "") != values[field]:
            setattr(user, field, values[field] or None)
            changed.append(field)
    if (user.phone_number or "") != values["phone_number"]:
        user.phone_number, user.phone_number_verified = values["phone_number"] or None, False
        changed.append("phone_number")
    address = {f: values[f"address_{f}"] for f in ADDRESS_FIELDS if values[f"address_{f}"]} or None
    if (user.address or None) != address:
        user.address = address
        changed.append("address")
    if values["preferred_username"] != user.username:
        _rename(user, values["preferred_username"])
        changed.append("preferred_username")
    if changed:
        user.updated_at = now()
        audit.record("users.profile.changed", user=user, fields=changed)
    return changed


def _rename(user: User, username: str) -> None:
    user.username, user.username_key = username, directory.identifier_key(username)
    try:
        with db.session.begin_nested():
            db.session.flush()
    except IntegrityError:
        raise RegistrationRejected({"preferred_username": _(directory.TAKEN)}) from None


def request_email_change(user: User, new_email: str) -> None:
    """Mail a link to the new address; the address changes only when it is used. The old address
    hears of the request at once, so its owner can stop it (a password change cancels the link).
    The caller has checked a recent sign-in and the password. Raises RegistrationRejected (a bad
    address, or the account's own) or LinkThrottled; a taken address is not an error. The caller
    commits."""
    new_email = unicodedata.normalize("NFKC", new_email).strip()
    if not directory.valid_email(new_email):
        raise RegistrationRejected({"email": _("Enter an email address like name@example.com.")})
    key = directory.identifier_key(new_email)
    if key == user.email_key:
        raise RegistrationRejected({"email": _("This is already your email address.")})
    # Each request mails someone else: bounded per account and day.
    email_links.check_throttle(user, CHANGE_EMAIL, interval=CHANGE_INTERVAL, per_day=CHANGES_PER_DAY)
    email_links.cancel(user, CHANGE_EMAIL)
    link = email_links.issue(user, CHANGE_EMAIL, email=new_email)
    # An address another account has answers like a free one, so that this page tells nobody
    # who has an account here: the link is kept (the throttle and "cancel" see the same rows)
    # but never sent, and could not be used anyway; the address's owner hears of the attempt.
    owner = db.session.scalar(db.select(User.email).where(User.email_key == key))
    if owner is not None:
        mail.send(owner, "email_in_use", new_email=owner)
        audit.record("users.email.change_requested", outcome="failure", user=user, reason="address_taken")
    else:
        mail.send(new_email, "change_email", user=user, link=link, new_email=new_email)
        audit.record("users.email.change_requested", user=user)
    mail.send(user.email, "email_change_requested", user=user, new_email=new_email)


def cancel_email_change(user: User) -> None:
    """A pending change link dies (the person ended their other sessions: a change asked from one
    of them must not go through afterwards). The caller commits."""
    email_links.cancel(user, CHANGE_EMAIL)


def confirm_email_change(raw: str) -> User:
    """Use a change link: the account's address becomes the one the link was sent to (verified),
    and the old address is told. Raises LinkInvalid (also when the address was taken since). The
    caller (authn.link_proof) has made sure the browser can enter the account: whoever reads the
    new mailbox may not be its owner (someone moving their account to a victim's address)."""
    found = email_links.find(raw, CHANGE_EMAIL)
    if found is None:
        raise LinkInvalid()
    # The account's links and password change under its row lock, taken first: a reset finishing at
    # the same moment waits instead of deadlocking with this (each used its link, then cancelled
    # the other's: a 500 on PostgreSQL).
    lock_for_update(User, found.user_id)
    row = email_links.use(raw, CHANGE_EMAIL)
    if row is None:
        raise LinkInvalid()
    user = db.session.get(User, row.user_id)
    if user.disabled:  # an operator stopped the account: nothing of it changes by link
        raise LinkInvalid()
    old = user.email
    user.email, user.email_key, user.email_verified = row.email, directory.identifier_key(row.email), True
    try:
        with db.session.begin_nested():
            db.session.flush()
    except IntegrityError:
        raise LinkInvalid() from None
    user.updated_at = now()
    email_links.cancel(user, email_links.VERIFY_EMAIL)
    email_links.cancel(user, email_links.RESET_PASSWORD)  # the old mailbox has no say any more
    mail.send(old, "email_changed", user=user, new_email=row.email)
    audit.record("users.email.changed", user=user)
    return user
