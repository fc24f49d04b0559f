"""Usage events and their monthly rollups, for the accounts of the scope.

`record_usage` is a hot write path: each method here is one statement for a whole batch. The monthly usage is
read from the rollups these statements keep (billing/usage/summary_repository.py), never summed from events.
"""

from collections.abc import Mapping, Sequence

from sqlalchemy import insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.scope import Scope
from billing.sql import among, upsert_insert
from models import UsageEvent, UsageRollup

# The key of a rollup row; every other column of a rollup row given to `add_to_rollups` is an increment.
ROLLUP_KEY = ("account_id", "month")


class UsageRepository:
    def __init__(self, session: AsyncSession, scope: Scope) -> None:
        self.session = session
        self.scope = scope

    async def recorded(self, account_ids: set[int], external_ids: set[str]) -> set[tuple[int, str]]:
        """(account id, external id) of the stored events among these accounts and external ids (a superset
        of the pairs a batch asks about: the caller keeps the pairs it sent). A batch's duplicate check, so among
        the accounts the scope writes. Arrays on PostgreSQL (`among`): a batch's thousand external ids bound one
        by one took 25 ms a batch, as one array parameter a few."""
        statement = select(UsageEvent.account_id, UsageEvent.external_id).where(
            among(self.session, col(UsageEvent.account_id), account_ids),
            among(self.session, col(UsageEvent.external_id), external_ids),
            self.scope.writable(col(UsageEvent.account_id)),
        )
        return set((await self.session.exec(statement)).all())

    async def insert_events(self, rows: Sequence[Mapping[str, object]]) -> None:
        """One bulk INSERT of the batch's new events; their accounts were locked by the ledger for this scope."""
        await (await self.session.connection()).execute(insert(UsageEvent), rows)

    async def add_to_rollups(self, rows: Sequence[Mapping[str, object]]) -> None:
        """One upsert adding each row's increments to its (account id, month) rollup; concurrent batches add,
        never overwrite.

        The rows' accounts were locked by the ledger for this scope, so they need no filter here (an upsert
        has no WHERE to put one in)."""
        statement = upsert_insert(self.session, UsageRollup)
        table = UsageRollup.__table__.c  # type: ignore[attr-defined]
        increments = [name for name in rows[0] if name not in ROLLUP_KEY]
        statement = statement.on_conflict_do_update(
            index_elements=list(ROLLUP_KEY),
            set_={name: table[name] + statement.excluded[name] for name in increments},
        )
        await (await self.session.connection()).execute(statement, rows)
