"""The usage overview of the Billing page: a month's lead spending, calling and AI agent usage per account.

Read from the monthly rollups, never summed over raw events, so it costs the same at any volume: two
statements (the accounts, their rollups with their active lead plans) for any number of accounts.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from billing.accounts.repository import AccountRepository, ShownAccount
from billing.keys.service import Principal
from billing.months import Month, month_of
from billing.scope import Scope
from billing.usage.summary_repository import UsageSummaryRepository, UsageTotals
from models.types import utcnow


@dataclass(frozen=True)
class LeadSpending:
    spent_minor: int
    leads: int
    active_subscriptions: int
    # The active plans' monthly budgets minus this month's lead spending, never below zero.
    remaining_budget_minor: int


@dataclass(frozen=True)
class CallingUsage:
    spent_minor: int
    calls: int
    seconds: int

    @property
    def minutes(self) -> int:
        """Minutes used, a started minute counting as one."""
        return -(-self.seconds // 60)


@dataclass(frozen=True)
class AiAgentUsage:
    cost_minor: int
    requests: int
    input_tokens: int
    output_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True)
class UsageSummary:
    account_id: int
    month: Month
    currency: str
    leads: LeadSpending
    calling: CallingUsage
    ai_agent: AiAgentUsage


async def monthly_summaries(
    session: AsyncSession,
    principal: Principal,
    account_ids: Sequence[int],
    month: Month | None = None,
    *,
    now: datetime | None = None,
) -> dict[int, UsageSummary]:
    """Summaries of `month` (default: each account's current month in its own time zone) for the accounts
    the principal may see; others are left out. Active subscriptions and remaining budget use today's plans.
    """
    scope = Scope.of(principal)
    accounts = await AccountRepository(session, scope).rows_by_ids(account_ids)
    return await summaries_of(session, scope, list(accounts.values()), month, now=now)


async def summaries_of(
    session: AsyncSession,
    scope: Scope,
    accounts: Sequence[ShownAccount],
    month: Month | None = None,
    *,
    now: datetime | None = None,
) -> dict[int, UsageSummary]:
    """`monthly_summaries` for account rows the caller has already read within `scope` (the GraphQL account
    it resolves `usage` on), so the account is not selected a second time."""
    now = now or utcnow()
    found = {account.id: account for account in accounts if account.id is not None}
    if not found:
        return {}
    months = {account_id: month or month_of(now, account.time_zone) for account_id, account in found.items()}
    totals = await UsageSummaryRepository(session, scope).totals(found, {str(m) for m in months.values()})
    plans = {row.account_id: (row.active_plans, row.plans_budget_minor) for row in totals}
    rollups = {row.account_id: row for row in totals if row.month == str(months[row.account_id])}
    return {
        account_id: _summary(
            account, months[account_id], rollups.get(account_id), plans.get(account_id, (0, 0))
        )
        for account_id, account in found.items()
    }


def _summary(
    account: ShownAccount, month: Month, rollup: UsageTotals | None, plans: tuple[int, int]
) -> UsageSummary:
    assert account.id is not None
    row = rollup or UsageTotals(account.id, None)
    active, budget = plans
    return UsageSummary(
        account_id=account.id,
        month=month,
        currency=account.currency,
        leads=LeadSpending(
            spent_minor=row.lead_spent_minor,
            leads=row.leads,
            active_subscriptions=active,
            remaining_budget_minor=max(0, budget - row.lead_spent_minor),
        ),
        calling=CallingUsage(spent_minor=row.call_spent_minor, calls=row.calls, seconds=row.call_seconds),
        ai_agent=AiAgentUsage(
            cost_minor=row.ai_cost_minor,
            requests=row.ai_requests,
            input_tokens=row.ai_input_tokens,
            output_tokens=row.ai_output_tokens,
        ),
    )
