"""A relying party built on authlib's OAuth2Session, plus a browser stand-in (requests.Session)
that signs in and consents. Every ID token is verified against the served JWKS."""
from __future__ import annotations

import base64
import hashlib
from urllib.parse import parse_qs, urlsplit

import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.helpers.forms import csrf_token, hidden


def discovery(issuer: str) -> dict:
    return requests.get(f"{issuer}/.well-known/openid-configuration", timeout=5).json()


def jwks(issuer: str) -> KeySet:
    return KeySet.import_key_set(requests.get(f"{issuer}/jwks", timeout=5).json())


def at_hash(access_token: str, alg: str) -> str:
    """OIDC Core 3.1.3.6: base64url of the left-most half of the hash of the access token's ASCII
    octets, with the hash of the ID token's alg (SHA-256 for RS256 and ES256)."""
    digest = {"256": hashlib.sha256, "384": hashlib.sha384, "512": hashlib.sha512}[alg[-3:]](
        access_token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[:len(digest) // 2]).rstrip(b"=").decode()


def verify_id_token(issuer: str, id_token: str, client_id: str, nonce: str | None = None,
                    access_token: str | None = None) -> dict:
    """Signature against /jwks, then OIDC Core 3.1.3.7 claim checks through authlib's CodeIDToken.
    Given the access token issued with it, at_hash must be there and match (3.1.3.6; we always
    send it): computed here, and checked by authlib too."""
    token = jwt.decode(id_token, jwks(issuer), algorithms=["RS256", "ES256"])
    assert token.header.get("kid"), "every token names its key"
    params = {"nonce": nonce, "client_id": client_id}
    if access_token is not None:
        assert token.claims.get("at_hash") == at_hash(access_token, token.header["alg"]), "at_hash"
        params["access_token"] = access_token
    claims = CodeIDToken(token.claims, token.header, {"iss": {"value": issuer}}, params)
    claims.validate()
    return dict(token.claims)


def verify_access_token(issuer: str, access_token: str) -> dict:
    token = jwt.decode(access_token, jwks(issuer), algorithms=["RS256", "ES256"])
    assert token.header["typ"] == "at+jwt"
    assert token.header.get("kid")
    return dict(token.claims)


class Browser:
    """A cookie jar that follows our pages like a person would (no JavaScript)."""

    def __init__(self, issuer: str):
        self.issuer = issuer
        self.http = requests.Session()

    def get(self, url, **kw):
        return self.http.get(url, allow_redirects=False, timeout=10, **kw)

    def post(self, url, **kw):
        return self.http.post(url, allow_redirects=False, timeout=10, **kw)

    def register(self, username, email, password):
        page = self.get(f"{self.issuer}/register")
        return self.post(f"{self.issuer}/register", data={"csrf_token": csrf_token(page.text),
                         "username": username, "email": email, "password": password})

    def login(self, login, password, next_path=None):
        page = self.get(f"{self.issuer}/login" + (f"?next={next_path}" if next_path else ""))
        return self.post(f"{self.issuer}/login", data={"csrf_token": csrf_token(page.text), "login": login,
                         "password": password, "next": next_path or ""})

    def follow(self, response, stop_prefix: str):
        """Follow redirects inside the provider until one leaves for stop_prefix (the client)."""
        for _ in range(10):
            location = response.headers.get("Location")
            if response.status_code not in (301, 302, 303) or not location:
                return response
            if location.startswith("/"):
                location = self.issuer + location
            if location.startswith(stop_prefix):
                return response
            response = self.get(location)
        raise AssertionError("too many redirects")

    def consent(self, page, decision="allow"):
        return self.post(f"{self.issuer}/authorize/consent", data={
            "csrf_token": csrf_token(page.text), "pending_id": hidden(page.text, "pending_id"),
            "sid": hidden(page.text, "sid"), "decision": decision})


class RelyingParty:
    """authlib's OAuth2Session configured from our discovery document, with PKCE S256."""

    def __init__(self, issuer: str, client: dict, scope="openid profile email"):
        self.issuer = issuer
        self.client = client
        self.meta = discovery(issuer)
        auth_method = "none" if client["public"] else "client_secret_basic"
        self.session = OAuth2Session(client["client_id"], client.get("client_secret"), scope=scope,
                                     redirect_uri=client["redirect_uri"], code_challenge_method="S256",
                                     token_endpoint_auth_method=auth_method)
        self.verifier = generate_token(48)
        self.nonce = generate_token(16)

    def authorization_url(self, **params):
        url, self.state = self.session.create_authorization_url(
            self.meta["authorization_endpoint"], code_verifier=self.verifier, nonce=self.nonce, **params)
        return url

    def callback_params(self, response) -> dict:
        location = response.headers["Location"]
        assert location.startswith(self.client["redirect_uri"]), location
        return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}

    def fetch_token(self, params: dict) -> dict:
        assert params["state"] == self.state
        assert params["iss"] == self.issuer  # RFC 9207
        return self.session.fetch_token(self.meta["token_endpoint"], code=params["code"],
                                        code_verifier=self.verifier, grant_type="authorization_code")
