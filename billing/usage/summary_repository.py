"""The usage overview's reads: monthly rollups and active lead plans' budgets, for accounts of the scope."""

from collections.abc import Iterable

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.scope import Scope
from billing.sql import among
from models import LeadPlanStatus, LeadPlanSubscription, UsageRollup


class UsageSummaryRepository:
    def __init__(self, session: AsyncSession, scope: Scope) -> None:
        self.session = session
        self.scope = scope

    async def rollups(self, account_ids: Iterable[int], months: Iterable[str]) -> list[UsageRollup]:
        """The rollups of the accounts among `account_ids` for any of `months` ('YYYY-MM')."""
        statement = select(UsageRollup).where(
            among(self.session, col(UsageRollup.account_id), account_ids),
            among(self.session, col(UsageRollup.month), months),
            self.scope.accounts(col(UsageRollup.account_id)),
        )
        return list((await self.session.exec(statement)).all())

    async def active_lead_plans(self, account_ids: Iterable[int]) -> dict[int, tuple[int, int]]:
        """Per account: how many lead plans are active, and their monthly budgets' sum (minor units)."""
        statement = (
            select(
                LeadPlanSubscription.account_id,
                func.count(col(LeadPlanSubscription.id)),
                func.coalesce(func.sum(LeadPlanSubscription.monthly_budget_minor), 0),
            )
            .where(
                among(self.session, col(LeadPlanSubscription.account_id), account_ids),
                LeadPlanSubscription.status == LeadPlanStatus.ACTIVE,
                self.scope.accounts(col(LeadPlanSubscription.account_id)),
            )
            .group_by(col(LeadPlanSubscription.account_id))
        )
        rows = (await self.session.exec(statement)).all()
        return {account_id: (int(count), int(budget)) for account_id, count, budget in rows}
