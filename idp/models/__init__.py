"""SQLAlchemy tables; importing this package registers every table on db.metadata."""
from idp.models.audit import AuditEvent
from idp.models.client import Client
from idp.models.credential import WebAuthnChallenge, WebAuthnCredential
from idp.models.grant import (AuthorizationCode, ClientAssertion, Consent, Grant, InitialAccessToken,
                              PendingAuthorization, RefreshToken, RevokedToken)
from idp.models.key import SigningKey
from idp.models.outbox import OutboxMessage
from idp.models.session import LoginThrottle, SsoSession
from idp.models.user import User

__all__ = ["AuditEvent", "AuthorizationCode", "Client", "ClientAssertion", "Consent", "Grant",
           "InitialAccessToken", "LoginThrottle", "OutboxMessage", "PendingAuthorization", "RefreshToken",
           "RevokedToken", "SigningKey", "SsoSession", "User", "WebAuthnChallenge", "WebAuthnCredential"]
