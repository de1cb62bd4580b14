"""SQLAlchemy tables; importing this package registers every table on db.metadata."""
from idp.models.audit import AuditEvent
from idp.models.client import Client
from idp.models.federation import FederationState, LinkedIdentity, PendingLink, UpstreamProvider
from idp.models.credential import RecoveryCode, TotpCredential, WebAuthnChallenge, WebAuthnCredential
from idp.models.grant import (AuthorizationCode, ClientAssertion, Consent, Grant, InitialAccessToken,
                              PendingAuthorization, RefreshToken, RevokedToken)
from idp.models.key import SigningKey
from idp.models.outbox import OutboxMessage
from idp.models.session import LoginAttempt, LoginThrottle, RateLimit, SsoSession
from idp.models.user import User, UserToken

__all__ = ["AuditEvent", "AuthorizationCode", "Client", "ClientAssertion", "Consent", "FederationState", "Grant",
           "InitialAccessToken", "LinkedIdentity", "LoginAttempt", "LoginThrottle", "OutboxMessage",
           "PendingAuthorization", "PendingLink", "RateLimit", "RecoveryCode", "RefreshToken", "RevokedToken",
           "SigningKey", "SsoSession", "TotpCredential", "UpstreamProvider", "User", "UserToken", "WebAuthnChallenge",
           "WebAuthnCredential"]
