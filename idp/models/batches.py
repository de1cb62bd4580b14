"""Batched deletes (and blanking updates) for `idp purge`: short statements and short locks, safe beside another purge.

This module commits, unlike the rest of models/: for a purge the unit of work is one batch, so a
backlog of millions of rows never holds locks for long and a crash loses nothing but a batch.
"""
from __future__ import annotations

from sqlalchemy import delete, select, tuple_, update

from idp.extensions import db


def _chosen(model, condition, batch: int):
    keys = list(model.__table__.primary_key.columns)
    key = keys[0] if len(keys) == 1 else tuple_(*keys)
    chosen = select(*keys).where(condition).limit(batch)
    if db.session.get_bind().dialect.name == "postgresql":
        chosen = chosen.with_for_update(skip_locked=True)
    return key.in_(chosen)


def update_in_batches(model, condition, values: dict, batch: int = 1000) -> int:
    """Set `values` on the rows of `model` matching `condition` (which must stop matching once
    they are set), `batch` at a time, committing after each; as delete_in_batches."""
    total = 0
    while True:
        result = db.session.execute(update(model).where(_chosen(model, condition, batch)).values(**values),
                                    execution_options={"synchronize_session": False})
        db.session.commit()
        total += result.rowcount
        if result.rowcount < batch:
            return total


def delete_in_batches(model, condition, batch: int = 1000) -> int:
    """Delete the rows of `model` matching `condition`, `batch` at a time, committing after each;
    returns how many this call deleted. On PostgreSQL the batch is chosen FOR UPDATE SKIP LOCKED,
    so two purges running at once take disjoint rows instead of waiting on (or deadlocking with)
    each other; a row another purge deleted first is simply not counted. SQLite has one writer."""
    total = 0
    while True:
        result = db.session.execute(delete(model).where(_chosen(model, condition, batch)),
                                    execution_options={"synchronize_session": False})
        db.session.commit()
        total += result.rowcount
        if result.rowcount < batch:
            return total
