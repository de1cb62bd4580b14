"""Fixtures: settings -> app -> db -> client; one live server per test session; factories.

The database is real: a temporary SQLite file, or with IDP_TEST_DATABASE_URL a fresh PostgreSQL
database created for this run (and dropped after it). The schema comes from `alembic upgrade`.
"""
from __future__ import annotations

import os
import socket
import threading
import uuid
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from idp import clock, create_app
from idp.config import from_env

PASSWORD = "correct horse battery staple"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def database_url(tmp_path_factory):
    url = os.environ.get("IDP_TEST_DATABASE_URL")
    if not url:
        yield ""  # SQLite under the instance path
        return
    import psycopg

    name = f"idp_test_{uuid.uuid4().hex[:12]}"
    admin = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = admin.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def port():
    return _free_port()


class Mailbox:
    """A real SMTP server (aiosmtpd) in the test process; it keeps every message it receives."""

    def __init__(self, port: int):
        from aiosmtpd.controller import Controller

        self.messages: list = []
        self._lock = threading.Lock()
        self.controller = Controller(self, hostname="127.0.0.1", port=port)

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd's handler hook
        import email
        import email.policy

        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self._lock:
            self.messages.append(message)
        return "250 OK"

    def to(self, address: str) -> list:
        with self._lock:
            return [m for m in self.messages if m["To"] == address]

    def deliver(self, app) -> None:
        """Run the outbox once, as the worker would, so queued mail reaches this server."""
        from idp import outbox

        with app.app_context():
            outbox.run_once(limit=100)

    def wait_count(self, app, address: str, count: int) -> list:
        """At least `count` messages to `address` (bounded wait, as last())."""
        import time

        deadline = time.monotonic() + 10
        self.deliver(app)
        while len(self.to(address)) < count and time.monotonic() < deadline:
            time.sleep(0.02)
            self.deliver(app)
        assert len(self.to(address)) >= count, f"{len(self.to(address))} mails to {address}, wanted {count}"
        return self.to(address)

    def last(self, app, address: str):
        """The newest message to `address`, once delivered; a delivery that a request started in
        the background may still be on its way, so wait for it (bounded), never a fixed sleep."""
        import time

        self.deliver(app)
        deadline = time.monotonic() + 10
        while not self.to(address) and time.monotonic() < deadline:
            time.sleep(0.02)
            self.deliver(app)
        received = self.to(address)
        assert received, f"no mail to {address}"
        return received[-1]


@pytest.fixture(scope="session")
def mailbox():
    box = Mailbox(_free_port())
    box.controller.start()
    yield box
    box.controller.stop()


@pytest.fixture(scope="session")
def settings(tmp_path_factory, database_url, port, mailbox):
    instance = tmp_path_factory.mktemp("instance")
    return from_env({}, env="development", issuer=f"http://127.0.0.1:{port}", instance_path=str(instance),
                    database_url=database_url, secret_key="test-secret-key-" + "x" * 32,
                    log_level="WARNING", smtp_url=f"smtp://127.0.0.1:{mailbox.controller.port}?tls=none",
                    mail_from="idp tests <idp@example.test>", outbox_worker="off",  # tests run the outbox themselves
                    federation_timeout=2,  # the upstream-timeout tests wait this long
                    # the suite registers more clients from 127.0.0.1 than anyone should in an hour;
                    # tests/oauth/test_registration_limits.py runs instances with small limits
                    client_registration_per_ip=100_000, client_registration_per_network=100_000,
                    client_registration_total=100_000, client_configuration_per_ip=100_000,
                    # and signs up more people from 127.0.0.1; tests/authn/test_registration_limits.py
                    # runs the small limits
                    registration_per_ip=100_000, registration_per_network=100_000, registration_total=100_000,
                    # and asks for reset links from 127.0.0.1; tests/users/test_reset_limits.py runs the small limits
                    password_reset_per_ip=100_000, password_reset_per_network=100_000)


@pytest.fixture(scope="session")
def app(settings):
    from flask_migrate import upgrade

    application = create_app(settings)
    with application.app_context():
        upgrade()
    return application


@pytest.fixture(scope="session")
def live_server(app, port):
    """The real app over real HTTP on 127.0.0.1:<port> (the issuer), in a thread."""
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield app.config["IDP_SETTINGS"].issuer
    server.shutdown()


@pytest.fixture
def app_ctx(app):
    with app.app_context():
        yield app


@pytest.fixture
def client(app):
    """Flask's test client, addressed at the issuer (TRUSTED_HOSTS is on): a relative path is
    requested at the issuer's scheme, host and port unless the call names another base_url."""
    issuer = app.config["IDP_SETTINGS"].issuer

    class IssuerClient(FlaskClient):
        def open(self, *args, **kwargs):
            if args and isinstance(args[0], str) and "://" not in args[0]:
                kwargs.setdefault("base_url", issuer)
            return super().open(*args, **kwargs)

    return IssuerClient(app, app.response_class, use_cookies=True)


@pytest.fixture(autouse=True)
def _unpin_clock():
    yield
    clock.set_now(None)


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


@pytest.fixture
def idp_cli(settings):
    """`idp ...` in-process on the test database (SQLite or PostgreSQL), on the pinned clock."""
    from tests.test_cli import Cli
    tool = Cli(Path(settings.instance_path))
    tool.env.update({"IDP_DATABASE_URL": settings.database_url, "IDP_SECRET_KEY": settings.secret_key,
                     "IDP_ISSUER": settings.issuer, "IDP_OUTBOX_WORKER": "off"})
    return tool


@pytest.fixture
def make_user(app):
    def make(username=None, email=None, password=PASSWORD, disabled=False):
        from idp.extensions import db
        from idp.users.directory import create_user

        username = username or unique("user")
        with app.app_context():
            user = create_user(username, email or f"{username}@example.com", password)
            user.disabled = disabled
            db.session.commit()
            return {"id": user.id, "subject": user.subject, "username": user.username,
                    "email": user.email, "password": password}
    return make


@pytest.fixture
def make_client(app, live_server):
    def make(public=False, first_party=False, redirect_uris=None, grant_types=None,
             scope="openid profile email address phone offline_access", require_pkce=True, **extra):
        from idp.extensions import db
        from idp.oauth.clients import create_client

        with app.app_context():
            client, secret = create_client(
                name=extra.pop("name", "Test app"), public=public, first_party=first_party,
                redirect_uris=redirect_uris or ["http://127.0.0.1:9999/callback"],
                grant_types=grant_types or ["authorization_code", "refresh_token", "client_credentials"]
                if not public else ["authorization_code", "refresh_token"],
                scope=scope, require_pkce=require_pkce)
            for key, value in extra.items():
                setattr(client, key, value)
            db.session.commit()
            return {"client_id": client.client_id, "client_secret": secret,
                    "redirect_uri": client.redirect_uris[0], "public": public}
    return make


@pytest.fixture
def es256_keys(app):
    """IDP_KEYS_ALG=ES256 on the app and its live server, keys rotated at once (an RS256 and an
    ES256 key sign); yields their kids by alg. Afterwards the test settings again, rotated
    likewise (the ES256 keys retire), so later tests sign as before."""
    from tests.helpers.keys import rotate_keys, use_keys_alg

    original = app.config["IDP_SETTINGS"]
    yield use_keys_alg(app, "ES256")
    clock.set_now(None)  # keys made at a pinned time would sort oddly against later ones
    app.config["IDP_SETTINGS"] = original
    rotate_keys(app)
