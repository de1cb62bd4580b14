"""Small HTTP stand-ins for upstreams our own app cannot play: GitHub (its documented OAuth app
endpoints and REST API), and an OpenID Provider that misbehaves on purpose (forged signatures,
wrong claims, another provider's issuer, a slow token endpoint). Each is an http.server in a
thread on 127.0.0.1 and a port of its own."""
from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey

from idp.security.tokens import random_token


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


class StandIn:
    """An http.server whose handler calls self.handle(method, path, query, form, headers)."""

    def __init__(self):
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _run(self, method):
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                status, headers, payload = owner.handle(
                    method, parts.path, {k: v[0] for k, v in parse_qs(parts.query).items()},
                    {k: v[0] for k, v in parse_qs(body).items()}, self.headers)
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    data = payload.encode() if isinstance(payload, str) else payload
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (the timeout test)

            def do_GET(self):
                self._run("GET")

            def do_POST(self):
                self._run("POST")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.requests: list[tuple[str, str]] = []
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def handle(self, method, path, query, form, headers):
        raise NotImplementedError

    @staticmethod
    def json(body, status=200):
        return status, {"Content-Type": "application/json"}, json.dumps(body)

    @staticmethod
    def redirect(url):
        return 302, {"Location": url}, ""


class FakeOP(StandIn):
    """An OpenID Provider that signs in whoever comes (no login page) and can lie.

    issuer: what discovery, `iss` in responses and ID tokens claim (default: its own URL);
    response_iss / token_iss: override the issuer in responses (False: leave it out) / ID tokens only;
    forge: None, "bad_signature", "hs256", "none", "wrong_aud", "wrong_nonce", "expired", "no_nonce";
    token_delay: seconds the token endpoint sleeps before answering."""

    def __init__(self):
        super().__init__()
        self.issuer = self.url
        self.endpoint_base = self.url  # where discovery says its authorization and token endpoints are
        self.response_iss = None
        self.token_iss = None
        self.forge = None
        self.token_delay = 0
        self.discovery_delay = 0
        self.claims = {"email": "fake@op.example", "email_verified": True, "name": "Fake Person"}
        self.subject = random_token(8)
        self.key = RSAKey.generate_key(2048, private=True, parameters={"kid": "op-key"})
        self.other_key = RSAKey.generate_key(2048, private=True, parameters={"kid": "op-key"})
        self.userinfo: dict | None = None  # when set: served at /userinfo (and advertised)
        self.codes: dict[str, dict] = {}

    def handle(self, method, path, query, form, headers):
        self.requests.append((method, path))
        if path == "/userinfo" and self.userinfo is not None:
            return self.json(self.userinfo)
        if path == "/.well-known/openid-configuration":
            time.sleep(self.discovery_delay)
            return self.json({
                "issuer": self.issuer, "authorization_endpoint": f"{self.endpoint_base}/authorize",
                "token_endpoint": f"{self.endpoint_base}/token", "jwks_uri": f"{self.url}/jwks",
                "response_types_supported": ["code"], "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "authorization_response_iss_parameter_supported": True,
                **({"userinfo_endpoint": f"{self.url}/userinfo"} if self.userinfo is not None else {})})
        if path == "/jwks":
            return self.json({"keys": [self.key.as_dict(private=False)]})
        if path == "/authorize":
            code = random_token(16)
            self.codes[code] = dict(query)
            answer = {"code": code, "state": query.get("state"), "iss": self.response_iss or self.issuer}
            if self.response_iss is False:
                del answer["iss"]
            return self.redirect(f"{query['redirect_uri']}?{urlencode(answer)}")
        if path == "/token" and method == "POST":
            time.sleep(self.token_delay)
            request = self.codes.pop(form.get("code", ""), None)
            if request is None or s256(form.get("code_verifier", "")) != request.get("code_challenge"):
                return self.json({"error": "invalid_grant"}, 400)
            return self.json({"access_token": random_token(16), "token_type": "Bearer", "expires_in": 60,
                              "id_token": self.id_token(request)})
        return self.json({"error": "not_found"}, 404)

    def id_token(self, request: dict) -> str:
        t = int(time.time())
        claims = {"iss": self.token_iss or self.issuer, "sub": self.subject, "aud": request["client_id"],
                  "iat": t, "exp": t + 300, "nonce": request.get("nonce"), **self.claims}
        key, alg = self.key, "RS256"
        if self.forge == "bad_signature":
            key = self.other_key  # same kid, another key: the signature cannot verify
        elif self.forge == "wrong_aud":
            claims["aud"] = "someone-else"
        elif self.forge == "wrong_nonce":
            claims["nonce"] = "not-the-nonce"
        elif self.forge == "no_nonce":
            del claims["nonce"]
        elif self.forge == "expired":
            claims.update(iat=t - 3600, exp=t - 1800)
        elif self.forge == "hs256":
            # The classic confusion: an HMAC "signed" with the bytes of the public key.
            key, alg = OctKey.import_key(json.dumps(self.key.as_dict(private=False)).encode()), "HS256"
        if self.forge == "none":
            header = base64.urlsafe_b64encode(json.dumps({"alg": "none"}).encode()).rstrip(b"=").decode()
            body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
            return f"{header}.{body}."
        return jwt.encode({"alg": alg, "kid": "op-key"}, claims, key, algorithms=[alg])


class FakeGitHub(StandIn):
    """GitHub's OAuth app flow and REST API as docs.github.com documents them:
    GET /login/oauth/authorize, POST /login/oauth/access_token (JSON with Accept: application/json),
    GET /user and GET /user/emails with `Authorization: Bearer <token>`."""

    def __init__(self):
        super().__init__()
        self.client_id = "gh-client-" + random_token(4)
        self.client_secret = random_token(20)
        self.user = {"id": 583231, "login": "octocat", "name": "The Octocat", "email": None}
        self.emails = [{"email": "octocat@github.example", "primary": True, "verified": True, "visibility": "private"}]
        self.codes: dict[str, dict] = {}
        self.tokens: set[str] = set()

    def handle(self, method, path, query, form, headers):
        self.requests.append((method, path))
        if path == "/login/oauth/authorize":
            if query.get("client_id") != self.client_id:
                return self.json({"error": "unknown client"}, 404)
            code = random_token(16)
            self.codes[code] = dict(query)
            return self.redirect(f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query['state']})}")
        if path == "/login/oauth/access_token" and method == "POST":
            request = self.codes.pop(form.get("code", ""), None)
            if (request is None or form.get("client_id") != self.client_id
                    or form.get("client_secret") != self.client_secret
                    or form.get("redirect_uri") != request.get("redirect_uri")
                    or ("code_challenge" in request and s256(form.get("code_verifier", "")) != request["code_challenge"])):
                # GitHub answers a bad code with 200 and an error body.
                return self.json({"error": "bad_verification_code",
                                  "error_description": "The code passed is incorrect or expired."})
            token = "gho_" + random_token(20)
            self.tokens.add(token)
            return self.json({"access_token": token, "token_type": "bearer", "scope": request.get("scope", "")})
        token = (headers.get("Authorization") or "").removeprefix("Bearer ").removeprefix("token ")
        if token not in self.tokens:
            return self.json({"message": "Bad credentials"}, 401)
        if path == "/user":
            return self.json(self.user)
        if path == "/user/emails":
            return self.json(self.emails)
        return self.json({"message": "Not Found"}, 404)
