"""What an upstream sends is checked before it counts: an ID token only with an asymmetric alg we
allow, and an "email" only as an address (found by review: federation L1, L2)."""
from __future__ import annotations

import time

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, OctKey, RSAKey

from idp.extensions import db
from idp.federation import client
from idp.federation.errors import UpstreamInvalid
from idp.models import LinkedIdentity, User
from tests.federation.journey import Person
from tests.federation.test_roundtrip import read
from tests.federation.test_upstream_assurance import fed_login


def test_an_upstream_that_lists_no_alg_we_allow_is_refused_not_given_the_library_defaults(app):
    rsa = RSAKey.generate_key(2048, private=True, parameters={"kid": "rsa"})
    secret = OctKey.generate_key(256, parameters={"kid": "oct"})
    meta = {"jwks_uri": "https://op.example/jwks", "id_token_signing_alg_values_supported": ["HS256"]}
    forged = jwt.encode({"alg": "HS256", "kid": "oct"}, {"sub": "x"}, secret, algorithms=["HS256"])
    with app.app_context():
        client._cache()[f"jwks:{meta['jwks_uri']}"] = (
            KeySet.import_key_set({"keys": [rsa.as_dict(private=False), secret.as_dict()]}), time.monotonic())
        with pytest.raises(UpstreamInvalid):
            client._decode(forged, meta)


def test_an_upstream_email_without_an_at_sign_is_not_looked_up_as_a_username(app, live_server, fake_op,
                                                                              make_provider, make_user):
    victim = make_user()
    with app.app_context():
        db.session.get(User, victim["id"]).email_verified = True
        db.session.commit()
    fake_op.claims = {**fake_op.claims, "email": victim["username"], "email_verified": True}
    provider_id = make_provider(fake_op.url, trust_email_verified=True)
    fed_login(Person(), live_server, fake_op, provider_id)
    assert read(app, lambda: db.session.scalars(db.select(LinkedIdentity.user_id).where(
        LinkedIdentity.provider_id == provider_id)).all()) == []
