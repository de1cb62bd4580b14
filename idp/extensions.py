"""Extension instances, created without an app; create_app() binds them."""
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import MetaData, select

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


def lock_for_update(model, key) -> None:
    """Be the only transaction changing `model`'s row `key` (and, on SQLite, the database) until
    this one ends, so that a check made after this call still holds when the change it allows is
    committed: no check-then-act race. PostgreSQL: SELECT ... FOR NO KEY UPDATE, which waits for a
    holder and lets the reads that follow see what it committed (and, unlike FOR UPDATE, does not
    stop others from inserting rows that refer to this one). SQLite has one writer: take its lock now
    (BEGIN IMMEDIATE, waiting out the busy timeout) unless this transaction has written already
    and so holds it; a transaction that reads first and writes later would instead fail (a busy
    snapshot) when another writer commits in between."""
    connection = db.session.connection()
    if connection.dialect.name == "sqlite":
        if not connection.connection.dbapi_connection.in_transaction:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        return
    column = model.__mapper__.primary_key[0]
    db.session.execute(select(column).where(column == key).with_for_update(key_share=True))
