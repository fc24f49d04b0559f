"""One account with everything a mutation may need, and valid values for the fields of the API's inputs, for
the tests that generate requests from the schema (the mutation walk, the fuzzer)."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import count

from sqlmodel.ext.asyncio.session import AsyncSession

from billing.outgoing_webhooks.service import new_secret
from models import Account, WebhookEndpoint
from schema.node import to_global_id
from tests.support.factories import create_account, create_company, create_payment_method
from tests.support.usage_factories import create_lead_plan

_keys = count(1)

# A webhook receiver on loopback (allowed outside production); nothing listens there, nothing is sent.
WEBHOOK_URL = "http://127.0.0.1:9/hooks"
# Valid values by field name; fields not named here get one by scalar (see `values`).
FIELD_VALUES: dict[str, object] = {
    "amount": "50.00",
    "threshold": "10.00",
    "monthlyLimit": "200.00",
    "monthlyBudget": "500.00",
    "pricePerLead": "20.00",
    "cost": "1.50",
    "returnUrl": "http://localhost/billing",
    "stripePaymentMethodId": "pm_card_visa",
    "legalName": "Nordlicht Solar GmbH",
    "phone": "030 1234567",
    "line1": "Unter den Linden 1",
    "city": "Berlin",
    "postalCode": "10117",
    "country": "DE",
    "category": "lead",
    "url": WEBHOOK_URL,
    "eventTypes": "topup.succeeded",
}


@dataclass
class World:
    """An account with everything a mutation may need: a complete company, a Stripe customer, two cards and
    an active lead plan; `ids` are their global IDs by the field names that take them."""

    account: Account
    ids: dict[str, str]

    def values(self) -> dict[str, object]:
        """Valid values for this account: by field name, then by scalar (an ID of no known kind is the
        account's)."""
        occurred = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
        return {
            "String": "walk",
            "Int": 60,
            "Boolean": True,
            "BigInt": "1000",
            "DateTime": occurred,
            "ID": self.ids["accountId"],
            **FIELD_VALUES,
            "idempotencyKey": f"walk-{next(_keys)}",
            "externalId": f"walk-{next(_keys)}",
            **self.ids,
        }


async def create_world(session: AsyncSession) -> World:
    account = await create_account(session, currency="EUR", country="DE", time_zone="Europe/Berlin")
    account.stripe_customer_id = f"cus_walk_{account.id}"
    await create_company(session, account)
    card = await create_payment_method(session, account)
    spare = await create_payment_method(session, account, is_default=False, last4="4444")
    plan = await create_lead_plan(session, account)
    assert account.id is not None and card.id is not None and spare.id is not None and plan.id is not None
    endpoint = WebhookEndpoint(
        account_id=account.id, url=WEBHOOK_URL, event_types=",topup.succeeded,", secret=new_secret()
    )
    session.add(endpoint)
    await session.flush()
    assert endpoint.id is not None
    ids: dict[str, str] = {
        "accountId": to_global_id("Account", account.id),
        "paymentMethodId": to_global_id("PaymentMethod", card.id),
        "replacementPaymentMethodId": to_global_id("PaymentMethod", spare.id),
        "leadPlanId": to_global_id("LeadPlan", plan.id),
        "webhookEndpointId": to_global_id("WebhookEndpoint", endpoint.id),
    }
    return World(account, ids)
