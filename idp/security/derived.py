"""Keys derived from IDP_SECRET_KEY with HKDF-SHA256: one per purpose (its `info`), so a key used
for one thing never serves another. Derived once per process and purpose."""
from __future__ import annotations

import base64
from functools import lru_cache

from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


@lru_cache(maxsize=32)
def derive_key(secret_key: str, info: bytes) -> bytes:
    """32 bytes for `info` (an HMAC key, or the material of a Fernet key)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret_key.encode())


def fernet_for(secret_key: str, info: bytes) -> Fernet:
    """Authenticated encryption for values we must read back in clear (private keys, secrets)."""
    return Fernet(base64.urlsafe_b64encode(derive_key(secret_key, info)))
