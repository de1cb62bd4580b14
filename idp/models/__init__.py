"""SQLAlchemy tables; importing this package registers every table on db.metadata."""
from idp.models.audit import AuditEvent
from idp.models.client import Client
from idp.models.credential import RecoveryCode, TotpCredential, WebAuthnChallenge, WebAuthnCredential
from idp.models.grant import (AuthorizationCode, ClientAssertion, Consent, Grant, InitialAccessToken,
                              PendingAuthorization, RefreshToken, RevokedToken)
from idp.models.key import SigningKey
from idp.models.outbox import OutboxMessage
from idp.models.session import LoginAttempt, LoginThrottle, SsoSession
from idp.models.user import User

__all__ = ["AuditEvent", "AuthorizationCode", "Client", "ClientAssertion", "Consent", "Grant",
           "InitialAccessToken", "LoginAttempt", "LoginThrottle", "OutboxMessage", "PendingAuthorization",
           "RecoveryCode", "RefreshToken", "RevokedToken", "SigningKey", "SsoSession", "TotpCredential", "User", "WebAuthnChallenge", "WebAuthnCredential"]
