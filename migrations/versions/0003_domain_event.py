"""domain events, recorded in the same transaction as the change they describe

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 10:00:00.000000

The ledger's kinds and statuses are plain strings with no CHECK: dropping `reversal` and `refunded` (never
written) from the enums needs no change here.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel

import models.types
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "domain_event",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), sa.Identity(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("type", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("occurred_at", models.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_domain_event_account", "domain_event", ["account_id", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_domain_event_account", table_name="domain_event")
    op.drop_table("domain_event")
