"""Usage events and their monthly rollups, for the accounts of the scope.

`record_usage` is a hot write path: each method here is one statement for a whole batch. The monthly usage is
read from the rollups these statements keep (billing/usage/summary_repository.py), never summed from events.
"""

from collections.abc import Mapping, Sequence

from sqlalchemy import ColumnElement, Integer, String, bindparam, func, insert, tuple_
from sqlalchemy.dialects import postgresql
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import Select

from billing.scope import Scope
from billing.sql import upsert_insert
from models import UsageEvent, UsageRollup

# The key of a rollup row; every other column of a rollup row given to `add_to_rollups` is an increment.
ROLLUP_KEY = ("account_id", "month")


def _pairs_stored(session: AsyncSession, pairs: set[tuple[int, str]]) -> ColumnElement[bool]:
    """`(account_id, external_id) IN pairs`. On PostgreSQL the pairs are two arrays unnested side by side, which
    the planner joins to the unique index a pair at a time; `account_id = ANY(..) AND external_id = ANY(..)`
    only bounds the index by the account and filters the rest, reading every event of those accounts (a batch's
    check on the benchmark's account of 739,000 events: 250 ms, now 5). SQLite has no arrays: row values."""
    key = tuple_(col(UsageEvent.account_id), col(UsageEvent.external_id))
    if session.get_bind().dialect.name != "postgresql":
        return key.in_(list(pairs))
    ordered = list(pairs)
    given = (
        func.unnest(
            bindparam(None, [account for account, _ in ordered], type_=postgresql.ARRAY(Integer)),
            bindparam(None, [external for _, external in ordered], type_=postgresql.ARRAY(String)),
        )
        .table_valued("account_id", "external_id")
        .render_derived()
    )
    return key.in_(select(given.c.account_id, given.c.external_id))


class UsageRepository:
    def __init__(self, session: AsyncSession, scope: Scope) -> None:
        self.session = session
        self.scope = scope

    def recorded_statement(self, pairs: set[tuple[int, str]]) -> Select[int, str]:
        """Which of these (account id, external id) pairs are stored already: a batch's duplicate check, so among
        the accounts the scope writes. Looked up a pair at a time in the unique index, however many events the
        accounts have (`_pairs_stored`)."""
        return select(UsageEvent.account_id, UsageEvent.external_id).where(
            _pairs_stored(self.session, pairs),
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
