"""each lead plan's monthly spending, so `usage.budget_reached` is told per plan

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 10:00:00.000000

`lead_plan_rollup` holds what the leads reported against each plan cost per month (in the account's time zone),
filled here from the usage already recorded, so a budget crossed after the upgrade is told by the batch that
crosses it. `lead_plan.budget_reached` events written before named no plan (they were per account): they cannot
be read as the new event, so they are deleted; the webhooks they caused were queued with their own payloads.
"""

from collections import defaultdict
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import models.types
from billing.months import month_of

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_USAGE = sa.table(
    "usage_event",
    sa.column("account_id", sa.Integer()),
    sa.column("category", sa.String()),
    sa.column("lead_plan_id", sa.Integer()),
    sa.column("occurred_at", models.types.UTCDateTime()),
    sa.column("cost_minor", sa.BigInteger()),
)
_ACCOUNT = sa.table("account", sa.column("id", sa.Integer()), sa.column("time_zone", sa.String()))
_EVENT = sa.table("domain_event", sa.column("type", sa.String()))


def upgrade() -> None:
    rollup = op.create_table(
        "lead_plan_rollup",
        sa.Column("lead_plan_id", sa.Integer(), nullable=False),
        sa.Column("month", sqlmodel.sql.sqltypes.AutoString(length=7), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("spent_minor", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["account.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["lead_plan_id"], ["lead_plan_subscription.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("lead_plan_id", "month"),
    )
    bind = op.get_bind()
    leads = (
        sa.select(
            _USAGE.c.account_id,
            _USAGE.c.lead_plan_id,
            _USAGE.c.occurred_at,
            _USAGE.c.cost_minor,
            _ACCOUNT.c.time_zone,
        )
        .join(_ACCOUNT, _ACCOUNT.c.id == _USAGE.c.account_id)
        .where(_USAGE.c.category == "lead", _USAGE.c.lead_plan_id.is_not(None))
    )
    # Months are in each account's time zone, which SQLite cannot compute: summed here, streamed.
    spent: dict[tuple[int, int, str], int] = defaultdict(int)
    streamed = bind.execute(leads.execution_options(yield_per=10_000))
    for account_id, plan_id, occurred_at, cost_minor, time_zone in streamed:
        spent[(account_id, plan_id, str(month_of(occurred_at, time_zone)))] += cost_minor
    if spent:
        op.bulk_insert(
            rollup,
            [
                {"account_id": account_id, "lead_plan_id": plan_id, "month": month, "spent_minor": cost_minor}
                for (account_id, plan_id, month), cost_minor in sorted(spent.items())
            ],
        )
    bind.execute(sa.delete(_EVENT).where(_EVENT.c.type == "lead_plan.budget_reached"))


def downgrade() -> None:
    op.drop_table("lead_plan_rollup")
