"""A partner dashboard over N accounts runs the same number of SQL statements for every N (dataloaders)."""

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from tests.support.dashboard import DASHBOARD, partner_with_accounts
from tests.support.factories import (
    create_account,
    member_key,
    partner_key,
)
from tests.support.graphql_client import execute
from tests.support.statements import recorded_statements


async def test_dashboard_statements_do_not_grow_with_accounts(
    session: AsyncSession, client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    counts = {}
    for size in (1, 10, 50):
        key = await partner_key(session, await partner_with_accounts(session, size))
        await session.commit()  # releases the savepoint so the app's session sees the rows
        with recorded_statements(engine) as statements:
            body = await execute(client, key, DASHBOARD)
        assert "errors" not in body, body
        assert len(body["data"]["accounts"]["edges"]) == size
        counts[size] = len([s for s in statements if not s.startswith(("SAVEPOINT", "RELEASE", "ROLLBACK"))])
    assert counts[1] == counts[10] == counts[50], counts


USAGE_OVERVIEW = "{ account { name usage { month calling { minutes } } } }"


async def test_usage_overview_selects_the_account_once(
    session: AsyncSession, client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    """`usage` reuses the account row `account` read (and scoped) instead of selecting it again."""
    account = await create_account(session, currency="EUR", country="DE")
    key = await member_key(session, account)
    await session.commit()  # releases the savepoint so the app's session sees the rows
    with recorded_statements(engine) as statements:
        body = await execute(client, key, USAGE_OVERVIEW)
    assert "errors" not in body, body
    assert body["data"]["account"]["usage"]["calling"]["minutes"] == "0"
    account_selects = [s for s in statements if s.lstrip().startswith("SELECT") and "\nFROM account" in s]
    assert len(account_selects) == 1, account_selects


# The dashboard reads whose id lists are bound as one array on PostgreSQL (`= ANY($1)`), by the table they read.
ARRAY_BOUND_TABLES = (
    "account",
    "company",
    "payment_method",
    "lead_plan_subscription",
    "usage_rollup",
    "fx_rate",
)


async def test_dashboard_id_lists_are_one_parameter_on_postgresql(
    session: AsyncSession, client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    """The same statement text for 1 and 10 accounts: PostgreSQL prepares each once, whatever the page size."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no arrays: an IN list there")
    texts = {}
    for size in (1, 10):
        key = await partner_key(session, await partner_with_accounts(session, size))
        await session.commit()  # releases the savepoint so the app's session sees the rows
        with recorded_statements(engine) as statements:
            body = await execute(client, key, DASHBOARD)
        assert "errors" not in body, body
        texts[size] = {
            table: sorted(s for s in statements if s.lstrip().startswith("SELECT") and f"\nFROM {table}" in s)
            for table in ARRAY_BOUND_TABLES
        }
    assert all(texts[1][table] for table in ARRAY_BOUND_TABLES), texts[1]
    assert texts[1] == texts[10]
