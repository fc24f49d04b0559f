"""Attaching a card tells nothing about which cards exist: another customer's and an unknown one answer alike.

Against localstripe, with two accounts (two Stripe customers), through GraphQL as a frontend would ask.
"""

from typing import Any

import httpx
from sqlmodel.ext.asyncio.session import AsyncSession

from tests.support.factories import create_account, member_key
from tests.support.graphql_client import execute_ok
from tests.support.stripe_server import LocalStripe

ATTACH = """
mutation ($id: String!) {
  attachPaymentMethod(input: {stripePaymentMethodId: $id}) { __typename ... on Error { message } }
}
"""


async def attach(client: httpx.AsyncClient, key: str, stripe_id: str) -> dict[str, Any]:
    body = await execute_ok(client, key, ATTACH, {"id": stripe_id})
    return dict(body["data"]["attachPaymentMethod"])


async def test_another_customers_card_and_an_unknown_card_answer_the_same(
    session: AsyncSession, gateway_client: httpx.AsyncClient, localstripe: LocalStripe
) -> None:
    theirs = await member_key(session, await create_account(session, name="Their GmbH"))
    mine = await member_key(session, await create_account(session, name="My GmbH"))
    their_card = await localstripe.card()
    assert (await attach(gateway_client, theirs, their_card))["__typename"] == "PaymentMethodSuccess"

    foreign = await attach(gateway_client, mine, their_card)
    unknown = await attach(gateway_client, mine, "pm_0000000000000000000000000")
    assert foreign == unknown
    assert foreign["__typename"] == "PaymentMethodNotFoundError"

    # The foreign card is still theirs alone.
    method = await localstripe.retrieve(f"/v1/payment_methods/{their_card}")
    assert method["customer"] is not None
    assert (await attach(gateway_client, theirs, their_card))["__typename"] == "PaymentMethodSuccess"
