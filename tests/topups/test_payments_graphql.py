"""The Billing page's money-in flow through GraphQL, against localstripe via the real SDK.

Incomplete profile -> error; profile; no card -> error; card; add funds -> balance up, history shows it.
"""

from typing import Any

import httpx
from sqlmodel.ext.asyncio.session import AsyncSession

from tests.support.factories import create_account, member_key
from tests.support.graphql_client import execute_ok
from tests.support.payments_helpers import DECLINED_CARD
from tests.support.stripe_server import LocalStripe

UPDATE_COMPANY = """
mutation ($input: UpdateCompanyInput!) {
  updateCompany(input: $input) {
    __typename
    ... on UpdateCompanySuccess { company { legalName phone address { country postalCode } } }
    ... on InvalidCompanyInputError { message fieldErrors { field message } }
  }
}
"""

ATTACH = """
mutation ($input: AttachPaymentMethodInput!) {
  attachPaymentMethod(input: $input) {
    __typename
    ... on PaymentMethodSuccess { paymentMethod { id last4 brand isDefault } }
    ... on Error { message }
  }
}
"""

ADD_FUNDS = """
mutation ($input: AddFundsInput!) {
  addFunds(input: $input) {
    __typename
    ... on AddFundsSuccess { status clientSecret balance { amount minorUnits } transaction { status kind } }
    ... on CompanyIncompleteError { missingFields }
    ... on InvalidAmountError { minimum { amount } maximum { amount } }
    ... on PaymentDeclinedError { declineCode transaction { status } }
    ... on Error { message }
  }
}
"""

PAGE = """
{ account { balance { available { amount } } canAddFunds { ready }
  transactions(first: 5) { edges { node { status kind amount { amount } } } } } }
"""

PORTAL = """
mutation ($url: String!) {
  createBillingPortalSession(input: {returnUrl: $url}) { __typename ... on Error { message } }
}
"""

COMPANY: dict[str, Any] = {
    "legalName": "  Acme GmbH ",
    "registrationNumber": "HRB 12345",
    "phone": "030 123456",
    "address": {"line1": "Unter den Linden 1", "city": "Berlin", "postalCode": "10117", "country": "de"},
}


async def gql(client: httpx.AsyncClient, key: str, query: str, **variables: Any) -> dict[str, Any]:
    return dict((await execute_ok(client, key, query, variables))["data"])


async def test_the_add_funds_page_flow(
    session: AsyncSession, gateway_client: httpx.AsyncClient, localstripe: LocalStripe
) -> None:
    account = await create_account(session)
    key = await member_key(session, account)

    # No company profile yet: Add funds says what is missing.
    payload = (
        await gql(
            gateway_client,
            key,
            ADD_FUNDS,
            input={"paymentMethodId": "UGF5bWVudE1ldGhvZDox", "amount": "50", "idempotencyKey": "x"},
        )
    )["addFunds"]
    assert payload["__typename"] == "CompanyIncompleteError"
    assert "legalName" in payload["missingFields"] and "address.postalCode" in payload["missingFields"]

    # A bad form is rejected field by field, and nothing is saved.
    bad = {**COMPANY, "phone": "12", "address": {**COMPANY["address"], "country": "XX", "city": " "}}
    payload = (await gql(gateway_client, key, UPDATE_COMPANY, input=bad))["updateCompany"]
    assert payload["__typename"] == "InvalidCompanyInputError"
    assert {e["field"] for e in payload["fieldErrors"]} == {"phone", "address.country", "address.city"}

    payload = (await gql(gateway_client, key, UPDATE_COMPANY, input=COMPANY))["updateCompany"]
    assert payload["__typename"] == "UpdateCompanySuccess"
    assert payload["company"]["legalName"] == "Acme GmbH" and payload["company"]["phone"] == "+4930123456"
    await session.refresh(account)
    assert account.stripe_customer_id is not None
    customer = await localstripe.retrieve(f"/v1/customers/{account.stripe_customer_id}")
    assert customer["name"] == "Acme GmbH" and customer["phone"] == "+4930123456"

    # No card yet.
    payload = (
        await gql(
            gateway_client,
            key,
            ADD_FUNDS,
            input={"paymentMethodId": "UGF5bWVudE1ldGhvZDox", "amount": "50", "idempotencyKey": "x"},
        )
    )["addFunds"]
    assert payload["__typename"] == "PaymentMethodRequiredError"

    # The browser saves a card with Stripe; the page attaches it.
    payload = await gql(
        gateway_client, key, ATTACH, input={"stripePaymentMethodId": await localstripe.card()}
    )
    card = payload["attachPaymentMethod"]["paymentMethod"]
    assert card["last4"] == "4242" and card["isDefault"] is True

    payload = (
        await gql(
            gateway_client,
            key,
            ADD_FUNDS,
            input={"paymentMethodId": card["id"], "amount": "4.99", "idempotencyKey": "y"},
        )
    )["addFunds"]
    assert payload["__typename"] == "InvalidAmountError" and payload["minimum"]["amount"] == "5.00"

    payload = (
        await gql(
            gateway_client,
            key,
            ADD_FUNDS,
            input={"paymentMethodId": card["id"], "amount": "50.00", "idempotencyKey": "z"},
        )
    )["addFunds"]
    assert payload["__typename"] == "AddFundsSuccess"
    assert payload["status"] == "SUCCEEDED" and payload["balance"]["minorUnits"] == "5000"

    page = (await gql(gateway_client, key, PAGE))["account"]
    assert page["balance"]["available"]["amount"] == "50.00"
    assert page["canAddFunds"]["ready"] is True
    assert [e["node"]["amount"]["amount"] for e in page["transactions"]["edges"]] == ["50.00"]


async def test_a_declined_card_is_a_typed_error(
    session: AsyncSession, gateway_client: httpx.AsyncClient, localstripe: LocalStripe
) -> None:
    account = await create_account(session)
    key = await member_key(session, account)
    assert (await gql(gateway_client, key, UPDATE_COMPANY, input=COMPANY))["updateCompany"]["__typename"] == (
        "UpdateCompanySuccess"
    )
    attached = await gql(
        gateway_client, key, ATTACH, input={"stripePaymentMethodId": await localstripe.card(DECLINED_CARD)}
    )
    card_id = attached["attachPaymentMethod"]["paymentMethod"]["id"]
    payload = (
        await gql(
            gateway_client,
            key,
            ADD_FUNDS,
            input={"paymentMethodId": card_id, "amount": "20", "idempotencyKey": "d"},
        )
    )["addFunds"]
    assert payload["__typename"] == "PaymentDeclinedError"
    assert payload["declineCode"] == "card_declined" and payload["transaction"]["status"] == "FAILED"
    page = (await gql(gateway_client, key, PAGE))["account"]
    assert page["balance"]["available"]["amount"] == "0.00"


async def test_portal_return_url_must_be_allow_listed(
    session: AsyncSession, gateway_client: httpx.AsyncClient
) -> None:
    """Only the allow-list check: localstripe has no billing portal (see test_payments_portal for the call)."""
    account = await create_account(session)
    key = await member_key(session, account)
    for url in ["https://evil.example/", "http://localhost.evil.example/", "http://127.0.0.1@evil.example/"]:
        payload = (await gql(gateway_client, key, PORTAL, url=url))["createBillingPortalSession"]
        assert payload["__typename"] == "ReturnUrlNotAllowedError", url
