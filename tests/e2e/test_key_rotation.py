"""Signing key rotation seen by a relying party (issue 2 items 11 and 16): tokens signed before a
rotation keep verifying against /jwks, and new tokens name the new key."""
import threading
from datetime import timedelta

import pytest
import requests
from werkzeug.serving import make_server

from idp import clock, create_app
from idp.extensions import db
from idp.keys import publish_lead
from tests.conftest import _free_port
from tests.helpers.keys import rotate_keys
from tests.helpers.rp import discovery, verify_access_token, verify_id_token
from tests.oauth.flows import TIMEOUT, jwt_header, refresh, signed_in_browser, tokens_for, userinfo


def _rotate(app, immediate=True) -> str:
    """`idp keys rotate [--now]` with the test settings (IDP_KEYS_ALG=RS256): the new key's kid."""
    [kid] = rotate_keys(app, immediate=immediate).values()
    return kid


def _kids(issuer: str) -> set:
    return {k["kid"] for k in requests.get(f"{issuer}/jwks", timeout=TIMEOUT).json()["keys"]}


@pytest.fixture
def rotated_back(app):
    """Whatever a test rotates to, later tests sign with a fresh key of the configured algorithm."""
    yield
    _rotate(app)


def test_tokens_from_before_a_rotation_still_verify_and_new_tokens_use_the_new_key(
        live_server, app, make_user, make_client, rotated_back):
    user = make_user()
    client = make_client(first_party=True)
    browser = signed_in_browser(live_server, user)
    rp, _, old = tokens_for(live_server, user, client, scope="openid profile offline_access", browser=browser)
    old_kid = jwt_header(old["id_token"])["kid"]

    new_kid = _rotate(app)
    assert new_kid != old_kid
    assert {old_kid, new_kid} <= _kids(live_server)
    assert verify_id_token(live_server, old["id_token"], client["client_id"], rp.nonce,
                           access_token=old["access_token"])["sub"] == user["subject"]
    assert verify_access_token(live_server, old["access_token"])["sub"] == user["subject"]
    assert userinfo(live_server, old["access_token"]).status_code == 200

    rp, _, new = tokens_for(live_server, user, client, scope="openid offline_access", browser=browser)
    assert jwt_header(new["id_token"])["kid"] == jwt_header(new["access_token"])["kid"] == new_kid
    verify_id_token(live_server, new["id_token"], client["client_id"], rp.nonce,
                    access_token=new["access_token"])
    refreshed = refresh(live_server, client, old["refresh_token"]).json()
    assert jwt_header(refreshed["access_token"])["kid"] == new_kid
    assert userinfo(live_server, refreshed["access_token"]).status_code == 200


def test_with_es256_a_rotation_rotates_both_algs_and_tokens_of_the_old_keys_still_verify(
        live_server, app, make_user, make_client, es256_keys):
    """IDP_KEYS_ALG=ES256: ID tokens RS256 (the client registered no alg), access tokens ES256;
    `idp keys rotate --now` replaces both keys, and both old ones stay in the JWKS for the
    tokens they signed."""
    user = make_user()
    client = make_client(first_party=True)
    browser = signed_in_browser(live_server, user)
    rp_before, _, before = tokens_for(live_server, user, client, scope="openid", browser=browser)
    assert {jwt_header(before["id_token"])["kid"], jwt_header(before["access_token"])["kid"]} == \
        set(es256_keys.values())
    new = rotate_keys(app)
    assert set(new) == {"RS256", "ES256"} and not set(new.values()) & set(es256_keys.values())
    assert {*es256_keys.values(), *new.values()} <= _kids(live_server)
    assert discovery(live_server)["id_token_signing_alg_values_supported"] == ["RS256", "ES256"]
    rp, _, after = tokens_for(live_server, user, client, scope="openid", browser=browser)
    assert (jwt_header(after["id_token"])["alg"], jwt_header(after["id_token"])["kid"]) == ("RS256", new["RS256"])
    assert (jwt_header(after["access_token"])["alg"], jwt_header(after["access_token"])["kid"]) == \
        ("ES256", new["ES256"])
    for rp_now, tokens in ((rp_before, before), (rp, after)):
        verify_id_token(live_server, tokens["id_token"], client["client_id"], rp_now.nonce,
                        access_token=tokens["access_token"])
        verify_access_token(live_server, tokens["access_token"])
        assert userinfo(live_server, tokens["access_token"]).status_code == 200


def test_with_es256_a_staged_rotation_publishes_both_keys_before_either_signs(
        live_server, app, make_user, make_client, second_instance, es256_keys):
    user = make_user()
    client = make_client(first_party=True)
    lead = publish_lead(app.config["IDP_SETTINGS"])
    clock.set_now(clock.now() - timedelta(seconds=lead + 5))  # the rotation happened a while ago
    staged = rotate_keys(app, immediate=False)
    assert set(staged) == {"RS256", "ES256"} and set(staged.values()) <= _kids(live_server)
    _, browser, before = tokens_for(live_server, user, client, scope="openid")
    assert {jwt_header(before["id_token"])["kid"], jwt_header(before["access_token"])["kid"]} == \
        set(es256_keys.values())
    clock.set_now(None)  # now the cache window has passed: both new keys sign
    rp, _, after = tokens_for(live_server, user, client, scope="openid", browser=browser)
    assert jwt_header(after["id_token"])["kid"] == staged["RS256"]
    assert jwt_header(after["access_token"])["kid"] == staged["ES256"]
    verify_id_token(live_server, after["id_token"], client["client_id"], rp.nonce,
                    access_token=after["access_token"])
    assert userinfo(second_instance, after["access_token"]).status_code == 200
    assert userinfo(live_server, before["access_token"]).status_code == 200
    # Per alg too: what the retired ES256 key "signs" after its retirement is a forgery.
    clock.set_now(clock.now() + timedelta(seconds=30))
    assert userinfo(live_server, _forge(app, before["access_token"], es256_keys["ES256"])).status_code == 401
    clock.set_now(None)


@pytest.fixture
def second_instance(settings):
    """Another instance of the app on the same database, as a second replica would be."""
    other = create_app(settings)
    port = _free_port()
    server = make_server("127.0.0.1", port, other, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    server.shutdown()


def test_another_instance_accepts_tokens_signed_with_a_key_rotated_elsewhere(
        live_server, app, make_user, make_client, second_instance, rotated_back):
    user = make_user()
    client = make_client(first_party=True)
    assert requests.get(f"{second_instance}/jwks", timeout=TIMEOUT).status_code == 200  # its ring is cached
    new_kid = _rotate(app)
    _, _, token = tokens_for(live_server, user, client, scope="openid")
    assert jwt_header(token["access_token"])["kid"] == new_kid
    response = requests.get(f"{second_instance}/userinfo", timeout=TIMEOUT,
                            headers={"Authorization": f"Bearer {token['access_token']}"})
    assert response.status_code == 200


def test_a_staged_rotation_is_published_everywhere_before_it_signs(
        live_server, app, make_user, make_client, second_instance, rotated_back):
    """The default rotation: the new key is in every instance's JWKS before any token uses it."""
    user = make_user()
    client = make_client(first_party=True)
    old_kid = jwt_header(tokens_for(live_server, user, client, scope="openid")[2]["access_token"])["kid"]
    lead = publish_lead(app.config["IDP_SETTINGS"])
    clock.set_now(clock.now() - timedelta(seconds=lead + 5))  # the rotation happened a while ago
    new_kid = _rotate(app, immediate=False)
    assert new_kid in _kids(live_server)
    _, browser, before = tokens_for(live_server, user, client, scope="openid")
    assert jwt_header(before["access_token"])["kid"] == old_kid
    clock.set_now(None)  # now the cache window has passed: the new key signs
    rp, _, after = tokens_for(live_server, user, client, scope="openid", browser=browser)
    assert jwt_header(after["access_token"])["kid"] == jwt_header(after["id_token"])["kid"] == new_kid
    verify_id_token(live_server, after["id_token"], client["client_id"], rp.nonce,
                    access_token=after["access_token"])
    assert userinfo(second_instance, after["access_token"]).status_code == 200
    assert userinfo(live_server, before["access_token"]).status_code == 200


# --- a key that leaked (found by review: tokens M1) -------------------------------------------

def _leaked(app, kid: str):
    """The attacker's copy of a key: its private half, as if read off a stolen backup."""
    from joserfc.jwk import ECKey, RSAKey

    from idp.keys import _fernet
    from idp.models import SigningKey

    with app.app_context():
        row = db.session.get(SigningKey, kid)
        pem = _fernet(app.config["IDP_SETTINGS"].secret_key).decrypt(row.private_key_encrypted.encode())
        return row.alg, (RSAKey if row.alg == "RS256" else ECKey).import_key(pem, {"kid": kid})


def _forge(app, genuine_access_token: str, kid: str, **changes) -> str:
    from joserfc import jwt as jose_jwt

    from tests.oauth.flows import jwt_payload

    alg, key = _leaked(app, kid)
    claims = {**jwt_payload(genuine_access_token), "iat": clock.timestamp(), "exp": clock.timestamp() + 600,
              **changes}
    return jose_jwt.encode({"alg": alg, "kid": kid, "typ": "at+jwt"}, claims, key, algorithms=[alg])


def test_a_token_a_retired_key_signs_after_its_retirement_is_refused(live_server, app, make_user, make_client,
                                                                     rotated_back):
    """A retired key stays published for the tokens it signed before; one it signs later is a forgery."""
    user, client = make_user(), make_client(first_party=True)
    _, _, before = tokens_for(live_server, user, client, scope="openid profile")
    old_kid = jwt_header(before["access_token"])["kid"]
    assert userinfo(live_server, _forge(app, before["access_token"], old_kid)).status_code == 200  # still signing
    _rotate(app)
    clock.set_now(clock.now() + timedelta(seconds=30))
    try:
        assert old_kid in _kids(live_server)
        assert userinfo(live_server, before["access_token"]).status_code == 200
        assert userinfo(live_server, _forge(app, before["access_token"], old_kid)).status_code == 401
    finally:
        clock.set_now(None)


def test_a_revoked_key_leaves_the_jwks_and_nothing_it_signed_is_accepted(live_server, app, make_user, make_client,
                                                                          rotated_back):
    from idp.keys import revoke

    user, client = make_user(), make_client(first_party=True)
    rp, browser, before = tokens_for(live_server, user, client, scope="openid profile email")
    old_kid = jwt_header(before["access_token"])["kid"]
    forged = _forge(app, before["access_token"], old_kid, scope="openid profile email phone address")
    assert userinfo(live_server, forged).status_code == 200  # what the leak allows until the key is revoked
    with app.app_context():
        replacement = revoke(app.config["IDP_SETTINGS"], old_kid).kid
        db.session.commit()
    assert old_kid not in _kids(live_server) and replacement in _kids(live_server)
    for token in (forged, before["access_token"]):
        assert userinfo(live_server, token).status_code == 401
    with pytest.raises(Exception):
        verify_id_token(live_server, before["id_token"], client["client_id"], rp.nonce)
    rp, _, after = tokens_for(live_server, user, client, scope="openid", browser=browser)  # the SSO session stays
    assert jwt_header(after["id_token"])["kid"] == replacement
    verify_id_token(live_server, after["id_token"], client["client_id"], rp.nonce,
                    access_token=after["access_token"])
    with app.app_context(), pytest.raises(LookupError):
        revoke(app.config["IDP_SETTINGS"], old_kid)
