"""billing/db.py's read sessions: on PostgreSQL their statements run without a transaction around them (no BEGIN
and ROLLBACK round trips); a session bound to a connection already in a transaction reads inside it."""

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.db import SessionFactory, read_session, session_factory
from tests.support.factories import create_account


async def test_a_read_session_on_postgresql_runs_each_statement_on_its_own(
    committing_engine: AsyncEngine,
) -> None:
    async with read_session(session_factory(committing_engine)) as session:
        # now() is the start of the current transaction: the same for every statement of one transaction.
        first = (await session.exec(text("SELECT now()"))).one()  # type: ignore[call-overload]
        await session.exec(text("SELECT pg_sleep(0.02)"))  # type: ignore[call-overload]
        second = (await session.exec(text("SELECT now()"))).one()  # type: ignore[call-overload]
        assert first != second


async def test_a_read_session_on_a_connection_in_a_transaction_reads_inside_it(
    session: AsyncSession, session_factory: SessionFactory, backend: str
) -> None:
    account = await create_account(session)  # flushed into the test's transaction, never committed
    async with read_session(session_factory) as reading:
        found = (await reading.exec(text(f"SELECT name FROM account WHERE id = {account.id}"))).all()  # type: ignore[call-overload]
    assert [row[0] for row in found] == [account.name]


async def test_a_read_session_on_sqlite_is_a_deferred_transaction(engine: AsyncEngine, backend: str) -> None:
    if backend != "sqlite":
        pytest.skip("SQLite's way of letting reads run beside a writer")
    async with read_session(session_factory(engine)) as session:
        await session.exec(text("SELECT 1"))  # type: ignore[call-overload]
        assert (await session.connection()).in_transaction()
