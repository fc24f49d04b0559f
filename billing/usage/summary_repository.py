"""The usage overview's reads: monthly rollups and active lead plans' budgets, for accounts of the scope."""

from collections.abc import Iterable
from functools import cache
from typing import Any, NamedTuple

import sqlalchemy
from sqlalchemy import BigInteger, cast, func, literal
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.keys.repository import Reach, reach_rule
from billing.scope import Scope
from billing.sql import among_parameter
from models import LeadPlanStatus, LeadPlanSubscription, UsageRollup


class UsageTotals(NamedTuple):
    """An account's rollup of a month (None for the month: no rollup, zeros) with its active lead plans (count
    and monthly budgets' sum, minor units), as `UsageRollup` names its columns."""

    account_id: int
    month: str | None
    lead_spent_minor: int = 0
    leads: int = 0
    call_spent_minor: int = 0
    calls: int = 0
    call_seconds: int = 0
    ai_cost_minor: int = 0
    ai_requests: int = 0
    ai_input_tokens: int = 0
    ai_output_tokens: int = 0
    active_plans: int = 0
    plans_budget_minor: int = 0


class UsageSummaryRepository:
    def __init__(self, session: AsyncSession, scope: Scope) -> None:
        self.session = session
        self.scope = scope

    async def totals(self, account_ids: Iterable[int], months: Iterable[str]) -> list[UsageTotals]:
        """The rollups of the accounts among `account_ids` for any of `months` ('YYYY-MM'), each with its
        account's active lead plans, and a row without a month for an account with active plans and none of
        those rollups: one statement."""
        parameters = {"ids": list(account_ids), "months": list(months)}
        rows = await self.scope.rows(self.session, _totals, parameters)
        return [UsageTotals._make(row) for row in rows]


@cache  # built once per database kind and scope rule: building it cost more CPU than running it
def _totals(dialect: str, reach: Reach) -> sqlalchemy.Select[Any]:
    rollups = (
        select(UsageRollup)
        .where(
            among_parameter(dialect, col(UsageRollup.account_id), "ids"),
            among_parameter(dialect, col(UsageRollup.month), "months"),
            reach_rule(reach, col(UsageRollup.account_id)),
        )
        .subquery()
    )
    plans = (
        select(
            col(LeadPlanSubscription.account_id).label("account_id"),
            func.count(col(LeadPlanSubscription.id)).label("active"),
            # PostgreSQL sums bigints as numeric: back to an integer
            cast(func.sum(col(LeadPlanSubscription.monthly_budget_minor)), BigInteger).label("budget"),
        )
        .where(
            among_parameter(dialect, col(LeadPlanSubscription.account_id), "ids"),
            col(LeadPlanSubscription.status) == LeadPlanStatus.ACTIVE,
            reach_rule(reach, col(LeadPlanSubscription.account_id)),
        )
        .group_by(col(LeadPlanSubscription.account_id))
        .subquery()
    )
    zero = literal(0)
    return sqlalchemy.select(
        func.coalesce(rollups.c.account_id, plans.c.account_id),
        rollups.c.month,
        *(
            func.coalesce(rollups.c[name], zero)
            for name in (
                "lead_spent_minor",
                "leads",
                "call_spent_minor",
                "calls",
                "call_seconds",
                "ai_cost_minor",
                "ai_requests",
                "ai_input_tokens",
                "ai_output_tokens",
            )
        ),
        func.coalesce(plans.c.active, zero),
        func.coalesce(plans.c.budget, zero),
    ).select_from(rollups.join(plans, rollups.c.account_id == plans.c.account_id, full=True))
