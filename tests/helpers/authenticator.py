"""A software WebAuthn authenticator for tests that do not need a browser: it answers the JSON
options our server sends with the JSON a browser would post back (packed into "none"
attestation and ES256 assertions), exactly as WebAuthn L3 6.1 and 6.5 lay the bytes out.

It is a stand-in for hardware we do not own, like the browser's virtual authenticator in the
Playwright tests; every check on what it sends is our server's (and the webauthn package's)."""
from __future__ import annotations

import hashlib
import json
import secrets
import struct

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url, encode_cbor

UP, UV, BE, BS, AT = 0x01, 0x04, 0x08, 0x10, 0x40


class SoftAuthenticator:
    """One credential on one authenticator. `counts` False keeps the signature counter at 0,
    as many passkey providers do; `synced` sets the backup flags (a multi-device passkey)."""

    def __init__(self, *, user_verification: bool = True, counts: bool = True, synced: bool = False):
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.credential_id = secrets.token_bytes(32)
        self.user_verification = user_verification
        self.counts = counts
        self.synced = synced
        self.sign_count = 0
        self.user_handle: bytes | None = None
        self.rp_id: str | None = None

    def _flags(self, extra: int = 0) -> int:
        return UP | (UV if self.user_verification else 0) | ((BE | BS) if self.synced else 0) | extra

    def _cose_key(self) -> bytes:
        numbers = self.key.public_key().public_numbers()
        return encode_cbor({1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")})

    @staticmethod
    def _client_data(kind: str, challenge: str, origin: str) -> bytes:
        return json.dumps({"type": kind, "challenge": challenge, "origin": origin, "crossOrigin": False}).encode()

    def create(self, options: dict, origin: str) -> dict:
        """navigator.credentials.create(): a new credential for options["rp"]["id"]."""
        self.rp_id = options["rp"]["id"]
        self.user_handle = base64url_to_bytes(options["user"]["id"])
        if self.counts:
            self.sign_count += 1
        attested = (b"\x00" * 16 + struct.pack(">H", len(self.credential_id)) + self.credential_id
                    + self._cose_key())
        auth_data = (hashlib.sha256(self.rp_id.encode()).digest() + bytes([self._flags(AT)])
                     + struct.pack(">I", self.sign_count) + attested)
        client_data = self._client_data("webauthn.create", options["challenge"], origin)
        attestation = encode_cbor({"fmt": "none", "attStmt": {}, "authData": auth_data})
        return {"id": bytes_to_base64url(self.credential_id), "rawId": bytes_to_base64url(self.credential_id),
                "type": "public-key", "clientExtensionResults": {}, "authenticatorAttachment": "platform",
                "response": {"clientDataJSON": bytes_to_base64url(client_data),
                             "attestationObject": bytes_to_base64url(attestation), "transports": ["internal"]}}

    def get(self, options: dict, origin: str, *, rp_id: str | None = None, sign_count: int | None = None,
            user_handle: bool = True) -> dict:
        """navigator.credentials.get(): an assertion over the challenge in options."""
        if self.counts:
            self.sign_count += 1
        count = self.sign_count if sign_count is None else sign_count
        auth_data = (hashlib.sha256((rp_id or options.get("rpId") or self.rp_id).encode()).digest()
                     + bytes([self._flags()]) + struct.pack(">I", count))
        client_data = self._client_data("webauthn.get", options["challenge"], origin)
        signature = self.key.sign(auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256()))
        return {"id": bytes_to_base64url(self.credential_id), "rawId": bytes_to_base64url(self.credential_id),
                "type": "public-key", "clientExtensionResults": {}, "authenticatorAttachment": "platform",
                "response": {"clientDataJSON": bytes_to_base64url(client_data),
                             "authenticatorData": bytes_to_base64url(auth_data),
                             "signature": bytes_to_base64url(signature),
                             "userHandle": bytes_to_base64url(self.user_handle) if user_handle and self.user_handle
                             else None}}
