"""addFunds against localstripe through the real SDK: gates, outcomes, idempotency, concurrency, crashes."""

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.auto_recharge import reconciliation
from billing.db import SessionFactory, session_factory, unit_of_work
from billing.ledger import service as ledger
from billing.money import InvalidAmount
from billing.stripe_gateway import PaymentProviderUnavailable, StripeGateway
from billing.topups import service as payments
from models import Company, Transaction, TransactionStatus
from models.types import utcnow
from tests.support.factories import SYSTEM, create_account, create_company, create_payment_method
from tests.support.ledger_checks import checked_balance
from tests.support.payments_helpers import (
    DECLINED_CARD,
    THREE_D_SECURE_CARD,
    TOP_UP_SETTINGS,
    add_funds_request,
    ready_account,
    top_up,
)
from tests.support.stripe_server import LocalStripe
from tests.support.stripe_stub import stub_gateway


async def test_success_credits_at_once(
    session: AsyncSession,
    session_factory: SessionFactory,
    stripe_gateway: StripeGateway,
    localstripe: LocalStripe,
) -> None:
    account, method = await ready_account(session, stripe_gateway, localstripe)
    result = await top_up(session_factory, stripe_gateway, account, method, "25.50", key="k1")
    assert result.status == "succeeded"
    assert result.balance_minor == 2_550
    assert result.transaction.status == TransactionStatus.SUCCEEDED
    assert result.transaction.stripe_payment_intent_id is not None
    assert account.id is not None
    assert await checked_balance(session, account.id) == 2_550
    assert account.stripe_customer_id is not None
    charges = await localstripe.charges(account.stripe_customer_id)
    assert [c["amount"] for c in charges] == [2_550]


async def test_gates_in_order(
    session: AsyncSession, session_factory: SessionFactory, stripe_gateway: StripeGateway
) -> None:
    account = await create_account(session)
    other = await create_account(session)
    foreign = await create_payment_method(session, other)
    with pytest.raises(payments.CompanyIncomplete) as incomplete:
        await top_up(session_factory, stripe_gateway, account, foreign, "x", key="a")
    assert "phone" in incomplete.value.missing_fields and "legal_name" in incomplete.value.missing_fields
    await create_company(session, account, phone=None)
    with pytest.raises(payments.CompanyIncomplete) as incomplete:
        await top_up(session_factory, stripe_gateway, account, foreign, "x", key="a")
    assert incomplete.value.missing_fields == ["phone"]
    company = await session.get(Company, account.id)
    assert company is not None
    company.phone = "+4930123456"
    await session.flush()
    with pytest.raises(payments.PaymentMethodRequired):
        await top_up(session_factory, stripe_gateway, account, foreign, "x", key="a")
    own = await create_payment_method(session, account)
    with pytest.raises(payments.UnknownPaymentMethod):
        await top_up(session_factory, stripe_gateway, account, foreign, "x", key="a")
    for amount, error in [
        ("x", InvalidAmount),
        ("0", InvalidAmount),
        ("-5", InvalidAmount),
        ("10.001", InvalidAmount),
        ("4.99", payments.AmountOutOfRange),
        ("10000.01", payments.AmountOutOfRange),
    ]:
        with pytest.raises(error):
            await payments.add_funds(
                session_factory,
                SYSTEM,
                stripe_gateway,
                TOP_UP_SETTINGS,
                add_funds_request(account.id, own.id, amount, "a"),
            )
    assert account.id is not None
    assert (await session.exec(select(Transaction).where(Transaction.account_id == account.id))).all() == []


async def test_decline_fails_the_entry_and_keeps_the_balance(
    session: AsyncSession,
    session_factory: SessionFactory,
    stripe_gateway: StripeGateway,
    localstripe: LocalStripe,
) -> None:
    account, method = await ready_account(session, stripe_gateway, localstripe, number=DECLINED_CARD)
    with pytest.raises(payments.PaymentDeclined) as declined:
        await top_up(session_factory, stripe_gateway, account, method, "20", key="d")
    assert declined.value.code == "card_declined"
    entry = declined.value.transaction
    assert entry.status == TransactionStatus.FAILED and entry.failure_code == "card_declined"
    assert account.id is not None
    assert await checked_balance(session, account.id) == 0
    # The same key again gives the same answer and charges nothing more.
    with pytest.raises(payments.PaymentDeclined):
        await top_up(session_factory, stripe_gateway, account, method, "20", key="d")
    assert account.stripe_customer_id is not None
    assert len(await localstripe.charges(account.stripe_customer_id)) == 1


async def test_three_d_secure_returns_the_client_secret_and_settles_later(
    session: AsyncSession,
    session_factory: SessionFactory,
    stripe_gateway: StripeGateway,
    localstripe: LocalStripe,
) -> None:
    account, method = await ready_account(session, stripe_gateway, localstripe, number=THREE_D_SECURE_CARD)
    first = await top_up(session_factory, stripe_gateway, account, method, "30", key="3ds")
    assert first.status == "requires_action" and first.client_secret is not None
    assert first.transaction.status == TransactionStatus.PENDING and first.balance_minor == 0
    intent_id = first.transaction.stripe_payment_intent_id
    assert intent_id is not None
    await localstripe.complete_3ds(intent_id, first.client_secret)
    # The retry (same key) reads Stripe, sees the payment through and credits it once.
    again = await top_up(session_factory, stripe_gateway, account, method, "30", key="3ds")
    assert again.status == "succeeded" and again.balance_minor == 3_000
    third = await top_up(session_factory, stripe_gateway, account, method, "30", key="3ds")
    assert third.balance_minor == 3_000 and third.transaction.id == first.transaction.id


async def test_a_3d_secure_nobody_finishes_is_canceled_at_stripe_after_a_day(
    session: AsyncSession,
    session_factory: SessionFactory,
    stripe_gateway: StripeGateway,
    localstripe: LocalStripe,
) -> None:
    account, method = await ready_account(session, stripe_gateway, localstripe, number=THREE_D_SECURE_CARD)
    pending = await top_up(session_factory, stripe_gateway, account, method, "30", key="abandoned")
    intent_id = pending.transaction.stripe_payment_intent_id
    assert pending.status == "requires_action" and intent_id is not None

    waiting = await reconciliation.reconcile(session_factory, stripe_gateway, pending_for=timedelta(0))
    assert waiting.still_pending == [pending.transaction.id]
    later = utcnow() + timedelta(hours=25)
    abandoned = await reconciliation.reconcile(session_factory, stripe_gateway, now=later)

    assert abandoned.failed == [pending.transaction.id]
    assert (await localstripe.retrieve(f"/v1/payment_intents/{intent_id}"))["status"] == "canceled"
    entry = await session.get(Transaction, pending.transaction.id, populate_existing=True)
    assert entry is not None and entry.status == TransactionStatus.CANCELED
    assert await checked_balance(session, account) == 0


async def test_idempotent_retry_and_conflicting_retry(
    session: AsyncSession,
    session_factory: SessionFactory,
    stripe_gateway: StripeGateway,
    localstripe: LocalStripe,
) -> None:
    account, method = await ready_account(session, stripe_gateway, localstripe)
    first = await top_up(session_factory, stripe_gateway, account, method, "10", key="same")
    second = await top_up(session_factory, stripe_gateway, account, method, "10.00", key="same")
    assert second.transaction.id == first.transaction.id and second.balance_minor == 1_000
    with pytest.raises(payments.IdempotencyConflict):
        await top_up(session_factory, stripe_gateway, account, method, "11", key="same")
    assert account.stripe_customer_id is not None
    assert len(await localstripe.charges(account.stripe_customer_id)) == 1


async def test_crash_after_stripe_charged_is_healed_by_reconciliation_once(
    session: AsyncSession,
    session_factory: SessionFactory,
    stripe_gateway: StripeGateway,
    localstripe: LocalStripe,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    account, method = await ready_account(session, stripe_gateway, localstripe)

    async def crash(*_args: object, **_kwargs: object) -> None:
        raise SystemExit("process died between 'Stripe charged' and 'ledger credited'")

    with monkeypatch.context() as patch:
        patch.setattr(payments, "_finish", crash)
        with pytest.raises(SystemExit):
            await top_up(session_factory, stripe_gateway, account, method, "40", key="c")
    assert account.id is not None
    entry = await ledger.find_by_idempotency_key(session, SYSTEM, account.id, "top-up:c")
    assert (
        entry is not None
        and entry.status == TransactionStatus.PENDING
        and entry.stripe_payment_intent_id is None
    )
    assert await checked_balance(session, account.id) == 0

    # Not yet old enough: left alone.
    early = await reconciliation.reconcile(session_factory, stripe_gateway, pending_for=timedelta(minutes=10))
    assert entry.id not in early.succeeded
    for _ in range(2):  # a second run (or a webhook) finds it settled and changes nothing
        await reconciliation.reconcile(session_factory, stripe_gateway, pending_for=timedelta(0))
    await session.refresh(entry)
    assert entry.status == TransactionStatus.SUCCEEDED and entry.stripe_payment_intent_id is not None
    assert await checked_balance(session, account.id) == 4_000
    assert account.stripe_customer_id is not None
    assert len(await localstripe.charges(account.stripe_customer_id)) == 1


async def test_reconciliation_fails_an_entry_stripe_never_charged(
    session: AsyncSession,
    session_factory: SessionFactory,
    stripe_gateway: StripeGateway,
    localstripe: LocalStripe,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Stripe unreachable mid-request (faked: the gateway's charge raises before any HTTP call): a typed
    error, a pending entry, and reconciliation fails it because Stripe has no charge for it."""
    account, method = await ready_account(session, stripe_gateway, localstripe)

    async def unreachable(**_kwargs: object) -> None:
        raise PaymentProviderUnavailable()

    with monkeypatch.context() as patch:
        patch.setattr(stripe_gateway, "charge", unreachable)
        with pytest.raises(PaymentProviderUnavailable):
            await top_up(session_factory, stripe_gateway, account, method, "9", key="o")
    report = await reconciliation.reconcile(session_factory, stripe_gateway, pending_for=timedelta(0))
    assert account.id is not None
    entry = await ledger.find_by_idempotency_key(session, SYSTEM, account.id, "top-up:o")
    assert entry is not None and entry.id in report.failed
    await session.refresh(entry)
    assert entry.status == TransactionStatus.FAILED and entry.failure_code == "not_charged"
    assert await checked_balance(session, account.id) == 0


@pytest.mark.postgres_only
async def test_fifty_concurrent_top_ups_on_one_account(
    committing_engine: AsyncEngine, stripe_gateway: StripeGateway, localstripe: LocalStripe
) -> None:
    factory = session_factory(committing_engine)
    async with unit_of_work(factory) as session:
        account, method = await ready_account(session, stripe_gateway, localstripe)
    results = await asyncio.gather(
        *(
            payments.add_funds(
                factory,
                SYSTEM,
                stripe_gateway,
                TOP_UP_SETTINGS,
                add_funds_request(account.id, method.id, "10", f"c{i}"),
            )
            for i in range(50)
        )
    )
    assert all(result.status == "succeeded" for result in results)
    assert account.id is not None and account.stripe_customer_id is not None
    async with unit_of_work(factory) as session:
        assert await checked_balance(session, account.id) == 50 * 1_000
    assert len(await localstripe.charges(account.stripe_customer_id)) == 50


@pytest.mark.postgres_only
async def test_concurrent_requests_with_one_key_charge_once(
    committing_engine: AsyncEngine, stripe_gateway: StripeGateway, localstripe: LocalStripe
) -> None:
    factory = session_factory(committing_engine)
    async with unit_of_work(factory) as session:
        account, method = await ready_account(session, stripe_gateway, localstripe)
    results = await asyncio.gather(
        *(
            payments.add_funds(
                factory,
                SYSTEM,
                stripe_gateway,
                TOP_UP_SETTINGS,
                add_funds_request(account.id, method.id, "10", "one"),
            )
            for _ in range(10)
        )
    )
    assert len({result.transaction.id for result in results}) == 1
    assert account.id is not None and account.stripe_customer_id is not None
    async with unit_of_work(factory) as session:
        assert await checked_balance(session, account.id) == 1_000
    assert len(await localstripe.charges(account.stripe_customer_id)) == 1


async def test_the_charge_carries_an_idempotency_key_from_our_transaction(
    session: AsyncSession, session_factory: SessionFactory
) -> None:
    """Stub Stripe over HTTP: localstripe ignores the Idempotency-Key header, so only a stub can show what is sent."""
    account = await create_account(session)
    await create_company(session, account)
    method = await create_payment_method(session, account)
    account.stripe_customer_id = "cus_stub"
    await session.flush()
    async with stub_gateway() as (gateway, stripe):
        top_up = await payments.add_funds(
            session_factory,
            SYSTEM,
            gateway,
            TOP_UP_SETTINGS,
            add_funds_request(account.id, method.id, "12.34", "k"),
        )
    assert top_up.status == "succeeded" and top_up.transaction.id is not None
    assert stripe.keys == [payments.stripe_idempotency_key(top_up.transaction.id)]
    assert await checked_balance(session, account) == 1_234
