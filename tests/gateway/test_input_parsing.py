"""Issue 8: every scalar the API accepts is parsed strictly and bounded, and messages read well, through GraphQL.

One test per rule (amounts; IDs, cursors, BigInts and dates; lengths; messages), on SQLite and PostgreSQL, plus a
property test of the amount parser itself.
"""

import base64
import json
import string
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
from hypothesis import example, given, settings
from hypothesis import strategies as st
from sqlmodel import func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.keys import service as auth
from billing.money import MAX_MINOR_DIGITS, InvalidAmount, exponent, to_minor
from billing.pagination import encode_cursor
from models import Account, PrincipalKind, Transaction
from models.types import utcnow
from schema.node import to_global_id
from schema.payment_methods import PAYMENT_METHOD_NOT_FOUND
from tests.support.factories import (
    create_account,
    create_company,
    create_partner,
    create_payment_method,
    member_key,
    partner_key,
)
from tests.support.graphql_client import execute, post_graphql
from tests.support.usage_factories import create_lead_plan

ADD_FUNDS = """
mutation AddFunds($input: AddFundsInput!) {
  addFunds(input: $input) {
    __typename
    ... on Error { message }
    ... on InvalidAmountError { field minimum { formatted } }
  }
}
"""

AUTO_RECHARGE = """
mutation Save($input: AutoRechargeInput!) {
  autoRecharge(input: $input) {
    __typename
    ... on Error { message }
    ... on InvalidAmountError { field }
  }
}
"""

RECORD_USAGE = """
mutation Record($events: [UsageEventInput!]!) {
  recordUsage(events: $events) {
    __typename
    ... on UsageRejectedError { message problems { index externalId field message } }
  }
}
"""

LEAD_PLAN = """
mutation Create($input: CreateLeadPlanInput!) {
  createLeadPlan(input: $input) {
    __typename
    ... on InvalidLeadPlanError { fieldErrors { field message } }
  }
}
"""

UPDATE_COMPANY = """
mutation Company($input: UpdateCompanyInput!) {
  updateCompany(input: $input) {
    __typename
    ... on Error { message }
    ... on InvalidCompanyInputError { fieldErrors { field message } }
  }
}
"""

HISTORY = """
query History($after: String, $filter: TransactionFilter) {
  account { transactions(first: 5, after: $after, filter: $filter) { edges { cursor } } }
}
"""

ACCOUNTS = """
query Accounts($after: String) { accounts(first: 5, after: $after) { edges { cursor } } }
"""

DELETE_CARD = """
mutation Delete($input: DeletePaymentMethodInput!) {
  deletePaymentMethod(input: $input) { __typename ... on Error { message } }
}
"""

# Amounts `Decimal(text)` took (or stalled on) that a plain decimal is not.
# (Arabic-Indic "10" and fullwidth "2026" below: int() and Decimal() read them as digits.)
NOT_PLAIN = [
    "1e999990",
    "1e1",
    " 10 ",
    "10.",
    ".5",
    "+5",
    "1_000",
    "\u0661\u0660",
    "10,00",
    "NaN",
    "Infinity",
    "",
    "-",
]


async def answer_of(
    client: httpx.AsyncClient, key: str, query: str, variables: dict[str, Any]
) -> dict[str, Any]:
    """The body of a request that may be refused before execution (400) but must never be a server error."""
    response = await post_graphql(client, key, query, variables)
    assert response.status_code in (200, 400), response.text
    body: dict[str, Any] = response.json()
    return body


def bad_input(body: dict[str, Any]) -> list[tuple[str | None, str]]:
    """(argument, message) of each error, all of which must be BAD_USER_INPUT."""
    errors = body.get("errors") or []
    assert errors and all(error["extensions"]["code"] == "BAD_USER_INPUT" for error in errors), body
    return [(error["extensions"].get("argument"), error["message"]) for error in errors]


def literal(value: object) -> str:
    """A value written inline in a GraphQL document (a JSON string is a GraphQL string)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{name}: {literal(item)}" for name, item in value.items()) + "}"
    return json.dumps(value)


def raw_id(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


async def reporter_key(session: AsyncSession) -> str:
    _, raw = await auth.create_api_key(session, kind=PrincipalKind.USAGE_REPORTER, name="lead delivery")
    return raw


async def ready_account(session: AsyncSession, **fields: str) -> tuple[Account, str, str]:
    """An account that could pay (company, card, lead plan): (account, member key, card id)."""
    account = await create_account(session, **fields)
    await create_company(session, account)
    await create_lead_plan(session, account)
    card = await create_payment_method(session, account)
    assert card.id is not None
    return account, await member_key(session, account), to_global_id("PaymentMethod", card.id)


def usage_event(account: Account, external_id: str, **overrides: object) -> dict[str, object]:
    assert account.id is not None
    event: dict[str, object] = {
        "externalId": external_id,
        "accountId": to_global_id("Account", account.id),
        "occurredAt": (utcnow() - timedelta(minutes=1)).isoformat(),
        "category": "ai_agent",
        "cost": "0.03",
        "inputTokens": "100",
        "outputTokens": "20",
    }
    event.update(overrides)
    return event


async def test_amounts_are_plain_decimals_named_by_their_field(
    session: AsyncSession, client: httpx.AsyncClient
) -> None:
    account, key, card = await ready_account(session)
    partner = await partner_key(session, await create_partner(session, account))
    reporter = await reporter_key(session)
    assert account.id is not None
    recharge = {"enabled": False, "threshold": "50.00", "amount": "10.00", "monthlyLimit": "100.00"}

    for text in NOT_PLAIN:
        top_up = {"paymentMethodId": card, "amount": text, "idempotencyKey": f"k-{text}"}
        payload = (await execute(client, key, ADD_FUNDS, {"input": top_up}))["data"]["addFunds"]
        assert (payload["__typename"], payload["field"]) == ("InvalidAmountError", "amount"), (text, payload)
        assert payload["message"].startswith("amount must be a plain decimal"), payload

        for field in ("threshold", "amount", "monthlyLimit"):
            settings_input = {**recharge, field: text}
            payload = (await execute(client, key, AUTO_RECHARGE, {"input": settings_input}))["data"]
            assert payload["autoRecharge"]["__typename"] == "InvalidAmountError", (text, field, payload)
            assert payload["autoRecharge"]["field"] == field
            assert payload["autoRecharge"]["message"].startswith(f"{field} must be"), payload

        events = [usage_event(account, "ok"), usage_event(account, "bad", cost=text)]
        payload = (await execute(client, reporter, RECORD_USAGE, {"events": events}))["data"]["recordUsage"]
        assert [(p["index"], p["field"]) for p in payload["problems"]] == [(1, "cost")], (text, payload)

        plan = {
            "accountId": to_global_id("Account", account.id),
            "name": "Leads",
            "monthlyBudget": text,
            "pricePerLead": "25.00",
        }
        payload = (await execute(client, partner, LEAD_PLAN, {"input": plan}))["data"]["createLeadPlan"]
        assert payload["fieldErrors"][0]["field"] == "monthlyBudget", (text, payload)

    # Bounded digits: at most 18 in minor units, whatever the currency's decimals.
    for text, problem in [
        ("12345678901234567.00", "must have at most 16 digits before the point"),
        ("1.001", "must have at most 2 decimals in USD"),
    ]:
        top_up = {"paymentMethodId": card, "amount": text, "idempotencyKey": text}
        payload = (await execute(client, key, ADD_FUNDS, {"input": top_up}))["data"]["addFunds"]
        assert payload["message"] == f"amount {problem}"
    assert await _entries(session, account) == 0


async def test_ids_cursors_big_ints_and_dates_are_checked_before_the_database(
    session: AsyncSession, client: httpx.AsyncClient
) -> None:
    account, key, _ = await ready_account(session)
    reporter = await reporter_key(session)
    for bad_id in [
        raw_id("Account:\u00b2"),
        raw_id("Account:" + "1" * 23),
        raw_id(f"Account:{2**31}"),  # past the INTEGER key column
        raw_id("Account:0"),
        "x" * 5_000,
    ]:
        body = await answer_of(client, key, "query($id: ID!) { account(id: $id) { id } }", {"id": bad_id})
        assert bad_input(body) == [("id", "id: not a valid ID")]

    huge = str(2**63)
    for after, query in [
        (encode_cursor("account", huge), ACCOUNTS),
        (encode_cursor("account", "\u0661\u0662"), ACCOUNTS),
        (encode_cursor("transaction", "2026-01-01T00:00:00", "5"), HISTORY),
        (encode_cursor("transaction", "2026-01-01T00:00:00+00:00", huge), HISTORY),
        ("A" * 10_000, HISTORY),
    ]:
        assert bad_input(await answer_of(client, key, query, {"after": after})) == [
            ("after", "after: not a valid cursor")
        ]

    naive = {"filter": {"since": "2026-01-01T00:00:00"}}
    assert bad_input(await answer_of(client, key, HISTORY, naive)) == [
        ("filter.since", "filter.since: needs a time zone offset")
    ]

    # In a batch, a naive date is a problem of its event.
    events = [usage_event(account, "naive", occurredAt="2026-01-01T00:00:00")]
    payload = (await execute(client, reporter, RECORD_USAGE, {"events": events}))["data"]["recordUsage"]
    assert [(p["field"], p["message"]) for p in payload["problems"]] == [("occurredAt", "needs a UTC offset")]

    # A BigInt in range can still be past what one event may count: a problem of that event.
    events = [usage_event(account, "many", inputTokens=str(2**63 - 1))]
    payload = (await execute(client, reporter, RECORD_USAGE, {"events": events}))["data"]["recordUsage"]
    assert [(p["field"], p["message"]) for p in payload["problems"]] == [
        ("inputTokens", "must be at most 1,000,000,000,000")
    ]

    # Scalars refused before anything runs, from a variable (as frontends send them: the message names the path)
    # and written inline (the error names the scalar).
    for overrides, scalar in [
        ({"inputTokens": "9" * 5_000}, "BigInt"),
        ({"inputTokens": "\u00b2"}, "BigInt"),
        ({"inputTokens": huge}, "BigInt"),
        ({"outputTokens": "1e3"}, "BigInt"),
        ({"occurredAt": "\uff12\uff10\uff12\uff16-01-01T00:00:00Z"}, "DateTime"),
        ({"occurredAt": "0001-01-01T00:00:00+01:00"}, "DateTime"),
    ]:
        event = usage_event(account, "e", **overrides)
        ((_, message),) = bad_input(await answer_of(client, reporter, RECORD_USAGE, {"events": [event]}))
        (field,) = overrides
        assert f"[0].{field}" in message and f"{scalar}: must be" in message, message
        inline = f"mutation {{ recordUsage(events: [{literal(event)}]) {{ __typename }} }}"
        ((argument, message),) = bad_input(await answer_of(client, reporter, inline, {}))
        assert argument == scalar and f"{scalar}: must be" in message, message
    assert await _entries(session, account) == 0


async def test_strings_and_lists_are_bounded_and_never_echoed_whole(
    session: AsyncSession, client: httpx.AsyncClient
) -> None:
    account, key, card = await ready_account(session)
    reporter = await reporter_key(session)
    # Far past every column, and still under any request size limit: the bound refused is the field's own.
    oversized = "k" * 100_000

    top_up = {"paymentMethodId": card, "amount": "50.00", "idempotencyKey": oversized}
    assert bad_input(await answer_of(client, key, ADD_FUNDS, {"input": top_up})) == [
        ("idempotencyKey", "idempotencyKey: must have 1 to 248 characters")
    ]
    top_up["idempotencyKey"] = ""
    assert bad_input(await answer_of(client, key, ADD_FUNDS, {"input": top_up}))[0][0] == "idempotencyKey"
    assert await _entries(session, account) == 0

    attach = (
        "mutation($id: String!) { attachPaymentMethod(input: {stripePaymentMethodId: $id}) { __typename } }"
    )
    assert (
        bad_input(await answer_of(client, key, attach, {"id": "pm_" + "x" * 253}))[0][0]
        == "stripePaymentMethodId"
    )
    portal = "mutation($url: String!) { createBillingPortalSession(input: {returnUrl: $url}) { __typename } }"
    assert bad_input(await answer_of(client, key, portal, {"url": oversized}))[0][0] == "returnUrl"
    kinds = {"filter": {"kinds": ["TOP_UP"] * 1_000}}
    assert bad_input(await answer_of(client, key, HISTORY, kinds)) == [
        ("filter.kinds", "filter.kinds: must have at most 7 items")  # one per TransactionKind
    ]

    events = [
        usage_event(account, oversized),
        usage_event(account, "c", category=oversized),
        usage_event(account, "d", cost=oversized),
    ]
    response = await post_graphql(client, reporter, RECORD_USAGE, {"events": events})
    assert response.status_code == 200 and len(response.content) < 5_000, response.content[:500]
    problems = response.json()["data"]["recordUsage"]["problems"]
    assert [(p["index"], p["field"]) for p in problems] == [(0, "externalId"), (1, "category"), (2, "cost")]
    assert problems[0]["externalId"] == "k" * 64 + "…"

    month = "query($month: String) { account { usage(month: $month) { month } } }"
    response = await post_graphql(client, key, month, {"month": oversized})
    assert len(response.content) < 5_000
    assert bad_input(response.json()) == [("month", "month: must be a month as YYYY-MM, e.g. 2026-03")]


async def test_messages_name_api_fields_format_money_count_right_and_are_one_per_error(
    session: AsyncSession, client: httpx.AsyncClient
) -> None:
    german, key, card = await ready_account(session, currency="EUR", country="DE")
    top_up = {"paymentMethodId": card, "amount": "1.00", "idempotencyKey": "small"}
    payload = (await execute(client, key, ADD_FUNDS, {"input": top_up}))["data"]["addFunds"]
    assert payload["minimum"]["formatted"] == "5,00\xa0€"
    assert payload["message"] == "top-ups are between 5,00\xa0€ and 10.000,00\xa0€"

    company = {
        "legalName": " ",
        "registrationNumber": "HRB 1",
        "phone": "12",
        "address": {"line1": "Unter den Linden 1", "city": "Berlin", "postalCode": "", "country": "DE"},
    }
    payload = (await execute(client, key, UPDATE_COMPANY, {"input": company}))["data"]["updateCompany"]
    assert payload["message"].split("; ") == [
        "legalName is required",
        "address.postalCode is required",
        "phone is not a valid phone number (include the country code, e.g. +49 30 123456)",
    ]

    bare = await create_account(session)
    bare_card = await create_payment_method(session, bare)
    assert bare_card.id is not None
    bare_key = await member_key(session, bare)
    bare_top_up = {
        "paymentMethodId": to_global_id("PaymentMethod", bare_card.id),
        "amount": "50",
        "idempotencyKey": "a",
    }
    payload = (await execute(client, bare_key, ADD_FUNDS, {"input": bare_top_up}))["data"]["addFunds"]
    assert payload["message"] == (
        "complete the company profile first: legalName, registrationNumber, phone, address.line1, address.city,"
        " address.postalCode, address.country"
    )

    # One event with two problems and ten with one: eleven events, twelve problems.
    reporter = await reporter_key(session)
    events = [usage_event(german, "two", category="nope", cost="x")]
    events += [usage_event(german, f"one-{n}", cost="-1") for n in range(10)]
    payload = (await execute(client, reporter, RECORD_USAGE, {"events": events}))["data"]["recordUsage"]
    assert len(payload["problems"]) == 12
    assert payload["message"] == "11 usage events are invalid; nothing was recorded"
    payload = (await execute(client, reporter, RECORD_USAGE, {"events": events[:1]}))["data"]["recordUsage"]
    assert payload["message"] == "1 usage event is invalid; nothing was recorded"

    # A card that does not exist and another account's card read the same, wherever they are named.
    unknown, foreign = to_global_id("PaymentMethod", 2**31 - 1), to_global_id("PaymentMethod", bare_card.id)
    messages = set()
    for method in (unknown, foreign):
        top_up = {"paymentMethodId": method, "amount": "50.00", "idempotencyKey": method}
        messages.add(
            (await execute(client, key, ADD_FUNDS, {"input": top_up}))["data"]["addFunds"]["message"]
        )
        recharge = {
            "enabled": True,
            "threshold": "5",
            "amount": "50",
            "monthlyLimit": "500",
            "paymentMethodId": method,
        }
        messages.add(
            (await execute(client, key, AUTO_RECHARGE, {"input": recharge}))["data"]["autoRecharge"][
                "message"
            ]
        )
        delete = {"paymentMethodId": method}
        body = await execute(client, key, DELETE_CARD, {"input": delete})
        messages.add(body["data"]["deletePaymentMethod"]["message"])
    assert messages == {PAYMENT_METHOD_NOT_FOUND}


async def _entries(session: AsyncSession, account: Account) -> int:
    statement = select(func.count()).select_from(Transaction).where(Transaction.account_id == account.id)
    return int((await session.exec(statement)).one())


# The parser on its own: any text is either a plain decimal's minor units or an InvalidAmount, decided fast.
# The deadline is far above the microseconds a refusal takes and far below the 38 s `Decimal("1e999990")` cost,
# so a busy machine does not fail it and a parser that expands exponents does.
@settings(max_examples=500, deadline=timedelta(seconds=1))
@given(st.text() | st.from_regex(r"-?[0-9]{0,30}(\.[0-9]{0,5})?([eE][+-]?[0-9]{1,7})?", fullmatch=True))
@example("1e999990")
@example("9" * 100_000)
def test_the_amount_parser_takes_plain_decimals_and_refuses_everything_else(text: str) -> None:
    try:
        minor = to_minor(text, "EUR")
    except InvalidAmount as error:
        assert error.field == "amount"
        return
    assert set(text) <= set(string.digits + ".-")
    assert minor == Decimal(text).scaleb(2) and len(str(abs(minor))) <= MAX_MINOR_DIGITS


@settings(max_examples=200, deadline=timedelta(seconds=1))
@given(st.integers(min_value=-(10**18) + 1, max_value=10**18 - 1), st.sampled_from(["EUR", "JPY", "KWD"]))
def test_every_amount_in_bounds_reads_back_exactly(minor: int, currency: str) -> None:
    assert to_minor(str(Decimal(minor).scaleb(-exponent(currency))), currency) == minor
