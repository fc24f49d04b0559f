"""Accounts within a scope: by id, a page of them, a row that belongs to one, partner grants, funding inputs."""

from collections.abc import Iterable
from datetime import datetime
from functools import cache
from typing import Any, NamedTuple, Protocol, TypeAlias, TypeVar

import sqlalchemy
from sqlalchemy import bindparam
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.keys.repository import Reach, reach_rule
from billing.scope import Scope
from billing.sql import among, among_parameter, columns, upsert_insert
from models import Account, PartnerAccount


class AccountRow(NamedTuple):
    """An account as read for showing it: `Account`'s columns, without an ORM entity (write paths, which change
    the row, read it through `by_ids`)."""

    id: int
    name: str
    currency: str
    country: str
    time_zone: str
    stripe_customer_id: str | None
    balance_minor: int
    created_at: datetime


# An account to show: a row read for it, or the entity a path that also reads a row of the account holds.
ShownAccount: TypeAlias = Account | AccountRow


class OwnedByAccount(Protocol):
    id: int | None
    account_id: int


OwnedT = TypeVar("OwnedT", bound=OwnedByAccount)


class AccountRepository:
    def __init__(self, session: AsyncSession, scope: Scope) -> None:
        self.session = session
        self.scope = scope

    async def by_ids(self, ids: Iterable[int]) -> dict[int, Account]:
        """The accounts among `ids` in scope; the others (missing or not in scope) are left out."""
        statement = select(Account).where(
            among(self.session, col(Account.id), ids), self.scope.accounts(col(Account.id))
        )
        return {
            account.id: account
            for account in (await self.session.exec(statement)).all()
            if account.id is not None
        }

    async def rows_by_ids(self, ids: Iterable[int]) -> dict[int, AccountRow]:
        """`by_ids` as rows, for reading only."""
        rows = await self.scope.rows(self.session, _by_ids, {"ids": list(ids)})
        return {row.id: AccountRow._make(row) for row in rows}

    async def page(self, *, first: int, after_id: int | None) -> list[AccountRow]:
        """Up to `first` accounts in scope by id, after `after_id`: one more when there is a next page."""
        parameters = {"after_id": 0 if after_id is None else after_id, "limit": first + 1}  # ids start at 1
        return [AccountRow._make(row) for row in await self.scope.rows(self.session, _page, parameters)]

    async def owned(self, model: type[OwnedT], pk: int) -> tuple[OwnedT, Account] | None:
        """A row that belongs to an account (a card, a transaction, a lead plan) with its account, if in scope."""
        table: Any = model
        statement = (
            select(table, Account)
            .join(Account, col(Account.id) == table.account_id)
            .where(table.id == pk, self.scope.accounts(col(Account.id)))
        )
        found = (await self.session.exec(statement)).first()
        if found is None:
            return None
        row, account = found
        return row, account

    async def balances(self, ids: Iterable[int]) -> dict[int, int]:
        """Balances (minor units) of the accounts among `ids` in scope."""
        statement = select(Account.id, Account.balance_minor).where(
            among(self.session, col(Account.id), ids), self.scope.accounts(col(Account.id))
        )
        rows = (await self.session.exec(statement)).all()
        return {account_id: balance for account_id, balance in rows if account_id is not None}

    async def grant_partner(self, partner_id: int, account_id: int) -> bool:
        """Let a partner see an account in scope (granting it again changes nothing); False if there is none."""
        if not await self.by_ids([account_id]):
            return False
        grant = upsert_insert(self.session, PartnerAccount).on_conflict_do_nothing()
        await (await self.session.connection()).execute(
            grant, {"partner_id": partner_id, "account_id": account_id}
        )
        return True


# Built once per database kind and scope rule: every query of an account reads it first.
@cache
def _by_ids(dialect: str, reach: Reach) -> sqlalchemy.Select[Any]:
    account_id = col(Account.id)
    return sqlalchemy.select(*columns(Account, AccountRow._fields)).where(
        among_parameter(dialect, account_id, "ids"), reach_rule(reach, account_id)
    )


@cache
def _page(dialect: str, reach: Reach) -> sqlalchemy.Select[Any]:
    account_id = col(Account.id)
    return (
        sqlalchemy.select(*columns(Account, AccountRow._fields))
        .where(reach_rule(reach, account_id), account_id > bindparam("after_id"))
        .order_by(account_id)
        .limit(bindparam("limit"))
    )
