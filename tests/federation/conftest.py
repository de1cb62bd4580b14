"""The upstream for federation tests is a second instance of our own app (its own database, its
own port, on the host name `localhost` so that its cookies never mix with the downstream's on
127.0.0.1), plus small stand-ins for what our app cannot be: GitHub, and OpenID Providers that
misbehave on purpose (tests/federation/standins.py)."""
from __future__ import annotations

import os
import threading
import uuid
from dataclasses import dataclass

import pytest
from werkzeug.serving import make_server

from idp import create_app
from idp.config import from_env
from tests.conftest import PASSWORD, _free_port, unique
from tests.federation.standins import FakeGitHub, FakeOP


@dataclass
class Upstream:
    issuer: str
    app: object

    def make_user(self, email: str | None = None, email_verified: bool = False) -> dict:
        from idp.extensions import db
        from idp.users.directory import create_user

        username = unique("up")
        with self.app.app_context():
            user = create_user(username, email or f"{username}@upstream.example", PASSWORD, name="Ada Upstream")
            user.email_verified = email_verified
            db.session.commit()
            return {"username": user.username, "email": user.email, "password": PASSWORD, "subject": user.subject}

    def make_client(self, redirect_uri: str, first_party: bool = True) -> dict:
        from idp.extensions import db
        from idp.oauth.clients import create_client

        with self.app.app_context():
            client, secret = create_client(name="Downstream idp", redirect_uris=[redirect_uri],
                                           first_party=first_party, scope="openid profile email",
                                           grant_types=["authorization_code"])
            db.session.commit()
            return {"client_id": client.client_id, "client_secret": secret}


def _database(tmp_path) -> tuple[str, callable]:
    """A database of the upstream's own: SQLite, or a fresh PostgreSQL database."""
    base = os.environ.get("IDP_TEST_DATABASE_URL")
    if not base:
        return f"sqlite:///{tmp_path / 'upstream.sqlite'}", lambda: None
    import psycopg

    admin = base.replace("postgresql+psycopg://", "postgresql://")
    name = f"idp_upstream_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop():
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return f"{admin.rsplit('/', 1)[0]}/{name}", drop


def _serve(app, port: int):
    server = make_server("127.0.0.1", port, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="session")
def upstream(tmp_path_factory):
    """Our own app as the upstream OpenID Provider, at http://localhost:<port>."""
    from flask_migrate import upgrade

    from idp.extensions import db

    tmp = tmp_path_factory.mktemp("upstream")
    url, drop = _database(tmp)
    port = _free_port()
    settings = from_env({}, env="development", issuer=f"http://localhost:{port}", instance_path=str(tmp),
                        database_url=url, secret_key="upstream-secret-key-" + "y" * 32, log_level="WARNING",
                        outbox_worker="off")  # no worker thread outliving the upstream's database
    app = create_app(settings)
    with app.app_context():
        upgrade()
    server = _serve(app, port)
    yield Upstream(settings.issuer, app)
    server.shutdown()
    with app.app_context():
        db.engine.dispose()
    drop()


@pytest.fixture
def make_provider(app, live_server):
    """Register a provider on the downstream (our live_server) whose upstream client is
    registered with the downstream's callback as redirect URI; returns (provider id, client)."""
    def make(issuer: str | None = None, *, kind: str = "oidc", upstream: Upstream | None = None,
             client: dict | None = None, first_party: bool = True, **options) -> str:
        from idp.extensions import db
        from idp.federation import providers

        provider_id = unique("p")
        callback = f"{live_server}/federation/{provider_id}/callback"
        if upstream is not None:
            client = upstream.make_client(callback, first_party=first_party)
            issuer = upstream.issuer
        client = client or {"client_id": "downstream", "client_secret": "downstream-secret"}
        options.setdefault("display_name", f"Upstream {provider_id}")
        with app.app_context():
            providers.create(provider_id, kind, client_id=client["client_id"], client_secret=client["client_secret"],
                             issuer=issuer, **options)
            db.session.commit()
        return provider_id
    return make


@pytest.fixture
def fake_op():
    """A scriptable OpenID Provider stand-in (see standins.FakeOP)."""
    op = FakeOP()
    yield op
    op.stop()


@pytest.fixture
def fake_github():
    stand_in = FakeGitHub()
    yield stand_in
    stand_in.stop()
