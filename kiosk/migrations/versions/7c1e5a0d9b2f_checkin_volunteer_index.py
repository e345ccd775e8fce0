"""index check-ins by volunteer and time

bench/flatness.py found a redemption 1.9x slower with 100,000 check-ins: a volunteer's hours
were summed by a skip-scan of (event_id, volunteer_id), or a full scan without statistics.

Revision ID: 7c1e5a0d9b2f
Revises: 454e77fae570
Create Date: 2026-11-29 13:55:00

"""
from alembic import op

revision = '7c1e5a0d9b2f'
down_revision = '454e77fae570'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('checkin', schema=None) as batch_op:
        batch_op.create_index('ix_checkin_volunteer_checked_in', ['volunteer_id', 'checked_in_at'], unique=False)


def downgrade():
    with op.batch_alter_table('checkin', schema=None) as batch_op:
        batch_op.drop_index('ix_checkin_volunteer_checked_in')
