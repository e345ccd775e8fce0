"""sync_state.epoch_posting: the highest posting id when the epoch began

Revision ID: 6c2e7f1a9d03
Revises: 5b0d1e2f3a41
Create Date: 2026-11-29 16:05:00

A station restored from a backup must not count, as its own new points, postings that the
district had already counted and moved elsewhere (kiosk/inbox.py: standing).
"""
from alembic import op
import sqlalchemy as sa


revision = '6c2e7f1a9d03'
down_revision = '5b0d1e2f3a41'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('sync_state', schema=None) as batch_op:
        batch_op.add_column(sa.Column('epoch_posting', sa.Integer(), server_default='0', nullable=False))


def downgrade():
    with op.batch_alter_table('sync_state', schema=None) as batch_op:
        batch_op.drop_column('epoch_posting')
