"""A client's public keys: what check_jwks and check_jwks_uri accept and refuse."""
from __future__ import annotations

import dataclasses
import warnings

import pytest
from joserfc.jwk import ECKey, OctKey, OKPKey, RSAKey

from idp.oauth.clients import JWKS_MAX_KEYS, ClientRejected, check_jwks, check_jwks_uri


def public(key) -> dict:
    return key.as_dict(private=False)


def test_public_rsa_ec_and_okp_keys_are_accepted():
    check_jwks({"keys": [public(RSAKey.generate_key(2048)), public(ECKey.generate_key("P-256")),
                         public(OKPKey.generate_key("Ed25519"))]})


@pytest.mark.parametrize("jwks", [None, [], {}, {"keys": []}, {"keys": "x"}, {"keys": [1]}, "{\"keys\": []}"])
def test_a_malformed_key_set_is_refused(jwks):
    with pytest.raises(ClientRejected):
        check_jwks(jwks)


@pytest.mark.parametrize("make", [lambda: RSAKey.generate_key(2048, private=True),
                                  lambda: ECKey.generate_key("P-256", private=True),
                                  lambda: OKPKey.generate_key("Ed25519", private=True)])
def test_a_private_key_is_refused(make):
    with pytest.raises(ClientRejected, match="private key members"):
        check_jwks({"keys": [make().as_dict(private=True)]})


def test_a_symmetric_key_is_refused():
    with pytest.raises(ClientRejected, match="kty"):
        check_jwks({"keys": [OctKey.generate_key(256).as_dict(private=True)]})


def test_an_unknown_key_type_is_refused():
    with pytest.raises(ClientRejected, match="kty"):
        check_jwks({"keys": [{"kty": "XYZ", "n": "abc"}]})


@pytest.mark.parametrize("key", [{"kty": "RSA", "n": "abc"}, {"kty": "RSA", "n": "abc", "e": "AQAB"},
                                 {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}])
def test_an_unparseable_key_is_refused(key):
    with pytest.raises(ClientRejected, match="not a valid"):
        check_jwks({"keys": [key]})


def test_a_short_rsa_key_is_refused():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        short = RSAKey.generate_key(1024)
        with pytest.raises(ClientRejected, match="2048"):
            check_jwks({"keys": [public(short)]})


def test_too_many_keys_or_bytes_are_refused():
    key = public(ECKey.generate_key("P-256"))
    with pytest.raises(ClientRejected, match="at most"):
        check_jwks({"keys": [key] * (JWKS_MAX_KEYS + 1)})
    with pytest.raises(ClientRejected, match="at most"):
        check_jwks({"keys": [dict(key, padding="x" * 70_000)]})


@pytest.mark.parametrize("uri", ["https://rp.example.com/jwks.json", "http://127.0.0.1:8080/jwks",
                                 "http://localhost/jwks", "http://[::1]:9000/keys"])
def test_https_or_loopback_http_jwks_uri_is_accepted(uri):
    check_jwks_uri(uri)


@pytest.mark.parametrize("uri", ["", "http://rp.example.com/jwks", "ftp://rp.example.com/jwks", "file:///etc/passwd",
                                 "https://user:pw@rp.example.com/jwks", "https://rp.example.com/jwks#x",
                                 "https:///jwks", "https://rp.example.com:99999/jwks", "https://rp.example.com/a b",
                                 "https://rp.example.com/" + "a" * 2001, "javascript:alert(1)"])
def test_other_jwks_uris_are_refused(uri):
    with pytest.raises(ClientRejected):
        check_jwks_uri(uri)


def test_loopback_http_jwks_uri_is_refused_in_production(app, monkeypatch):
    monkeypatch.setitem(app.config, "IDP_SETTINGS", dataclasses.replace(app.config["IDP_SETTINGS"], env="production"))
    with app.app_context():
        with pytest.raises(ClientRejected, match="in development"):
            check_jwks_uri("http://127.0.0.1:8080/jwks")
        check_jwks_uri("https://127.0.0.1:8443/jwks")
