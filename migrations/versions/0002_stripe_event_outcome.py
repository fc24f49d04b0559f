"""stripe events record whether they were processed or rejected, and why

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 10:00:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel

from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Every event recorded so far was processed; the default fills them in (and keeps SQLite's ADD COLUMN legal).
    op.add_column(
        'stripe_event',
        sa.Column(
            'outcome',
            sqlmodel.sql.sqltypes.AutoString(length=16),
            nullable=False,
            server_default='processed',
        ),
    )
    op.add_column(
        'stripe_event',
        sa.Column('rejection_reason', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
    )


def downgrade() -> None:
    with op.batch_alter_table('stripe_event') as batch:
        batch.drop_column('rejection_reason')
        batch.drop_column('outcome')
