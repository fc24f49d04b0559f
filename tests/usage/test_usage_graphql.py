"""Usage, lead plans and auto-recharge through GraphQL: who may call what, and the typed payloads."""

from datetime import timedelta

import httpx
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.keys import service as auth
from models import Account, PrincipalKind
from models.types import utcnow
from schema.node import to_global_id
from tests.support.factories import (
    create_account,
    create_company,
    create_partner,
    create_payment_method,
    member_key,
    partner_key,
)
from tests.support.graphql_client import execute
from tests.support.usage_factories import create_lead_plan

RECORD_USAGE = """
mutation Record($events: [UsageEventInput!]!) {
  recordUsage(events: $events) {
    __typename
    ... on RecordUsageSuccess { recorded duplicates }
    ... on UsageRejectedError { message problems { index externalId field message } }
    ... on PermissionDeniedError { message }
  }
}
"""

OVERVIEW = """
query {
  account {
    fundingState
    usage { calling { spent { amount } calls minutes } }
    autoRecharge { enabled state threshold { amount } rechargedThisMonth { amount } lastAttempt { outcome } }
  }
}
"""

AUTO_RECHARGE = """
mutation Save($input: AutoRechargeInput!) {
  autoRecharge(input: $input) {
    __typename
    ... on AutoRechargeSuccess { autoRecharge { enabled state amount { amount } paymentMethodId } }
    ... on Error { message }
  }
}
"""

LEAD_PLAN = """
mutation Create($input: CreateLeadPlanInput!) {
  createLeadPlan(input: $input) {
    __typename
    ... on LeadPlanSuccess { leadPlan { id name status monthlyBudget { amount currency } } }
    ... on Error { message }
  }
}
"""

PAUSE = """
mutation Pause($id: ID!) {
  pauseLeadPlan(input: {leadPlanId: $id}) { __typename ... on LeadPlanSuccess { leadPlan { status } } }
}
"""


async def reporter_key(session: AsyncSession) -> str:
    _, raw = await auth.create_api_key(session, kind=PrincipalKind.USAGE_REPORTER, name="lead delivery")
    return raw


def call_event(account: Account, external_id: str, cost: str = "1.20") -> dict[str, object]:
    assert account.id is not None
    return {
        "externalId": external_id,
        "accountId": to_global_id("Account", account.id),
        "occurredAt": (utcnow() - timedelta(minutes=1)).isoformat(),
        "category": "call",
        "cost": cost,
        "durationSeconds": 61,
    }


async def test_a_reporter_records_usage_and_the_account_sees_it(
    session: AsyncSession, client: httpx.AsyncClient
) -> None:
    account = await create_account(session)
    reporter, member = await reporter_key(session), await member_key(session, account)
    events = [call_event(account, "c1"), call_event(account, "c2")]

    first = await execute(client, reporter, RECORD_USAGE, {"events": events})
    again = await execute(client, reporter, RECORD_USAGE, {"events": events})
    assert first["data"]["recordUsage"] == {
        "__typename": "RecordUsageSuccess",
        "recorded": 2,
        "duplicates": 0,
    }
    assert again["data"]["recordUsage"] == {
        "__typename": "RecordUsageSuccess",
        "recorded": 0,
        "duplicates": 2,
    }

    overview = (await execute(client, member, OVERVIEW))["data"]["account"]
    assert overview["fundingState"] == "DEPLETED"
    assert overview["usage"]["calling"] == {"spent": {"amount": "2.40"}, "calls": "2", "minutes": "3"}
    assert overview["autoRecharge"] is None


async def test_invalid_events_reject_the_batch_and_members_may_not_report(
    session: AsyncSession, client: httpx.AsyncClient
) -> None:
    account = await create_account(session)
    reporter, member = await reporter_key(session), await member_key(session, account)
    events = [call_event(account, "ok"), call_event(account, "bad", cost="-1")]

    rejected = (await execute(client, reporter, RECORD_USAGE, {"events": events}))["data"]["recordUsage"]
    assert rejected["__typename"] == "UsageRejectedError"
    assert rejected["problems"] == [
        {"index": 1, "externalId": "bad", "field": "cost", "message": "must not be negative"}
    ]
    denied = (await execute(client, member, RECORD_USAGE, {"events": events[:1]}))["data"]["recordUsage"]
    assert denied["__typename"] == "PermissionDeniedError"


async def test_costs_beyond_an_events_ceiling_and_dates_of_closed_months_are_problems_not_errors(
    session: AsyncSession, client: httpx.AsyncClient
) -> None:
    account = await create_account(session)
    reporter = await reporter_key(session)
    # What overflowed the 64-bit balance on both databases (an INTERNAL_SERVER_ERROR).
    events = [call_event(account, f"huge-{index}", cost="9999999999999999") for index in range(10)]
    events.append({**call_event(account, "year-one"), "occurredAt": "0001-01-01T00:00:00Z"})

    rejected = (await execute(client, reporter, RECORD_USAGE, {"events": events}))["data"]["recordUsage"]
    assert rejected["__typename"] == "UsageRejectedError"
    assert [(p["index"], p["field"], p["message"]) for p in rejected["problems"]] == [
        *((index, "cost", "must be at most $1,000,000.00") for index in range(10)),
        (10, "occurredAt", rejected["problems"][10]["message"]),
    ]
    assert rejected["problems"][10]["message"].startswith("must not be before ")


async def test_auto_recharge_needs_an_active_lead_plan_then_saves(
    session: AsyncSession, client: httpx.AsyncClient
) -> None:
    account = await create_account(session)
    await create_company(session, account)
    card = await create_payment_method(session, account)
    key = await member_key(session, account)
    assert card.id is not None
    settings = {"enabled": True, "threshold": "20.00", "amount": "50.00", "monthlyLimit": "200.00"}

    refused = await execute(client, key, AUTO_RECHARGE, {"input": settings})
    assert refused["data"]["autoRecharge"]["__typename"] == "NoActiveLeadPlanError"

    await create_lead_plan(session, account)
    saved = (await execute(client, key, AUTO_RECHARGE, {"input": settings}))["data"]["autoRecharge"]
    assert (
        saved
        == {
            "__typename": "AutoRechargeSuccess",
            "autoRecharge": {
                "enabled": True,
                "state": "IN_PROGRESS",  # the balance (0.00) is below the threshold: a recharge is scheduled at once
                "amount": {"amount": "50.00"},
                "paymentMethodId": to_global_id("PaymentMethod", card.id),
            },
        }
    )
    low = await execute(client, key, AUTO_RECHARGE, {"input": {**settings, "monthlyLimit": "49.99"}})
    assert low["data"]["autoRecharge"]["__typename"] == "MonthlyLimitBelowAmountError"


async def test_partners_manage_lead_plans_of_their_accounts_only(
    session: AsyncSession, client: httpx.AsyncClient
) -> None:
    mine, theirs = await create_account(session, currency="EUR"), await create_account(session)
    key = await partner_key(session, await create_partner(session, mine))
    member = await member_key(session, mine)
    assert mine.id is not None and theirs.id is not None
    plan = {"name": "Heat pumps", "monthlyBudget": "1500.00", "pricePerLead": "30.00"}

    created = await execute(
        client, key, LEAD_PLAN, {"input": {**plan, "accountId": to_global_id("Account", mine.id)}}
    )
    lead_plan = created["data"]["createLeadPlan"]["leadPlan"]
    assert (lead_plan["status"], lead_plan["monthlyBudget"]) == (
        "ACTIVE",
        {"amount": "1500.00", "currency": "EUR"},
    )
    paused = await execute(client, key, PAUSE, {"id": lead_plan["id"]})
    assert paused["data"]["pauseLeadPlan"] == {
        "__typename": "LeadPlanSuccess",
        "leadPlan": {"status": "PAUSED"},
    }

    foreign = await execute(
        client, key, LEAD_PLAN, {"input": {**plan, "accountId": to_global_id("Account", theirs.id)}}
    )
    assert foreign["data"]["createLeadPlan"]["__typename"] == "LeadPlanNotFoundError"
    by_member = await execute(
        client, member, LEAD_PLAN, {"input": {**plan, "accountId": to_global_id("Account", mine.id)}}
    )
    assert by_member["data"]["createLeadPlan"]["__typename"] == "PermissionDeniedError"
