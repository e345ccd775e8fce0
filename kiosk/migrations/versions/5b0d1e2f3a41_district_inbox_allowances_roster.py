"""district inbox: batches, allowances, roster volunteers, district events, log compaction index

Revision ID: 5b0d1e2f3a41
Revises: 22b6e400876c
Create Date: 2026-11-29 15:20:00

What the district sends back each night (kiosk/inbox.py): the batches applied (exported, so the
district knows which one is in force), each volunteer's allowance and totals, volunteers from
other stations (volunteer.home_station), district events (event.origin). The change-log index
lets `kiosk tidy` find superseded rows of an entity.
"""
from alembic import op
import sqlalchemy as sa


revision = '5b0d1e2f3a41'
down_revision = '22b6e400876c'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('inbox_batch',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('issued', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('epoch', sa.String(length=32), nullable=False),
    sa.Column('mark_seq', sa.Integer(), nullable=False),
    sa.Column('mark_posting', sa.Integer(), nullable=False),
    sa.Column('as_of', sa.String(length=32), nullable=False),
    sa.Column('received_at', sa.DateTime(), nullable=False),
    sa.Column('body_sha256', sa.String(length=64), nullable=False),
    sa.Column('result', sa.Text(), nullable=False),
    sa.CheckConstraint("kind IN ('full', 'topup')", name=op.f('ck_inbox_batch_kind_known')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inbox_batch'))
    )
    with op.batch_alter_table('inbox_batch', schema=None) as batch_op:
        batch_op.create_index('ix_inbox_batch_issued', ['issued'], unique=False)

    op.create_table('allowance',
    sa.Column('volunteer_id', sa.String(length=36), nullable=False),
    sa.Column('points', sa.Integer(), nullable=False),
    sa.Column('total', sa.Integer(), nullable=False),
    sa.Column('minutes_total', sa.Integer(), nullable=False),
    sa.Column('minutes_here', sa.Integer(), nullable=False),
    sa.CheckConstraint('points >= 0', name=op.f('ck_allowance_points_not_negative')),
    sa.PrimaryKeyConstraint('volunteer_id', name=op.f('pk_allowance'))
    )
    with op.batch_alter_table('volunteer', schema=None) as batch_op:
        batch_op.add_column(sa.Column('home_station', sa.String(length=32), nullable=True))
    with op.batch_alter_table('event', schema=None) as batch_op:
        batch_op.add_column(sa.Column('origin', sa.String(length=10), server_default='station', nullable=False))
    with op.batch_alter_table('change_log', schema=None) as batch_op:
        batch_op.create_index('ix_change_log_entity', ['entity', 'entity_id', 'seq'], unique=False)


def downgrade():
    with op.batch_alter_table('change_log', schema=None) as batch_op:
        batch_op.drop_index('ix_change_log_entity')
    with op.batch_alter_table('event', schema=None) as batch_op:
        batch_op.drop_column('origin')
    with op.batch_alter_table('volunteer', schema=None) as batch_op:
        batch_op.drop_column('home_station')
    op.drop_table('allowance')
    with op.batch_alter_table('inbox_batch', schema=None) as batch_op:
        batch_op.drop_index('ix_inbox_batch_issued')
    op.drop_table('inbox_batch')
