"""How many sessions a GraphQL request opens, and how many at once (server.py, billing/db.SharedRead).

A registered query's key check, data version and reads share one session; any other operation gets the key check's
session back to the pool before it runs (a mutation may wait on Stripe), so no request holds two at a time.
"""

from types import TracebackType
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from bench.operations import BILLING_PAGE
from billing.config import Settings
from billing.db import SessionFactory
from billing.stripe_gateway import StripeGateway
from tests.support.factories import create_account, create_company, create_payment_method, member_key
from tests.support.gateway import open_gateway
from tests.support.graphql_client import execute, post_graphql
from tests.support.stripe_server import stripe_settings

UPDATE_COMPANY = """
mutation ($input: UpdateCompanyInput!) { updateCompany(input: $input) { __typename ... on Error { message } } }
"""
COMPANY = {
    "legalName": "Acme GmbH",
    "registrationNumber": "HRB 12345",
    "phone": "030 123456",
    "address": {"line1": "Unter den Linden 1", "city": "Berlin", "postalCode": "10117", "country": "DE"},
}


class CountedSessions:
    """A session factory that counts the sessions it opens and the most open at once."""

    def __init__(self, factory: SessionFactory) -> None:
        self.factory = factory
        self.kw = factory.kw
        self.opened = 0
        self.open = 0
        self.most_open = 0

    def __call__(self, **options: Any) -> "_Counted":
        return _Counted(self, self.factory(**options))

    def reset(self) -> None:
        self.opened = self.most_open = 0


class _Counted:
    def __init__(self, owner: CountedSessions, session: AsyncSession) -> None:
        self.owner, self.session = owner, session

    async def __aenter__(self) -> AsyncSession:
        owner = self.owner
        owner.opened += 1
        owner.open += 1
        owner.most_open = max(owner.most_open, owner.open)
        return await self.session.__aenter__()

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.owner.open -= 1
        await self.session.__aexit__(kind, error, trace)


async def test_a_registered_query_reads_in_its_key_checks_session(
    session: AsyncSession, session_factory: SessionFactory, settings: Settings
) -> None:
    account = await create_account(session)
    await create_company(session, account)
    await create_payment_method(session, account)
    key = await member_key(session, account)
    counted = CountedSessions(session_factory)
    async with open_gateway(settings, counted) as client:  # type: ignore[arg-type]  # a counting factory
        registered = await execute(client, key, BILLING_PAGE)
        assert registered["data"]["account"]["paymentMethods"], registered
        assert (counted.opened, counted.open) == (1, 0)

        # The same query unregistered (its text differs): the key check's session is closed before it runs.
        counted.reset()
        unregistered = await execute(client, key, BILLING_PAGE + "\n")
        assert unregistered == registered
        assert (counted.opened, counted.most_open, counted.open) == (2, 1, 0)


async def test_a_mutation_runs_after_the_key_checks_session_is_closed(
    session: AsyncSession,
    session_factory: SessionFactory,
    localstripe_url: str,
    stripe_gateway: StripeGateway,
) -> None:
    """updateCompany saves the company to Stripe's customer (localstripe) between its units of work."""
    account = await create_account(session)
    key = await member_key(session, account)
    counted = CountedSessions(session_factory)
    settings = stripe_settings(localstripe_url)
    async with open_gateway(settings, counted, stripe=stripe_gateway) as client:  # type: ignore[arg-type]
        answer = await execute(client, key, UPDATE_COMPANY, {"input": COMPANY})
        assert answer["data"]["updateCompany"]["__typename"] == "UpdateCompanySuccess", answer
    assert counted.opened >= 2 and counted.most_open == 1 and counted.open == 0


async def test_a_refused_key_leaves_no_session_open(
    session_factory: SessionFactory, settings: Settings
) -> None:
    counted = CountedSessions(session_factory)
    async with open_gateway(settings, counted) as client:  # type: ignore[arg-type]
        response = await post_graphql(client, "bk_0123456789ab_not-a-real-secret", BILLING_PAGE)
        assert response.status_code == 401
        malformed = await client.post(
            "/graphql",
            content=b"{",
            headers={"Content-Type": "application/json", "Authorization": "Bearer x"},
        )
        assert malformed.status_code == 400  # the body is read (and refused) before the key is looked up
    assert (counted.opened, counted.open) == (1, 0)
