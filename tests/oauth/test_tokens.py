"""ID tokens (OIDC Core 2, 3.1.3.6) and JWT access tokens (RFC 9068): signed by a key in /jwks,
with the claims the specs name; tampered or foreign tokens are refused at /userinfo."""
import base64
import hashlib
import hmac
import json
from datetime import datetime, timedelta, timezone

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import RSAKey
from joserfc.jws import JWSRegistry

from idp import clock
from idp.authn.steps import ACR_PASSWORD, AMR_PASSWORD
from idp.keys import keyring
from idp.models import SsoSession
from tests.helpers.rp import RelyingParty, verify_access_token, verify_id_token
from tests.oauth.flows import (TIMEOUT, assert_redirect_error, is_active, jwt_header, jwt_payload, raw_authorize_url,
                               signed_in_browser, tokens_for, userinfo, with_db)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _at_hash(access_token: str) -> str:
    """OIDC Core 3.1.3.6: left half of SHA-256 of the ASCII access token, base64url."""
    return _b64(hashlib.sha256(access_token.encode()).digest()[:16])


def _published_kids(issuer: str) -> set:
    return {k["kid"] for k in requests.get(f"{issuer}/jwks", timeout=TIMEOUT).json()["keys"]}


def _assert_rejected(issuer: str, token: str) -> None:
    response = userinfo(issuer, token)
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')
    assert response.json()["error"] == "invalid_token"


@pytest.fixture
def issued(live_server, app, make_user, make_client):
    """A code flow with a pinned clock: login at T, tokens at T+10."""
    user = make_user()
    client = make_client(first_party=True)
    clock.set_now(datetime.now(timezone.utc).replace(microsecond=0) - timedelta(seconds=120))
    login_time = clock.timestamp()
    browser = signed_in_browser(live_server, user)
    clock.advance(10)
    rp, _, token = tokens_for(live_server, user, client, scope="openid profile email offline_access",
                              browser=browser)
    sid = with_db(app, lambda db: db.session.scalar(
        db.select(SsoSession.sid).where(SsoSession.user_id == user["id"])))
    return {"user": user, "client": client, "rp": rp, "token": token, "login_time": login_time,
            "issued_at": clock.timestamp(), "sid": sid, "settings": app.config["IDP_SETTINGS"]}


# --- the ID token ----------------------------------------------------------------------------------

def test_id_token_is_signed_by_a_published_key_and_carries_every_required_claim(live_server, issued):
    token, client, user = issued["token"], issued["client"], issued["user"]
    claims = verify_id_token(live_server, token["id_token"], client["client_id"], issued["rp"].nonce)
    header = jwt_header(token["id_token"])
    assert header["alg"] == "RS256" and header["kid"] in _published_kids(live_server)
    assert claims["iss"] == live_server
    assert claims["sub"] == user["subject"]
    assert client["client_id"] in (claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]])
    assert claims["azp"] == client["client_id"]
    assert claims["iat"] == issued["issued_at"]
    assert claims["exp"] == issued["issued_at"] + issued["settings"].token_id_ttl
    assert claims["auth_time"] == issued["login_time"]
    assert claims["nonce"] == issued["rp"].nonce
    assert claims["acr"] == ACR_PASSWORD and claims["amr"] == [AMR_PASSWORD]
    assert claims["sid"] == issued["sid"]
    assert claims["at_hash"] == _at_hash(token["access_token"])


def test_id_token_carries_scope_claims_only_through_userinfo(live_server, issued):
    """OIDC Core 5.4: with an access token issued, profile and email claims are served at UserInfo."""
    claims = jwt_payload(issued["token"]["id_token"])
    assert not {"email", "name", "preferred_username"} & set(claims)
    info = userinfo(live_server, issued["token"]["access_token"]).json()
    assert info["email"] == issued["user"]["email"] and info["preferred_username"] == issued["user"]["username"]


def test_subject_is_stable_across_logins_and_clients_and_is_not_the_username(live_server, make_user, make_client):
    user = make_user()
    subjects = set()
    for _ in range(2):
        client = make_client(first_party=True)
        rp, _, token = tokens_for(live_server, user, client, scope="openid")
        subjects.add(verify_id_token(live_server, token["id_token"], client["client_id"], rp.nonce)["sub"])
    assert subjects == {user["subject"]}
    assert user["subject"] not in (user["username"], str(user["id"]), user["email"])


# --- the access token --------------------------------------------------------------------------------

def test_access_token_is_an_rfc9068_jwt(live_server, issued):
    access = issued["token"]["access_token"]
    header = jwt_header(access)
    assert header["typ"] == "at+jwt" and header["kid"] in _published_kids(live_server)
    claims = verify_access_token(live_server, access)
    assert claims["iss"] == live_server
    assert claims["sub"] == issued["user"]["subject"]
    assert claims["client_id"] == issued["client"]["client_id"]
    assert claims["aud"] == live_server  # RFC 9068 3's default resource: never the client_id (an ID token's aud)
    assert claims["iat"] == issued["issued_at"]
    assert claims["exp"] == issued["issued_at"] + issued["settings"].token_access_ttl
    assert issued["token"]["expires_in"] == issued["settings"].token_access_ttl
    assert claims["jti"] and len(claims["jti"]) >= 16
    assert set(claims["scope"].split()) == {"openid", "profile", "email", "offline_access"}
    assert claims["auth_time"] == issued["login_time"]
    assert claims["acr"] == ACR_PASSWORD and claims["amr"] == [AMR_PASSWORD]


def test_an_access_token_does_not_pass_for_an_id_token_at_a_relying_party_that_skips_typ(live_server, issued):
    """RFC 9068 5: a resource server that received the person's access token must not be able to
    sign in to the client as them with it (authlib's CodeIDToken checks aud, not typ)."""
    from joserfc.errors import JoseError

    with pytest.raises(JoseError):  # aud is not the client_id (authlib then wants an azp naming it)
        verify_id_token(live_server, issued["token"]["access_token"], issued["client"]["client_id"])


def test_each_access_token_has_its_own_jti(live_server, issued):
    client = issued["client"]
    jtis = {verify_access_token(live_server, issued["token"]["access_token"])["jti"]}
    refresh = issued["token"]["refresh_token"]
    for _ in range(2):
        body = requests.post(f"{live_server}/token", auth=(client["client_id"], client["client_secret"]),
                             data={"grant_type": "refresh_token", "refresh_token": refresh}, timeout=TIMEOUT).json()
        refresh = body["refresh_token"]
        jtis.add(verify_access_token(live_server, body["access_token"])["jti"])
    assert len(jtis) == 3


# --- tampered and foreign tokens at /userinfo ----------------------------------------------------------

def test_untampered_access_token_is_accepted(live_server, issued):
    assert userinfo(live_server, issued["token"]["access_token"]).status_code == 200


def test_token_with_a_flipped_payload_character_is_rejected(live_server, issued):
    header, payload, signature = issued["token"]["access_token"].split(".")
    middle = len(payload) // 2
    flipped = payload[:middle] + ("A" if payload[middle] != "A" else "B") + payload[middle + 1:]
    _assert_rejected(live_server, ".".join([header, flipped, signature]))
    claims = jwt_payload(issued["token"]["access_token"])
    claims["exp"] += 3600
    _assert_rejected(live_server, ".".join([header, _b64(json.dumps(claims).encode()), signature]))


def test_token_with_alg_none_is_rejected(live_server, issued):
    access = issued["token"]["access_token"]
    for alg in ("none", "None", "NONE"):
        header = {**jwt_header(access), "alg": alg}
        forged = f"{_b64(json.dumps(header).encode())}.{access.split('.')[1]}."
        _assert_rejected(live_server, forged)


def test_token_signed_hs256_with_the_public_key_is_rejected(live_server, issued):
    access = issued["token"]["access_token"]
    kid = jwt_header(access)["kid"]
    public = next(k for k in requests.get(f"{live_server}/jwks", timeout=TIMEOUT).json()["keys"] if k["kid"] == kid)
    secrets = [RSAKey.import_key(public).as_pem(private=False), json.dumps(public).encode()]
    for secret in secrets:
        header = _b64(json.dumps({**jwt_header(access), "alg": "HS256"}).encode())
        signing_input = f"{header}.{access.split('.')[1]}"
        signature = _b64(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())
        _assert_rejected(live_server, f"{signing_input}.{signature}")


def test_token_signed_by_a_foreign_key_with_our_kid_is_rejected(live_server, issued):
    access = issued["token"]["access_token"]
    foreign = RSAKey.generate_key(2048, private=True)
    forged = jwt.encode(jwt_header(access), jwt_payload(access), foreign, algorithms=["RS256"])
    _assert_rejected(live_server, forged)


def test_correctly_signed_token_with_wrong_issuer_or_type_is_rejected(live_server, app, issued):
    access = issued["token"]["access_token"]
    with app.app_context():
        signer = keyring().default
        header = {"alg": signer.alg, "kid": signer.kid, "typ": "at+jwt"}
        wrong_iss = jwt.encode(header, {**jwt_payload(access), "iss": "https://evil.example"}, signer.key,
                               algorithms=[signer.alg])
        wrong_typ = jwt.encode({**header, "typ": "JWT"}, jwt_payload(access), signer.key, algorithms=[signer.alg])
    _assert_rejected(live_server, wrong_iss)
    _assert_rejected(live_server, wrong_typ)


def test_id_token_is_not_accepted_as_an_access_token(live_server, issued):
    _assert_rejected(live_server, issued["token"]["id_token"])


def test_expired_access_token_is_rejected(live_server, issued):
    access = issued["token"]["access_token"]
    clock.set_now(datetime.fromtimestamp(jwt_payload(access)["exp"] - 1, timezone.utc))
    assert userinfo(live_server, access).status_code == 200
    clock.set_now(datetime.fromtimestamp(jwt_payload(access)["exp"], timezone.utc))
    _assert_rejected(live_server, access)


@pytest.mark.parametrize("garbage", ["x", "a.b.c", "a.b", "....", "eyJ" * 3000])
def test_garbage_bearer_token_is_rejected(live_server, garbage):
    _assert_rejected(live_server, garbage)


def test_a_token_whose_alg_is_not_the_alg_of_its_kids_key_is_refused_everywhere(
        live_server, app, make_user, make_client, es256_keys):
    """RFC 8725 3.1: with an RS256 and an ES256 key signing, a token is checked only with the key
    its kid names and only in that key's alg: re-signed by our other key under the first one's
    kid, it is refused by UserInfo, introspection and as an id_token_hint, while the genuine
    one passes each."""
    user = make_user()
    client = make_client(first_party=True)
    api = make_client(resource_server=True, grant_types=["client_credentials"])
    browser = signed_in_browser(live_server, user)
    _, _, token = tokens_for(live_server, user, client, scope="openid", browser=browser)
    with app.app_context():
        signers = keyring().signers

    def resigned(original: str, alg: str, signer) -> str:
        signing_input = f"{_b64(json.dumps({**jwt_header(original), 'alg': alg}).encode())}.{original.split('.')[1]}"
        return f"{signing_input}.{_b64(JWSRegistry.algorithms[signer.alg].sign(signing_input.encode(), signer.key))}"

    tampered = {}
    for name in ("access_token", "id_token"):
        named = jwt_header(token[name])["alg"]
        other = signers["RS256" if named == "ES256" else "ES256"]
        # the header's alg: the named key's, or the alg of the key that really signed
        tampered[name] = [resigned(token[name], named, other), resigned(token[name], other.alg, other)]

    assert userinfo(live_server, token["access_token"]).status_code == 200
    assert is_active(live_server, api, token["access_token"])
    control = resigned(token["access_token"], "ES256", signers["ES256"])  # re-signed by the named key: fine
    assert userinfo(live_server, control).status_code == 200
    for forged in tampered["access_token"]:
        _assert_rejected(live_server, forged)
        assert not is_active(live_server, api, forged)

    rp = RelyingParty(live_server, client)
    assert "code" in rp.callback_params(browser.get(rp.authorization_url(id_token_hint=token["id_token"],
                                                                          prompt="none")))
    for forged in tampered["id_token"]:
        response = browser.get(raw_authorize_url(live_server, client, id_token_hint=forged, state="st-alg"))
        assert_redirect_error(response, client, live_server, "invalid_request", "st-alg")
