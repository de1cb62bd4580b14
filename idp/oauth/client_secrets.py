"""Client secrets at rest: a SHA-256 digest for checking, and for client_secret_jwt clients only a
Fernet-encrypted copy, because verifying an HMAC-signed assertion needs the secret in clear
(OIDC Core 9). The Fernet key is derived from IDP_SECRET_KEY with its own HKDF info, so it is not
the key that protects the signing keys; changing IDP_SECRET_KEY makes these secrets unreadable
(those clients then need `idp clients rotate-secret`)."""
from __future__ import annotations


from cryptography.fernet import Fernet, InvalidToken
from flask import current_app

from idp.models import Client
from idp.security.derived import fernet_for
from idp.security.tokens import digest


def _fernet() -> Fernet:
    return fernet_for(current_app.config["IDP_SETTINGS"].secret_key, b"idp client secret encryption")


def store_secret(client: Client, secret: str | None) -> None:
    """Set the digest, and the encrypted copy only where the method needs the clear secret."""
    client.client_secret_digest = digest(secret) if secret else None
    keep_clear = secret and client.token_endpoint_auth_method == "client_secret_jwt"
    client.client_secret_encrypted = _fernet().encrypt(secret.encode()).decode() if keep_clear else None


def clear_secret(client: Client) -> bytes | None:
    """The secret of a client_secret_jwt client, or None when there is none we can read."""
    if client.token_endpoint_auth_method != "client_secret_jwt" or not client.client_secret_encrypted:
        return None
    try:
        return _fernet().decrypt(client.client_secret_encrypted.encode())
    except InvalidToken:  # IDP_SECRET_KEY changed since the secret was stored
        return None
