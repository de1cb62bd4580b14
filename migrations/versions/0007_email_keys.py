"""email keys: IDNA domains, no full case folding of the local part

Revision ID: 0007_email_keys
Revises: 0006_dcr
Create Date: 2026-12-03 16:20:00

Until now users.email_key was NFKC + casefold of the whole address, so "alice@straße.de" and
"alice@strasse.de" (two domains) or "maß@x" and "mass@x" (two mailboxes) had one key: the second
could not register, and an upstream sign-in verified for one address could link to the other
account. This recomputes every key with the rule in idp/users/directory.email_key (frozen here,
STYLE 5). The new keys only tell apart addresses the old ones confused, except for a few odd
domains that IDNA maps together (ignored characters such as a soft hyphen): when two accounts
would share a new key, the oldest takes it, the others keep their old key, and a warning names
them for the operator.
"""
import logging
import unicodedata

import idna
import sqlalchemy as sa
from alembic import op

revision = "0007_email_keys"
down_revision = "0006_dcr"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")
users = sa.table("users", sa.column("id", sa.Integer), sa.column("email", sa.String),
                 sa.column("email_key", sa.String))


def new_key(value: str) -> str:
    text = unicodedata.normalize("NFKC", value).strip()
    local, _at, domain = text.rpartition("@")
    try:
        domain = idna.encode(domain, uts46=True, transitional=False).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError, ValueError):
        domain = domain.casefold()
    return f"{local.lower()}@{domain}"


def old_key(value: str) -> str:
    return unicodedata.normalize("NFKC", value).casefold().strip()


def _rekey(compute) -> None:
    conn = op.get_bind()
    rows = conn.execute(sa.select(users.c.id, users.c.email, users.c.email_key).order_by(users.c.id)).all()
    wanted = {row.id: compute(row.email) for row in rows}
    current = {row.id: row.email_key for row in rows}
    taken: dict[str, int] = {}
    for row in rows:  # oldest first: it keeps the address's key when two would collide
        key = wanted[row.id]
        if key in taken:
            log.warning("users %s and %s have addresses with the same key %r; user %s keeps its "
                        "old key and can sign in by username only until one address changes",
                        taken[key], row.id, key, row.id)
            wanted[row.id] = current[row.id]
        else:
            taken[key] = row.id
    changes = {uid: key for uid, key in wanted.items() if key != current[uid]}
    # Two passes, so that no UPDATE meets a key another row still holds until later in the loop.
    for uid in changes:
        conn.execute(users.update().where(users.c.id == uid).values(email_key=f"rekey-{uid}"))
    for uid, key in changes.items():
        conn.execute(users.update().where(users.c.id == uid).values(email_key=key))


def upgrade():
    _rekey(new_key)


def downgrade():
    # Back to NFKC + casefold. Addresses the old rule confused and that registered since cannot
    # both have it: the downgrade stops with a unique-constraint error rather than merge them.
    conn = op.get_bind()
    rows = conn.execute(sa.select(users.c.id, users.c.email)).all()
    keys = [old_key(row.email) for row in rows]
    if len(set(keys)) != len(keys):
        raise RuntimeError("two accounts' addresses have the same NFKC + casefold key; change one "
                           "of them before downgrading below 0007_email_keys")
    _rekey(old_key)
