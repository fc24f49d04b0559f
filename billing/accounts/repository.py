"""Accounts within a scope: by id, a page of them, a row that belongs to one, partner grants, funding inputs."""

from collections.abc import Iterable
from typing import Any, Protocol, TypeVar

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.scope import Scope
from billing.sql import among, upsert_insert
from models import Account, PartnerAccount


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

    async def page(self, *, first: int, after_id: int | None) -> list[Account]:
        """Up to `first` accounts in scope by id, after `after_id`: one more when there is a next page."""
        statement = select(Account).where(self.scope.accounts(col(Account.id)))
        if after_id is not None:
            statement = statement.where(col(Account.id) > after_id)
        return list((await self.session.exec(statement.order_by(col(Account.id)).limit(first + 1))).all())

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
