"""How a query runs: its reads share one session, and the parts of its accounts cost no task per field."""

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from tests.support.dashboard import DASHBOARD, partner_with_accounts
from tests.support.factories import (
    create_account,
    create_company,
    create_payment_method,
    member_key,
    partner_key,
)
from tests.support.graphql_client import execute
from tests.support.statements import recorded_statements

BILLING_PAGE = """
{
  account {
    name
    balance { available { formatted } usdEquivalent { formatted } }
    company { legalName }
    canAddFunds { ready }
    paymentMethods { last4 }
    leadPlans { name }
    usage { month calling { minutes } }
    transactions(first: 5) { edges { node { id } } }
  }
}
"""


@contextmanager
def counted_tasks() -> Iterator[list[int]]:
    """[asyncio tasks created on this loop while the block runs]."""
    loop = asyncio.get_running_loop()
    count = [0]
    previous = loop.get_task_factory()

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> "asyncio.Task[Any]":
        count[0] += 1
        return asyncio.Task(coro, loop=loop, **kwargs)

    loop.set_task_factory(factory)
    try:
        yield count
    finally:
        loop.set_task_factory(previous)


async def test_the_dashboard_creates_as_many_tasks_for_50_accounts_as_for_one(
    session: AsyncSession, client: httpx.AsyncClient
) -> None:
    """The accounts' company, balance, cards, usage... are fetched with the page, not awaited field by field."""
    tasks = {}
    for size in (1, 50):
        key = await partner_key(session, await partner_with_accounts(session, size))
        await session.commit()  # releases the savepoint so the app's session sees the rows
        with counted_tasks() as count:
            body = await execute(client, key, DASHBOARD)
        assert "errors" not in body, body
        assert len(body["data"]["accounts"]["edges"]) == size
        tasks[size] = count[0]
    assert tasks[1] == tasks[50], tasks


async def test_a_query_reads_in_one_session(
    session: AsyncSession, client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    """The Billing page's reads (the account, its parts, its history) open as many sessions (each a savepoint
    of the test's transaction here) as a query that reads the account alone."""
    account = await create_account(session, currency="EUR", country="DE")
    await create_company(session, account)
    await create_payment_method(session, account)
    key = await member_key(session, account)
    await session.commit()  # releases the savepoint so the app's session sees the rows
    sessions = {}
    for name, query in (("account alone", "{ account { name } }"), ("Billing page", BILLING_PAGE)):
        with recorded_statements(engine) as statements:
            body = await execute(client, key, query)
        assert "errors" not in body, body
        sessions[name] = len([s for s in statements if s.startswith("SAVEPOINT")])
    assert sessions["Billing page"] == sessions["account alone"], sessions
