"""Versioned acceptance of the terms of service (issue 6 item 7): who must accept the current
version, and recording that they did (time and version, plus an audit event)."""
from __future__ import annotations

from flask import current_app

from idp import audit
from idp.clock import now
from idp.models import User


def current_version() -> str:
    return current_app.config["IDP_SETTINGS"].terms_version


def needs_acceptance(user: User) -> bool:
    version = current_version()
    return bool(version) and user.terms_version != version


def accept(user: User) -> None:
    """Record that `user` accepted the current version now; the caller commits."""
    user.terms_version, user.terms_accepted_at = current_version(), now()
    audit.record("users.terms.accepted", user=user, version=user.terms_version)
