"""Usage events and their monthly rollups, for the accounts of the scope.

`record_usage` is a hot write path: each method here is one statement for a whole batch. The monthly usage is
read from the rollups these statements keep (billing/usage/summary_repository.py), never summed from events.
"""

from collections.abc import Mapping, Sequence

from sqlalchemy import insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import Select

from billing.scope import Scope
from billing.sql import among_pairs, upsert_insert
from models import UsageEvent, UsageRollup

# The key of a rollup row; every other column of a rollup row given to `add_to_rollups` is an increment.
ROLLUP_KEY = ("account_id", "month")


class UsageRepository:
    def __init__(self, session: AsyncSession, scope: Scope) -> None:
        self.session = session
        self.scope = scope

    def recorded_statement(self, pairs: set[tuple[int, str]]) -> Select[int, str]:
        """Which of these (account id, external id) pairs are stored already: a batch's duplicate check, so among
        the accounts the scope writes. Looked up a pair at a time in the unique index, however many events the
        accounts have (`among_pairs`)."""
        return select(UsageEvent.account_id, UsageEvent.external_id).where(
            among_pairs(self.session, (col(UsageEvent.account_id), col(UsageEvent.external_id)), pairs),
            self.scope.writable(col(UsageEvent.account_id)),
        )

    async def recorded(self, pairs: set[tuple[int, str]]) -> set[tuple[int, str]]:
        return set((await self.session.exec(self.recorded_statement(pairs))).all())

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
