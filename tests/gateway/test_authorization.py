"""Who may see what: a partner sees exactly its accounts, and a foreign account looks like a missing one."""

from collections.abc import Awaitable, Callable

import httpx
import pytest
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.auto_recharge import engine as recharge_engine
from billing.auto_recharge import service as auto_recharge
from billing.auto_recharge.repository import AutoRechargeRepository
from billing.company import service as company
from billing.company.service import CompanyInput
from billing.config import Settings
from billing.db import SessionFactory
from billing.errors import NotFound
from billing.keys.service import Principal
from billing.lead_plans import service as lead_plans
from billing.lead_plans.repository import LeadPlanRepository
from billing.ledger import history as transactions
from billing.ledger import service as ledger
from billing.payment_methods import service as payment_methods
from billing.scope import Scope
from billing.stripe_gateway import StripeGateway
from billing.topups import service as payments
from billing.topups.service import AddFundsRequest
from models import PrincipalKind, TransactionKind, TransactionStatus
from models.types import utcnow
from schema.node import to_global_id
from tests.support.factories import (
    SYSTEM,
    admin_key,
    create_account,
    create_company,
    create_partner,
    create_payment_method,
    member_key,
    partner_key,
)
from tests.support.graphql_client import error_messages, execute
from tests.support.usage_factories import ADMIN, create_lead_plan, enable_auto_recharge

ACCOUNTS = "{ accounts(first: 100) { edges { node { id name } } } }"

# Every query that takes an account ID, with the fields that would leak its data.
BY_ID = [
    "query($id: ID!) { account(id: $id) { id name balance { available { amount } } } }",
    "query($id: ID!) { account(id: $id) { company { legalName } paymentMethods { last4 } } }",
    "query($id: ID!) { account(id: $id) { transactions(first: 5) { edges { node { id } } } } }",
    "query($id: ID!) { account(id: $id) { leadPlans { name } } }",
    "query($id: ID!) { node(id: $id) { id ... on Account { name } } }",
]


# The request id is echoed in every error; a generated one is random hex and may hold any digits, so the
# answers searched for another account's data below carry a fixed one.
NAMED_REQUEST = {"X-Request-Id": "authorization-check"}


async def test_partner_sees_exactly_its_accounts(session: AsyncSession, client: httpx.AsyncClient) -> None:
    mine = [await create_account(session, name=f"Mine {i}") for i in range(3)]
    foreign = await create_account(session, name="Foreign")
    await create_company(session, foreign, legal_name="Secret Corp")
    await create_payment_method(session, foreign, last4="9999")
    partner = await create_partner(session, *mine)
    await create_partner(session, foreign)  # another partner's account
    key = await partner_key(session, partner)

    body = await execute(client, key, ACCOUNTS)
    assert sorted(edge["node"]["name"] for edge in body["data"]["accounts"]["edges"]) == [
        "Mine 0",
        "Mine 1",
        "Mine 2",
    ]

    assert foreign.id is not None
    foreign_id = to_global_id("Account", foreign.id)
    missing_id = to_global_id("Account", 10_000_000)
    for query in BY_ID:
        foreign_body = await execute(client, key, query, {"id": foreign_id}, headers=NAMED_REQUEST)
        missing_body = await execute(client, key, query, {"id": missing_id})
        assert foreign_body["data"] is None and missing_body["data"] is None
        assert error_messages(foreign_body) == error_messages(missing_body) == ["id: no such account"]
        assert "Secret" not in str(foreign_body) and "9999" not in str(foreign_body)

    assert mine[0].id is not None
    own = await execute(client, key, BY_ID[0], {"id": to_global_id("Account", mine[0].id)})
    assert own["data"]["account"]["name"] == "Mine 0"


async def test_partner_without_an_id_must_name_one(session: AsyncSession, client: httpx.AsyncClient) -> None:
    partner = await create_partner(session, await create_account(session))
    body = await execute(client, await partner_key(session, partner), "{ account { id } }")
    assert error_messages(body) == ["id: required: this API key is not tied to one account"]


async def test_member_sees_only_its_own_account(session: AsyncSession, client: httpx.AsyncClient) -> None:
    own = await create_account(session, name="Own")
    other = await create_account(session, name="Other")
    key = await member_key(session, own)
    body = await execute(client, key, ACCOUNTS)
    assert [edge["node"]["name"] for edge in body["data"]["accounts"]["edges"]] == ["Own"]
    assert other.id is not None
    for query in BY_ID:
        body = await execute(client, key, query, {"id": to_global_id("Account", other.id)})
        assert error_messages(body) == ["id: no such account"]


async def test_admin_sees_every_account_page_by_page(
    session: AsyncSession, client: httpx.AsyncClient
) -> None:
    names = {(await create_account(session, name=f"A{i}")).name for i in range(5)}
    key = await admin_key(session)
    seen: list[str] = []
    after = None
    while True:
        body = await execute(
            client,
            key,
            "query($after: String) { accounts(first: 2, after: $after) { edges { node { name } } "
            "pageInfo { hasNextPage endCursor } } }",
            {"after": after},
        )
        connection = body["data"]["accounts"]
        seen += [edge["node"]["name"] for edge in connection["edges"]]
        if not connection["pageInfo"]["hasNextPage"]:
            break
        after = connection["pageInfo"]["endCursor"]
    assert names <= set(seen) and len(seen) == len(set(seen))


async def test_node_reaches_owned_objects_only_through_a_visible_account(
    session: AsyncSession, client: httpx.AsyncClient
) -> None:
    own = await create_account(session)
    other = await create_account(session)
    own_card = await create_payment_method(session, own, last4="1111")
    other_card = await create_payment_method(session, other, last4="2222")
    key = await member_key(session, own)
    query = "query($id: ID!) { node(id: $id) { id ... on PaymentMethod { last4 } } }"

    assert own_card.id is not None and other_card.id is not None
    body = await execute(client, key, query, {"id": to_global_id("PaymentMethod", own_card.id)})
    assert body["data"]["node"]["last4"] == "1111"
    foreign = await execute(
        client, key, query, {"id": to_global_id("PaymentMethod", other_card.id)}, headers=NAMED_REQUEST
    )
    missing = await execute(client, key, query, {"id": to_global_id("PaymentMethod", 10_000_000)})
    assert error_messages(foreign) == error_messages(missing) == ["id: no such object"]
    assert "2222" not in str(foreign)


async def test_services_treat_an_account_outside_the_callers_scope_as_missing(
    session: AsyncSession, session_factory: SessionFactory, stripe_gateway: StripeGateway
) -> None:
    """Below the resolvers too: a service handed another account's ids, for a member's scope, finds nothing."""
    own = await create_account(session)
    other = await create_account(session)
    await create_company(session, other)
    card = await create_payment_method(session, other)
    posting = await ledger.post(
        session,
        SYSTEM,
        account_id=other.id or 0,
        kind=TransactionKind.ADJUSTMENT,
        amount_minor=500,
        description="credit",
        idempotency_key="credit",
    )
    await session.flush()
    other_id, card_id, entry_id = other.id, card.id, posting.transaction.id
    assert other_id is not None and card_id is not None and entry_id is not None
    scope = Scope.of(Principal(kind=PrincipalKind.MEMBER, api_key_id=0, account_id=own.id))
    top_up = AddFundsRequest(other_id, card_id, "10.00", "foreign")
    profile = CompanyInput("Other", "HRB 1", "+49 30 123456", "Street 1", "Berlin", "10115", "DE")

    refused: list[Callable[[], Awaitable[object]]] = [
        lambda: payments.add_funds(session_factory, scope, stripe_gateway, Settings(), top_up),
        lambda: payment_methods.set_default(session_factory, scope, stripe_gateway, other_id, card_id),
        lambda: payment_methods.delete(session_factory, scope, stripe_gateway, other_id, card_id),
        lambda: payment_methods.attach(session_factory, scope, stripe_gateway, other_id, "pm_card_visa"),
        lambda: company.save_company(session_factory, scope, stripe_gateway, other_id, profile),
        lambda: ledger.post(
            session,
            scope,
            account_id=other_id,
            kind=TransactionKind.ADJUSTMENT,
            amount_minor=1,
            description="x",
            idempotency_key="x",
        ),
        lambda: ledger.settle(session, scope, entry_id, TransactionStatus.FAILED),
    ]
    for call in refused:
        with pytest.raises(NotFound):
            await call()
    assert (await transactions.history(session, scope, other_id, first=5)).items == []
    assert await ledger.succeeded_sum(session, scope, other_id) == 0
    assert await ledger.succeeded_sum(session, SYSTEM, other_id) == 500


async def test_lead_plan_and_auto_recharge_services_treat_an_account_outside_the_scope_as_missing(
    session: AsyncSession,
) -> None:
    """Below the resolvers: lead plans, auto-recharge views and scheduling, for a member's or a partner's
    scope, find nothing of another account that the system scope finds."""
    own = await create_account(session)
    other = await create_account(session)
    plan = await create_lead_plan(session, other)
    await enable_auto_recharge(session, other, await create_payment_method(session, other))
    partner = await create_partner(session, own)
    other_id, plan_id = other.id, plan.id
    assert other_id is not None and plan_id is not None
    member = Principal(kind=PrincipalKind.MEMBER, api_key_id=0, account_id=own.id)
    partners = Principal(kind=PrincipalKind.PARTNER, api_key_id=0, partner_id=partner.id)

    for change in (lead_plans.pause_lead_plan, lead_plans.resume_lead_plan, lead_plans.cancel_lead_plan):
        with pytest.raises(NotFound):
            await change(session, partners, plan_id)
    assert await auto_recharge.auto_recharge_views(session, member, [other_id]) == {}
    assert await auto_recharge.auto_recharge_views(session, partners, [other_id]) == {}
    assert other_id in await auto_recharge.auto_recharge_views(session, ADMIN, [other_id])
    assert not await LeadPlanRepository(session, Scope.of(partners)).has_active(other_id)
    assert await LeadPlanRepository(session, SYSTEM).has_active(other_id)

    # Its balance (0) is below the threshold, yet a member's scope schedules nothing for it; the system's does.
    await recharge_engine.schedule_if_low(session, Scope.of(member), [other], now=utcnow())
    assert await AutoRechargeRepository(session, SYSTEM).in_flight([other_id]) == set()
    await recharge_engine.schedule_if_low(session, SYSTEM, [other], now=utcnow())
    assert await AutoRechargeRepository(session, SYSTEM).in_flight([other_id]) == {other_id}
    assert await AutoRechargeRepository(session, Scope.of(member)).in_flight([other_id]) == set()
