"""recordUsage's global IDs are parsed as its events are built from the input: a bad one is a BAD_USER_INPUT
naming where it is in the batch (`events[1].accountId`), and nothing of the batch is recorded."""

from datetime import timedelta

import httpx
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.keys import service as auth
from models import PrincipalKind
from models.types import utcnow
from schema.node import to_global_id
from tests.support.factories import create_account
from tests.support.graphql_client import execute
from tests.support.usage_factories import create_lead_plan

RECORD_USAGE = """
mutation Record($events: [UsageEventInput!]!) {
  recordUsage(events: $events) {
    __typename
    ... on RecordUsageSuccess { recorded duplicates }
  }
}
"""


async def test_a_bad_global_id_names_its_event_and_records_nothing(
    session: AsyncSession, client: httpx.AsyncClient
) -> None:
    account = await create_account(session)
    plan = await create_lead_plan(session, account)
    assert account.id is not None and plan.id is not None
    _, reporter = await auth.create_api_key(session, kind=PrincipalKind.USAGE_REPORTER, name="lead delivery")
    account_id, plan_id = to_global_id("Account", account.id), to_global_id("LeadPlan", plan.id)
    at = (utcnow() - timedelta(minutes=1)).isoformat()
    lead = {
        "accountId": account_id,
        "occurredAt": at,
        "category": "lead",
        "cost": "25.00",
        "leadPlanId": plan_id,
    }
    events = [{**lead, "externalId": f"lead-{index}"} for index in range(3)]

    for index, field, value, problem in [
        (1, "accountId", plan_id, "not an Account ID"),
        (2, "accountId", "not-base64!", "not a valid ID"),
        (0, "leadPlanId", account_id, "not a LeadPlan ID"),
        (2, "leadPlanId", "", None),  # an empty ID names no plan: the event's own problem, not a bad ID
    ]:
        batch = [{**event, field: value} if number == index else event for number, event in enumerate(events)]
        body = await execute(client, reporter, RECORD_USAGE, {"events": batch})
        if problem is None:
            assert body["data"]["recordUsage"]["__typename"] == "UsageRejectedError", body
            continue
        assert body["data"] is None, body
        ((error,),) = [body["errors"]]
        where = f"events[{index}].{field}"
        assert error["message"] == f"{where}: {problem}", error
        assert error["extensions"]["code"] == "BAD_USER_INPUT" and error["extensions"]["argument"] == where

    recorded = (await execute(client, reporter, RECORD_USAGE, {"events": events}))["data"]["recordUsage"]
    assert recorded == {"__typename": "RecordUsageSuccess", "recorded": 3, "duplicates": 0}
