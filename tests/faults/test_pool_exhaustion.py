"""Pool exhaustion (issue 7): more concurrent addFunds than the gateway has connections, with a slow Stripe.

Every answer is a member of AddFundsPayload or a 503 with Retry-After (never a 500, never a key reported
invalid because of load), and none waits much longer than Stripe itself. More top-ups succeed at once than
there are connections, which is only possible when no request holds one while Stripe answers.

PostgreSQL with the gateway's own engine (pool settings from Settings), not the test's rolled-back connection;
Stripe is a stub at the HTTP layer (tests/support/slow_stripe.py) because localstripe cannot be slowed down.
"""

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from billing.config import Environment
from billing.db import session_factory, unit_of_work
from models import Transaction, TransactionStatus
from schema.node import from_global_id, to_global_id
from tests.support.factories import create_account, create_company, create_payment_method, member_key
from tests.support.gateway import open_gateway
from tests.support.graphql_client import post_graphql
from tests.support.ledger_checks import checked_balance
from tests.support.payload_unions import union_members
from tests.support.slow_stripe import slow_stripe
from tests.support.stripe_server import stripe_settings

POOL_SIZE = 2
MAX_OVERFLOW = 1
POOL_TIMEOUT_SECONDS = 1.0
STRIPE_LATENCY_SECONDS = 1.5
REQUESTS = 24
ACCOUNTS = 4
# "A few seconds beyond Stripe's own delay": a request stalled on the pool (the bug: 30 s) is far beyond it.
LATE_AFTER_SECONDS = STRIPE_LATENCY_SECONDS + POOL_TIMEOUT_SECONDS + 5.0

ADD_FUNDS = """
mutation ($input: AddFundsInput!) {
  addFunds(input: $input) {
    __typename
    ... on AddFundsSuccess { status transaction { id } }
    ... on Error { message }
  }
}
"""


async def timed_add_funds(
    client: httpx.AsyncClient, key: str, card_id: int, number: int
) -> tuple[float, httpx.Response]:
    variables = {
        "input": {
            "paymentMethodId": to_global_id("PaymentMethod", card_id),
            "amount": "25.00",
            "idempotencyKey": f"pool-{number}",
        }
    }
    started = asyncio.get_running_loop().time()
    response = await post_graphql(client, key, ADD_FUNDS, variables)
    return asyncio.get_running_loop().time() - started, response


def payload_or_shed(response: httpx.Response) -> dict[str, Any] | None:
    """The addFunds payload of a GraphQL answer, or None for a 503 shed; anything else fails the test."""
    if response.status_code == 503:
        assert response.headers.get("retry-after"), response.text
        return None
    assert response.status_code == 200, f"{response.status_code}: {response.text}"
    body = response.json()
    assert not body.get("errors"), body
    payload: dict[str, Any] = body["data"]["addFunds"]
    assert payload["__typename"] in union_members("AddFundsPayload"), payload
    return payload


@pytest.mark.postgres_only
async def test_more_concurrent_top_ups_than_connections_are_answered_or_shed_quickly(
    committing_engine: AsyncEngine,
) -> None:
    callers = []
    async with unit_of_work(session_factory(committing_engine)) as session:
        for index in range(ACCOUNTS):
            account = await create_account(session)
            account.stripe_customer_id = f"cus_pool_{index}"
            await create_company(session, account)
            card = await create_payment_method(session, account)
            assert card.id is not None
            callers.append((account, await member_key(session, account), card.id))

    async with slow_stripe(STRIPE_LATENCY_SECONDS) as (stripe_url, stripe):
        settings = stripe_settings(
            stripe_url,
            environment=Environment.TEST,
            database_url=committing_engine.url.render_as_string(hide_password=False),
            db_pool_size=POOL_SIZE,
            db_max_overflow=MAX_OVERFLOW,
            db_pool_timeout_seconds=POOL_TIMEOUT_SECONDS,
        )
        async with open_gateway(settings, request_timeout=60) as client:
            answers = await asyncio.gather(
                *(
                    timed_add_funds(client, key, card_id, number)
                    for number in range(REQUESTS)
                    for _, key, card_id in [callers[number % ACCOUNTS]]
                )
            )

    late = [round(seconds, 2) for seconds, _ in answers if seconds > LATE_AFTER_SECONDS]
    assert not late, f"answers slower than {LATE_AFTER_SECONDS}s: {late}"
    payloads = [payload for _, response in answers if (payload := payload_or_shed(response)) is not None]
    succeeded = [p for p in payloads if p["__typename"] == "AddFundsSuccess" and p["status"] == "SUCCEEDED"]
    assert len(succeeded) > POOL_SIZE + MAX_OVERFLOW, payloads
    assert stripe.charges == len(succeeded)
    async with unit_of_work(session_factory(committing_engine)) as session:
        for payload in succeeded:
            entry = await session.get(
                Transaction, from_global_id(payload["transaction"]["id"], "Transaction", "id")
            )
            assert entry is not None and entry.status == TransactionStatus.SUCCEEDED
        for account, _, _ in callers:
            await checked_balance(session, account.id)
