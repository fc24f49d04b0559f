"""Lead plan subscriptions of the accounts of the scope."""

from collections.abc import Iterable

from sqlalchemy import and_, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.repositories.scope import Scope
from billing.sql import among
from models import LeadPlanStatus, LeadPlanSubscription


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

    async def of_accounts(self, account_ids: Iterable[int]) -> list[LeadPlanSubscription]:
        """The plans of the accounts among `account_ids`, oldest first (one statement: the dataloader's batch)."""
        statement = (
            select(LeadPlanSubscription)
            .where(
                among(self.session, col(LeadPlanSubscription.account_id), account_ids),
                self.scope.accounts(col(LeadPlanSubscription.account_id)),
            )
            .order_by(col(LeadPlanSubscription.created_at), col(LeadPlanSubscription.id))
        )
        return list((await self.session.exec(statement)).all())

    async def has_active(self, account_id: int) -> bool:
        """Whether the account has an active plan."""
        statement = select(LeadPlanSubscription.id).where(
            LeadPlanSubscription.account_id == account_id,
            LeadPlanSubscription.status == LeadPlanStatus.ACTIVE,
            self.scope.accounts(col(LeadPlanSubscription.account_id)),
        )
        return (await self.session.exec(statement.limit(1))).first() is not None

    async def named_or_active(
        self, plan_ids: set[int], account_ids: set[int]
    ) -> list[tuple[int, int, str, int]]:
        """(id, account id, status, monthly budget) of the plans among `plan_ids` and of the active plans of
        the accounts among `account_ids`, in one statement (a usage batch's plan check and budgets)."""
        plan = LeadPlanSubscription
        statement = select(plan.id, plan.account_id, plan.status, plan.monthly_budget_minor).where(
            or_(
                col(plan.id).in_(plan_ids),
                and_(col(plan.account_id).in_(account_ids), col(plan.status) == LeadPlanStatus.ACTIVE),
            ),
            self.scope.accounts(col(plan.account_id)),
        )
        return [
            (plan_id, account_id, status, budget)
            for plan_id, account_id, status, budget in (await self.session.exec(statement)).all()
            if plan_id is not None
        ]
