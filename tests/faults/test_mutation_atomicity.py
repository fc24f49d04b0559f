"""A mutation that fails undoes what it wrote, and only that: earlier mutations of the same request stand."""

from collections.abc import AsyncIterator

import httpx
import pytest
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.db import SessionFactory
from devtools.stripe_standin import free_port
from models import AutoRechargeSettings, LeadPlanSubscription, PaymentMethod
from schema.node import to_global_id
from tests.support.factories import admin_key, create_account, create_company, create_payment_method
from tests.support.gateway import open_gateway
from tests.support.graphql_client import execute
from tests.support.stripe_server import stripe_settings
from tests.support.usage_factories import enable_auto_recharge

TWO_MUTATIONS = """
mutation($account: ID!, $drop: ID!, $keep: ID!) {
  first: createLeadPlan(input: {accountId: $account, name: "Roofing", monthlyBudget: "500.00", pricePerLead: "20.00"}) {
    __typename
  }
  second: deletePaymentMethod(input: {accountId: $account, paymentMethodId: $drop, replacementPaymentMethodId: $keep}) {
    __typename
  }
}
"""


@pytest.fixture
async def stripe_down_client(session_factory: SessionFactory) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway points at a loopback port nobody listens on: every Stripe call is an outage."""
    async with open_gateway(stripe_settings(f"http://127.0.0.1:{free_port()}"), session_factory) as client:
        yield client


async def test_a_failed_mutation_keeps_nothing_of_its_own_and_the_earlier_one(
    session: AsyncSession, stripe_down_client: httpx.AsyncClient
) -> None:
    account = await create_account(session)
    await create_company(session, account)
    dropped = await create_payment_method(session, account, last4="1111")
    kept = await create_payment_method(session, account, is_default=False, last4="2222")
    await enable_auto_recharge(session, account, dropped)
    key = await admin_key(session)
    assert account.id is not None and dropped.id is not None and kept.id is not None

    body = await execute(
        stripe_down_client,
        key,
        TWO_MUTATIONS,
        {
            "account": to_global_id("Account", account.id),
            "drop": to_global_id("PaymentMethod", dropped.id),
            "keep": to_global_id("PaymentMethod", kept.id),
        },
    )

    assert body["data"] == {
        "first": {"__typename": "LeadPlanSuccess"},
        "second": {"__typename": "PaymentProviderUnavailableError"},
    }
    plans = (
        await session.exec(select(LeadPlanSubscription).where(LeadPlanSubscription.account_id == account.id))
    ).all()
    assert [plan.name for plan in plans] == ["Roofing"]
    # The delete had moved auto-recharge to the kept card before Stripe failed: that is undone too.
    settings = await session.get(AutoRechargeSettings, account.id, populate_existing=True)
    assert settings is not None and settings.payment_method_id == dropped.id
    assert await session.get(PaymentMethod, dropped.id, populate_existing=True) is not None
