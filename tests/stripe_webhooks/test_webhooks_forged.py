"""Validly signed webhooks about money that is not ours credit (and fail, and refund) nothing.

A signed event is Stripe's word that *something* happened, not that it happened to our entry: the
PaymentIntent must be the one stored on the entry or, for an entry that has none yet, Stripe itself must say
it names that entry and account and charges its amount and currency; the event's own amount and currency are
compared too. Everything runs over HTTP against the app, with real PaymentIntents in localstripe where the
case needs one; the forged events are built and signed here (localstripe only ever sends true ones).
"""

from itertools import count
from typing import Any

import httpx
import pytest
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.db import SessionFactory
from billing.ledger import service as ledger
from billing.stripe_gateway import ACCOUNT_ID_KEY, TRANSACTION_ID_KEY, StripeGateway
from models import Account, PaymentMethod, Transaction, TransactionKind, TransactionStatus
from models.stripe_webhooks import StripeEventOutcome
from tests.support.factories import SYSTEM, create_account
from tests.support.ledger_checks import checked_balance
from tests.support.payments_helpers import THREE_D_SECURE_CARD, completed_3ds, ready_account, top_up
from tests.support.stripe_server import LocalStripe
from tests.support.webhook_helpers import (
    deliver,
    event,
    fresh,
    ledger_entries,
    new_event_id,
    recorded,
)

_keys = count(1)


async def pending_top_up(
    session: AsyncSession,
    account: Account,
    amount_minor: int = 5_000,
    *,
    payment_intent_id: str | None = None,
) -> Transaction:
    """A top-up committed as pending; without a PaymentIntent, one whose charge we never heard back from."""
    assert account.id is not None
    posting = await ledger.post(
        session,
        SYSTEM,
        account_id=account.id,
        kind=TransactionKind.TOP_UP,
        amount_minor=amount_minor,
        description="Top-up",
        idempotency_key=f"top-up:forged-{next(_keys)}",
        status=TransactionStatus.PENDING,
        stripe_payment_intent_id=payment_intent_id,
    )
    return posting.transaction


async def failed_top_up(
    session: AsyncSession, account: Account, *, payment_intent_id: str | None = None
) -> Transaction:
    """A failed top-up; without a PaymentIntent, one that never reached the card network (reconciliation
    failed it)."""
    entry = await pending_top_up(session, account, payment_intent_id=payment_intent_id)
    assert entry.id is not None
    return await ledger.settle(
        session, SYSTEM, entry.id, TransactionStatus.FAILED, failure_code="not_charged"
    )


async def charged_at_stripe(
    gateway: StripeGateway,
    localstripe: LocalStripe,
    account: Account,
    method: PaymentMethod,
    amount_minor: int,
    metadata: dict[str, str],
) -> dict[str, Any]:
    """A real, succeeded PaymentIntent of ours in localstripe, as Stripe would put it in an event."""
    assert account.stripe_customer_id is not None
    result = await gateway.charge(
        customer_id=account.stripe_customer_id,
        payment_method=method.stripe_payment_method_id,
        amount_minor=amount_minor,
        currency=account.currency,
        idempotency_key=f"forged-test-{next(_keys)}",
        off_session=False,
        description="Top-up",
        metadata=metadata,
    )
    assert result.status == "succeeded" and result.payment_intent_id is not None
    return await localstripe.retrieve(f"/v1/payment_intents/{result.payment_intent_id}")


def names(entry: Transaction, account_id: int | None = None) -> dict[str, str]:
    return {TRANSACTION_ID_KEY: str(entry.id), ACCOUNT_ID_KEY: str(account_id or entry.account_id)}


def intent_object(
    intent_id: str, amount_minor: int, metadata: dict[str, str], **fields: Any
) -> dict[str, Any]:
    return {
        "id": intent_id,
        "object": "payment_intent",
        "status": "succeeded",
        "amount": amount_minor,
        "currency": "usd",
        "metadata": metadata,
        **fields,
    }


async def assert_rejected(
    session: AsyncSession, response: httpx.Response, event_id: str, reason: str
) -> None:
    """Acknowledged (redelivering cannot change it), recorded once as rejected, with the reason."""
    assert response.status_code == 200, response.text
    assert response.json()["rejected"] is True
    record = await recorded(session, event_id)
    assert record is not None and record.outcome == StripeEventOutcome.REJECTED
    assert record.rejection_reason is not None and reason in record.rejection_reason


async def test_an_unknown_payment_intent_naming_a_failed_top_up_credits_nothing_however_often(
    session: AsyncSession,
    stripe_gateway: StripeGateway,
    localstripe: LocalStripe,
    webhook_client: httpx.AsyncClient,
) -> None:
    """The reported attack: `amount: 1` and metadata naming a failed 50.00 top-up credited 50.00 per event."""
    account, _ = await ready_account(session, stripe_gateway, localstripe)
    failed = await failed_top_up(session, account)
    entries = await ledger_entries(session)
    for amount in (1, failed.amount_minor):  # the reported one, and one that gets as far as asking Stripe
        forged = event("payment_intent.succeeded", intent_object(f"pi_forged{amount}", amount, names(failed)))
        first = await deliver(webhook_client, forged)
        replayed = await deliver(webhook_client, forged)
        assert replayed.json() == {"received": True, "duplicate": True, "rejected": False}
        # The same forgery under a new event id is another event: rejected again, on its own record.
        again_id = new_event_id()
        again = await deliver(webhook_client, {**forged, "id": again_id})
        reason = "for 1 USD" if amount == 1 else "Stripe does not confirm"
        await assert_rejected(session, first, forged["id"], reason)
        await assert_rejected(session, again, again_id, reason)
    assert (await fresh(session, failed)).status == TransactionStatus.FAILED
    assert await ledger_entries(session) == entries  # no late-success credit either
    assert await checked_balance(session, account) == 0


async def test_an_unknown_payment_intent_naming_a_top_up_paid_by_another_credits_nothing(
    session: AsyncSession, webhook_client: httpx.AsyncClient
) -> None:
    """The named top-up failed on its own PaymentIntent (a decline): one entry is one charge, so no other
    PaymentIntent can pay for it, and Stripe is not even asked."""
    account = await create_account(session, currency="USD")
    failed = await failed_top_up(session, account, payment_intent_id="pi_declined_earlier")
    forged = event("payment_intent.succeeded", intent_object("pi_forged_other", 5_000, names(failed)))
    await assert_rejected(session, await deliver(webhook_client, forged), forged["id"], "names none")
    assert (await fresh(session, failed)).status == TransactionStatus.FAILED
    assert await checked_balance(session, account) == 0


async def test_a_real_payment_intent_with_a_forged_amount_or_currency_credits_nothing(
    session: AsyncSession,
    session_factory: SessionFactory,
    stripe_gateway: StripeGateway,
    localstripe: LocalStripe,
    webhook_client: httpx.AsyncClient,
) -> None:
    """The PaymentIntent is the one stored on the entry (3-D Secure still to finish); the event misstates it."""
    account, method = await ready_account(session, stripe_gateway, localstripe, number=THREE_D_SECURE_CARD)
    pending = await top_up(session_factory, stripe_gateway, account, method, "30")
    true_intent = await completed_3ds(localstripe, pending)

    more = event("payment_intent.succeeded", {**true_intent, "amount": 300_000})
    await assert_rejected(session, await deliver(webhook_client, more), more["id"], "for 300000 USD")
    euros = event("payment_intent.succeeded", {**true_intent, "currency": "eur"})
    await assert_rejected(session, await deliver(webhook_client, euros), euros["id"], "for 3000 EUR")
    assert (await fresh(session, pending.transaction)).status == TransactionStatus.PENDING
    assert await checked_balance(session, account) == 0

    # The true event still settles it: a rejection blocks only its own event id.
    true_event = event("payment_intent.succeeded", true_intent)
    assert (await deliver(webhook_client, true_event)).json()["rejected"] is False
    assert (await fresh(session, pending.transaction)).status == TransactionStatus.SUCCEEDED
    assert await checked_balance(session, account) == 3_000


async def test_an_entry_without_a_payment_intent_is_credited_only_for_what_stripe_confirms(
    session: AsyncSession,
    stripe_gateway: StripeGateway,
    localstripe: LocalStripe,
    webhook_client: httpx.AsyncClient,
) -> None:
    """Only metadata ties these PaymentIntents to entries, so Stripe's own copy is what counts."""
    account, method = await ready_account(session, stripe_gateway, localstripe)
    other_account, _ = await ready_account(session, stripe_gateway, localstripe)
    target = await pending_top_up(session, account)
    elsewhere = await pending_top_up(session, account)
    foreign = await pending_top_up(session, other_account)

    async def forged(charged: dict[str, Any], **changes: Any) -> tuple[httpx.Response, str]:
        body = event("payment_intent.succeeded", {**charged, **changes})
        return await deliver(webhook_client, body), body["id"]

    # Charged at Stripe for another amount than the entry; the event claims the entry's amount.
    cheaper = await charged_at_stripe(stripe_gateway, localstripe, account, method, 500, names(target))
    response, event_id = await forged(cheaper, amount=target.amount_minor)
    await assert_rejected(session, response, event_id, "at Stripe it is for 500 USD")
    # At Stripe it names another entry; the event's metadata was rewritten to name the target.
    for_elsewhere = await charged_at_stripe(
        stripe_gateway, localstripe, account, method, 5_000, names(elsewhere)
    )
    response, event_id = await forged(for_elsewhere, metadata=names(target))
    await assert_rejected(session, response, event_id, "names entry/account")
    # At Stripe it names the target under another account; the event's metadata was rewritten to match.
    wrong_account = names(target, account_id=other_account.id)
    other = await charged_at_stripe(stripe_gateway, localstripe, account, method, 5_000, wrong_account)
    response, event_id = await forged(other, metadata=names(target))
    await assert_rejected(session, response, event_id, "names entry/account")
    # The event's metadata names an entry of another account than it says.
    response, event_id = await forged(for_elsewhere, metadata=names(foreign, account_id=account.id))
    await assert_rejected(session, response, event_id, "names none")
    # Another currency than the entry's.
    response, event_id = await forged(for_elsewhere, metadata=names(target), currency="eur")
    await assert_rejected(session, response, event_id, "for 5000 EUR")

    for entry in (target, elsewhere, foreign):
        assert (await fresh(session, entry)).status == TransactionStatus.PENDING
    assert await checked_balance(session, account) == 0
    assert await checked_balance(session, other_account) == 0

    # What Stripe confirms is credited, once, and the entry learns its PaymentIntent.
    genuine = await charged_at_stripe(stripe_gateway, localstripe, account, method, 5_000, names(target))
    delivered = event("payment_intent.succeeded", genuine)
    assert (await deliver(webhook_client, delivered)).json() == {
        "received": True,
        "duplicate": False,
        "rejected": False,
    }
    assert (await deliver(webhook_client, delivered)).json()["duplicate"] is True
    settled = await fresh(session, target)
    assert settled.status == TransactionStatus.SUCCEEDED and settled.stripe_payment_intent_id == genuine["id"]
    assert await checked_balance(session, account) == 5_000


async def test_a_forged_failure_does_not_fail_a_pending_top_up(
    session: AsyncSession,
    session_factory: SessionFactory,
    stripe_gateway: StripeGateway,
    localstripe: LocalStripe,
    webhook_client: httpx.AsyncClient,
) -> None:
    account, method = await ready_account(session, stripe_gateway, localstripe, number=THREE_D_SECURE_CARD)
    waiting = await top_up(session_factory, stripe_gateway, account, method, "30")
    assert waiting.transaction.stripe_payment_intent_id is not None
    unconfirmed = await pending_top_up(session, account)
    failure = {"last_payment_error": {"code": "card_declined", "message": "declined"}}
    for entry, intent_id in (
        (waiting.transaction, "pi_forged_failure"),
        (unconfirmed, "pi_forged_failure_2"),
    ):
        body = intent_object(
            intent_id, entry.amount_minor, names(entry), status="requires_payment_method", **failure
        )
        forged = event("payment_intent.payment_failed", body)
        await assert_rejected(session, await deliver(webhook_client, forged), forged["id"], intent_id)
        assert (await fresh(session, entry)).status == TransactionStatus.PENDING


async def test_forged_refunds_take_nothing_back(
    session: AsyncSession,
    session_factory: SessionFactory,
    stripe_gateway: StripeGateway,
    localstripe: LocalStripe,
    webhook_client: httpx.AsyncClient,
) -> None:
    account, method = await ready_account(session, stripe_gateway, localstripe)
    paid = await top_up(session_factory, stripe_gateway, account, method, "40")
    intent_id = paid.transaction.stripe_payment_intent_id
    assert intent_id is not None

    def refund(payment_intent: str, amount: int, currency: str = "usd") -> dict[str, Any]:
        return event(
            "charge.refunded",
            {
                "id": f"ch_forged_{next(_keys)}",
                "object": "charge",
                "payment_intent": payment_intent,
                "amount": amount,
                "amount_refunded": amount,
                "currency": currency,
            },
        )

    cases = [
        (refund("pi_unknown", 4_000), "not a charge of ours"),
        (refund(intent_id, 400_000), "for 400000 USD"),
        (refund(intent_id, 4_000, "eur"), "for 4000 EUR"),
    ]
    for forged, reason in cases:
        await assert_rejected(session, await deliver(webhook_client, forged), forged["id"], reason)
    refunds = await session.exec(select(Transaction).where(col(Transaction.kind) == TransactionKind.REFUND))
    assert refunds.all() == []
    assert await checked_balance(session, account) == 4_000


async def test_every_rejection_is_logged_with_its_reason(
    session: AsyncSession,
    webhook_client: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    account = await create_account(session, currency="USD")
    entry = await pending_top_up(session, account)
    forged = event("payment_intent.succeeded", intent_object("pi_logged", 1, names(entry)))
    with caplog.at_level("WARNING", logger="billing.stripe_webhooks.service"):
        await deliver(webhook_client, forged)
        await deliver(webhook_client, forged)  # a duplicate: recorded and logged once
    logged = [r.getMessage() for r in caplog.records if r.name == "billing.stripe_webhooks.service"]
    assert len(logged) == 1
    assert forged["id"] in logged[0] and "rejected" in logged[0] and "for 1 USD" in logged[0]
