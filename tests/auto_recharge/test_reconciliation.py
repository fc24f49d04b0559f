"""Reconciliation finds late successes: a charge that lands after reconciliation failed its entry as not charged
is credited exactly once, with a history row that says so, whether its webhook or the next reconciliation
reports it first. Against localstripe through the real gateway.
"""

import asyncio
from datetime import timedelta
from typing import Literal

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.auto_recharge import reconciliation
from billing.config import Settings
from billing.db import SessionFactory, session_factory, unit_of_work
from billing.ledger import service as ledger
from billing.stripe_gateway import ACCOUNT_ID_KEY, TRANSACTION_ID_KEY, StripeGateway, longest_call
from billing.topups import service as payments
from models import Account, PaymentMethod, Transaction, TransactionKind, TransactionStatus
from models.types import utcnow
from tests.support.factories import SYSTEM
from tests.support.ledger_checks import checked_balance
from tests.support.payments_helpers import ready_account
from tests.support.stripe_server import LocalStripe

IMMEDIATELY = timedelta(0)  # reconcile entries however recently they were written


async def pending_top_up(session: AsyncSession, account: Account, card: PaymentMethod) -> Transaction:
    """The pending entry addFunds commits before it calls Stripe."""
    assert account.id is not None
    posting = await ledger.post(
        session,
        SYSTEM,
        account_id=account.id,
        kind=TransactionKind.TOP_UP,
        amount_minor=2_500,
        description="Top-up with Visa •••• 4242",
        idempotency_key="top-up:slow",
        status=TransactionStatus.PENDING,
        payment_method_id=card.id,
    )
    return posting.transaction


async def history(session: AsyncSession, account: Account) -> list[tuple[str, str, int, str]]:
    statement = (
        select(Transaction)
        .where(Transaction.account_id == account.id)
        .order_by(col(Transaction.id))
        .execution_options(populate_existing=True)
    )
    return [
        (entry.kind, entry.status, entry.amount_minor, entry.description)
        for entry in (await session.exec(statement)).all()
    ]


@pytest.mark.parametrize("first", ["webhook", "reconciliation"])
async def test_a_charge_landing_after_reconciliation_failed_its_entry_is_credited_once(
    session: AsyncSession,
    session_factory: SessionFactory,
    stripe_gateway: StripeGateway,
    localstripe: LocalStripe,
    first: Literal["webhook", "reconciliation"],
) -> None:
    account, card = await ready_account(session, stripe_gateway, localstripe)
    entry = await pending_top_up(session, account, card)
    assert entry.id is not None and account.stripe_customer_id is not None
    # The request is still talking to Stripe when reconciliation looks: no charge there yet.
    report = await reconciliation.reconcile(session_factory, stripe_gateway, pending_for=IMMEDIATELY)
    assert report.failed == [entry.id]
    await session.refresh(entry)
    assert (entry.status, entry.failure_code) == (TransactionStatus.FAILED, reconciliation.NOT_CHARGED_CODE)

    charged = await stripe_gateway.charge(
        customer_id=account.stripe_customer_id,
        payment_method=card.stripe_payment_method_id,
        amount_minor=entry.amount_minor,
        currency=entry.currency,
        idempotency_key=payments.stripe_idempotency_key(entry.id),
        off_session=False,
        description=entry.description,
        metadata={TRANSACTION_ID_KEY: str(entry.id), ACCOUNT_ID_KEY: str(account.id)},
    )
    assert charged.status == "succeeded" and charged.payment_intent_id is not None

    entry_id = entry.id

    async def webhook() -> None:
        """What the payment_intent.succeeded webhook applies to the entry it found (billing.stripe_webhooks.service)."""
        async with unit_of_work(session_factory) as webhook_session:
            await payments.apply_charge_result(webhook_session, SYSTEM, entry_id, charged)

    reports = []
    for reporter in ([first] + [other for other in ("webhook", "reconciliation") if other != first]) * 2:
        if reporter == "webhook":
            await webhook()
        else:
            reports.append(
                await reconciliation.reconcile(session_factory, stripe_gateway, pending_for=IMMEDIATELY)
            )

    expected_late = [[entry.id], []] if first == "reconciliation" else [[], []]
    assert [r.paid_late for r in reports] == expected_late
    assert await history(session, account) == [
        (TransactionKind.TOP_UP, TransactionStatus.FAILED, 2_500, "Top-up with Visa •••• 4242"),
        (
            TransactionKind.ADJUSTMENT,
            TransactionStatus.SUCCEEDED,
            2_500,
            "Top-up with Visa •••• 4242 (paid after first failing)",
        ),
    ]
    await session.refresh(entry)
    assert entry.stripe_payment_intent_id == charged.payment_intent_id  # linked: looked up no more
    assert await checked_balance(session, account) == 2_500


async def test_an_entry_failed_as_not_charged_that_stripe_never_charged_stays_failed(
    session: AsyncSession,
    session_factory: SessionFactory,
    stripe_gateway: StripeGateway,
    localstripe: LocalStripe,
) -> None:
    account, card = await ready_account(session, stripe_gateway, localstripe)
    entry = await pending_top_up(session, account, card)
    first = await reconciliation.reconcile(session_factory, stripe_gateway, pending_for=IMMEDIATELY)
    again = await reconciliation.reconcile(session_factory, stripe_gateway, pending_for=IMMEDIATELY)

    assert first.failed == [entry.id] and again.paid_late == [] and again.failed == []
    assert [row[:2] for row in await history(session, account)] == [
        (TransactionKind.TOP_UP, TransactionStatus.FAILED)
    ]
    assert await checked_balance(session, account) == 0


async def test_no_charge_at_stripe_fails_an_entry_only_once_no_request_can_still_be_making_it(
    session: AsyncSession,
    session_factory: SessionFactory,
    stripe_gateway: StripeGateway,
    localstripe: LocalStripe,
) -> None:
    """The worker passes `in_flight_for=longest_call(settings)`: while the request that wrote the entry may still
    be on its way to Stripe (a slow or retried call), Stripe knowing nothing of it decides nothing."""
    account, card = await ready_account(session, stripe_gateway, localstripe)
    entry = await pending_top_up(session, account, card)
    in_flight = longest_call(Settings(stripe_timeout_seconds=20, stripe_max_network_retries=2))
    assert in_flight == timedelta(seconds=3 * 20 + 2 * 5)

    young = await reconciliation.reconcile(
        session_factory, stripe_gateway, pending_for=IMMEDIATELY, in_flight_for=in_flight
    )
    assert (young.still_pending, young.failed) == ([entry.id], [])
    await session.refresh(entry)
    assert entry.status == TransactionStatus.PENDING

    later = utcnow() + in_flight + timedelta(seconds=1)
    old = await reconciliation.reconcile(
        session_factory, stripe_gateway, pending_for=IMMEDIATELY, in_flight_for=in_flight, now=later
    )
    assert (old.still_pending, old.failed) == ([], [entry.id])
    await session.refresh(entry)
    assert (entry.status, entry.failure_code) == (TransactionStatus.FAILED, reconciliation.NOT_CHARGED_CODE)


@pytest.mark.postgres_only
async def test_workers_reconciling_at_once_credit_a_crashed_top_up_once(
    committing_engine: AsyncEngine, stripe_gateway: StripeGateway, localstripe: LocalStripe
) -> None:
    """Every worker reconciles on its own timer, so several may settle the same entry at the same moment."""
    factory = session_factory(committing_engine)
    async with factory() as session:
        account, card = await ready_account(session, stripe_gateway, localstripe)
        entry = await pending_top_up(session, account, card)
        await session.commit()
    assert entry.id is not None and account.stripe_customer_id is not None
    # The gateway that committed the entry died after Stripe charged it, before recording the outcome.
    await stripe_gateway.charge(
        customer_id=account.stripe_customer_id,
        payment_method=card.stripe_payment_method_id,
        amount_minor=entry.amount_minor,
        currency=entry.currency,
        idempotency_key=payments.stripe_idempotency_key(entry.id),
        off_session=False,
        description=entry.description,
        metadata={TRANSACTION_ID_KEY: str(entry.id), ACCOUNT_ID_KEY: str(account.id)},
    )

    reports = await asyncio.gather(
        *(reconciliation.reconcile(factory, stripe_gateway, pending_for=IMMEDIATELY) for _ in range(4))
    )

    assert all(report.succeeded == [entry.id] for report in reports)
    async with factory() as session:
        assert await history(session, account) == [
            (TransactionKind.TOP_UP, TransactionStatus.SUCCEEDED, 2_500, "Top-up with Visa •••• 4242")
        ]
        assert await checked_balance(session, account) == 2_500
