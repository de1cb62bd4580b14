"""Dynamic client registration (RFC 7591, OIDC Dynamic Client Registration 1.0) and the client
configuration endpoint (RFC 7592), over real HTTP: the default (protected) instance, plus a second
instance on the same database for each other IDP_CLIENT_REGISTRATION mode."""
from __future__ import annotations

import dataclasses
import json
import threading
from datetime import datetime, timezone

import pytest
import requests
from authlib.common.security import generate_token
from joserfc import jwt
from joserfc.jwk import ECKey
from werkzeug.serving import make_server

from idp import audit, clock, create_app
from idp.extensions import db
from idp.models import Client, InitialAccessToken
from idp.oauth.initial_tokens import issue_initial_access_token
from tests.conftest import _free_port
from tests.helpers.rp import RelyingParty, discovery, verify_id_token
from tests.oauth.flows import (TIMEOUT, assert_token_error, authorize, count_rows, is_consent_page, redeem,
                               refresh, signed_in_browser, tokens_for, with_db)

REDIRECT = "http://127.0.0.1:9999/callback"
JSON = {"Content-Type": "application/json"}


def _instance(settings, mode: str):
    port = _free_port()
    other = create_app(dataclasses.replace(settings, client_registration=mode, issuer=f"http://127.0.0.1:{port}"))
    server = make_server("127.0.0.1", port, other, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def open_server(settings, live_server):
    """An instance with IDP_CLIENT_REGISTRATION=open on the same database. One refused request
    first: the first request a worker's database sees makes the signing key and the rate-limit
    windows' rows, which the tests that count rows must not see appear."""
    server, url = _instance(settings, "open")
    register(url, {"redirect_uris": "not a list"})
    yield url
    server.shutdown()


@pytest.fixture(scope="module")
def disabled_server(settings, live_server):
    server, url = _instance(settings, "disabled")
    yield url
    server.shutdown()


@pytest.fixture
def initial_token(app):
    def make(expires_in=3600, note="test"):
        with app.app_context():
            _, token = issue_initial_access_token(expires_in, note)
            db.session.commit()
            return token
    return make


def register(issuer: str, body, token: str | None = None, **kwargs) -> requests.Response:
    headers = dict(JSON)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return requests.post(f"{issuer}/oauth/register", data=data, headers={**headers, **kwargs.pop("headers", {})},
                         timeout=TIMEOUT, **kwargs)


def configure(method: str, uri: str, token: str | None, body=None) -> requests.Response:
    headers = dict(JSON)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return requests.request(method, uri, headers=headers, data=json.dumps(body) if body is not None else None,
                            timeout=TIMEOUT)


def as_rp_client(registered: dict) -> dict:
    """The shape tests/helpers/rp.py expects."""
    return {"client_id": registered["client_id"], "client_secret": registered.get("client_secret"),
            "redirect_uri": registered["redirect_uris"][0],
            "public": registered["token_endpoint_auth_method"] == "none"}


def assert_bearer_refusal(response) -> dict:
    """RFC 6750 3.1: 401, invalid_token in the body and in WWW-Authenticate."""
    assert response.status_code == 401, (response.status_code, response.text)
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json()["error"] == "invalid_token"
    assert response.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')
    return response.json()


def assert_registration_error(response, error: str, field: str) -> None:
    """RFC 7591 3.2.2: 400, the error code, a description naming the field, no caching."""
    assert response.status_code == 400, (response.status_code, response.text)
    body = response.json()
    assert body["error"] == error, body
    assert field in body["error_description"], body
    assert set(body) <= {"error", "error_description", "error_uri"}
    assert response.headers["Cache-Control"] == "no-store"


def client_row(app, client_id: str) -> dict | None:
    def read(_db):
        row = _db.session.scalar(_db.select(Client).where(Client.client_id == client_id))
        return None if row is None else {c.name: getattr(row, c.key) for c in Client.__table__.columns}
    return with_db(app, read)


def events(app, prefix: str) -> list[dict]:
    with app.app_context():
        return [audit.as_dict(e) for e in audit.events(type_prefix=prefix, limit=100000)]


# --- discovery and modes ---------------------------------------------------------------------
def test_discovery_advertises_the_registration_endpoint_unless_disabled(live_server, open_server, disabled_server):
    assert discovery(live_server)["registration_endpoint"] == f"{live_server}/oauth/register"
    assert discovery(open_server)["registration_endpoint"] == f"{open_server}/oauth/register"
    assert "registration_endpoint" not in discovery(disabled_server)


def test_disabled_registration_is_not_served(disabled_server, open_server):
    registered = register(open_server, {"redirect_uris": [REDIRECT]}).json()
    assert register(disabled_server, {"redirect_uris": [REDIRECT]}).status_code == 404
    uri = registered["registration_client_uri"].replace(open_server, disabled_server)
    assert configure("GET", uri, registered["registration_access_token"]).status_code == 404


def test_the_mode_defaults_to_protected_and_a_bad_mode_stops_start_up(tmp_path):
    from idp.config import ConfigError, from_env

    env = {"IDP_ISSUER": "https://idp.example.test", "IDP_SECRET_KEY": "k" * 32, "IDP_INSTANCE_PATH": str(tmp_path)}
    assert from_env(env).client_registration == "protected"
    assert from_env({**env, "IDP_CLIENT_REGISTRATION": "open"}).client_registration == "open"
    for bad in ("", "on", "true", "Protected"):
        with pytest.raises(ConfigError, match="IDP_CLIENT_REGISTRATION"):
            from_env({**env, "IDP_CLIENT_REGISTRATION": bad})


def test_people_sign_up_page_stays_at_register(live_server):
    """IDP_REGISTRATION_ENABLED (people) and IDP_CLIENT_REGISTRATION (applications) are apart."""
    page = requests.get(f"{live_server}/register", timeout=TIMEOUT)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")


# --- protected mode: the initial access token ----------------------------------------------------
def test_protected_registration_without_a_token_is_refused_and_writes_nothing(app, live_server):
    before = count_rows(app)
    body = assert_bearer_refusal(register(live_server, {"redirect_uris": [REDIRECT]}))
    assert "initial access token" in body["error_description"]
    after = count_rows(app)
    assert after["audit_events"] == before["audit_events"] + 1  # the refusal, audited
    kept = ("audit_events", "rate_limits")  # and counted (test_registration_limits.py)
    assert {k: v for k, v in after.items() if k not in kept} == {k: v for k, v in before.items() if k not in kept}
    assert events(app, "oauth.registration.refused")[-1]["details"]["reason"] == "missing"


@pytest.mark.parametrize("header", ["Bearer not-a-token", "Basic dXNlcjpwYXNz", "Bearer ", "bearer " + "x" * 600])
def test_protected_registration_with_a_wrong_token_is_refused(app, live_server, header):
    clients = count_rows(app)["clients"]
    response = register(live_server, {"redirect_uris": [REDIRECT]}, headers={"Authorization": header})
    assert_bearer_refusal(response)
    assert count_rows(app)["clients"] == clients


def test_an_initial_access_token_registers_one_client_only(app, live_server, initial_token):
    token = initial_token()
    first = register(live_server, {"redirect_uris": [REDIRECT], "client_name": "First"}, token)
    assert first.status_code == 201, first.text
    clients = count_rows(app)["clients"]
    assert_bearer_refusal(register(live_server, {"redirect_uris": [REDIRECT]}, token))
    assert count_rows(app)["clients"] == clients
    assert events(app, "oauth.registration.refused")[-1]["details"]["reason"] == "used"


def test_an_expired_initial_access_token_is_refused(app, live_server, initial_token):
    token = initial_token(expires_in=60)
    clock.set_now(datetime.now(timezone.utc))
    clock.advance(61)
    assert_bearer_refusal(register(live_server, {"redirect_uris": [REDIRECT]}, token))
    assert events(app, "oauth.registration.refused")[-1]["details"]["reason"] == "expired"
    clock.set_now(None)


def test_a_refused_registration_does_not_use_up_the_initial_token(live_server, initial_token):
    token = initial_token()
    assert_registration_error(register(live_server, {"redirect_uris": ["http://example.com/cb"]}, token),
                              "invalid_redirect_uri", "redirect_uris[0]")
    assert register(live_server, {"redirect_uris": [REDIRECT]}, token).status_code == 201


def test_two_registrations_racing_with_one_token_register_one_client(app, live_server, initial_token):
    token = initial_token()
    results = []

    def attempt():
        results.append(register(live_server, {"redirect_uris": [REDIRECT]}, token).status_code)

    threads = [threading.Thread(target=attempt) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [201, 401, 401, 401]


# --- the registration response ------------------------------------------------------------------
def test_registration_answers_rfc_7591_3_2_1_and_stores_only_digests(app, live_server, initial_token):
    token = initial_token()
    metadata = {"redirect_uris": [REDIRECT, "https://app.example.com/cb"], "client_name": "Photo  app",
                "client_uri": "https://app.example.com", "logo_uri": "https://app.example.com/logo.png",
                "policy_uri": "https://app.example.com/privacy", "tos_uri": "https://app.example.com/tos",
                "contacts": ["ops@example.com"], "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"], "scope": "openid email offline_access", "default_max_age": 3600,
                "require_auth_time": True, "post_logout_redirect_uris": ["https://app.example.com/bye"],
                "backchannel_logout_uri": "https://app.example.com/bcl", "backchannel_logout_session_required": True,
                "id_token_signed_response_alg": "RS256",  # always signed (OIDC Discovery 3)
                "software_id": "ignored", "x_unknown": {"ignored": True}}
    response = register(live_server, metadata, token)
    assert response.status_code == 201, response.text
    assert response.headers["Cache-Control"] == "no-store" and response.headers["Pragma"] == "no-cache"
    body = response.json()
    assert body["client_secret"] and body["client_secret_expires_at"] == 0
    assert abs(body["client_id_issued_at"] - clock.timestamp()) < 60
    assert body["registration_client_uri"] == f"{live_server}/oauth/register/{body['client_id']}"
    assert body["token_endpoint_auth_method"] == "client_secret_basic"  # RFC 7591 2 default
    assert body["client_name"] == "Photo app"
    for key, value in metadata.items():
        if key not in ("software_id", "x_unknown", "client_name"):
            assert body[key] == value, key
    assert "software_id" not in body and "x_unknown" not in body  # ignored, and not claimed as registered
    row = client_row(app, body["client_id"])
    assert row["registered_via"] == "dynamic" and row["first_party"] is False and row["require_pkce"] is True
    assert body["client_secret"] not in json.dumps(row, default=str)
    assert body["registration_access_token"] not in json.dumps(row, default=str)
    assert row["client_secret_encrypted"] is None
    created = [e for e in events(app, "oauth.client.created") if e["client_id"] == body["client_id"]]
    assert len(created) == 1 and created[0]["details"]["registered_via"] == "dynamic"
    assert body["client_secret"] not in json.dumps(created) and token not in json.dumps(created)
    used = with_db(app, lambda d: d.session.scalar(d.select(InitialAccessToken.used_at).order_by(
        InitialAccessToken.id.desc()).limit(1)))
    assert used is not None


def test_open_registration_needs_no_token_and_defaults_are_filled_in(open_server):
    response = register(open_server, {"redirect_uris": [REDIRECT]})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["grant_types"] == ["authorization_code"] and body["response_types"] == ["code"]
    assert body["token_endpoint_auth_method"] == "client_secret_basic"
    assert body["client_name"] == body["client_id"]  # provisioned by the server (RFC 7591 3.2.1)
    assert body["scope"] == "openid profile email"
    assert body["subject_type"] == "public"


def test_a_public_client_gets_no_secret(open_server):
    body = register(open_server, {"redirect_uris": ["com.example.app:/cb"],
                                  "token_endpoint_auth_method": "none"}).json()
    assert "client_secret" not in body and "client_secret_expires_at" not in body


@pytest.mark.parametrize("uri", ["https://bank.example@evil.example/cb", 'https://rp.example/cb?x="<b>'])
def test_a_redirect_uri_that_misleads_or_is_not_a_uri_is_refused(open_server, uri):
    assert_registration_error(register(open_server, {"redirect_uris": [uri]}), "invalid_redirect_uri", "redirect_uris")


def test_a_client_credentials_client_has_no_redirect_uris_and_no_response_types(open_server):
    body = register(open_server, {"grant_types": ["client_credentials"], "scope": "openid"}).json()
    assert body["grant_types"] == ["client_credentials"] and body["response_types"] == []
    assert body["redirect_uris"] == []
    token = requests.post(f"{open_server}/token", data={"grant_type": "client_credentials"},
                          auth=(body["client_id"], body["client_secret"]), timeout=TIMEOUT)
    assert token.status_code == 200 and token.json()["access_token"]


def test_a_pairwise_client_gets_the_host_of_its_redirect_uris_as_sector(app, open_server):
    if "pairwise" not in discovery(open_server)["subject_types_supported"]:
        pytest.skip("pairwise subjects are not advertised")
    body = register(open_server, {"redirect_uris": ["https://a.example.com/cb", "https://a.example.com/cb2"],
                                  "subject_type": "pairwise"}).json()
    assert body["subject_type"] == "pairwise"
    assert client_row(app, body["client_id"])["sector_identifier"] == "a.example.com"


# --- every refusal, with the field named -----------------------------------------------------
OK = {"redirect_uris": [REDIRECT]}
PKJ = {**OK, "token_endpoint_auth_method": "private_key_jwt"}
EC_KEY = {"kty": "EC", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
          "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}
REFUSALS = [
    ({}, "invalid_redirect_uri", "redirect_uris"),
    ({"redirect_uris": "https://app.example.com/cb"}, "invalid_redirect_uri", "redirect_uris"),
    ({"redirect_uris": [7]}, "invalid_redirect_uri", "redirect_uris"),
    ({"redirect_uris": ["http://app.example.com/cb"]}, "invalid_redirect_uri", "redirect_uris[0]"),
    ({"redirect_uris": [REDIRECT, "https://app.example.com/cb#x"]}, "invalid_redirect_uri", "redirect_uris[1]"),
    ({"redirect_uris": ["https://*.example.com/cb"]}, "invalid_redirect_uri", "redirect_uris[0]"),
    ({"redirect_uris": ["javascript:alert(1)"]}, "invalid_redirect_uri", "redirect_uris[0]"),
    ({"redirect_uris": ['https://app.example.com/"\\\u00e9']}, "invalid_redirect_uri", "redirect_uris[0]"),
    ({"redirect_uris": ["https://app.example.com/" + "a" * 2000]}, "invalid_redirect_uri", "redirect_uris"),
    ({"redirect_uris": [f"https://app.example.com/{i}" for i in range(21)]}, "invalid_redirect_uri", "redirect_uris"),
    ({**OK, "response_types": ["token"]}, "invalid_client_metadata", "response_types"),
    ({**OK, "response_types": ["code id_token"]}, "invalid_client_metadata", "response_types"),
    ({**OK, "response_types": []}, "invalid_client_metadata", "response_types"),
    ({"grant_types": ["client_credentials"], "response_types": ["code"]}, "invalid_client_metadata", "response_types"),
    ({**OK, "grant_types": ["implicit"]}, "invalid_client_metadata", "grant_types"),
    ({**OK, "grant_types": ["password"]}, "invalid_client_metadata", "grant_types"),
    ({**OK, "grant_types": []}, "invalid_client_metadata", "grant_types"),
    ({**OK, "grant_types": ["refresh_token"]}, "invalid_client_metadata", "grant_types"),
    ({**OK, "grant_types": "authorization_code"}, "invalid_client_metadata", "grant_types"),
    ({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "none"}, "invalid_client_metadata",
     "grant_types"),
    ({**OK, "token_endpoint_auth_method": "tls_client_auth"}, "invalid_client_metadata", "token_endpoint_auth_method"),
    ({**OK, "token_endpoint_auth_method": 1}, "invalid_client_metadata", "token_endpoint_auth_method"),
    ({**OK, "id_token_signed_response_alg": "none"}, "invalid_client_metadata", "id_token_signed_response_alg"),
    ({**OK, "id_token_signed_response_alg": "HS256"}, "invalid_client_metadata", "id_token_signed_response_alg"),
    ({**OK, "id_token_encrypted_response_alg": "RSA-OAEP"}, "invalid_client_metadata",
     "id_token_encrypted_response_alg"),
    ({**OK, "userinfo_encrypted_response_alg": "RSA-OAEP"}, "invalid_client_metadata",
     "userinfo_encrypted_response_alg"),
    ({**OK, "logo_uri": "http://app.example.com/logo.png"}, "invalid_client_metadata", "logo_uri"),
    ({**OK, "policy_uri": "javascript:alert(1)"}, "invalid_client_metadata", "policy_uri"),
    ({**OK, "tos_uri": "https://app.example.com/tos#top"}, "invalid_client_metadata", "tos_uri"),
    ({**OK, "client_uri": "https://user@app.example.com/"}, "invalid_client_metadata", "client_uri"),
    ({**OK, "client_uri": "/relative"}, "invalid_client_metadata", "client_uri"),
    ({**OK, "contacts": "ops@example.com"}, "invalid_client_metadata", "contacts"),
    ({**OK, "contacts": [f"ops{i}@example.com" for i in range(11)]}, "invalid_client_metadata", "contacts"),
    ({**OK, "contacts": ["x" * 255]}, "invalid_client_metadata", "contacts[0]"),
    ({**OK, "contacts": ["ops@example.com", "  "]}, "invalid_client_metadata", "contacts[1]"),
    ({**OK, "client_name": "x" * 201}, "invalid_client_metadata", "client_name"),
    ({**OK, "client_name": 5}, "invalid_client_metadata", "client_name"),
    ({**OK, "client_name": "  "}, "invalid_client_metadata", "client_name"),
    ({**OK, "scope": "openid admin"}, "invalid_client_metadata", "scope"),
    ({**OK, "scope": ""}, "invalid_client_metadata", "scope"),
    ({**OK, "scope": ["openid"]}, "invalid_client_metadata", "scope"),
    ({**OK, "default_max_age": -1}, "invalid_client_metadata", "default_max_age"),
    ({**OK, "default_max_age": "60"}, "invalid_client_metadata", "default_max_age"),
    ({**OK, "default_max_age": True}, "invalid_client_metadata", "default_max_age"),
    ({**OK, "default_max_age": 1.5}, "invalid_client_metadata", "default_max_age"),
    ({**OK, "require_auth_time": "yes"}, "invalid_client_metadata", "require_auth_time"),
    ({**OK, "subject_type": "secret"}, "invalid_client_metadata", "subject_type"),
    ({**OK, "sector_identifier_uri": "https://app.example.com/sector.json"}, "invalid_client_metadata",
     "sector_identifier_uri"),
    ({**PKJ, "jwks": {"keys": [{"kty": "RSA", "n": "x", "e": "AQAB", "d": "y"}]}}, "invalid_client_metadata", "jwks"),
    ({**PKJ, "jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}}, "invalid_client_metadata", "jwks"),
    ({**PKJ, "jwks": {"keys": "none"}}, "invalid_client_metadata", "jwks"),
    ({**PKJ, "jwks": []}, "invalid_client_metadata", "jwks"),
    ({**PKJ, "jwks": {"keys": [{"kty": "EC", "crv": "P-256", "x": "bad", "y": "bad"}]}}, "invalid_client_metadata",
     "jwks"),
    ({**PKJ, "jwks_uri": "http://keys.example.com/jwks"}, "invalid_client_metadata", "jwks_uri"),
    ({**PKJ, "jwks": {"keys": [EC_KEY]}, "jwks_uri": "https://app.example.com/jwks"}, "invalid_client_metadata",
     "jwks"),
    (PKJ, "invalid_client_metadata", "private_key_jwt needs jwks or jwks_uri"),
    ({**OK, "jwks": {"keys": [EC_KEY]}}, "invalid_client_metadata", "jwks"),
    ({**OK, "jwks_uri": "https://app.example.com/jwks"}, "invalid_client_metadata", "jwks_uri"),
    ({**PKJ, "jwks": {"keys": [EC_KEY]}, "token_endpoint_auth_signing_alg": "HS256"}, "invalid_client_metadata",
     "token_endpoint_auth_signing_alg"),
    ({**OK, "token_endpoint_auth_method": "client_secret_jwt", "token_endpoint_auth_signing_alg": "RS256"},
     "invalid_client_metadata", "token_endpoint_auth_signing_alg"),
    ({**OK, "token_endpoint_auth_signing_alg": "RS256"}, "invalid_client_metadata", "token_endpoint_auth_signing_alg"),
    ({**OK, "post_logout_redirect_uris": ["http://app.example.com/bye"]}, "invalid_client_metadata",
     "post_logout_redirect_uris[0]"),
    ({**OK, "post_logout_redirect_uris": "https://app.example.com/bye"}, "invalid_client_metadata",
     "post_logout_redirect_uris"),
    ({**OK, "backchannel_logout_uri": "http://app.example.com/bcl"}, "invalid_client_metadata",
     "backchannel_logout_uri"),
    ({**OK, "backchannel_logout_uri": "https://app.example.com/bcl#frag"}, "invalid_client_metadata",
     "backchannel_logout_uri"),
    ({**OK, "backchannel_logout_uri": "bcl"}, "invalid_client_metadata", "backchannel_logout_uri"),
    ({**OK, "backchannel_logout_session_required": "true"}, "invalid_client_metadata",
     "backchannel_logout_session_required"),
    ({**OK, "application_type": "desktop"}, "invalid_client_metadata", "application_type"),
    ({**OK, "token_endpoint_auth_signing_alg": "none"}, "invalid_client_metadata", "token_endpoint_auth_signing_alg"),
]


@pytest.mark.parametrize("metadata, error, field", REFUSALS, ids=[str(i) for i in range(len(REFUSALS))])
def test_bad_metadata_is_refused_with_the_rfc_7591_error_naming_the_field(app, open_server, metadata, error, field):
    before = count_rows(app)
    assert_registration_error(register(open_server, metadata), error, field)
    assert count_rows(app) == before


def test_pairwise_across_hosts_needs_a_sector_identifier_uri_we_do_not_take(open_server):
    if "pairwise" not in discovery(open_server)["subject_types_supported"]:
        pytest.skip("pairwise subjects are not advertised")
    response = register(open_server, {"redirect_uris": ["https://a.example.com/cb", "https://b.example.com/cb"],
                                      "subject_type": "pairwise"})
    assert_registration_error(response, "invalid_client_metadata", "subject_type")


def test_a_private_key_jwt_client_gets_no_secret_and_authenticates_with_its_key(open_server):
    key = ECKey.generate_key("P-256", private=True)
    public = {**key.as_dict(private=False), "kid": "k1", "alg": "ES256", "use": "sig"}
    response = register(open_server, {**PKJ, "grant_types": ["client_credentials"], "scope": "openid",
                                      "jwks": {"keys": [public]}, "token_endpoint_auth_signing_alg": "ES256"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert "client_secret" not in body and body["jwks"] == {"keys": [public]}
    assert body["token_endpoint_auth_signing_alg"] == "ES256"
    endpoint = discovery(open_server)["token_endpoint"]
    t = clock.timestamp()
    assertion = jwt.encode({"alg": "ES256", "kid": "k1"}, {"iss": body["client_id"], "sub": body["client_id"],
                           "aud": endpoint, "jti": generate_token(16), "iat": t, "exp": t + 60}, key)
    token = requests.post(endpoint, timeout=TIMEOUT, data={
        "grant_type": "client_credentials", "client_id": body["client_id"],
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion})
    assert token.status_code == 200, token.text


def test_a_client_secret_jwt_client_has_its_secret_kept_encrypted(app, open_server):
    from idp.oauth.client_secrets import clear_secret

    body = register(open_server, {**OK, "token_endpoint_auth_method": "client_secret_jwt"}).json()
    row = client_row(app, body["client_id"])
    assert row["client_secret_encrypted"] and body["client_secret"] not in row["client_secret_encrypted"]
    with app.app_context():
        client = db.session.scalar(db.select(Client).where(Client.client_id == body["client_id"]))
        assert clear_secret(client) == body["client_secret"].encode()


@pytest.mark.parametrize("body, content_type", [
    (b"redirect_uris=x", "application/x-www-form-urlencoded"),
    (b'{"redirect_uris": [', "application/json"),
    (b'["https://app.example.com/cb"]', "application/json"),
    (b'"text"', "application/json"),
    (b"[" * 30000 + b"]" * 30000, "application/json"),
    (b"{}", "text/plain"),
])
def test_a_body_that_is_not_a_json_object_is_invalid_request(app, open_server, body, content_type):
    before = count_rows(app)
    response = register(open_server, body, headers={"Content-Type": content_type})
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_request"
    assert count_rows(app) == before


def test_a_ten_megabyte_body_is_refused_cleanly(app, open_server):
    before = count_rows(app)
    huge = json.dumps({**OK, "client_name": "x" * (10 * 1024 * 1024)})
    try:
        response = register(open_server, huge)
    except requests.ConnectionError:
        response = None  # the server may close the connection instead of reading 10 MB
    if response is not None:
        assert response.status_code == 413
        assert response.json()["error"] == "invalid_request"
    assert count_rows(app) == before
    assert register(open_server, OK).status_code == 201  # and the server is fine


def test_only_post_is_allowed_at_the_registration_endpoint(live_server):
    response = requests.get(f"{live_server}/oauth/register", timeout=TIMEOUT)
    assert response.status_code == 405 and "POST" in response.headers["Allow"]


# --- a dynamically registered client signs people in -------------------------------------------
def test_a_registered_confidential_client_completes_a_code_flow_with_pkce_and_consent(
        app, live_server, make_user, initial_token):
    body = register(live_server, {"redirect_uris": [REDIRECT], "client_name": "Dynamic app",
                                  "grant_types": ["authorization_code", "refresh_token"],
                                  "scope": "openid profile email offline_access"}, initial_token()).json()
    client = as_rp_client(body)
    user = make_user()
    rp = RelyingParty(live_server, client, scope="openid profile offline_access")
    browser, response = authorize(live_server, user, rp, decision=None)
    assert is_consent_page(response) and "Dynamic app" in response.text  # never first-party
    response = browser.consent(response, "allow")
    tokens = rp.fetch_token(rp.callback_params(response))
    claims = verify_id_token(live_server, tokens["id_token"], client["client_id"], rp.nonce)
    assert claims["sub"] == user["subject"] and "auth_time" in claims
    assert refresh(live_server, client, tokens["refresh_token"]).status_code == 200


def test_a_registered_public_client_completes_a_code_flow_and_must_use_pkce(app, live_server, make_user,
                                                                           initial_token):
    body = register(live_server, {"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"},
                    initial_token()).json()
    client = as_rp_client(body)
    user = make_user()
    rp, browser, tokens = tokens_for(live_server, user, client, scope="openid")
    verify_id_token(live_server, tokens["id_token"], client["client_id"], rp.nonce)
    from tests.oauth.flows import raw_authorize_url
    response = browser.get(raw_authorize_url(live_server, client, code_challenge=None, code_challenge_method=None))
    # unverified, so on our page, not by redirect (RFC 9700 4.11.2)
    assert response.status_code == 400 and "invalid_request" in response.text and "Location" not in response.headers


def test_default_max_age_makes_an_older_sign_in_ask_again(app, live_server, make_user, initial_token):
    body = register(live_server, {"redirect_uris": [REDIRECT], "default_max_age": 60}, initial_token()).json()
    client = as_rp_client(body)
    user = make_user()
    clock.set_now(datetime.now(timezone.utc))
    browser = signed_in_browser(live_server, user)
    rp = RelyingParty(live_server, client)
    assert is_consent_page(browser.get(rp.authorization_url()))  # fresh enough: straight to consent
    clock.advance(120)
    response = browser.get(rp.authorization_url())
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    assert is_consent_page(browser.get(rp.authorization_url(max_age=3600)))  # the request overrides it


# --- RFC 7592: read, update, delete -------------------------------------------------------------
@pytest.fixture
def registered(live_server, initial_token):
    response = register(live_server, {"redirect_uris": [REDIRECT], "client_name": "Managed",
                                      "logo_uri": "https://app.example.com/logo.png",
                                      "grant_types": ["authorization_code", "refresh_token"],
                                      "scope": "openid profile offline_access"}, initial_token())
    assert response.status_code == 201
    return response.json()


def test_read_returns_the_registered_metadata_without_the_secret(live_server, registered):
    response = configure("GET", registered["registration_client_uri"], registered["registration_access_token"])
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    body = response.json()
    assert "client_secret" not in body
    expected = {k: v for k, v in registered.items() if k != "client_secret"}
    assert body == expected


def test_update_replaces_the_metadata_and_omitted_fields_are_removed(app, live_server, registered):
    uri, token = registered["registration_client_uri"], registered["registration_access_token"]
    response = configure("PUT", uri, token, {"client_id": registered["client_id"],
                                             "client_secret": registered["client_secret"],
                                             "redirect_uris": ["https://app.example.com/new"],
                                             "client_name": "Renamed"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["client_name"] == "Renamed" and body["redirect_uris"] == ["https://app.example.com/new"]
    assert "logo_uri" not in body and body["grant_types"] == ["authorization_code"]
    assert body["registration_access_token"] == token  # not rotated by an update
    assert "client_secret" not in body  # unchanged, so not sent again
    assert configure("GET", uri, token).json() == body
    changed = [e for e in events(app, "oauth.client.changed") if e["client_id"] == registered["client_id"]]
    assert {"client_name", "logo_uri", "redirect_uris"} <= set(changed[-1]["details"]["fields"])


@pytest.mark.parametrize("change, fragment", [
    ({"client_id": "someone-else"}, "client_id"),
    ({"client_id": None}, "client_id"),
    ({"client_secret": "wrong"}, "client_secret"),
    ({"client_secret": 5}, "client_secret"),
    ({"registration_access_token": "x"}, "registration_access_token"),
    ({"client_id_issued_at": 1}, "client_id_issued_at"),
])
def test_an_update_breaking_rfc_7592_2_2_is_invalid_request_and_changes_nothing(app, live_server, registered,
                                                                                change, fragment):
    before = client_row(app, registered["client_id"])
    body = {"client_id": registered["client_id"], "redirect_uris": [REDIRECT], "client_name": "Changed", **change}
    response = configure("PUT", registered["registration_client_uri"], registered["registration_access_token"],
                         {k: v for k, v in body.items() if v is not None})
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"
    assert fragment in response.json()["error_description"]
    assert client_row(app, registered["client_id"]) == before


def test_an_update_with_bad_metadata_is_refused_and_changes_nothing(app, live_server, registered):
    before = client_row(app, registered["client_id"])
    response = configure("PUT", registered["registration_client_uri"], registered["registration_access_token"],
                         {"client_id": registered["client_id"], "redirect_uris": ["http://evil.example/cb"]})
    assert_registration_error(response, "invalid_redirect_uri", "redirect_uris[0]")
    assert client_row(app, registered["client_id"]) == before


def test_becoming_public_drops_the_secret_and_becoming_confidential_issues_one(app, live_server, registered):
    uri, token = registered["registration_client_uri"], registered["registration_access_token"]
    base = {"client_id": registered["client_id"], "redirect_uris": [REDIRECT]}
    public = configure("PUT", uri, token, {**base, "token_endpoint_auth_method": "none"}).json()
    assert "client_secret" not in public and "client_secret_expires_at" not in public
    assert client_row(app, registered["client_id"])["client_secret_digest"] is None
    confidential = configure("PUT", uri, token, {**base, "token_endpoint_auth_method": "client_secret_post"}).json()
    assert confidential["client_secret"] and confidential["client_secret"] != registered["client_secret"]
    assert confidential["client_secret_expires_at"] == 0
    response = requests.post(f"{live_server}/token", timeout=TIMEOUT, data={
        "grant_type": "authorization_code", "code": "nope", "redirect_uri": REDIRECT,
        "client_id": registered["client_id"], "client_secret": confidential["client_secret"]})
    assert_token_error(response, "invalid_grant")  # authenticated with the new secret; only the code is bad


def test_delete_removes_the_client_its_tokens_and_its_registration_token(app, live_server, registered, make_user):
    client = as_rp_client(registered)
    user = make_user()
    browser = signed_in_browser(live_server, user)
    rp = RelyingParty(live_server, client, scope="openid offline_access")
    _, response = authorize(live_server, user, rp, browser=browser)
    tokens = rp.fetch_token(rp.callback_params(response))
    _, response = authorize(live_server, user, rp, browser=browser)  # a code not redeemed yet
    pending_code = rp.callback_params(response)["code"]
    uri, token = registered["registration_client_uri"], registered["registration_access_token"]

    before = client_row(app, registered["client_id"])
    deleted = configure("DELETE", uri, token)
    assert deleted.status_code == 204 and deleted.text == ""
    assert client_row(app, registered["client_id"]) is None
    pk = before["id"]
    for table in ("grants", "consents"):
        rows = with_db(app, lambda d, t=table: d.session.execute(
            d.select(d.metadata.tables[t]).where(d.metadata.tables[t].c.client_id == pk)).all())
        assert rows == [], table
    assert_token_error(refresh(live_server, client, tokens["refresh_token"]), "invalid_client", 401)
    assert_token_error(redeem(live_server, client, pending_code, rp.verifier), "invalid_client", 401)
    userinfo = requests.get(f"{live_server}/userinfo", timeout=TIMEOUT,
                            headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert userinfo.status_code == 401
    for method in ("GET", "PUT", "DELETE"):  # the registration token is dead with its client
        assert_bearer_refusal(configure(method, uri, token, {"client_id": registered["client_id"]}))
    deleted_events = [e for e in events(app, "oauth.client.deleted") if e["client_id"] == registered["client_id"]]
    assert len(deleted_events) == 1 and deleted_events[0]["details"]["registered_via"] == "dynamic"


def test_the_registration_token_of_one_client_never_works_for_another(live_server, registered, initial_token):
    other = register(live_server, {"redirect_uris": [REDIRECT]}, initial_token()).json()
    for method in ("GET", "PUT", "DELETE"):
        assert_bearer_refusal(configure(method, other["registration_client_uri"],
                                        registered["registration_access_token"], {"client_id": other["client_id"]}))
    assert configure("GET", other["registration_client_uri"], other["registration_access_token"]).status_code == 200


@pytest.mark.parametrize("token", [None, "wrong", "x" * 600])
def test_a_missing_or_wrong_registration_token_is_refused(live_server, registered, token):
    assert_bearer_refusal(configure("GET", registered["registration_client_uri"], token))


def test_an_unknown_client_answers_like_a_wrong_token(live_server, registered):
    uri = registered["registration_client_uri"].rsplit("/", 1)[0] + "/no-such-client"
    assert_bearer_refusal(configure("GET", uri, registered["registration_access_token"]))


def test_a_cli_client_has_no_configuration_endpoint(live_server, make_client, registered):
    cli_client = make_client()
    uri = f"{live_server}/oauth/register/{cli_client['client_id']}"
    assert_bearer_refusal(configure("GET", uri, registered["registration_access_token"]))
    assert_bearer_refusal(configure("DELETE", uri, cli_client["client_secret"]))


# --- the operator command ------------------------------------------------------------------------
def test_cli_initial_token_is_printed_once_stored_as_a_digest_and_registers_one_client(tmp_path):
    from tests.test_cli import ISSUER, Cli

    cli = Cli(tmp_path / "instance")
    cli("db", "upgrade")
    printed = cli.json("clients", "initial-token", "--expires-in", "600", "--note", "for the CI")
    token = printed["initial_access_token"]
    assert printed["note"] == "for the CI" and printed["registration_endpoint"] == f"{ISSUER}/oauth/register"
    assert "Store the initial_access_token now" in cli("clients", "initial-token").output
    assert cli("clients", "initial-token", "--expires-in", "-1", ok=False).exit_code != 0
    with cli.app.app_context():
        rows = db.session.scalars(db.select(InitialAccessToken).order_by(InitialAccessToken.id)).all()
        assert len(rows) == 2 and token not in json.dumps([r.token_digest for r in rows])
        assert rows[0].note == "for the CI" and rows[0].expires_at is not None and rows[0].used_at is None
    web = cli.app.test_client()
    post = {"base_url": ISSUER, "json": {"redirect_uris": [REDIRECT]}, "headers": {"Authorization": f"Bearer {token}"}}
    first = web.post("/oauth/register", **post)
    assert first.status_code == 201, first.get_data(as_text=True)
    assert web.post("/oauth/register", **post).status_code == 401
    shown = cli.json("clients", "show", first.get_json()["client_id"])
    assert shown["registered_via"] == "dynamic"


def test_production_refuses_a_loopback_http_backchannel_logout_uri(settings, app):
    """Otherwise anyone who may register a client could make the server POST to its own local
    services at every logout."""
    production = create_app(dataclasses.replace(settings, client_registration="open", env="production",
                                                issuer="https://127.0.0.1"))
    web = production.test_client()

    def register_here(uri):
        return web.post("/oauth/register", base_url="https://127.0.0.1",
                        json={"redirect_uris": ["https://app.example.com/cb"], "backchannel_logout_uri": uri})

    refused = register_here("http://127.0.0.1:6379/")
    assert refused.status_code == 400 and refused.json["error"] == "invalid_client_metadata"
    assert "backchannel_logout_uri" in refused.json["error_description"]
    assert register_here("https://app.example.com/bcl").status_code == 201
