"""Email verification and password reset: the rules, the mail and the audit events. The pages
are authn's; ending sessions after a reset is the caller's (authn), which owns sessions.

A completed reset takes the account back for whoever reads its mailbox: the address counts as
verified (the link proved it), the callbacks registered with on_password_reset run (oauth revokes
every grant, offline_access included, so nothing someone else obtained keeps working), and when
the address had never been proved before, every way to sign in set up until then (passkeys, the
authenticator app, recovery codes, linked upstream accounts) is removed: someone may have
registered the address first and added their own (pre-account hijacking).

"Forgot your password?" (request_password_reset) must not tell whether a login exists, by its
answer or by its timing, and nobody may be able to keep the owner from recovering the account:
- The request does the same work for every login: it queues one outbox job holding the typed
  login, the requester's network and the page's language (enqueue with inline=False: the page never waits for a
  delivery) and commits. Finding the account, making the link and rendering the mail happen in
  the worker (deliver_reset_request), outside any request.
- The worker locks the account's row (lock_for_update), so parallel requests are counted one
  after the other, then refuses (silently: nobody is waiting for an answer) a link when one went
  out in the last RESEND_INTERVAL, when RESET_LINKS_PER_DAY went out in the last day (a flood
  stop: mail to one person stays bounded), or when the requester's network (an IPv4 /24 or IPv6
  /48) already asked RESET_LINKS_PER_NETWORK for this account in the day. Whoever knows a
  username can so use up only their own network's allowance, not the owner's: to lock the owner
  out for a day they would need RESET_LINKS_PER_DAY / RESET_LINKS_PER_NETWORK networks.
- The per-network counter lives in the rate_limits table, through a callable authn hands in
  (users does not import authn); the page itself is limited per address and network too
  (authn.rate_limits.count_password_reset), so logins cannot be tried at will."""
from __future__ import annotations

import json
from collections.abc import Callable

from flask import Flask, current_app
from flask_babel import force_locale, get_locale
from sqlalchemy import delete

from idp import audit, mail, outbox
from idp.clock import now
from idp.extensions import db, lock_for_update
from idp.models import LinkedIdentity, RecoveryCode, TotpCredential, User, WebAuthnCredential
from idp.security.derived import fernet_for
from idp.users import directory, email_links
from idp.users.email_links import RESET_PASSWORD, VERIFY_EMAIL
from idp.users.errors import LinkInvalid, RegistrationRejected

RESEND_INTERVAL = 60        # seconds between two links of one kind to one person
MAX_LINKS_PER_DAY = 5       # per person and kind (verification; reset links: below)
RESET_LINKS_PER_NETWORK = 5  # reset links one network may have sent to one account in a day
RESET_LINKS_PER_DAY = 50    # reset links to one account in a day, whoever asks (a flood stop)
DAY = email_links.DAY
RESET_REQUEST_KIND = "password_reset_request"  # the outbox job a /forgot-password request queues
# Every way to sign in that someone could have set up before the mailbox was proved.
SIGN_IN_METHODS = {"passkeys": WebAuthnCredential, "totp": TotpCredential, "recovery_codes": RecoveryCode,
                   "linked_identities": LinkedIdentity}

ResetCallback = Callable[[User], None]


def on_password_reset(app: Flask, callback: ResetCallback) -> None:
    """Call callback(user) when a reset link sets a new password, before the caller commits (a
    higher room, such as oauth revoking the person's grants, without users importing it)."""
    app.extensions.setdefault("idp.password_reset", []).append(callback)


def send_verification(user: User) -> None:
    """Mail a link that proves the address; raises LinkThrottled when asked again too soon.
    The caller commits."""
    email_links.check_throttle(user, VERIFY_EMAIL, interval=RESEND_INTERVAL, per_day=MAX_LINKS_PER_DAY)
    link = email_links.issue(user, VERIFY_EMAIL)
    hours = current_app.config["IDP_SETTINGS"].email_verify_ttl // 3600
    mail.send(user.email, "verify_email", user=user, link=link, hours=max(hours, 1))
    audit.record("users.email.verification_sent", user=user)


def confirm_email(raw: str) -> User:
    """Use a verification link; the address is verified only if it is still the account's. The
    caller (authn.link_proof) has made sure the browser can enter the account: a click from the
    mailbox alone must not verify an account someone else registered with the address. That
    person takes the account back with reset_password instead, which on a first proof of the
    mailbox removes every way in set up before (keep it so)."""
    row = email_links.use(raw, VERIFY_EMAIL)
    if row is None:
        raise LinkInvalid()
    user = db.session.get(User, row.user_id)
    if user.disabled:  # an operator stopped the account: nothing of it changes by link
        raise LinkInvalid()
    if directory.identifier_key(row.email) != user.email_key:
        audit.record("users.email.verification_failed", outcome="failure", user=user, reason="address_changed")
        raise LinkInvalid(spent=True)  # a link for an address the account left is no good any more
    user.email_verified = True
    audit.record("users.email.verified", user=user)
    return user


def request_password_reset(login: str, network: str) -> None:
    """Queue the request for the worker (see the module docstring): the same work, and nothing
    that waits, whatever `login` is. `network` is the requester's network (the key their
    allowance per account is counted under). The caller commits."""
    outbox.enqueue(RESET_REQUEST_KIND, reset_request_payload(login, network, str(get_locale() or "en")), inline=False)


def reset_request_payload(login: str, network: str, locale: str) -> dict:
    """The queued request, sealed as mail is: people sometimes type their password into the
    login field, and the outbox row must not keep it readable."""
    request = {"login": login[:320], "network": network[:64], "locale": locale}
    return {"sealed": _fernet().encrypt(json.dumps(request).encode()).decode()}


def _fernet():
    return fernet_for(current_app.config["IDP_SETTINGS"].secret_key, b"idp outbox reset request")


NetworkAllowance = Callable[[User, str], bool]


def deliver_reset_request(payload: dict, network_allows: NetworkAllowance) -> None:
    """The outbox handler of a queued /forgot-password request: mail a reset link when the login
    names an active account and no limit refuses it. network_allows(user, network) counts one
    link for the pair and says whether the network's allowance had room (in this transaction).
    The outbox commits."""
    payload = json.loads(_fernet().decrypt(payload["sealed"].encode()))
    login, network = str(payload.get("login") or ""), str(payload.get("network") or "-")
    user = directory.find_by_login(login) if login else None
    if user is None or user.disabled:
        audit.record("users.password.reset_requested", outcome="failure", reason="unknown_or_disabled")
        return
    reason = email_links.refusal(user, RESET_PASSWORD, interval=RESEND_INTERVAL, per_day=RESET_LINKS_PER_DAY)
    if reason is None and not network_allows(user, network):
        reason = "network_limit"
    if reason is not None:
        audit.record("users.password.reset_requested", outcome="failure", user=user, reason=reason)
        return
    link = email_links.issue(user, RESET_PASSWORD)
    minutes = current_app.config["IDP_SETTINGS"].password_reset_ttl // 60
    with force_locale(str(payload.get("locale") or "en")):  # the language of the page that asked
        mail.send(user.email, "reset_password", user=user, link=link, minutes=max(minutes, 1))
    audit.record("users.password.reset_requested", user=user)


def reset_password(raw: str, password: str) -> User:
    """Set a new password through a reset link. The rules are checked before the link is used,
    so a refused password does not burn it; a link sent to an address the account no longer has
    is refused (whoever reads the old mailbox has no claim on the account). Raises LinkInvalid or
    RegistrationRejected; the caller ends the person's sessions and commits."""
    row = email_links.find(raw, RESET_PASSWORD)
    if row is None:
        raise LinkInvalid()
    lock_for_update(User, row.user_id)  # one change of the account's links and password at a time (see profile)
    user = db.session.get(User, row.user_id)
    if directory.identifier_key(row.email) != user.email_key:  # sent to an address the account left since
        raise LinkInvalid()
    problem = directory.validate_new_password(password, username=user.username, email=user.email)
    if problem:
        raise RegistrationRejected({"password": problem})
    if user.disabled or email_links.use(raw, RESET_PASSWORD) is None:
        raise LinkInvalid()
    directory.set_password(user, password)
    if not user.email_verified:
        _forget_sign_in_methods(user)
        user.email_verified = True  # the link reached the address: it is proved
        audit.record("users.email.verified", user=user, reason="password_reset")
    for callback in current_app.extensions.get("idp.password_reset", []):
        callback(user)
    mail.send(user.email, "password_changed", user=user, when=now().strftime("%Y-%m-%d %H:%M UTC"))
    audit.record("users.password.reset", user=user)
    return user


def _forget_sign_in_methods(user: User) -> None:
    """Remove every sign-in method set up while the address was unproved (see the docstring)."""
    removed = {name: db.session.execute(delete(model).where(model.user_id == user.id),
                                        execution_options={"synchronize_session": False}).rowcount
               for name, model in SIGN_IN_METHODS.items()}
    if any(removed.values()):
        audit.record("users.credentials.removed", user=user, reason="first_mailbox_proof", **removed)
