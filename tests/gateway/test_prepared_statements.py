"""Prebuilt reads run on asyncpg itself (billing/prepared.py) return what SQLAlchemy's path returns, and fail as it
fails: the same values and types (time zones, enums, Decimal), the same typed errors, a dropped connection
invalidated."""

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy
from sqlalchemy import Enum, Executable, Float, Numeric, bindparam, cast, event, func, type_coerce
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from billing import prepared
from billing.accounts.repository import _by_ids
from billing.company.repository import _of_accounts as companies_of
from billing.db import create_engine
from billing.fx.repository import _latest_with_usd
from billing.keys.repository import _BY_PREFIX, Reach
from billing.keys.service import key_prefix
from billing.ledger.repository import HistoryPage, LedgerRepository, _history
from billing.payment_methods.repository import _of_accounts as payment_methods_of
from models import FxRate, Transaction, TransactionKind, TransactionStatus
from schema.errors import is_statement_timeout
from tests.support.factories import SYSTEM, create_account, create_company, create_payment_method, member_key

pytestmark = pytest.mark.postgres_only

# Result processing the application's statements do not need yet: an enum out of a string, a Decimal.
_ENUM = sqlalchemy.select(
    col(Transaction.id),
    type_coerce(
        col(Transaction.kind),
        Enum(TransactionKind, native_enum=False, values_callable=lambda e: [m.value for m in e]),
    ),
    col(Transaction.created_at),
).where(col(Transaction.account_id) == bindparam("account_id"))
_DECIMAL = sqlalchemy.select(cast(col(Transaction.amount_minor), Numeric(14, 2))).where(
    col(Transaction.account_id) == bindparam("account_id")
)

_SLEEP = sqlalchemy.select(func.pg_sleep(bindparam("seconds", type_=Float)))


def skip_unless_postgresql(backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("the driver path is asyncpg's; SQLite runs every statement through SQLAlchemy")


def built(statement: Executable) -> Callable[[str, Reach], Executable]:
    """`statement` as a repository's prebuilt statements are given to `Scope.rows`."""
    return lambda _dialect, _reach: statement


def typed(rows: Any) -> list[list[tuple[type, Any]]]:
    return [[(type(value), value) for value in row] for row in rows]


async def test_the_driver_path_returns_what_sqlalchemy_returns(
    session: AsyncSession, engine: AsyncEngine, backend: str
) -> None:
    skip_unless_postgresql(backend)
    account = await create_account(session)
    await create_company(session, account)
    await create_payment_method(session, account)
    key = await member_key(session, account)
    assert account.id is not None
    start = datetime(2025, 1, 1, tzinfo=UTC)
    for n, kind in enumerate(
        (TransactionKind.TOP_UP, TransactionKind.USAGE_CALLS, TransactionKind.USAGE_CALLS)
    ):
        session.add(
            Transaction(
                account_id=account.id,
                kind=kind,
                status=TransactionStatus.SUCCEEDED,
                amount_minor=-1234 * (n + 1),
                currency="USD",
                description=f"entry {n}",
                idempotency_key=f"prepared-{n}",
                created_at=start + timedelta(minutes=n),
            )
        )
    for currency, per_eur in (("USD", "1.0850"), ("GBP", "0.8560")):
        session.add(FxRate(currency=currency, rate_date=start.date(), per_eur=per_eur))
    await session.flush()
    page = HistoryPage(
        account.id,
        limit=10,
        kinds=frozenset({TransactionKind.USAGE_CALLS}),
        statuses=frozenset({TransactionStatus.SUCCEEDED}),
        since=start,
        until=start + timedelta(days=1),
        before=(start + timedelta(minutes=2), 2**31 - 1),
    )
    cases: list[tuple[Any, dict[str, Any], bool]] = [  # statement, parameters, runs on the driver
        (_by_ids("postgresql", "account"), {"ids": [account.id], "scope_account_id": account.id}, True),
        (companies_of("postgresql", "all"), {"ids": [account.id]}, True),
        (payment_methods_of("postgresql", "all"), {"ids": [account.id]}, True),
        (_BY_PREFIX, {"prefix": key_prefix(key)}, True),
        (_history("postgresql", "all", page.shape), page.parameters(), True),
        (_latest_with_usd("postgresql", bounded=True), {"currencies": ["GBP"], "on": start.date()}, True),
        (_ENUM, {"account_id": account.id}, True),
        (_DECIMAL, {"account_id": account.id}, False),  # asyncpg's Numeric processing needs the column's type
    ]
    connection = await session.connection()
    executed: list[object] = []

    def record(*args: object) -> None:
        executed.append(args[1])

    for statement, parameters, on_driver in cases:
        expected = (await connection.execute(statement, parameters)).all()
        assert expected  # each case finds rows, so their values are compared
        event.listen(engine.sync_engine, "before_execute", record)
        try:
            # The repositories' way in: the driver when it can, else SQLAlchemy.
            rows = await SYSTEM.rows(session, built(statement), parameters)
        finally:
            event.remove(engine.sync_engine, "before_execute", record)
        assert typed(rows) == typed(expected)
        assert [row._fields for row in rows] == [row._fields for row in expected]
        assert executed == ([] if on_driver else [statement])  # the driver path skips Connection.execute
        executed.clear()
    history = await LedgerRepository(session, SYSTEM).history_rows(page)
    assert [entry.kind for entry in history] == ["usage_calls", "usage_calls"]
    assert all(entry.created_at.tzinfo is not None for entry in history)
    [(_, kind, created_at), *_] = await SYSTEM.rows(session, built(_ENUM), {"account_id": account.id})
    assert kind is TransactionKind.TOP_UP
    assert created_at == start
    [(amount,), *_] = await SYSTEM.rows(session, built(_DECIMAL), {"account_id": account.id})
    assert amount == Decimal("-1234.00")


async def raised(session: AsyncSession, run: Callable[[], Awaitable[object]]) -> BaseException:
    """What `run` raises with a 10 ms statement timeout, inside a savepoint rolled back afterwards."""
    connection = await session.connection()
    savepoint = await connection.begin_nested()
    await connection.exec_driver_sql("SET LOCAL statement_timeout = '10ms'")
    with pytest.raises(DBAPIError) as failure:
        await run()
    await savepoint.rollback()
    return failure.value


async def test_a_statement_timeout_on_the_driver_path_is_typed_as_on_sqlalchemys(
    session: AsyncSession, backend: str
) -> None:
    skip_unless_postgresql(backend)
    connection = await session.connection()
    through_sqlalchemy = await raised(session, lambda: connection.execute(_SLEEP, {"seconds": 5}))
    on_the_driver = await raised(session, lambda: prepared.rows(connection, _SLEEP, {"seconds": 5}))
    assert type(on_the_driver) is type(through_sqlalchemy)
    assert type(on_the_driver.orig) is type(through_sqlalchemy.orig)  # type: ignore[attr-defined]
    assert is_statement_timeout(on_the_driver)
    assert not on_the_driver.connection_invalidated  # type: ignore[attr-defined]


async def test_a_connection_the_server_dropped_is_invalidated(engine: AsyncEngine, backend: str) -> None:
    skip_unless_postgresql(backend)
    # An engine as the application makes it: data versions' rollback listener skips an invalidated connection
    # (reading its `info` would raise PendingRollbackError instead of the error that reports the loss).
    plain = create_engine(engine.url.render_as_string(hide_password=False))
    try:
        async with plain.connect() as connection, plain.connect() as other:
            pid = (await connection.exec_driver_sql("SELECT pg_backend_pid()")).scalar_one()
            await other.execute(sqlalchemy.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            with pytest.raises(DBAPIError) as failure:
                await prepared.rows(connection, _SLEEP, {"seconds": 0})
            assert failure.value.connection_invalidated
            assert connection.invalidated
    finally:
        await plain.dispose()
