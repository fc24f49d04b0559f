"""The Billing page's read side through GraphQL: account, balance, company, cards, history, lead plans."""

from datetime import timedelta
from unittest.mock import ANY

import httpx
import pytest
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.ledger import history as transactions
from billing.ledger import service as ledger
from models import Account, LeadPlanSubscription, TransactionKind, TransactionStatus
from models.types import utcnow
from schema.node import to_global_id
from tests.support.factories import (
    SYSTEM,
    admin_key,
    create_account,
    create_company,
    create_payment_method,
    member_key,
)
from tests.support.graphql_client import error_messages, execute, post_graphql

ACCOUNT = """
query {
  account {
    id name currency
    balance { available { amount minorUnits currency formatted } usdEquivalent { amount currency } }
    company { legalName registrationNumber phone address { line1 city postalCode country } }
    paymentMethods { id brand last4 isDefault }
    leadPlans { name status monthlyBudget { amount } pricePerLead { amount } }
  }
}
"""

HISTORY = """
query History($first: Int!, $after: String, $filter: TransactionFilter) {
  account {
    transactions(first: $first, after: $after, filter: $filter) {
      edges { cursor node { id description amount { amount minorUnits } status kind createdAt } }
      pageInfo { hasNextPage hasPreviousPage endCursor }
    }
  }
}
"""


async def post(session: AsyncSession, account: Account, amount: int, key: str, **kw: object) -> None:
    assert account.id is not None
    await ledger.post(
        session,
        SYSTEM,
        account_id=account.id,
        kind=kw.pop("kind", TransactionKind.TOP_UP),  # type: ignore[arg-type]
        amount_minor=amount,
        description=f"entry {key}",
        idempotency_key=key,
        **kw,  # type: ignore[arg-type]
    )


async def test_member_reads_the_billing_page(session: AsyncSession, client: httpx.AsyncClient) -> None:
    account = await create_account(session, name="Acme", currency="USD")
    await create_company(session, account)
    await create_payment_method(session, account)
    assert account.id is not None
    session.add(
        LeadPlanSubscription(
            account_id=account.id,
            name="Roofing leads",
            monthly_budget_minor=500_000,
            price_per_lead_minor=2_500,
            currency="USD",
        )
    )
    await post(session, account, 123_456, "t1")
    key = await member_key(session, account)

    body = await execute(client, key, ACCOUNT)

    assert "errors" not in body, body
    data = body["data"]["account"]
    assert data["id"] == to_global_id("Account", account.id)
    assert data["balance"]["available"] == {
        "amount": "1234.56",
        "minorUnits": "123456",
        "currency": "USD",
        "formatted": "$1,234.56",
    }
    assert data["balance"]["usdEquivalent"] is None
    assert data["company"]["legalName"] == "Acme GmbH"
    assert data["company"]["address"]["country"] == "DE"
    assert [card["last4"] for card in data["paymentMethods"]] == ["4242"]
    assert data["leadPlans"] == [
        {
            "name": "Roofing leads",
            "status": "ACTIVE",
            "monthlyBudget": {"amount": "5000.00"},
            "pricePerLead": {"amount": "25.00"},
        }
    ]


async def test_usage_and_add_funds_readiness(session: AsyncSession, client: httpx.AsyncClient) -> None:
    account = await create_account(session, time_zone="Europe/Berlin")
    await create_company(session, account, phone=None, city=None)
    key = await member_key(session, account)
    query = """query($month: String) { account {
        canAddFunds { ready missingCompanyFields hasPaymentMethod }
        usage(month: $month) { month leadSpending { spent { amount } leadsReceived } calling { minutes } } } }"""

    body = await execute(client, key, query, {"month": "2026-02"})
    assert body["data"]["account"]["canAddFunds"] == {
        "ready": False,
        "missingCompanyFields": ["phone", "address.city"],
        "hasPaymentMethod": False,
    }
    usage = body["data"]["account"]["usage"]
    assert usage == {
        "month": "2026-02",
        "leadSpending": {"spent": {"amount": "0.00"}, "leadsReceived": "0"},
        "calling": {"minutes": "0"},
    }
    for bad in ("2026-13", "26-01", "soon"):
        body = await execute(client, key, query, {"month": bad})
        assert error_messages(body)[0].startswith("month: "), body


async def test_history_pages_newest_first_without_gaps(
    session: AsyncSession, client: httpx.AsyncClient
) -> None:
    account = await create_account(session)
    for index in range(7):
        await post(session, account, 100 + index, f"h{index}")
    key = await member_key(session, account)

    seen: list[str] = []
    after = None
    while True:
        body = await execute(client, key, HISTORY, {"first": 3, "after": after})
        connection = body["data"]["account"]["transactions"]
        seen += [edge["node"]["description"] for edge in connection["edges"]]
        assert connection["pageInfo"]["hasPreviousPage"] == (after is not None)
        if not connection["pageInfo"]["hasNextPage"]:
            break
        after = connection["pageInfo"]["endCursor"]
    assert seen == [f"entry h{index}" for index in reversed(range(7))]


async def test_history_filters_by_kind_status_and_date(
    session: AsyncSession, client: httpx.AsyncClient
) -> None:
    account = await create_account(session)
    await post(session, account, 1_000, "top")
    await post(session, account, -200, "use", kind=TransactionKind.USAGE_CALLS)
    await post(session, account, 500, "pending", status=TransactionStatus.PENDING)
    key = await member_key(session, account)

    async def descriptions(filter: dict[str, object]) -> list[str]:
        body = await execute(client, key, HISTORY, {"first": 10, "filter": filter})
        assert "errors" not in body, body
        return [edge["node"]["description"] for edge in body["data"]["account"]["transactions"]["edges"]]

    assert await descriptions({"kinds": ["USAGE_CALLS"]}) == ["entry use"]
    assert await descriptions({"statuses": ["PENDING"]}) == ["entry pending"]
    assert await descriptions({"kinds": ["TOP_UP"], "statuses": ["SUCCEEDED"]}) == ["entry top"]
    tomorrow = (utcnow() + timedelta(days=1)).isoformat()
    assert await descriptions({"since": tomorrow}) == []
    assert len(await descriptions({"until": tomorrow})) == 3


async def test_bad_arguments_are_named_errors_not_crashes(
    session: AsyncSession, client: httpx.AsyncClient
) -> None:
    account = await create_account(session)
    key = await member_key(session, account)

    cases: list[tuple[dict[str, object], str]] = [
        ({"first": 0}, "first: must be between 1 and 100"),
        ({"first": 101}, "first: must be between 1 and 100"),
        ({"first": 5, "after": "not-a-cursor"}, "after: not a valid cursor"),
        (
            {"first": 5, "filter": {"since": "2026-01-02T00:00:00", "until": "2026-01-01T00:00:00+00:00"}},
            "filter.since: needs a time zone offset",
        ),
    ]
    for variables, message in cases:
        body = await execute(client, key, HISTORY, variables)
        assert [m[: len(message)] for m in error_messages(body)] == [message], body

    for query, message in [
        ('{ account(id: "garbage!") { id } }', "id: not a valid ID"),
        (f'{{ account(id: "{to_global_id("Transaction", 1)}") {{ id }} }}', "id: not an Account ID"),
        (f'{{ account(id: "{to_global_id("Account", 999_999)}") {{ id }} }}', "id: no such account"),
        ("{ accounts(first: 500) { edges { cursor } } }", "first: must be between 1 and 100, got 500"),
    ]:
        assert error_messages(await execute(client, key, query)) == [message]


async def test_requests_without_a_valid_key_get_401(session: AsyncSession, client: httpx.AsyncClient) -> None:
    account = await create_account(session)
    key = await member_key(session, account)
    for headers in (
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": key},
        {"Authorization": f"Bearer {key}x"},
    ):
        response = await client.post("/graphql", json={"query": "{ account { id } }"}, headers=headers)
        assert response.status_code == 401
        assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_revoked_key_stops_working_at_once(session: AsyncSession, client: httpx.AsyncClient) -> None:
    from billing.keys import service as auth

    account = await create_account(session)
    key = await member_key(session, account)
    assert "errors" not in await execute(client, key, "{ account { id } }")
    await auth.revoke_api_key(session, key.split("_")[1])
    response = await post_graphql(client, key, "{ account { id } }")
    assert response.status_code == 401


async def test_health_readiness_and_metrics(session: AsyncSession, client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).text == "ok"
    assert (await client.get("/readyz")).text == "ready"
    await client.get("/no-such-page")
    assert (await client.get("/metrics")).status_code == 401
    member = await member_key(session, await create_account(session))
    assert (await client.get("/metrics", headers={"Authorization": f"Bearer {member}"})).status_code == 403
    admin = await admin_key(session)
    metrics = (await client.get("/metrics", headers={"Authorization": f"Bearer {admin}"})).text
    assert 'http_requests_total{method="GET",path="/healthz",status="200"} 1' in metrics
    assert 'http_requests_total{method="GET",path="other",status="404"} 1' in metrics


async def test_argument_errors_carry_a_code_and_the_argument(
    session: AsyncSession, client: httpx.AsyncClient
) -> None:
    key = await member_key(session, await create_account(session))
    body = await execute(client, key, HISTORY, {"first": 1000})
    assert body["errors"][0]["extensions"] == {
        "code": "BAD_USER_INPUT",
        "argument": "first",
        "requestId": ANY,
    }


async def test_unexpected_failures_are_masked_and_the_server_keeps_serving(
    session: AsyncSession, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = await member_key(session, await create_account(session))

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret internals: connection string postgres://admin:hunter2@db")

    monkeypatch.setattr(transactions, "history", broken)
    body = await execute(client, key, HISTORY, {"first": 5})
    assert body["errors"] == [
        {
            "message": "Unexpected error.",
            "locations": [{"line": 4, "column": 5}],
            "path": ["account", "transactions"],
            "extensions": {"code": "INTERNAL_SERVER_ERROR", "requestId": ANY},
        }
    ]
    monkeypatch.undo()
    assert "errors" not in await execute(client, key, HISTORY, {"first": 5})
