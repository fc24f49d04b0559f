"""Data versions (models/data_version.py): read for a scope, raised at commit for what a transaction changed.

`DataVersionRepository.current` filters the account counters by the scope; the shared counters belong to no
account (FX rates, partners, grants, keys that act for no single account), so every scope reads all of them.
`raise_versions` runs inside the commit (billing/data_version/service.py) for whatever accounts and tables the
transaction wrote, whoever wrote them: it takes the transaction's connection, not a scope.
"""

from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import Connection, func
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.scope import Scope
from models import AccountDataVersion, SharedDataVersion


@dataclass(frozen=True)
class DataVersion:
    """What a scope may see, as of one statement: its accounts' counters (how many, their sum) and the shared
    counters' sum. Counters only grow, so any write to what the scope sees changes one of the three."""

    accounts: int
    account_sum: int
    shared_sum: int


class DataVersionRepository:
    def __init__(self, session: AsyncSession, scope: Scope) -> None:
        self.session = session
        self.scope = scope

    async def current(self) -> DataVersion:
        """One statement: an aggregate over the scope's account counters, and the shared counters' sum."""
        shared = select(func.coalesce(func.sum(SharedDataVersion.version), 0)).scalar_subquery()
        statement = select(
            func.count(col(AccountDataVersion.account_id)),
            func.coalesce(func.sum(AccountDataVersion.version), 0),
            shared,
        ).where(self.scope.accounts(col(AccountDataVersion.account_id)))
        accounts, account_sum, shared_sum = (await self.session.exec(statement)).one()
        return DataVersion(int(accounts), int(account_sum), int(shared_sum))


def raise_versions(connection: Connection, account_ids: Collection[int], tables: Collection[str]) -> None:
    """Add 1 to each account's and each named table's counter (creating it at 1), in the caller's transaction.

    Rows in sorted order, so two transactions that raise the same counters lock them in the same order and
    never deadlock on them (the counters are locked last, at commit, after everything else)."""
    insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
    if account_ids:
        accounts = insert(AccountDataVersion).values(
            [{"account_id": account_id, "version": 1} for account_id in sorted(account_ids)]
        )
        version = col(AccountDataVersion.version)
        connection.execute(
            accounts.on_conflict_do_update(index_elements=["account_id"], set_={"version": version + 1})
        )
    if tables:
        shared = insert(SharedDataVersion).values([{"name": name, "version": 1} for name in sorted(tables)])
        version = col(SharedDataVersion.version)
        connection.execute(
            shared.on_conflict_do_update(index_elements=["name"], set_={"version": version + 1})
        )
