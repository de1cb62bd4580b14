"""The kid in a JWT's header is the sender's word: a hostile one must neither fail the request
(500) nor make the server reload its keys (decrypt and parse them) on every request. Found by
review (tokens L4, M3)."""
from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest
import requests

from idp import clock
from idp.extensions import db
from idp.keys import rotate
from tests.oauth.flows import TIMEOUT, jwt_header, tokens_for, userinfo


def _b(obj) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def _with_kid(kid) -> str:
    return f'{_b({"alg": "RS256", "kid": kid, "typ": "at+jwt"})}.{_b({"sub": "x"})}.AAAA'


@pytest.mark.parametrize("kid", [["x"], {"a": 1}, 7, None])
def test_a_kid_that_is_not_a_string_is_an_invalid_token_everywhere(live_server, make_client, kid):
    token = _with_kid(kid)
    answer = userinfo(live_server, token)
    assert answer.status_code == 401 and 'error="invalid_token"' in answer.headers["WWW-Authenticate"]
    confidential, public = make_client(), make_client(public=True)
    assert requests.post(f"{live_server}/revoke", data={"token": token, "client_id": public["client_id"]},
                         timeout=TIMEOUT).status_code == 200
    introspected = requests.post(f"{live_server}/introspect", data={"token": token}, timeout=TIMEOUT,
                                 auth=(confidential["client_id"], confidential["client_secret"]))
    assert introspected.status_code == 200 and introspected.json() == {"active": False}
    ended = requests.get(f"{live_server}/end-session", params={"id_token_hint": token}, timeout=TIMEOUT,
                         allow_redirects=False)
    assert ended.status_code < 500
    authorized = requests.get(f"{live_server}/authorize", timeout=TIMEOUT, allow_redirects=False, params={
        "id_token_hint": token, "client_id": confidential["client_id"], "response_type": "code",
        "redirect_uri": confidential["redirect_uri"], "scope": "openid", "code_challenge_method": "S256",
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"})
    assert authorized.status_code < 500


def test_the_kid_of_a_key_retired_long_ago_costs_no_reload(app, live_server, make_user, make_client):
    user, client = make_user(), make_client(first_party=True)
    _, _, token = tokens_for(live_server, user, client, scope="openid")
    old_kid = jwt_header(token["access_token"])["kid"]
    try:
        with app.app_context():
            rotate(app.config["IDP_SETTINGS"], immediate=True)
            db.session.commit()
        clock.set_now(clock.now() + timedelta(days=3))  # long past any publication window
        assert userinfo(live_server, token["access_token"]).status_code == 401
        ring = app.extensions["idp.keyring"]
        assert old_kid not in ring.verifiers
        for _ in range(5):
            assert userinfo(live_server, token["access_token"]).status_code == 401
            assert userinfo(live_server, _with_kid("x" * 43)).status_code == 401
        assert app.extensions["idp.keyring"] is ring  # the same ring: nothing was reloaded
    finally:
        clock.set_now(None)
        with app.app_context():
            rotate(app.config["IDP_SETTINGS"], immediate=True)
            db.session.commit()
