"""SQLAlchemy tables; importing this package registers every table on db.metadata."""
from idp.models.audit import AuditEvent
from idp.models.client import Client
from idp.models.grant import AuthorizationCode, Consent, Grant, PendingAuthorization, RefreshToken
from idp.models.key import SigningKey
from idp.models.session import LoginThrottle, SsoSession
from idp.models.user import User

__all__ = ["AuditEvent", "AuthorizationCode", "Client", "Consent", "Grant", "LoginThrottle",
           "PendingAuthorization", "RefreshToken", "SigningKey", "SsoSession", "User"]
