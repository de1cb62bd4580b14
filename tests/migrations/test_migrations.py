"""The migration chain is the schema: head equals the models (no drift), and every revision
downgrades and upgrades again. On SQLite always, and on PostgreSQL when IDP_TEST_DATABASE_URL is set;
each test gets a fresh database of its own, never the session's shared one."""
from __future__ import annotations

import dataclasses
import os
import re
import uuid
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
