"""sso_sessions.proofs: what a session proved, for step-ups

Revision ID: 0008_session_proofs
Revises: 0007_email_keys
Create Date: 2026-12-03 17:30:00

A step-up used to rebuild a session's proofs from its amr strings, and an upstream's mapped
"pwd", "otp" or "swk" read back as our own factors. Sessions from before this revision have no
proofs (NULL): a step-up from one proves the first factor again.
"""
import sqlalchemy as sa
from alembic import op

revision = "0008_session_proofs"
down_revision = "0007_email_keys"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("sso_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("proofs", sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table("sso_sessions", schema=None) as batch_op:
        batch_op.drop_column("proofs")
