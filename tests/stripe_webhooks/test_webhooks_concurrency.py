"""Deliveries of one event at the same moment: applied (or rejected) once, recorded once (PostgreSQL).

Stripe retries and may deliver an event twice at once; a forger may replay one in parallel. Each delivery
runs through the app on its own connection, with real commits, so the primary key on the event id is what
decides.
"""

import asyncio

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select

from billing.db import session_factory, unit_of_work
from billing.ledger import service as ledger
from billing.stripe_gateway import ACCOUNT_ID_KEY, TRANSACTION_ID_KEY
from models import StripeEvent, TransactionKind, TransactionStatus
from models.stripe_webhooks import StripeEventOutcome
from tests.support.factories import SYSTEM, create_account
from tests.support.ledger_checks import checked_balance
from tests.support.webhook_helpers import app_client, deliver, event

DELIVERIES = 8


@pytest.mark.postgres_only
async def test_one_event_delivered_many_times_at_once_credits_once_and_a_forgery_is_rejected_once(
    committing_engine: AsyncEngine, localstripe_url: str
) -> None:
    factory = session_factory(committing_engine)
    async with unit_of_work(factory) as session:
        account = await create_account(session, currency="USD")
        assert account.id is not None
        posting = await ledger.post(
            session,
            SYSTEM,
            account_id=account.id,
            kind=TransactionKind.TOP_UP,
            amount_minor=2_500,
            description="Top-up",
            idempotency_key="top-up:concurrent",
            status=TransactionStatus.PENDING,
            stripe_payment_intent_id="pi_concurrent",
        )
    entry = posting.transaction
    names = {TRANSACTION_ID_KEY: str(entry.id), ACCOUNT_ID_KEY: str(account.id)}
    intent = {"object": "payment_intent", "status": "succeeded", "amount": 2_500, "currency": "usd"}
    genuine = event("payment_intent.succeeded", {**intent, "id": "pi_concurrent", "metadata": names})
    forged = event("payment_intent.succeeded", {**intent, "id": "pi_not_ours", "metadata": names})

    async with app_client(factory, localstripe_url) as client:
        responses = await asyncio.gather(
            *(deliver(client, body) for body in [genuine] * DELIVERIES + [forged] * DELIVERIES)
        )

    answers = [response.json() for response in responses]
    assert all(response.status_code == 200 for response in responses)
    assert sum(not a["duplicate"] for a in answers[:DELIVERIES]) == 1
    assert sum(a["rejected"] for a in answers[:DELIVERIES]) == 0
    assert sum(a["rejected"] for a in answers[DELIVERIES:]) == 1
    async with unit_of_work(factory) as session:
        records = (
            await session.exec(
                select(StripeEvent).where(col(StripeEvent.id).in_([genuine["id"], forged["id"]]))
            )
        ).all()
        assert {r.id: r.outcome for r in records} == {
            genuine["id"]: StripeEventOutcome.PROCESSED,
            forged["id"]: StripeEventOutcome.REJECTED,
        }
        assert await checked_balance(session, account.id) == 2_500
