"""The company profile of an account (one row per account, keyed by the account id)."""

from collections.abc import Iterable

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.scope import Scope
from billing.sql import among
from models import Company


class CompanyRepository:
    def __init__(self, session: AsyncSession, scope: Scope) -> None:
        self.session = session
        self.scope = scope

    async def of_account(self, account_id: int) -> Company | None:
        if self.scope.principal is None:
            return await self.session.get(Company, account_id)  # the identity map may answer
        statement = select(Company).where(
            col(Company.account_id) == account_id, self.scope.accounts(col(Company.account_id))
        )
        return (await self.session.exec(statement)).first()

    def add(self, company: Company) -> None:
        self.session.add(company)

    async def of_accounts(self, account_ids: Iterable[int]) -> dict[int, Company]:
        """The company profiles of the accounts among `account_ids` (one statement: the dataloader's batch)."""
        statement = select(Company).where(
            among(self.session, col(Company.account_id), account_ids),
            self.scope.accounts(col(Company.account_id)),
        )
        return {row.account_id: row for row in (await self.session.exec(statement)).all()}
