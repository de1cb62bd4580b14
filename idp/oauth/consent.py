"""Remembered consent per user and client, the apps that hold access to a person (consented, or
first-party with a live grant), and the plain words for each scope."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from authlib.oauth2.rfc6749 import scope_to_list
from sqlalchemy import update

from idp import audit
from idp.clock import now
from idp.extensions import db, upsert
from idp.models import Client, Consent, Grant
from idp.web.templating import N_
from idp.web.templating import gettext as _


SCOPE_WORDS = {
    "openid": N_("Confirm who you are (a stable identifier for your account)"),
    "profile": N_("See your name, username and the profile details you filled in (such as picture, birth date, time zone and language)"),
    "email": N_("See your email address"),
    "address": N_("See your postal address"),
    "phone": N_("See your phone number"),
    "offline_access": N_("Stay connected when you are not using it (keep access after you sign out)"),
}


def describe(scope: str) -> list[str]:
    return [_(SCOPE_WORDS[s]) if s in SCOPE_WORDS else s for s in scope_to_list(scope or "")]


def find(user_id: int, client_pk: int) -> Consent | None:
    return db.session.scalar(db.select(Consent).where(Consent.user_id == user_id, Consent.client_id == client_pk))


def covers(consent: Consent | None, scope: str) -> bool:
    """True when an earlier consent includes every requested scope."""
    return consent is not None and set(scope_to_list(scope or "")) <= set(scope_to_list(consent.scope))


def record(user, client, scope: str) -> None:
    """Remember the union of what was granted before and now; the caller commits. The first
    consent is an INSERT ... ON CONFLICT DO NOTHING, so two tabs consenting at once cannot trip
    on the unique (user, client) constraint; the loser (or a later consent) widens the row, read
    FOR UPDATE on PostgreSQL so parallel widenings do not lose a scope."""
    created = db.session.execute(upsert(Consent).values(user_id=user.id, client_id=client.id, scope=scope,
                                                        granted_at=now())
                                 .on_conflict_do_nothing(index_elements=[Consent.user_id, Consent.client_id]))
    if created.rowcount != 1:
        query = db.select(Consent).where(Consent.user_id == user.id, Consent.client_id == client.id) \
            .execution_options(populate_existing=True)
        if db.session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update()
        row = db.session.scalar(query)
        row.scope = " ".join(sorted(set(scope_to_list(row.scope)) | set(scope_to_list(scope))))
    audit.record("oauth.consent.granted", user=user, client=client, scope=scope)


@dataclass(frozen=True)
class ConnectedApp:
    """A client with access to the person: what it may see, and since when (the consent, or
    for a first-party client, its oldest live grant)."""

    client: Client
    scope: str
    since: datetime


def _live_grants(user_id: int):
    """The person's grants that still produce or back tokens: not revoked, not expired."""
    return (Grant.user_id == user_id, Grant.revoked_at.is_(None), Grant.expires_at > now())


def connected_apps(user_id: int) -> list[ConnectedApp]:
    """Every client the person consented to or that holds a live grant of theirs (newest first).
    First-party clients skip consent, yet their grants (refresh tokens with offline_access) outlive
    sign-out, so they must be listed, and revocable, too."""
    consents = {c.client_id: c for c in db.session.scalars(db.select(Consent).where(Consent.user_id == user_id))}
    granted: dict[int, tuple[set[str], datetime]] = {}
    for client_pk, scope, created_at in db.session.execute(
            db.select(Grant.client_id, Grant.scope, Grant.created_at).where(*_live_grants(user_id))):
        scopes, since = granted.get(client_pk, (set(), created_at))
        granted[client_pk] = (scopes | set(scope_to_list(scope or "")), min(since, created_at))
    clients = db.session.scalars(db.select(Client).where(Client.id.in_(set(consents) | set(granted))))
    apps = []
    for client in clients:
        consent, (scopes, since) = consents.get(client.id), granted.get(client.id, (set(), None))
        if consent is not None:
            scopes, since = scopes | set(scope_to_list(consent.scope)), consent.granted_at
        ordered = [s for s in SCOPE_WORDS if s in scopes] + sorted(scopes - set(SCOPE_WORDS))
        apps.append(ConnectedApp(client, " ".join(ordered), since))
    return sorted(apps, key=lambda app: app.since, reverse=True)


def has_access(user_id: int, client_pk: int) -> bool:
    """True when the person consented to the client or it holds a live grant of theirs."""
    if find(user_id, client_pk) is not None:
        return True
    return db.session.scalar(db.select(Grant.id).where(*_live_grants(user_id), Grant.client_id == client_pk)
                             .limit(1)) is not None


def revoke(user, client) -> int:
    """Forget the consent, if any, and revoke every grant the client holds for the person (their
    refresh tokens die with the grant; their JWT access tokens fail at UserInfo and
    introspection). Returns how many grants were revoked; the caller commits."""
    row = find(user.id, client.id)
    if row is not None:
        db.session.delete(row)
    moment = now()
    result = db.session.execute(update(Grant).where(Grant.user_id == user.id, Grant.client_id == client.id,
                                                    Grant.revoked_at.is_(None)).values(revoked_at=moment))
    audit.record("oauth.consent.revoked", user=user, client=client, grants=result.rowcount, consent=row is not None)
    return result.rowcount
