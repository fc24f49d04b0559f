"""Lead plan subscriptions of the accounts of the scope."""

from collections.abc import Iterable, Mapping
from datetime import datetime
from functools import cache
from typing import Any, NamedTuple

import sqlalchemy
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.keys.repository import Reach, reach_rule
from billing.scope import Scope
from billing.sql import among_parameter, columns, upsert_insert
from models import LeadPlanRollup, LeadPlanStatus, LeadPlanSubscription


class LeadPlanRow(NamedTuple):
    """A lead plan as read for showing it: `LeadPlanSubscription`'s columns, without an ORM entity."""

    id: int
    account_id: int
    name: str
    monthly_budget_minor: int
    price_per_lead_minor: int
    currency: str
    status: str
    started_at: datetime
    paused_at: datetime | None
    canceled_at: datetime | None
    created_at: datetime


class LeadPlanRepository:
    def __init__(self, session: AsyncSession, scope: Scope) -> None:
        self.session = session
        self.scope = scope

    async def add(self, plan: LeadPlanSubscription) -> None:
        """Insert a plan of an account the caller found in this scope (flushed: it has its id after)."""
        self.session.add(plan)
        await self.session.flush()

    async def flush(self) -> None:
        await self.session.flush()

    async def locked(self, plan_id: int) -> LeadPlanSubscription | None:
        """The plan, locked until the transaction ends, if it belongs to an account of the scope."""
        statement = (
            select(LeadPlanSubscription)
            .where(
                LeadPlanSubscription.id == plan_id, self.scope.accounts(col(LeadPlanSubscription.account_id))
            )
            .with_for_update()
        )
        return (await self.session.exec(statement)).first()

    async def of_accounts(self, account_ids: Iterable[int]) -> list[LeadPlanRow]:
        """The plans of the accounts among `account_ids`, oldest first (one statement: the dataloader's batch)."""
        rows = await self.scope.rows(self.session, _of_accounts, {"ids": list(account_ids)})
        return [LeadPlanRow._make(row) for row in rows]

    async def has_active(self, account_id: int) -> bool:
        """Whether the account has an active plan."""
        statement = select(LeadPlanSubscription.id).where(
            LeadPlanSubscription.account_id == account_id,
            LeadPlanSubscription.status == LeadPlanStatus.ACTIVE,
            self.scope.accounts(col(LeadPlanSubscription.account_id)),
        )
        return (await self.session.exec(statement.limit(1))).first() is not None

    async def owners_and_budgets(self, plan_ids: set[int]) -> dict[int, tuple[int, int]]:
        """Plan id -> (account id, monthly budget) of the plans among `plan_ids`, in one statement (a usage
        batch's plan check, and the budgets its leads count against: part of that write, so among the plans of
        the accounts the scope writes)."""
        plan = LeadPlanSubscription
        statement = select(plan.id, plan.account_id, plan.monthly_budget_minor).where(
            col(plan.id).in_(plan_ids), self.scope.writable(col(plan.account_id))
        )
        return {
            plan_id: (account_id, budget)
            for plan_id, account_id, budget in (await self.session.exec(statement)).all()
            if plan_id is not None
        }

    async def add_to_monthly_spending(
        self, spending: Mapping[tuple[int, int, str], int]
    ) -> dict[tuple[int, int, str], int]:
        """One upsert adding each (account id, plan id, 'YYYY-MM') cost to that month of the plan; concurrent
        batches add, never overwrite. Returns each month's spending after it (RETURNING), so the caller sees a
        budget crossed by exactly the batch that crossed it.

        The plans were found in this scope by `owners_and_budgets`, so they need no filter here (an upsert has
        no WHERE to put one in)."""
        insert = upsert_insert(self.session, LeadPlanRollup)
        table = LeadPlanRollup.__table__.c  # type: ignore[attr-defined]
        statement = insert.on_conflict_do_update(
            index_elements=["lead_plan_id", "month"],
            set_={"spent_minor": table.spent_minor + insert.excluded.spent_minor},
        ).returning(table.account_id, table.lead_plan_id, table.month, table.spent_minor)
        rows = [
            {"account_id": account_id, "lead_plan_id": plan_id, "month": month, "spent_minor": cost_minor}
            for (account_id, plan_id, month), cost_minor in sorted(spending.items())
        ]
        result = await (await self.session.connection()).execute(statement, rows)
        return {(account_id, plan_id, month): spent for account_id, plan_id, month, spent in result.all()}


@cache  # built once per database kind and scope rule: every Billing page asks
def _of_accounts(dialect: str, reach: Reach) -> sqlalchemy.Select[Any]:
    account_id = col(LeadPlanSubscription.account_id)
    return (
        sqlalchemy.select(*columns(LeadPlanSubscription, LeadPlanRow._fields))
        .where(among_parameter(dialect, account_id, "ids"), reach_rule(reach, account_id))
        .order_by(col(LeadPlanSubscription.created_at), col(LeadPlanSubscription.id))
    )
