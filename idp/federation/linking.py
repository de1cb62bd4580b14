"""Which local account an upstream identity signs in to.

1. An identity linked before (provider + upstream `sub`) signs in to its account.
2. Otherwise, when an account has the same email: link at once only if the provider is trusted
   for verified email AND the upstream says `email_verified: true` AND the local account's email
   is verified too (else whoever registered that address here first, without proving it, would
   share the account with its real owner: "pre-account hijacking"); otherwise the identity waits
   (PendingLink) until the person signs in to that account with its own credentials.
3. Otherwise, create an account (just-in-time) if the provider allows registration.
An unverified email never links anything by itself.
Linking an identity to an existing account, and unlinking one, is mailed to the account's owner
(users.notices): a link made from a stolen session would otherwise go unseen.
"""
from __future__ import annotations

from datetime import timedelta

from flask import current_app
from sqlalchemy.exc import IntegrityError

from idp import audit
from idp.clock import now
from idp.extensions import db, lock_for_update
from idp.federation.errors import AccountDisabled, EmailMissing, LastWayToSignIn, RegistrationClosed
from idp.federation.flow import Identity, browser_id
from idp.models import LinkedIdentity, PendingLink, UpstreamProvider, User
from idp.security.tokens import constant_time_equal, digest, random_token
from idp.users import directory, notices
from idp.users.errors import RegistrationRejected


def find_link(provider_id: str, subject: str) -> LinkedIdentity | None:
    return db.session.scalar(db.select(LinkedIdentity).where(LinkedIdentity.provider_id == provider_id,
                                                              LinkedIdentity.subject == subject))


def resolve(provider: UpstreamProvider, identity: Identity) -> User | None:
    """The account to sign in to, or None when the person must first prove they own the account
    with this email (see hold). The caller commits."""
    link = find_link(provider.id, identity.subject)
    if link is not None:
        user = db.session.get(User, link.user_id)
        if user.disabled:
            raise AccountDisabled()
        link.last_used_at = now()
        return user
    # By email only: an upstream "email" without an @ would otherwise be looked up as a username.
    existing = directory.find_by_email(identity.email) if identity.email and "@" in identity.email else None
    if existing is not None:
        if not (provider.trust_email_verified and identity.email_verified and existing.email_verified):
            return None
        if existing.disabled:
            raise AccountDisabled()
        add_link(existing, identity, via="verified_email")
        return existing
    return _provision(provider, identity)


def _provision(provider: UpstreamProvider, identity: Identity) -> User:
    if not provider.allow_registration:
        raise RegistrationClosed()
    if not identity.email:
        raise EmailMissing()
    try:
        user = directory.provision(identity.email, preferred_username=identity.preferred_username,
                                   name=identity.name,
                                   email_verified=provider.trust_email_verified and identity.email_verified)
    except RegistrationRejected:
        raise EmailMissing() from None
    audit.record("users.user.provisioned", user=user, provider=provider.id)
    add_link(user, identity, via="registration")
    return user


def add_link(user: User, identity: Identity, *, via: str) -> LinkedIdentity:
    """Link the upstream identity to the account and, unless the account was just made for it,
    tell its owner by mail. The caller commits."""
    link = LinkedIdentity(user_id=user.id, provider_id=identity.provider_id, subject=identity.subject,
                          email=identity.email, created_at=now(), last_used_at=now())
    db.session.add(link)
    db.session.flush()
    audit.record("federation.identity.linked", user=user, provider=identity.provider_id, via=via)
    if via != "registration":
        notices.notify_sign_in_change(user, notices.IDENTITY_LINKED, provider=_display_name(identity.provider_id))
    return link


def _display_name(provider_id: str) -> str:
    provider = db.session.get(UpstreamProvider, provider_id)
    return provider.display_name if provider is not None else provider_id


def hold(identity: Identity, next_path: str) -> str:
    """Keep an upstream identity server-side until its owner proves the local account is theirs;
    the opaque id of the wait. The caller commits."""
    link_id = random_token(24)
    t = now()
    ttl = timedelta(seconds=current_app.config["IDP_SETTINGS"].federation_state_ttl)
    db.session.execute(db.delete(PendingLink).where(PendingLink.expires_at <= t))
    db.session.add(PendingLink(id_digest=digest(link_id), browser_digest=digest(browser_id()),
                               provider_id=identity.provider_id, subject=identity.subject, email=identity.email,
                               amr=identity.amr, acr=identity.acr, next_path=next_path, created_at=t,
                               expires_at=t + ttl))
    audit.record("federation.link.requested", provider=identity.provider_id)
    return link_id


def find_pending(link_id: str, bid: str | None) -> PendingLink | None:
    """The live wait for this id in this browser, or None."""
    if not link_id or len(link_id) > 64 or not bid:
        return None
    row = db.session.get(PendingLink, digest(link_id))
    if row is None or row.expires_at <= now() or not constant_time_equal(row.browser_digest, digest(bid)):
        return None
    return row


def is_pending_account(row: PendingLink, user: User) -> bool:
    """Whether `user` is the account the wait is about: the one whose email matched the upstream's
    (the link page names that address, so proving another account must not link this identity)."""
    return bool(row.email) and user.email_key == directory.identifier_key(row.email)


def complete_pending(row: PendingLink, user: User) -> LinkedIdentity | None:
    """Link the waiting identity to the account its owner just signed in to, once; None when
    that upstream identity got linked meanwhile. The caller commits."""
    identity = Identity(provider_id=row.provider_id, subject=row.subject, email=row.email, email_verified=False,
                        name=None, preferred_username=None, acr=row.acr, amr=list(row.amr))
    db.session.delete(row)
    try:
        with db.session.begin_nested():
            return add_link(user, identity, via="password")
    except IntegrityError:
        return None


def linked_identities(user_id: int) -> list[LinkedIdentity]:
    return list(db.session.scalars(db.select(LinkedIdentity).where(LinkedIdentity.user_id == user_id)
                                   .order_by(LinkedIdentity.created_at)))


def unlink(user: User, link_id: int) -> LinkedIdentity | None:
    """Remove one of the user's links, unless it is their last way to sign in; None when the
    link is not theirs. The caller commits. The person's row is held first, so two unlinks at
    once cannot both see another way in and remove the last two."""
    lock_for_update(User, user.id)
    links = linked_identities(user.id)
    link = next((item for item in links if item.id == link_id), None)
    if link is None:
        return None
    if not user.password_hash and len(links) == 1:
        raise LastWayToSignIn()
    db.session.delete(link)
    audit.record("federation.identity.unlinked", user=user, provider=link.provider_id)
    notices.notify_sign_in_change(user, notices.IDENTITY_UNLINKED, provider=_display_name(link.provider_id))
    return link
