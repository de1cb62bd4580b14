"""Client authentication with JWTs (RFC 7523, OIDC Core 9) over real HTTP: private_key_jwt with
keys stored on the client or behind a jwks_uri, client_secret_jwt, and every way an assertion
must be refused."""
from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import socket
import json
import threading
import time
import uuid
import warnings
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7523 import ClientSecretJWT, PrivateKeyJWT, client_secret_jwt_sign, private_key_jwt_sign
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey, RSAKey

from idp import clock
from idp.oauth import jwks_fetch
from tests.helpers.rp import RelyingParty, verify_access_token
from tests.oauth.flows import TIMEOUT, assert_token_error, authorize, count_rows, with_db

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
REDIRECT_URI = "http://127.0.0.1:9999/callback"


# --- the client's side ------------------------------------------------------------------------
class ShortPrivateKeyJWT(PrivateKeyJWT):
    """authlib's private_key_jwt with a one-minute assertion (its default is one hour, longer
    than IDP_CLIENT_ASSERTION_MAX_LIFETIME) and a fresh jti each time."""

    def sign(self, auth, token_endpoint):
        return private_key_jwt_sign(auth.client_secret, client_id=auth.client_id, token_endpoint=token_endpoint,
                                    alg=self.alg, header=dict(self.headers or {}), expires_in=60)


class ShortClientSecretJWT(ClientSecretJWT):
    def sign(self, auth, token_endpoint):
        return client_secret_jwt_sign(OctKey.import_key(auth.client_secret), client_id=auth.client_id,
                                      token_endpoint=token_endpoint, alg=self.alg, expires_in=60)


def rsa_key(kid: str | None = "rsa-1") -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": kid} if kid else None, private=True)


def ec_key(kid: str | None = "ec-1") -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": kid} if kid else None, private=True)


def key_set(*keys) -> dict:
    return {"keys": [key.as_dict(private=False) for key in keys]}


def claims_for(client_id: str, audience: str, **overrides) -> dict:
    """Good claims for an assertion; an override of None leaves that claim out."""
    t = clock.timestamp()
    claims = {"iss": client_id, "sub": client_id, "aud": audience, "iat": t, "exp": t + 60,
              "jti": generate_token(24)}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def sign(key, claims: dict, alg: str = "RS256", **header) -> str:
    if key is not None and key.kid and "kid" not in header:
        header["kid"] = key.kid
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # joserfc warns about alg none, which is the point of that test
        return jwt.encode({"alg": alg, **header}, claims, key, algorithms=[alg])


def hmac_sign(secret: bytes, claims: dict, **header) -> str:
    """HS256 by hand, for secrets joserfc rightly refuses to use as HMAC keys (public keys)."""
    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")
    signing_input = b64(json.dumps({"alg": "HS256", **header}).encode()) + b"." + b64(json.dumps(claims).encode())
    return (signing_input + b"." + b64(hmac.new(secret, signing_input, hashlib.sha256).digest())).decode()


def client_credentials(issuer: str, assertion: str, **extra) -> requests.Response:
    data = {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion, **extra}
    return requests.post(f"{issuer}/token", data=data, timeout=TIMEOUT)


def rows_besides_audit(app) -> dict:
    return {table: n for table, n in count_rows(app).items() if table != "audit_events"}


def rejection_reasons(app, client_id: str) -> list[str]:
    from idp.models import AuditEvent

    return with_db(app, lambda db: [e.details["reason"] for e in db.session.scalars(
        db.select(AuditEvent).where(AuditEvent.type == "oauth.client_assertion.rejected",
                                    AuditEvent.client_id == client_id).order_by(AuditEvent.id))])


def assert_refused(app, issuer: str, who: str, assertion: str, reason: str | None = None, **extra) -> dict:
    """invalid_client, nothing written but the audit event, and (when given) the reason recorded
    for client `who`."""
    before = rows_besides_audit(app)
    response = client_credentials(issuer, assertion, **extra)
    body = assert_token_error(response, "invalid_client", 400)
    assert rows_besides_audit(app) == before
    if reason is not None:
        assert rejection_reasons(app, who)[-1].startswith(reason)
    return body


# --- fixtures ---------------------------------------------------------------------------------
@pytest.fixture
def jwt_client(app, live_server):
    """A confidential client registered for a JWT method (through set_auth_method, as the CLI does)."""
    def make(method="private_key_jwt", *, jwks=None, jwks_uri=None, signing_alg=None, base="client_secret_basic"):
        from idp.extensions import db
        from idp.oauth.clients import create_client, set_auth_method

        with app.app_context():
            client, secret = create_client(name="JWT app", redirect_uris=[REDIRECT_URI],
                                           grant_types=["authorization_code", "refresh_token", "client_credentials"],
                                           scope="openid profile email offline_access")
            if method != base:
                secret = set_auth_method(client, method, jwks=jwks, jwks_uri=jwks_uri, signing_alg=signing_alg)
            db.session.commit()
            return {"client_id": client.client_id, "client_secret": secret, "redirect_uri": REDIRECT_URI,
                    "public": False}
    return make


class JwksServer:
    """A client's jwks_uri on loopback: serves `body` (bytes, or a callable returning bytes), can
    wait, trickle, redirect or lie about its size; counts the requests it answered."""

    def __init__(self):
        self.body: bytes | None = b"{}"
        self.status, self.headers, self.delay, self.trickle, self.hits = 200, {}, 0.0, None, 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the http.server API
                server.hits += 1
                time.sleep(server.delay)  # a slow endpoint; the test asserts only the outcome
                self.send_response(server.status)
                for name, value in server.headers.items():
                    self.send_header(name, value)
                if "Content-Length" not in server.headers and server.trickle is None:
                    self.send_header("Content-Length", str(len(server.body)))
                self.end_headers()
                try:
                    if server.trickle is not None:
                        for _ in range(100):
                            self.wfile.write(b" ")
                            self.wfile.flush()
                            time.sleep(server.trickle)
                    self.wfile.write(server.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the idp stopped reading, as it should

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/jwks/{uuid.uuid4().hex}"  # unique: the cache is per URI
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def serve(self, jwks: dict) -> None:
        self.body = json.dumps(jwks).encode()


@pytest.fixture
def jwks_server():
    servers = []

    def make() -> JwksServer:
        servers.append(JwksServer())
        return servers[-1]
    yield make
    for server in servers:
        server.httpd.shutdown()
        server.httpd.server_close()


@pytest.fixture
def fast_fetch(app, monkeypatch):
    """A one-second jwks_uri timeout, so the slow-endpoint tests stay short."""
    settings = app.config["IDP_SETTINGS"]
    monkeypatch.setitem(app.config, "IDP_SETTINGS", dataclasses.replace(settings, jwks_fetch_timeout=1))


# --- private_key_jwt works --------------------------------------------------------------------
@pytest.mark.parametrize("make_key, alg", [(rsa_key, "RS256"), (rsa_key, "PS256"), (ec_key, "ES256")])
def test_private_key_jwt_client_credentials_with_stored_jwks(live_server, jwt_client, make_key, alg):
    key = make_key()
    client = jwt_client(jwks=key_set(key))
    session = OAuth2Session(client["client_id"], key,
                            token_endpoint_auth_method=ShortPrivateKeyJWT(alg=alg, headers={"kid": key.kid}))
    token = session.fetch_token(f"{live_server}/token", grant_type="client_credentials")
    assert verify_access_token(live_server, token["access_token"])["client_id"] == client["client_id"]


def test_private_key_jwt_without_kid_uses_the_only_key_of_that_type(live_server, jwt_client):
    key = rsa_key(kid=None)
    client = jwt_client(jwks=key_set(key, ec_key()))
    session = OAuth2Session(client["client_id"], key, token_endpoint_auth_method=ShortPrivateKeyJWT())
    assert session.fetch_token(f"{live_server}/token", grant_type="client_credentials")["access_token"]


def test_private_key_jwt_authorization_code_and_refresh(live_server, jwt_client, make_user):
    user, key = make_user(), ec_key()
    client = jwt_client(jwks=key_set(key))
    rp = RelyingParty(live_server, client)
    auth = ShortPrivateKeyJWT(alg="ES256", headers={"kid": key.kid})
    rp.session = OAuth2Session(client["client_id"], key, scope="openid offline_access", redirect_uri=REDIRECT_URI,
                               code_challenge_method="S256", token_endpoint_auth_method=auth)
    _, response = authorize(live_server, user, rp, prompt="consent")
    token = rp.fetch_token(rp.callback_params(response))
    assert token["id_token"] and token["refresh_token"]
    renewed = rp.session.refresh_token(f"{live_server}/token", refresh_token=token["refresh_token"])
    assert renewed["access_token"] != token["access_token"]


def test_the_audience_may_be_the_issuer_the_token_endpoint_or_a_list_of_them(app, live_server, jwt_client):
    key = rsa_key()
    client = jwt_client(jwks=key_set(key))
    for audience in (live_server, f"{live_server}/token", [live_server], [live_server, f"{live_server}/token"]):
        response = client_credentials(live_server, sign(key, claims_for(client["client_id"], audience)))
        assert response.status_code == 200, response.text


def test_private_key_jwt_with_keys_from_jwks_uri_is_cached(live_server, jwt_client, jwks_server):
    key, server = rsa_key(), jwks_server()
    server.serve(key_set(key))
    client = jwt_client(jwks_uri=server.url)
    for _ in range(3):
        response = client_credentials(live_server, sign(key, claims_for(client["client_id"], live_server)))
        assert response.status_code == 200, response.text
    assert server.hits == 1


def test_an_unknown_kid_refetches_the_jwks_uri_once_per_interval(app, live_server, jwt_client, jwks_server):
    old, new, newer, server = rsa_key("old"), rsa_key("new"), rsa_key("newer"), jwks_server()
    server.serve(key_set(old))
    client = jwt_client(jwks_uri=server.url)
    clock.set_now(clock.now())
    assert client_credentials(live_server, sign(old, claims_for(client["client_id"], live_server))).status_code == 200
    clock.advance(jwks_fetch.REFETCH_INTERVAL)  # still within IDP_JWKS_CACHE_SECONDS
    server.serve(key_set(new))  # the client rotates its key
    assert client_credentials(live_server, sign(new, claims_for(client["client_id"], live_server))).status_code == 200
    assert server.hits == 2
    server.serve(key_set(newer))  # a second unknown kid right away does not make us fetch again
    assert_refused(app, live_server, client["client_id"], sign(newer, claims_for(client["client_id"], live_server)),
                   "unknown_kid")
    assert server.hits == 2
    clock.advance(jwks_fetch.REFETCH_INTERVAL)
    assert client_credentials(live_server, sign(newer, claims_for(client["client_id"], live_server))).status_code == 200
    assert server.hits == 3


def test_a_refetch_that_fails_keeps_the_good_keys(app, live_server, jwt_client, jwks_server):
    """Anyone can force a refetch (an assertion naming the client with a made-up kid, never
    verified); a hiccup at the client's host then must not lock the client out (found by review)."""
    key, server = rsa_key("good"), jwks_server()
    server.serve(key_set(key))
    client = jwt_client(jwks_uri=server.url)
    clock.set_now(clock.now())
    assert client_credentials(live_server, sign(key, claims_for(client["client_id"], live_server))).status_code == 200
    clock.advance(jwks_fetch.REFETCH_INTERVAL + 1)  # within IDP_JWKS_CACHE_SECONDS
    server.status = 503
    assert_refused(app, live_server, client["client_id"],
                   sign(rsa_key("made-up"), claims_for(client["client_id"], live_server)), "unknown_kid")
    assert server.hits == 2
    server.status = 200
    assert client_credentials(live_server, sign(key, claims_for(client["client_id"], live_server))).status_code == 200


# --- client_secret_jwt works ------------------------------------------------------------------
def test_client_secret_jwt_client_credentials(app, live_server, jwt_client):
    client = jwt_client("client_secret_jwt")
    session = OAuth2Session(client["client_id"], client["client_secret"],
                            token_endpoint_auth_method=ShortClientSecretJWT())
    token = session.fetch_token(f"{live_server}/token", grant_type="client_credentials")
    assert verify_access_token(live_server, token["access_token"])["client_id"] == client["client_id"]


def test_client_secret_jwt_secret_is_stored_encrypted_and_rotates_in_step(app, live_server, jwt_client):
    from idp.oauth.clients import find_client, rotate_secret

    client = jwt_client("client_secret_jwt")
    stored = with_db(app, lambda db: find_client(client["client_id"]).client_secret_encrypted)
    assert stored and client["client_secret"] not in stored
    new_secret = with_db(app, lambda db: rotate_secret(find_client(client["client_id"])))
    old = sign(OctKey.import_key(client["client_secret"]), claims_for(client["client_id"], live_server), "HS256")
    assert_refused(app, live_server, client["client_id"], old, "signature")
    fresh = sign(OctKey.import_key(new_secret), claims_for(client["client_id"], live_server), "HS256")
    assert client_credentials(live_server, fresh).status_code == 200


def test_only_client_secret_jwt_clients_keep_an_encrypted_secret(app, jwt_client):
    from idp.oauth.clients import find_client

    basic = jwt_client("client_secret_basic")
    assert with_db(app, lambda db: find_client(basic["client_id"]).client_secret_encrypted) is None


# --- refused: the claims ----------------------------------------------------------------------
@pytest.fixture
def rsa_client(jwt_client):
    key = rsa_key()
    return jwt_client(jwks=key_set(key)), key


def test_a_replayed_assertion_is_refused(app, live_server, rsa_client):
    client, key = rsa_client
    assertion = sign(key, claims_for(client["client_id"], live_server))
    assert client_credentials(live_server, assertion).status_code == 200
    body = assert_refused(app, live_server, client["client_id"], assertion, "replayed")
    assert "used before" in body["error_description"]


def test_an_assertion_with_a_fractional_exp_cannot_be_replayed_while_it_is_valid(app, live_server, rsa_client):
    """`exp` is compared with whole seconds, so exp = t + 10.5 is valid until t + 41 (30 s of
    leeway): the jti must be remembered that long, not only until t + 40.5."""
    client, key = rsa_client
    clock.set_now(clock.now().replace(microsecond=0))
    assertion = sign(key, claims_for(client["client_id"], live_server, exp=clock.timestamp() + 10.5))
    assert client_credentials(live_server, assertion).status_code == 200
    clock.advance(40.7)   # exp + leeway has passed, but not the second it falls in
    assert_refused(app, live_server, client["client_id"], assertion, "replayed")
    clock.advance(0.3)    # from t + 41 on, expired
    assert_refused(app, live_server, client["client_id"], assertion, "claims")


def test_two_racing_requests_with_one_assertion_get_one_token(app, live_server, rsa_client):
    client, key = rsa_client
    assertion = sign(key, claims_for(client["client_id"], live_server))
    barrier, results = threading.Barrier(4), []

    def send():
        barrier.wait()
        results.append(client_credentials(live_server, assertion).status_code)
    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [200, 400, 400, 400]


def test_one_jti_is_single_use_per_client_not_across_clients(live_server, jwt_client):
    key = rsa_key()
    first, second = jwt_client(jwks=key_set(key)), jwt_client(jwks=key_set(key))
    for client in (first, second):
        response = client_credentials(live_server, sign(key, claims_for(client["client_id"], live_server, jti="same")))
        assert response.status_code == 200


@pytest.mark.parametrize("audience", ["https://other.example/token", "http://127.0.0.1:1/token", [], ["x", "y"]])
def test_a_wrong_audience_is_refused(app, live_server, rsa_client, audience):
    client, key = rsa_client
    assert_refused(app, live_server, client["client_id"], sign(key, claims_for(client["client_id"], audience)),
                   "claims")


@pytest.mark.parametrize("extra", ["https://evil.example", "https://evil.example/token", "{issuer}/userinfo"])
@pytest.mark.parametrize("ours", ["{issuer}", "{issuer}/token"])
def test_an_audience_list_naming_anyone_else_besides_us_is_refused(app, live_server, rsa_client, ours, extra):
    """draft-ietf-oauth-rfc7523bis (audience injection): an assertion also addressed to another
    server, or to a part of ours that is no audience, was not meant for us alone."""
    client, key = rsa_client
    audience = [ours.format(issuer=live_server), extra.format(issuer=live_server)]
    for order in (audience, audience[::-1]):
        assertion = sign(key, claims_for(client["client_id"], order))
        assert_refused(app, live_server, client["client_id"], assertion, "claims: foreign_aud")


def test_an_audience_on_another_path_of_our_host_is_refused(app, live_server, rsa_client):
    client, key = rsa_client
    assertion = sign(key, claims_for(client["client_id"], f"{live_server}/userinfo"))
    assert_refused(app, live_server, client["client_id"], assertion, "claims")


@pytest.mark.parametrize("missing", ["exp", "jti", "aud", "iss"])
def test_an_assertion_without_a_required_claim_is_refused(app, live_server, rsa_client, missing):
    client, key = rsa_client
    assertion = sign(key, claims_for(client["client_id"], live_server, **{missing: None}))
    assert_refused(app, live_server, client["client_id"], assertion, "claims")


def test_an_assertion_expiring_too_far_ahead_is_refused(app, live_server, rsa_client):
    client, key = rsa_client
    limit = app.config["IDP_SETTINGS"].client_assertion_max_lifetime
    far = claims_for(client["client_id"], live_server, exp=clock.timestamp() + limit + 60)
    assert_refused(app, live_server, client["client_id"], sign(key, far), "exp_too_far")


def test_an_exp_that_is_not_a_number_is_refused(app, live_server, rsa_client):
    client, key = rsa_client
    for exp in (float("nan"), float("inf"), "soon", True):  # Python's JSON reads NaN and Infinity
        assertion = sign(key, claims_for(client["client_id"], live_server, exp=exp))
        assert_refused(app, live_server, client["client_id"], assertion)


def test_authlibs_default_one_hour_assertion_is_refused(app, live_server, rsa_client):
    client, key = rsa_client
    session = OAuth2Session(client["client_id"], key, token_endpoint_auth_method=PrivateKeyJWT())
    with pytest.raises(Exception, match="invalid_client"):
        session.fetch_token(f"{live_server}/token", grant_type="client_credentials")
    assert rejection_reasons(app, client["client_id"])[-1] == "exp_too_far"


def test_an_expired_assertion_is_refused(app, live_server, rsa_client):
    client, key = rsa_client
    assertion = sign(key, claims_for(client["client_id"], live_server))
    clock.set_now(clock.now() + timedelta(seconds=120))  # exp was 60 s ahead; the leeway is 30 s
    assert_refused(app, live_server, client["client_id"], assertion, "claims")


@pytest.mark.parametrize("claim", ["iat", "nbf"])
def test_an_assertion_from_the_future_is_refused(app, live_server, rsa_client, claim):
    client, key = rsa_client
    ahead = clock.timestamp() + 120
    assertion = sign(key, claims_for(client["client_id"], live_server, exp=ahead + 60, **{claim: ahead}))
    assert_refused(app, live_server, client["client_id"], assertion, "claims")


@pytest.mark.parametrize("jti", ["", "x" * 256, 12345])
def test_a_bad_jti_is_refused(app, live_server, rsa_client, jti):
    client, key = rsa_client
    assert_refused(app, live_server, client["client_id"], sign(key, claims_for(client["client_id"], live_server, jti=jti)))


def test_iss_other_than_sub_is_refused(app, live_server, rsa_client, jwt_client):
    client, key = rsa_client
    other = jwt_client(jwks=key_set(key))
    assertion = sign(key, claims_for(client["client_id"], live_server, iss=other["client_id"]))
    assert_refused(app, live_server, client["client_id"], assertion, "claims")


def test_a_client_id_parameter_naming_another_client_is_refused(app, live_server, rsa_client, jwt_client):
    client, key = rsa_client
    other = jwt_client(jwks=key_set(key))
    assert_refused(app, live_server, client["client_id"], sign(key, claims_for(client["client_id"], live_server)),
                   client_id=other["client_id"])


def test_an_unknown_client_is_refused(app, live_server):
    key = rsa_key()
    assert_refused(app, live_server, "no-such-client", sign(key, claims_for("no-such-client", live_server)))


@pytest.mark.parametrize("garbage", ["not-a-jwt", "a.b.c", "x" * 9000])
def test_garbage_is_refused_without_a_500(app, live_server, garbage):
    assert_token_error(client_credentials(live_server, garbage), "invalid_client", 400)


# --- refused: algorithms and keys -------------------------------------------------------------
def test_alg_none_is_refused(app, live_server, rsa_client):
    client, _ = rsa_client
    assertion = sign(None, claims_for(client["client_id"], live_server), alg="none")
    assert_refused(app, live_server, client["client_id"], assertion, "alg")


@pytest.mark.parametrize("alg", ["\u00e9", 'R"S', "R\\S"])
def test_an_alg_outside_the_error_description_charset_is_refused_without_a_500(app, live_server, rsa_client, alg):
    """The description quotes the alg: RFC 6749 5.2 allows no `"`, `\\` or non-ASCII there (authlib
    raised a ValueError, a 500)."""
    client, _ = rsa_client
    header = base64.urlsafe_b64encode(json.dumps({"alg": alg}).encode()).rstrip(b"=").decode()
    body = base64.urlsafe_b64encode(json.dumps(claims_for(client["client_id"], live_server)).encode()).rstrip(b"=")
    body = assert_refused(app, live_server, client["client_id"], f"{header}.{body.decode()}.c2ln", "alg")
    assert "?" in body["error_description"]


def test_hs256_signed_with_the_public_key_is_refused(app, live_server, rsa_client):
    """The alg confusion attack: the client's RSA public key, which anyone can read, as an HMAC secret."""
    client, key = rsa_client
    for public in (key.as_pem(private=False), json.dumps(key.as_dict(private=False)).encode()):
        forged = hmac_sign(public, claims_for(client["client_id"], live_server), kid=key.kid)
        assert_refused(app, live_server, client["client_id"], forged, "alg")


def test_an_alg_other_than_the_registered_one_is_refused(app, live_server, jwt_client):
    key = rsa_key()
    client = jwt_client(jwks=key_set(key), signing_alg="PS256")
    assert_refused(app, live_server, client["client_id"], sign(key, claims_for(client["client_id"], live_server)),
                   "alg")
    ok = sign(key, claims_for(client["client_id"], live_server), alg="PS256")
    assert client_credentials(live_server, ok).status_code == 200


def test_client_secret_jwt_refuses_asymmetric_algs(app, live_server, jwt_client):
    client = jwt_client("client_secret_jwt")
    assert_refused(app, live_server, client["client_id"], sign(rsa_key(), claims_for(client["client_id"], live_server)),
                   "alg")


def test_a_signature_by_another_key_with_the_same_kid_is_refused(app, live_server, rsa_client):
    client, _ = rsa_client
    impostor = rsa_key()  # same kid "rsa-1"
    assert_refused(app, live_server, client["client_id"], sign(impostor, claims_for(client["client_id"], live_server)),
                   "signature")


def test_an_unknown_kid_with_stored_jwks_is_refused(app, live_server, rsa_client):
    client, _ = rsa_client
    stranger = rsa_key("someone-else")
    assert_refused(app, live_server, client["client_id"], sign(stranger, claims_for(client["client_id"], live_server)),
                   "unknown_kid")


def test_jku_and_x5u_headers_are_ignored(app, live_server, rsa_client, jwks_server):
    client, _ = rsa_client
    attacker, server = rsa_key("rsa-2"), jwks_server()
    server.serve(key_set(attacker))
    forged = sign(attacker, claims_for(client["client_id"], live_server), jku=server.url, x5u=server.url)
    assert_refused(app, live_server, client["client_id"], forged, "unknown_kid")
    assert server.hits == 0


def test_without_kid_several_keys_of_one_type_are_ambiguous(app, live_server, jwt_client):
    key = rsa_key(kid=None)
    client = jwt_client(jwks=key_set(key, rsa_key("rsa-2")))
    assert_refused(app, live_server, client["client_id"], sign(key, claims_for(client["client_id"], live_server)),
                   "unknown_kid")


def test_stored_keys_that_no_longer_parse_are_refused_without_a_500(app, live_server, rsa_client):
    from idp.oauth.clients import find_client

    client, key = rsa_client

    def spoil(db):
        find_client(client["client_id"]).jwks = {"keys": [{"kty": "RSA", "kid": "rsa-1", "n": "x"}]}
    with_db(app, spoil)
    assert_refused(app, live_server, client["client_id"], sign(key, claims_for(client["client_id"], live_server)),
                   "bad_jwks")


# --- refused: the method must be the registered one -------------------------------------------
def test_a_secret_basic_client_cannot_use_an_assertion(app, live_server, jwt_client):
    client = jwt_client("client_secret_basic")
    forged = sign(OctKey.import_key(client["client_secret"]), claims_for(client["client_id"], live_server), "HS256")
    before = rows_besides_audit(app)
    assert_token_error(client_credentials(live_server, forged), "invalid_client", 401)
    assert rows_besides_audit(app) == before


def test_a_client_secret_jwt_client_cannot_fall_back_to_its_secret(live_server, jwt_client):
    client = jwt_client("client_secret_jwt")
    response = requests.post(f"{live_server}/token", data={"grant_type": "client_credentials"},
                             auth=(client["client_id"], client["client_secret"]), timeout=TIMEOUT)
    assert_token_error(response, "invalid_client", 401)
    response = requests.post(f"{live_server}/token", data={"grant_type": "client_credentials", **client}, timeout=TIMEOUT)
    assert_token_error(response, "invalid_client", 401)


def test_a_private_key_jwt_client_cannot_use_client_secret_jwt(app, live_server, rsa_client):
    client, key = rsa_client
    guessed = sign(OctKey.import_key(b"k" * 32), claims_for(client["client_id"], live_server), "HS256")
    assert_refused(app, live_server, client["client_id"], guessed, "alg")


def test_a_private_key_jwt_client_cannot_authenticate_as_public(live_server, rsa_client):
    client, _ = rsa_client
    response = requests.post(f"{live_server}/token", data={"grant_type": "client_credentials",
                                                           "client_id": client["client_id"]}, timeout=TIMEOUT)
    assert_token_error(response, "invalid_client", 401)


# --- refused: the jwks_uri misbehaves ---------------------------------------------------------
def test_a_jwks_uri_slower_than_the_timeout_is_refused(app, live_server, jwt_client, jwks_server, fast_fetch):
    key, server = rsa_key(), jwks_server()
    server.serve(key_set(key))
    server.delay = 3
    client = jwt_client(jwks_uri=server.url)
    assert_refused(app, live_server, client["client_id"], sign(key, claims_for(client["client_id"], live_server)),
                   "jwks_uri")


def test_a_jwks_uri_trickling_its_body_past_the_timeout_is_refused(app, live_server, jwt_client, jwks_server,
                                                                   fast_fetch):
    key, server = rsa_key(), jwks_server()
    server.serve(key_set(key))
    server.trickle = 0.1  # one byte every 0.1 s: each read is quick, the whole is not
    client = jwt_client(jwks_uri=server.url)
    assert_refused(app, live_server, client["client_id"], sign(key, claims_for(client["client_id"], live_server)),
                   "jwks_uri")


@pytest.mark.parametrize("declared", [True, False])
def test_a_huge_jwks_uri_body_is_refused(app, live_server, jwt_client, jwks_server, declared):
    key, server = rsa_key(), jwks_server()
    server.body = b'{"keys": [' + b" " * (8 * 1024 * 1024) + json.dumps(key.as_dict(private=False)).encode() + b"]}"
    if not declared:
        server.headers = {"Connection": "close"}
        server.trickle = 0  # no Content-Length: the size is only known by reading
    client = jwt_client(jwks_uri=server.url)
    assert_refused(app, live_server, client["client_id"], sign(key, claims_for(client["client_id"], live_server)),
                   "jwks_uri")


@pytest.mark.parametrize("status, headers, body", [
    (302, {"Location": "http://127.0.0.1:1/jwks"}, b""),
    (404, {}, b"{}"),
    (200, {}, b"not json"),
    (200, {"Content-Encoding": "gzip"}, b"\x1f\x8b"),
])
def test_a_jwks_uri_answering_badly_is_refused(app, live_server, jwt_client, jwks_server, status, headers, body):
    key, server = rsa_key(), jwks_server()
    server.status, server.headers, server.body = status, headers, body
    client = jwt_client(jwks_uri=server.url)
    assert_refused(app, live_server, client["client_id"], sign(key, claims_for(client["client_id"], live_server)),
                   "jwks_uri")


def test_a_jwks_uri_publishing_a_private_key_is_refused(app, live_server, jwt_client, jwks_server):
    key, server = rsa_key(), jwks_server()
    server.serve({"keys": [key.as_dict(private=True)]})
    client = jwt_client(jwks_uri=server.url)
    assert_refused(app, live_server, client["client_id"], sign(key, claims_for(client["client_id"], live_server)),
                   "jwks_uri")


def test_a_failed_fetch_is_not_retried_on_every_request(app, live_server, jwt_client, jwks_server):
    key, server = rsa_key(), jwks_server()
    server.status = 500
    client = jwt_client(jwks_uri=server.url)
    clock.set_now(clock.now())
    for _ in range(2):
        assert_refused(app, live_server, client["client_id"], sign(key, claims_for(client["client_id"], live_server)),
                       "jwks_uri")
    assert server.hits == 1
    server.status = 200
    server.serve(key_set(key))
    clock.advance(jwks_fetch.REFETCH_INTERVAL)
    assert client_credentials(live_server, sign(key, claims_for(client["client_id"], live_server))).status_code == 200


# --- other endpoints that authenticate clients ------------------------------------------------
def test_revocation_and_introspection_accept_private_key_jwt(app, live_server, jwt_client):
    key = rsa_key()
    client = jwt_client(jwks=key_set(key))
    auth = ShortPrivateKeyJWT(headers={"kid": key.kid})
    session = OAuth2Session(client["client_id"], key, token_endpoint_auth_method=auth,
                            revocation_endpoint_auth_method=auth)
    token = session.fetch_token(f"{live_server}/token", grant_type="client_credentials")["access_token"]
    introspected = session.introspect_token(f"{live_server}/introspect", token=token)  # aud: the /introspect URL
    assert introspected.status_code == 200 and introspected.json()["active"] is True
    assert session.revoke_token(f"{live_server}/revoke", token=token).status_code == 200
    assert session.introspect_token(f"{live_server}/introspect", token=token).json()["active"] is False


def test_revocation_refuses_a_replayed_assertion(app, live_server, rsa_client):
    client, key = rsa_client
    assertion = sign(key, claims_for(client["client_id"], f"{live_server}/revoke"))
    data = {"token": "whatever", "client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion}
    assert requests.post(f"{live_server}/revoke", data=data, timeout=TIMEOUT).status_code == 200
    replayed = requests.post(f"{live_server}/revoke", data=data, timeout=TIMEOUT)
    assert replayed.status_code == 400 and replayed.json()["error"] == "invalid_client"
    assert rejection_reasons(app, client["client_id"])[-1] == "replayed"


def test_introspection_accepts_client_secret_jwt(live_server, jwt_client):
    client = jwt_client("client_secret_jwt")
    auth = ShortClientSecretJWT()
    session = OAuth2Session(client["client_id"], client["client_secret"], token_endpoint_auth_method=auth,
                            revocation_endpoint_auth_method=auth)
    token = session.fetch_token(f"{live_server}/token", grant_type="client_credentials")["access_token"]
    assert session.introspect_token(f"{live_server}/introspect", token=token).json()["active"] is True


# --- a jwks_uri on our own network -----------------------------------------------------------
@pytest.mark.parametrize("host", ["localhost", "metadata.example.test"])
def test_production_refuses_a_jwks_uri_whose_host_is_not_public(app, settings, jwt_client, jwks_server,
                                                                 monkeypatch, host):
    """A name that resolves to loopback or to the cloud metadata address (faked DNS) is never
    fetched outside development: the assertion is invalid_client, and the audit says why."""
    from idp import create_app

    real = socket.getaddrinfo

    def getaddrinfo(name, port, *args, **kwargs):  # DNS is not ours to run in a test
        if name == "metadata.example.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", port))]
        return real(name, port, *args, **kwargs)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    key = rsa_key()
    server = jwks_server()
    server.serve(key_set(key))
    uri = f"https://{host}:{server.httpd.server_port}/jwks/{uuid.uuid4().hex}"
    client = jwt_client(jwks_uri=uri)
    production = create_app(dataclasses.replace(settings, env="production", issuer="https://127.0.0.1"))
    response = production.test_client().post("/token", base_url="https://127.0.0.1", data={
        "grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": sign(key, claims_for(client["client_id"], "https://127.0.0.1/token"))})
    assert response.status_code in (400, 401) and response.json["error"] == "invalid_client"
    assert "not public" in rejection_reasons(app, client["client_id"])[-1]
    assert server.hits == 0


def test_a_flood_of_forged_assertions_costs_one_audit_row_per_minute(app, live_server, rsa_client, monkeypatch):
    """Anyone can name a public client_id: 20 forged assertions are 20 invalid_client answers but
    one audit row; once the window is over the next one is recorded with the count left out."""
    from idp import audit
    client, key = rsa_client
    forger = rsa_key()

    def forged():  # the client's kid, someone else's key
        return client_credentials(live_server, sign(forger, claims_for(client["client_id"], live_server), kid=key.kid))

    for _ in range(20):
        assert_token_error(forged(), "invalid_client", 400)
    assert rejection_reasons(app, client["client_id"]) == ["signature: BadSignatureError"]
    monkeypatch.setattr(audit, "REPEAT_WINDOW", 0.0)  # the minute is over
    assert_token_error(forged(), "invalid_client", 400)
    events = with_db(app, lambda db: [e.details for e in db.session.scalars(
        db.select(audit.AuditEvent).where(audit.AuditEvent.type == "oauth.client_assertion.rejected",
                                          audit.AuditEvent.client_id == client["client_id"])
        .order_by(audit.AuditEvent.id))])
    assert [e.get("repeats") for e in events] == [None, 19]
