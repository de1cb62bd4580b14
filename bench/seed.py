"""Seed a freshly migrated benchmark database through idp's own functions: one confidential
client (client_secret_basic; authorization_code and client_credentials; not first-party, so the
benchmark signs in and consents once over HTTP like a person) and N users.

Run by bench/run.py with the same IDP_* environment as the server:
`python bench/seed.py USERS PASSWORD`; prints one JSON line.
"""
from __future__ import annotations

import json
import sys

from idp import create_app
from idp.extensions import db
from idp.keys import ensure_keys
from idp.oauth.clients import create_client
from idp.users.directory import create_user

REDIRECT_URI = "http://127.0.0.1:9/callback"  # never contacted: the benchmark only reads the Location
SCOPE = "openid profile email"


def main():
    count, password = int(sys.argv[1]), sys.argv[2]
    app = create_app()
    with app.app_context():
        ensure_keys(app.config["IDP_SETTINGS"])
        client, secret = create_client(name="Benchmark app", client_id="bench-app", redirect_uris=[REDIRECT_URI],
                                       grant_types=["authorization_code", "client_credentials"], scope=SCOPE)
        # `run.py --alg ES256` measures ES256 throughout: ID tokens are RS256 unless a client asks.
        client.id_token_signed_response_alg = app.config["IDP_SETTINGS"].keys_alg
        users = []
        for i in range(count):
            user = create_user(f"bench{i:03d}", f"bench{i:03d}@example.com", password, name=f"Bench User {i}")
            users.append(user.username)
        db.session.commit()
        print(json.dumps({"client_id": client.client_id, "client_secret": secret, "redirect_uri": REDIRECT_URI,
                          "scope": SCOPE, "users": users}))


if __name__ == "__main__":
    main()
