"""Money-in test set-up: an account with a complete company profile and a real localstripe card, and top-ups
by that card."""

from itertools import count
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from billing.config import Settings
from billing.db import SessionFactory
from billing.payment_methods import service as payment_methods
from billing.stripe_gateway import StripeGateway
from billing.topups import service as payments
from billing.topups.service import AddFundsRequest, TopUp
from models import Account, PaymentMethod
from tests.support.factories import SYSTEM, create_account, create_company, sessions_of
from tests.support.stripe_server import LocalStripe

OK_CARD = "4242424242424242"
DECLINED_CARD = "4000000000000341"  # attaches, then every charge is declined
THREE_D_SECURE_CARD = "4000002760003184"  # every charge needs authentication
TOP_UP_SETTINGS = Settings(min_top_up_minor=500, max_top_up_minor=1_000_000)

_keys = count(1)


async def ready_account(
    session: AsyncSession, gateway: StripeGateway, localstripe: LocalStripe, *, number: str = OK_CARD
) -> tuple[Account, PaymentMethod]:
    account = await create_account(session, currency="USD")
    await create_company(session, account)
    assert account.id is not None
    await session.commit()  # visible to the service's own sessions (in tests, this releases a savepoint)
    attached = await payment_methods.attach(
        sessions_of(session), SYSTEM, gateway, account.id, await localstripe.card(number)
    )
    await session.refresh(account)
    method = await session.get(PaymentMethod, attached.id)
    assert method is not None
    return account, method


def add_funds_request(
    account_id: int | None, method_id: int | None, amount: str, key: str
) -> AddFundsRequest:
    assert account_id is not None and method_id is not None
    return AddFundsRequest(
        account_id=account_id, payment_method_id=method_id, amount=amount, idempotency_key=key
    )


async def top_up(
    sessions: SessionFactory,
    gateway: StripeGateway,
    account: Account,
    method: PaymentMethod,
    amount: str,
    key: str | None = None,
) -> TopUp:
    """`amount` added by the account's card, under the idempotency `key` (a fresh one when None): settled at once
    by an ordinary card, left pending by a THREE_D_SECURE_CARD."""
    request = add_funds_request(account.id, method.id, amount, key or f"top-up-{next(_keys)}")
    return await payments.add_funds(sessions, SYSTEM, gateway, TOP_UP_SETTINGS, request)


async def completed_3ds(localstripe: LocalStripe, pending: TopUp) -> dict[str, Any]:
    """The customer finishes 3-D Secure for a pending top-up: its PaymentIntent as Stripe now has it (succeeded),
    ready to be put in an event."""
    intent_id = pending.transaction.stripe_payment_intent_id
    assert intent_id is not None and pending.client_secret is not None
    await localstripe.complete_3ds(intent_id, pending.client_secret)
    return await localstripe.retrieve(f"/v1/payment_intents/{intent_id}")
