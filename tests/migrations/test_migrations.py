"""The migration chain is the schema: head equals the models (no drift), and every revision
downgrades and upgrades again. On SQLite always, and on PostgreSQL when IDP_TEST_DATABASE_URL is set;
each test gets a fresh database of its own, never the session's shared one."""
from __future__ import annotations

import dataclasses
import os
import re
import unicodedata
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask_migrate import downgrade, upgrade

from idp import create_app
from idp.extensions import db

VERSIONS = Path(__file__).resolve().parents[2] / "migrations" / "versions"


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_app(request, settings, tmp_path):
    """An app on an empty database of its own."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'migrations.sqlite'}"
        yield create_app(dataclasses.replace(settings, database_url=url))
        return
    base = os.environ.get("IDP_TEST_DATABASE_URL")
    if not base:
        pytest.skip("IDP_TEST_DATABASE_URL is not set")
    import psycopg

    admin = base.replace("postgresql+psycopg://", "postgresql://")
    name = f"idp_migrations_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    app = create_app(dataclasses.replace(settings, database_url=f"{admin.rsplit('/', 1)[0]}/{name}"))
    try:
        yield app
    finally:
        with app.app_context():
            db.engine.dispose()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def script_directory(app) -> ScriptDirectory:
    return ScriptDirectory.from_config(app.extensions["migrate"].migrate.get_config())


def drift(app) -> list:
    """What autogenerate would write: the differences between the database and the models."""
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(context, db.metadata)


def tables(app) -> set[str]:
    return set(sa.inspect(db.engine).get_table_names()) - {"alembic_version"}


def test_head_builds_exactly_the_models_schema(fresh_app):
    with fresh_app.app_context():
        upgrade()
        assert tables(fresh_app) == set(db.metadata.tables)
        assert drift(fresh_app) == []


def test_upgrading_twice_changes_nothing(fresh_app):
    with fresh_app.app_context():
        upgrade()
        upgrade()
        assert drift(fresh_app) == []


def test_every_revision_downgrades_and_upgrades_again(fresh_app):
    with fresh_app.app_context():
        script = script_directory(fresh_app)
        revisions = list(reversed(list(script.walk_revisions())))
        assert revisions, "the chain has at least one revision"
        for revision in revisions:  # the stairway: up, down one, up again
            upgrade(revision=revision.revision)
            downgrade(revision=revision.down_revision or "base")
            upgrade(revision=revision.revision)
        downgrade(revision="base")
        assert tables(fresh_app) == set()
        upgrade()
        assert drift(fresh_app) == []


def test_there_is_one_chain_with_one_head(app_ctx):
    script = script_directory(app_ctx)
    assert len(script.get_heads()) == 1 and len(script.get_bases()) == 1


def test_revisions_never_import_idp():
    """STYLE 5: a revision declares its own table objects; the models will have changed by next year."""
    for path in VERSIONS.glob("*.py"):
        source = path.read_text(encoding="utf-8")
        assert not re.search(r"^\s*(from|import)\s+idp\b", source, re.M), path.name


def test_0007_rekeys_emails_and_leaves_a_collision_to_the_oldest_account(fresh_app):
    """0007_email_keys: keys made by NFKC + casefold become the IDNA form; two accounts that only
    the old rule kept apart (a soft hyphen, which IDNA ignores) do not make the upgrade fail."""
    users = sa.table("users", *(sa.column(name) for name in (
        "id", "subject", "username", "username_key", "email", "email_key", "email_verified", "disabled",
        "created_at", "phone_number_verified")))
    emails = {1: "Maß@Straße.Example", 2: "a@example.com", 3: "a@exam\u00adple.com", 4: "b@exa_mple.com"}
    with fresh_app.app_context():
        upgrade(revision="0006_dcr")
        with db.engine.begin() as conn:
            for uid, email in emails.items():
                conn.execute(users.insert().values(
                    id=uid, subject=f"s{uid}", username=f"u{uid}", username_key=f"u{uid}", email=email,
                    email_key=unicodedata.normalize("NFKC", email).casefold(), email_verified=False,
                    disabled=False, created_at=datetime.now(timezone.utc), phone_number_verified=False))

        def keys():
            with db.engine.connect() as conn:
                return dict(conn.execute(sa.select(users.c.id, users.c.email_key)).all())
        upgrade(revision="0007_email_keys")
        assert keys() == {1: "maß@xn--strae-oqa.example", 2: "a@example.com",
                          3: "a@exam\u00adple.com",  # the collision: the newer account keeps its old key
                          4: "b@exa_mple.com"}        # not a domain name: unchanged
        downgrade(revision="0006_dcr")
        assert keys() == {uid: unicodedata.normalize("NFKC", email).casefold() for uid, email in emails.items()}
