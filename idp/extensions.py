"""Extension instances, created without an app; create_app() binds them."""
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import MetaData

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

db = SQLAlchemy(metadata=MetaData(naming_convention=NAMING))
migrate = Migrate()
csrf = CSRFProtect()


def commit_keeping_loaded() -> None:
    """Commit without expiring the objects this session holds, so reading them afterwards costs
    no SELECT. Only for a caller that knows every change it made (or made through a statement
    whose effect it does not read back): the loaded values must still be the stored ones."""
    session = db.session()
    session.expire_on_commit = False
    try:
        session.commit()
    finally:
        session.expire_on_commit = True


def upsert(model):
    """INSERT for `model` in the dialect of the session's database, so that the caller can add
    ON CONFLICT DO UPDATE / DO NOTHING (PostgreSQL and SQLite spell it the same way)."""
    from sqlalchemy.dialects.postgresql import insert as postgresql_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    dialect = db.session.get_bind().dialect.name
    return (postgresql_insert if dialect == "postgresql" else sqlite_insert)(model)
