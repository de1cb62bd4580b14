"""When a person must keep a second factor, so the account pages refuse to remove the last one:
IDP_MFA_REQUIRED, or an app they use that requires two factors (a client with require_mfa that
they consented to, or that still holds a live grant for them: its next login would need one).

A removal first holds the person's factors (hold_factors), then checks, then deletes: two removals
at once (the app and the last passkey, two passkeys) run one after the other, so the second sees
what the first left and is refused instead of removing the last factor too."""
from __future__ import annotations

from dataclasses import dataclass

from flask import current_app
from sqlalchemy import or_, select

from idp.clock import now
from idp.extensions import db, lock_for_update
from idp.models import Client, Consent, Grant, User


@dataclass(frozen=True)
class Requirement:
    app: str | None        # the app's name for the message; None for IDP_MFA_REQUIRED
    client_id: str | None  # for the audit record


def second_factor_requirement(user: User) -> Requirement | None:
    """What makes a second factor a must for this person, or None."""
    if current_app.config["IDP_SETTINGS"].mfa_required:
        return Requirement(None, None)
    consented = select(Consent.client_id).where(Consent.user_id == user.id)
    granted = select(Grant.client_id).where(Grant.user_id == user.id, Grant.revoked_at.is_(None),
                                            Grant.expires_at > now())
    client = db.session.scalar(select(Client).where(Client.require_mfa.is_(True),
                                                    or_(Client.id.in_(consented), Client.id.in_(granted)))
                               .order_by(Client.client_name, Client.id).limit(1))
    return Requirement(client.client_name or client.client_id, client.client_id) if client is not None else None


def hold_factors(user: User) -> None:
    """Until this request commits or rolls back, no other request gets past this call for the same
    person (their row is locked): the checks that keep a last factor and the removal they allow
    become one atomic step."""
    lock_for_update(User, user.id)
