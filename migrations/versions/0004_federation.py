"""federation: upstream identity providers, identities linked to local users, round trips in
flight and upstream identities waiting for proof of account ownership (four new tables, nothing
changed on existing ones)

The lead re-points down_revision onto the MFA branch's 0003 when the branches merge.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 06:55:14.077240

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('upstream_providers',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('display_name', sa.String(length=128), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('issuer', sa.String(length=512), nullable=False),
    sa.Column('api_base_url', sa.String(length=512), nullable=True),
    sa.Column('client_id', sa.String(length=256), nullable=False),
    sa.Column('client_secret_encrypted', sa.Text(), nullable=False),
    sa.Column('scopes', sa.String(length=512), nullable=False),
    sa.Column('claim_mapping', sa.JSON(), nullable=False),
    sa.Column('acr_mapping', sa.JSON(), nullable=False),
    sa.Column('trust_email_verified', sa.Boolean(), nullable=False),
    sa.Column('allow_registration', sa.Boolean(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_upstream_providers'))
    )
    op.create_table('federation_states',
    sa.Column('state_digest', sa.String(length=64), nullable=False),
    sa.Column('browser_digest', sa.String(length=64), nullable=False),
    sa.Column('provider_id', sa.String(length=64), nullable=False),
    sa.Column('nonce_digest', sa.String(length=64), nullable=False),
    sa.Column('code_verifier_encrypted', sa.Text(), nullable=False),
    sa.Column('next_path', sa.String(length=2048), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['provider_id'], ['upstream_providers.id'], name=op.f('fk_federation_states_provider_id_upstream_providers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('state_digest', name=op.f('pk_federation_states'))
    )
    with op.batch_alter_table('federation_states', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_federation_states_expires_at'), ['expires_at'], unique=False)

    op.create_table('linked_identities',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('provider_id', sa.String(length=64), nullable=False),
    sa.Column('subject', sa.String(length=255), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['provider_id'], ['upstream_providers.id'], name=op.f('fk_linked_identities_provider_id_upstream_providers'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_linked_identities_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_linked_identities')),
    sa.UniqueConstraint('provider_id', 'subject', name='uq_linked_identities_provider_subject')
    )
    with op.batch_alter_table('linked_identities', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_linked_identities_user_id'), ['user_id'], unique=False)

    op.create_table('pending_links',
    sa.Column('id_digest', sa.String(length=64), nullable=False),
    sa.Column('browser_digest', sa.String(length=64), nullable=False),
    sa.Column('provider_id', sa.String(length=64), nullable=False),
    sa.Column('subject', sa.String(length=255), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=True),
    sa.Column('amr', sa.JSON(), nullable=False),
    sa.Column('acr', sa.String(length=64), nullable=False),
    sa.Column('next_path', sa.String(length=2048), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['provider_id'], ['upstream_providers.id'], name=op.f('fk_pending_links_provider_id_upstream_providers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id_digest', name=op.f('pk_pending_links'))
    )
    with op.batch_alter_table('pending_links', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_pending_links_expires_at'), ['expires_at'], unique=False)



def downgrade():
    with op.batch_alter_table('pending_links', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_pending_links_expires_at'))

    op.drop_table('pending_links')
    with op.batch_alter_table('linked_identities', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_linked_identities_user_id'))

    op.drop_table('linked_identities')
    with op.batch_alter_table('federation_states', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_federation_states_expires_at'))

    op.drop_table('federation_states')
    op.drop_table('upstream_providers')
