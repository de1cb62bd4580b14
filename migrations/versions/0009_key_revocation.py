"""signing_keys.revoked_at: withdraw a leaked key at once

Revision ID: 0009_key_revocation
Revises: 0008_session_proofs
Create Date: 2026-12-03 16:50:00

"""
import sqlalchemy as sa
from alembic import op

revision = "0009_key_revocation"
down_revision = "0008_session_proofs"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("signing_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table("signing_keys", schema=None) as batch_op:
        batch_op.drop_column("revoked_at")
