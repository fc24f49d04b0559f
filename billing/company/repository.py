"""The company profile of an account (one row per account, keyed by the account id)."""

from collections.abc import Iterable
from datetime import datetime
from functools import cache
from typing import Any, NamedTuple

import sqlalchemy
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.keys.repository import Reach, reach_rule
from billing.scope import Scope
from billing.sql import among_parameter, columns
from models import Company


class CompanyRow(NamedTuple):
    """A company profile as read for showing it: `Company`'s columns, without an ORM entity."""

    account_id: int
    legal_name: str | None
    registration_number: str | None
    vat_id: str | None
    phone: str | None
    address_line1: str | None
    address_line2: str | None
    city: str | None
    postal_code: str | None
    region: str | None
    country: str | None
    updated_at: datetime


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

    async def of_accounts(self, account_ids: Iterable[int]) -> dict[int, CompanyRow]:
        """The company profiles of the accounts among `account_ids` (one statement: the dataloader's batch)."""
        rows = await self.scope.rows(self.session, _of_accounts, {"ids": list(account_ids)})
        return {row.account_id: CompanyRow._make(row) for row in rows}


@cache  # built once per database kind and scope rule: every Billing page and dashboard asks
def _of_accounts(dialect: str, reach: Reach) -> sqlalchemy.Select[Any]:
    account_id = col(Company.account_id)
    return sqlalchemy.select(*columns(Company, CompanyRow._fields)).where(
        among_parameter(dialect, account_id, "ids"), reach_rule(reach, account_id)
    )
