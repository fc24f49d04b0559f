"""The auto-recharge engine: scheduling with the debit, charging once, declines, 3-D Secure, limits, crashes.

Success, declines and 3-D Secure run against localstripe through the real gateway. Where localstripe cannot
play the part, the test says so: a stub Stripe API over HTTP for Stripe-side idempotency (the crash test) and
off-session `authentication_required`; a FakeGateway for outages and the worker loop.
Time is injected (`now=`), never slept.
"""

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.auto_recharge import engine as recharge_engine
from billing.auto_recharge import reconciliation
from billing.auto_recharge.service import auto_recharge_views
from billing.db import SessionFactory, session_factory, unit_of_work
from billing.ledger import service as ledger
from billing.payment_methods import service as payment_methods
from billing.stripe_gateway import (
    ACCOUNT_ID_KEY,
    TRANSACTION_ID_KEY,
    ChargeResult,
    PaymentIntentState,
    PaymentProviderUnavailable,
    StripeGateway,
    charge_result,
)
from billing.topups import service as payments
from models import (
    Account,
    AutoRechargeSettings,
    AutoRechargeState,
    PaymentMethod,
    Recharge,
    RechargeStatus,
    Transaction,
    TransactionKind,
    TransactionStatus,
)
from models.types import utcnow
from tests.support.factories import SYSTEM, create_account, create_payment_method
from tests.support.fake_gateway import FakeGateway
from tests.support.ledger_checks import checked_balance
from tests.support.payments_helpers import DECLINED_CARD, THREE_D_SECURE_CARD, ready_account
from tests.support.stripe_server import LocalStripe, stripe_settings
from tests.support.stripe_stub import stub_gateway
from tests.support.usage_factories import ADMIN, credit, enable_auto_recharge, spend

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


async def below_threshold(
    session: AsyncSession, account: Account, card: PaymentMethod, *, at: datetime = NOW, **settings: int
) -> AutoRechargeSettings:
    """Auto-recharge on for `card` (`settings` as enable_auto_recharge takes them), and a 1.00 debit at `at` that
    takes the balance below its threshold: a recharge is due."""
    enabled = await enable_auto_recharge(session, account, card, **settings)
    await spend(session, account, "1.00", at=at)
    return enabled


async def recharges(session: AsyncSession, account: Account) -> list[Recharge]:
    statement = (
        select(Recharge)
        .where(Recharge.account_id == account.id)
        .order_by(col(Recharge.id))
        .execution_options(populate_existing=True)
    )
    return list((await session.exec(statement)).all())


async def auto_recharge_entries(session: AsyncSession, account: Account) -> list[Transaction]:
    statement = (
        select(Transaction)
        .where(Transaction.account_id == account.id, Transaction.kind == TransactionKind.AUTO_RECHARGE)
        .order_by(col(Transaction.id))
        .execution_options(populate_existing=True)
    )
    return list((await session.exec(statement)).all())


async def state_of(session: AsyncSession, account: Account, now: datetime = NOW) -> AutoRechargeState | None:
    assert account.id is not None
    return (await auto_recharge_views(session, ADMIN, [account.id], now=now))[account.id].state


async def fake_ready_account(session: AsyncSession) -> tuple[Account, PaymentMethod]:
    account = await create_account(session)
    account.stripe_customer_id = f"cus_fake_{account.id}"
    return account, await create_payment_method(session, account)


async def test_a_debit_below_the_threshold_schedules_one_recharge_and_the_worker_credits_it(
    session: AsyncSession,
    session_factory: SessionFactory,
    stripe_gateway: StripeGateway,
    localstripe: LocalStripe,
) -> None:
    account, card = await ready_account(session, stripe_gateway, localstripe)
    await enable_auto_recharge(session, account, card, threshold_minor=5_000, amount_minor=10_000)
    await credit(session, account, 6_000)
    await spend(session, account, "8.00", at=NOW)
    assert await recharges(session, account) == []  # 52.00 left: above the 50.00 threshold
    await spend(session, account, "3.00", at=NOW)
    await spend(session, account, "1.00", at=NOW)

    scheduled = await recharges(session, account)
    assert [(r.status, r.amount_minor) for r in scheduled] == [(RechargeStatus.SCHEDULED, 10_000)]
    assert await state_of(session, account) is AutoRechargeState.IN_PROGRESS

    assert await recharge_engine.run_once(session_factory, stripe_gateway, now=NOW) == 1
    assert await recharge_engine.run_once(session_factory, stripe_gateway, now=NOW) == 0
    assert [r.status for r in await recharges(session, account)] == [RechargeStatus.SUCCEEDED]
    entries = await auto_recharge_entries(session, account)
    assert [(e.status, e.amount_minor) for e in entries] == [(TransactionStatus.SUCCEEDED, 10_000)]
    assert await checked_balance(session, account) == 6_000 - 1_200 + 10_000
    assert account.stripe_customer_id is not None
    assert [c["amount"] for c in await localstripe.charges(account.stripe_customer_id)] == [10_000]
    assert await state_of(session, account) is AutoRechargeState.ACTIVE


async def test_a_decline_backs_off_an_hour_and_three_in_a_row_suspend(
    session: AsyncSession,
    session_factory: SessionFactory,
    stripe_gateway: StripeGateway,
    localstripe: LocalStripe,
) -> None:
    account, card = await ready_account(session, stripe_gateway, localstripe, number=DECLINED_CARD)
    await below_threshold(session, account, card)

    assert await recharge_engine.run_once(session_factory, stripe_gateway, now=NOW) == 1
    retry = (await recharges(session, account))[-1]
    assert retry.status == RechargeStatus.SCHEDULED and retry.run_after == NOW + timedelta(hours=1)
    # More debits in the meantime neither charge nor schedule another: one in flight, no retry storm.
    await spend(session, account, "1.00", at=NOW + timedelta(minutes=10))
    assert (
        await recharge_engine.run_once(session_factory, stripe_gateway, now=NOW + timedelta(minutes=59)) == 0
    )

    for hours in (1, 2):
        assert (
            await recharge_engine.run_once(session_factory, stripe_gateway, now=NOW + timedelta(hours=hours))
            == 1
        )
    assert await recharge_engine.run_once(session_factory, stripe_gateway, now=NOW + timedelta(hours=9)) == 0
    await spend(session, account, "1.00", at=NOW + timedelta(hours=10))

    assert [r.status for r in await recharges(session, account)] == [RechargeStatus.FAILED] * 3
    entries = await auto_recharge_entries(session, account)
    assert [e.status for e in entries] == [TransactionStatus.FAILED] * 3
    assert all(e.failure_code for e in entries)
    settings = await session.get(AutoRechargeSettings, account.id, populate_existing=True)
    assert settings is not None and settings.consecutive_failures == 3
    assert settings.suspended_reason is not None and settings.suspended_reason.startswith("3 failed attempts")
    assert await state_of(session, account) is AutoRechargeState.SUSPENDED
    assert await checked_balance(session, account) == -300


async def test_three_d_secure_moves_to_action_required_and_stops_retrying(
    session: AsyncSession,
    session_factory: SessionFactory,
    stripe_gateway: StripeGateway,
    localstripe: LocalStripe,
) -> None:
    account, card = await ready_account(session, stripe_gateway, localstripe, number=THREE_D_SECURE_CARD)
    await below_threshold(session, account, card)

    assert await recharge_engine.run_once(session_factory, stripe_gateway, now=NOW) == 1
    await spend(session, account, "1.00", at=NOW + timedelta(hours=2))
    assert await recharge_engine.run_once(session_factory, stripe_gateway, now=NOW + timedelta(hours=3)) == 0

    assert [r.status for r in await recharges(session, account)] == [RechargeStatus.ACTION_REQUIRED]
    assert account.id is not None
    view = (await auto_recharge_views(session, ADMIN, [account.id], now=NOW))[account.id]
    assert view.state is AutoRechargeState.ACTION_REQUIRED
    assert view.action_client_secret is not None and "_secret_" in view.action_client_secret
    # The pending entry waits for the customer; Stripe's webhook settles it once they authenticate.
    assert [e.status for e in await auto_recharge_entries(session, account)] == [TransactionStatus.PENDING]
    assert await checked_balance(session, account) == -200


async def test_once_the_customer_authenticates_the_recharge_is_credited_and_auto_recharge_resumes(
    session: AsyncSession,
    session_factory: SessionFactory,
    stripe_gateway: StripeGateway,
    localstripe: LocalStripe,
) -> None:
    account, card = await ready_account(session, stripe_gateway, localstripe, number=THREE_D_SECURE_CARD)
    await below_threshold(session, account, card)
    await recharge_engine.run_once(session_factory, stripe_gateway, now=NOW)
    assert account.id is not None
    secret = (await auto_recharge_views(session, ADMIN, [account.id], now=NOW))[
        account.id
    ].action_client_secret
    assert secret is not None

    await localstripe.complete_3ds(secret.split("_secret_")[0], secret)
    # Stripe's webhook would settle it; reconciliation, which takes the same path, stands in for it here.
    report = await reconciliation.reconcile(session_factory, stripe_gateway, pending_for=timedelta(0))
    again = await reconciliation.reconcile(session_factory, stripe_gateway, pending_for=timedelta(0))

    [entry] = await auto_recharge_entries(session, account)
    assert report.succeeded == [entry.id] and again.succeeded == []
    assert entry.status == TransactionStatus.SUCCEEDED
    assert [r.status for r in await recharges(session, account)] == [RechargeStatus.SUCCEEDED]
    assert await state_of(session, account) is AutoRechargeState.ACTIVE
    assert await checked_balance(session, account) == -100 + entry.amount_minor


async def test_the_monthly_limit_is_never_exceeded(
    session: AsyncSession,
    session_factory: SessionFactory,
    stripe_gateway: StripeGateway,
    localstripe: LocalStripe,
) -> None:
    account, card = await ready_account(session, stripe_gateway, localstripe)
    # Each recharge of 10.00 still leaves the balance under the 500.00 threshold, so every debit wants one.
    await enable_auto_recharge(session, account, card, threshold_minor=50_000, monthly_limit_minor=25_000)
    for day in range(4):
        at = NOW + timedelta(days=day)
        await spend(session, account, "1.00", at=at)
        await recharge_engine.run_once(session_factory, stripe_gateway, now=at)

    assert [r.status for r in await recharges(session, account)] == [RechargeStatus.SUCCEEDED] * 2
    assert account.id is not None
    view = (await auto_recharge_views(session, ADMIN, [account.id], now=NOW + timedelta(days=4)))[account.id]
    assert view.state is AutoRechargeState.MONTHLY_LIMIT_REACHED
    assert view.recharged_this_month_minor == 20_000

    next_month = datetime(2026, 4, 1, 0, 30, tzinfo=UTC)
    await spend(session, account, "1.00", at=next_month)
    assert await recharge_engine.run_once(session_factory, stripe_gateway, now=next_month) == 1
    assert [r.status for r in await recharges(session, account)] == [RechargeStatus.SUCCEEDED] * 3
    assert await checked_balance(session, account) == 30_000 - 500


async def killed(*args: Any, **kwargs: Any) -> None:
    raise SystemExit("worker killed between Stripe's answer and the ledger credit")


async def payment_intents_of(localstripe: LocalStripe, customer_id: str | None) -> list[dict[str, Any]]:
    """Every PaymentIntent localstripe holds for the customer: a second charge is a second one, since
    localstripe ignores idempotency keys (its list takes no customer filter, so this pages through all)."""
    found: list[dict[str, Any]] = []
    after = ""
    while True:
        page = await localstripe.retrieve(f"/v1/payment_intents?limit=100{after}")
        found += [intent for intent in page["data"] if intent["customer"] == customer_id]
        if not page["has_more"]:
            return found
        after = f"&starting_after={page['data'][-1]['id']}"


async def webhook_applies(factory: SessionFactory, intent: dict[str, Any]) -> None:
    """What a `payment_intent.*` webhook applies once it has found and confirmed the entry the PaymentIntent
    pays for (billing.stripe_webhooks.service; its verification has tests of its own)."""
    async with unit_of_work(factory) as session:
        await payments.apply_charge_result(
            session,
            SYSTEM,
            int(intent["metadata"][TRANSACTION_ID_KEY]),
            charge_result(intent, off_session=False),
        )


async def test_a_worker_killed_after_stripe_charged_is_settled_from_that_payment_not_charged_again(
    session: AsyncSession,
    session_factory: SessionFactory,
    stripe_gateway: StripeGateway,
    localstripe: LocalStripe,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    account, card = await ready_account(session, stripe_gateway, localstripe)
    await below_threshold(session, account, card)
    monkeypatch.setattr(recharge_engine, "_finish", killed)
    with pytest.raises(SystemExit):
        await recharge_engine.run_once(session_factory, stripe_gateway, now=NOW)
    monkeypatch.undo()
    [held] = await recharges(session, account)
    assert held.status == RechargeStatus.PROCESSING
    # The dead worker holds it for one short lease, not for minutes.
    assert held.locked_until == NOW + recharge_engine.DEFAULT_LEASE == NOW + timedelta(seconds=30)

    lease_ends = NOW + recharge_engine.DEFAULT_LEASE
    assert (
        await recharge_engine.run_once(session_factory, stripe_gateway, now=lease_ends - timedelta(seconds=1))
        == 0
    )
    assert await recharge_engine.run_once(session_factory, stripe_gateway, now=lease_ends) == 1

    [intent] = await payment_intents_of(localstripe, account.stripe_customer_id)
    assert (intent["status"], intent["amount"]) == ("succeeded", 10_000)
    [done] = await recharges(session, account)
    assert done.status == RechargeStatus.SUCCEEDED and done.attempts == 2
    [entry] = await auto_recharge_entries(session, account)
    assert (entry.status, entry.stripe_payment_intent_id) == (TransactionStatus.SUCCEEDED, intent["id"])
    assert await checked_balance(session, account) == 10_000 - 100


async def test_a_recharge_the_webhook_settled_counts_this_month_and_is_not_canceled_when_the_card_goes(
    session: AsyncSession,
    session_factory: SessionFactory,
    stripe_gateway: StripeGateway,
    localstripe: LocalStripe,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The knock-on of a worker whose last write failed: the webhook credited 50.00, the card was then removed,
    and the recharge must stay succeeded and counted, not canceled with `rechargedThisMonth` at 0.00."""
    now = utcnow()  # the webhook settles at the real time, so the month is the real one
    account, card = await ready_account(session, stripe_gateway, localstripe)
    await below_threshold(session, account, card, amount_minor=5_000, monthly_limit_minor=5_000, at=now)
    monkeypatch.setattr(recharge_engine, "_finish", killed)
    with pytest.raises(SystemExit):
        await recharge_engine.run_once(session_factory, stripe_gateway, now=now)
    monkeypatch.undo()
    [intent] = await payment_intents_of(localstripe, account.stripe_customer_id)

    await webhook_applies(session_factory, intent)
    [settled] = await recharges(session, account)
    assert settled.status == RechargeStatus.SUCCEEDED  # at once, while the dead worker's lease still runs
    await payment_methods.sync_detached(session, SYSTEM, card.stripe_payment_method_id)
    lease_ends = now + recharge_engine.DEFAULT_LEASE
    assert await recharge_engine.run_once(session_factory, stripe_gateway, now=lease_ends) == 0

    assert [r.status for r in await recharges(session, account)] == [RechargeStatus.SUCCEEDED]
    assert account.id is not None
    view = (await auto_recharge_views(session, ADMIN, [account.id], now=now))[account.id]
    assert view.recharged_this_month_minor == 5_000
    assert view.state is AutoRechargeState.MONTHLY_LIMIT_REACHED
    assert len(await payment_intents_of(localstripe, account.stripe_customer_id)) == 1
    assert await checked_balance(session, account) == 5_000 - 100


async def test_a_recharge_whose_card_went_before_anything_reached_stripe_is_canceled_not_failed(
    session: AsyncSession,
    session_factory: SessionFactory,
    stripe_gateway: StripeGateway,
    localstripe: LocalStripe,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    account, card = await ready_account(session, stripe_gateway, localstripe)
    await below_threshold(session, account, card)
    monkeypatch.setattr(recharge_engine, "_outcome_at_stripe", killed)  # dies before calling Stripe
    with pytest.raises(SystemExit):
        await recharge_engine.run_once(session_factory, stripe_gateway, now=NOW)
    monkeypatch.undo()
    await payment_methods.sync_detached(session, SYSTEM, card.stripe_payment_method_id)

    assert (
        await recharge_engine.run_once(session_factory, stripe_gateway, now=NOW + timedelta(minutes=1)) == 1
    )

    [recharge] = await recharges(session, account)
    assert recharge.status == RechargeStatus.CANCELED
    assert recharge.outcome_message == "the card was removed while the recharge ran"
    [entry] = await auto_recharge_entries(session, account)
    assert (entry.status, entry.failure_code) == (TransactionStatus.FAILED, reconciliation.NOT_CHARGED_CODE)
    settings = await session.get(AutoRechargeSettings, account.id, populate_existing=True)
    assert settings is not None and settings.consecutive_failures == 0  # nobody declined anything
    assert await payment_intents_of(localstripe, account.stripe_customer_id) == []


async def test_a_canceled_recharge_whose_charge_lands_late_is_credited_once_and_counted(
    session: AsyncSession,
    session_factory: SessionFactory,
    stripe_gateway: StripeGateway,
    localstripe: LocalStripe,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The recharge was called off as not charged (card gone, nothing at Stripe); then the dead worker's charge
    lands after all. Reconciliation credits it once and the recharge counts towards the monthly limit."""
    account, card = await ready_account(session, stripe_gateway, localstripe)
    await below_threshold(session, account, card)
    monkeypatch.setattr(recharge_engine, "_outcome_at_stripe", killed)
    with pytest.raises(SystemExit):
        await recharge_engine.run_once(session_factory, stripe_gateway, now=NOW)
    monkeypatch.undo()
    stripe_card = card.stripe_payment_method_id
    await payment_methods.sync_detached(session, SYSTEM, stripe_card)
    assert (
        await recharge_engine.run_once(session_factory, stripe_gateway, now=NOW + timedelta(minutes=1)) == 1
    )
    [entry] = await auto_recharge_entries(session, account)
    [recharge] = await recharges(session, account)
    assert entry.status == TransactionStatus.FAILED and recharge.status == RechargeStatus.CANCELED
    assert account.id is not None and account.stripe_customer_id is not None
    await stripe_gateway.charge(
        customer_id=account.stripe_customer_id,
        payment_method=stripe_card,
        amount_minor=entry.amount_minor,
        currency=entry.currency,
        idempotency_key=f"recharge:{recharge.id}",
        off_session=True,
        description="Auto-recharge",
        metadata={TRANSACTION_ID_KEY: str(entry.id), ACCOUNT_ID_KEY: str(account.id)},
    )

    reports = [
        await reconciliation.reconcile(session_factory, stripe_gateway, pending_for=timedelta(0), now=NOW)
        for _ in range(2)
    ]

    assert [r.paid_late for r in reports] == [[entry.id], []]
    [recharge] = await recharges(session, account)
    assert (recharge.status, recharge.outcome_message) == (
        RechargeStatus.SUCCEEDED,
        "The card was charged after the attempt was recorded as canceled.",
    )
    view = (await auto_recharge_views(session, ADMIN, [account.id], now=NOW))[account.id]
    assert view.recharged_this_month_minor == 10_000
    late = (
        await session.exec(
            select(Transaction).where(
                Transaction.account_id == account.id, Transaction.kind == TransactionKind.ADJUSTMENT
            )
        )
    ).all()
    assert [(t.amount_minor, t.description) for t in late] == [
        (10_000, "Auto-recharge (paid after first failing)")
    ]
    assert await checked_balance(session, account) == 10_000 - 100


async def test_off_session_authentication_required_waits_for_the_customer(
    session: AsyncSession, session_factory: SessionFactory
) -> None:
    """Stub Stripe over HTTP: localstripe answers requires_action where Stripe fails off-session charges with
    `authentication_required`."""
    account, card = await fake_ready_account(session)
    await below_threshold(session, account, card)
    async with stub_gateway("authentication_required") as (gateway, stripe):
        assert await recharge_engine.run_once(session_factory, gateway, now=NOW) == 1
        await spend(session, account, "1.00", at=NOW + timedelta(hours=2))
        assert await recharge_engine.run_once(session_factory, gateway, now=NOW + timedelta(hours=3)) == 0

    assert stripe.charges == 1
    assert [r.status for r in await recharges(session, account)] == [RechargeStatus.ACTION_REQUIRED]
    assert account.id is not None
    view = (await auto_recharge_views(session, ADMIN, [account.id], now=NOW))[account.id]
    assert view.state is AutoRechargeState.ACTION_REQUIRED
    assert view.action_client_secret == "pi_stub_1_secret_stub"
    assert [e.status for e in await auto_recharge_entries(session, account)] == [TransactionStatus.PENDING]


async def test_an_outage_keeps_the_recharge_and_retries_with_the_same_key(
    session: AsyncSession, session_factory: SessionFactory
) -> None:
    """FakeGateway: an unreachable Stripe cannot be staged with localstripe running."""
    account, card = await fake_ready_account(session)
    await below_threshold(session, account, card)
    gateway = FakeGateway(PaymentProviderUnavailable())

    assert await recharge_engine.run_once(session_factory, gateway, now=NOW) == 1
    [waiting] = await recharges(session, account)
    assert waiting.status == RechargeStatus.SCHEDULED
    assert waiting.run_after == NOW + recharge_engine.UNAVAILABLE_RETRY
    settings = await session.get(AutoRechargeSettings, account.id, populate_existing=True)
    assert settings is not None and settings.consecutive_failures == 0  # an outage is not a decline

    gateway.outcome = FakeGateway().outcome
    assert await recharge_engine.run_once(session_factory, gateway, now=NOW + timedelta(minutes=2)) == 1
    assert gateway.calls == [f"recharge:{waiting.id}"] * 2 and gateway.charges == 1
    assert await checked_balance(session, account) == 10_000 - 100


async def test_a_decline_whose_webhook_came_first_is_counted_once_and_still_retried(
    session: AsyncSession, session_factory: SessionFactory
) -> None:
    """FakeGateway: the decline's webhook is applied from inside the charge, before the worker hears back."""
    account, card = await fake_ready_account(session)
    await below_threshold(session, account, card)

    class WebhookFirst(FakeGateway):
        async def charge(self, **kwargs: Any) -> ChargeResult:
            result = await super().charge(**kwargs)
            async with unit_of_work(session_factory) as webhook_session:
                entry_id = int(kwargs["metadata"][TRANSACTION_ID_KEY])
                await payments.apply_charge_result(webhook_session, SYSTEM, entry_id, result, now=NOW)
            return result

    declined = ChargeResult("declined", None, None, "insufficient_funds", "Your card has insufficient funds.")
    assert await recharge_engine.run_once(session_factory, WebhookFirst(declined), now=NOW) == 1

    failed, retry = await recharges(session, account)
    assert (failed.status, failed.outcome_message) == (
        RechargeStatus.FAILED,
        "Your card has insufficient funds.",
    )
    assert (retry.status, retry.run_after) == (RechargeStatus.SCHEDULED, NOW + recharge_engine.RETRY_BACKOFF)
    settings = await session.get(AutoRechargeSettings, account.id, populate_existing=True)
    assert settings is not None and settings.consecutive_failures == 1


async def test_a_recharge_no_longer_needed_is_canceled_without_charging(
    session: AsyncSession, session_factory: SessionFactory
) -> None:
    """FakeGateway: nothing may reach Stripe here, which the fake records."""
    account, card = await fake_ready_account(session)
    settings = await below_threshold(session, account, card)
    settings.enabled = False
    await session.flush()
    gateway = FakeGateway()

    assert await recharge_engine.run_once(session_factory, gateway, now=NOW) == 1
    assert [r.status for r in await recharges(session, account)] == [RechargeStatus.CANCELED]
    assert gateway.calls == [] and await auto_recharge_entries(session, account) == []


async def test_the_worker_loop_charges_due_recharges_until_stopped(
    session: AsyncSession, session_factory: SessionFactory, localstripe_url: str, localstripe: LocalStripe
) -> None:
    """The gateway stops the loop from inside the charge, so the test needs no sleeps."""
    stop = asyncio.Event()

    class StopsAfterCharging(StripeGateway):
        async def charge(self, **kwargs: Any) -> ChargeResult:
            stop.set()
            return await super().charge(**kwargs)

    settings = stripe_settings(localstripe_url, worker_poll_seconds=0.01)
    gateway = StopsAfterCharging.from_settings(settings)
    account, card = await ready_account(session, gateway, localstripe)
    await below_threshold(session, account, card, at=utcnow())

    await asyncio.wait_for(
        recharge_engine.run_worker(session_factory, gateway, stop_event=stop, settings=settings), timeout=30
    )
    assert len(await payment_intents_of(localstripe, account.stripe_customer_id)) == 1
    assert [r.status for r in await recharges(session, account)] == [RechargeStatus.SUCCEEDED]


async def test_the_worker_loop_reconciles_a_top_up_left_pending_without_cron(
    session: AsyncSession, session_factory: SessionFactory, localstripe_url: str, localstripe: LocalStripe
) -> None:
    """A gateway died between Stripe's charge and recording it; the worker (embedded or `cli worker`) heals it
    by itself. The gateway stops the loop once reconciliation looked the payment up."""
    stop = asyncio.Event()

    class StopsAfterLookingUp(StripeGateway):
        async def find_payment_intent(self, **kwargs: Any) -> PaymentIntentState | None:
            try:
                return await super().find_payment_intent(**kwargs)
            finally:
                stop.set()

    settings = stripe_settings(localstripe_url, worker_poll_seconds=0.01, reconcile_pending_seconds=0)
    gateway = StopsAfterLookingUp.from_settings(settings)
    account, card = await ready_account(session, gateway, localstripe)
    assert account.id is not None and account.stripe_customer_id is not None
    entry = (
        await ledger.post(
            session,
            SYSTEM,
            account_id=account.id,
            kind=TransactionKind.TOP_UP,
            amount_minor=2_500,
            description="Top-up",
            idempotency_key="top-up:crashed",
            status=TransactionStatus.PENDING,
            payment_method_id=card.id,
        )
    ).transaction
    await gateway.charge(
        customer_id=account.stripe_customer_id,
        payment_method=card.stripe_payment_method_id,
        amount_minor=2_500,
        currency=account.currency,
        idempotency_key=f"top-up-{entry.id}",
        off_session=False,
        description="Top-up",
        metadata={TRANSACTION_ID_KEY: str(entry.id), ACCOUNT_ID_KEY: str(account.id)},
    )

    await asyncio.wait_for(
        recharge_engine.run_worker(session_factory, gateway, stop_event=stop, settings=settings), timeout=30
    )
    await session.refresh(entry)
    assert entry.status == TransactionStatus.SUCCEEDED
    assert await checked_balance(session, account) == 2_500


class HeldCharge(FakeGateway):
    """The charge waits until the worker's heartbeat renewed its lease, then until released."""

    def __init__(self) -> None:
        super().__init__()
        self.charging = asyncio.Event()
        self.release = asyncio.Event()

    async def charge(self, **kwargs: Any) -> ChargeResult:
        self.charging.set()
        await self.release.wait()
        return await super().charge(**kwargs)


async def due_recharge(factory: SessionFactory) -> Account:
    async with unit_of_work(factory) as session:
        account, card = await fake_ready_account(session)
        await enable_auto_recharge(session, account, card)
        # Its balance 0 is low.
        await recharge_engine.schedule_if_low(session, SYSTEM, [account], now=utcnow())
    return account


@pytest.fixture
def heartbeats(monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """Set each time a worker renewed its leases."""
    renewed = asyncio.Event()
    renew = recharge_engine._renew

    async def renew_and_tell(*args: Any, **kwargs: Any) -> None:
        await renew(*args, **kwargs)
        renewed.set()

    monkeypatch.setattr(recharge_engine, "_renew", renew_and_tell)
    return renewed


@pytest.mark.postgres_only
async def test_a_long_charge_keeps_its_lease_by_heartbeat(
    committing_engine: AsyncEngine, heartbeats: asyncio.Event
) -> None:
    factory = session_factory(committing_engine)
    account = await due_recharge(factory)
    gateway = HeldCharge()
    start = utcnow()
    worker = asyncio.create_task(
        recharge_engine.run_once(factory, gateway, now=start, heartbeat=timedelta(milliseconds=10))
    )
    await gateway.charging.wait()
    heartbeats.clear()
    await asyncio.wait_for(heartbeats.wait(), timeout=30)

    # The lease first granted has run out, but the heartbeat renewed it: nobody else takes the recharge.
    assert (
        await recharge_engine.run_once(factory, FakeGateway(), now=start + recharge_engine.DEFAULT_LEASE) == 0
    )
    gateway.release.set()
    assert await worker == 1
    assert gateway.charges == 1
    async with unit_of_work(factory) as session:
        assert [r.status for r in await recharges(session, account)] == [RechargeStatus.SUCCEEDED]


@pytest.mark.postgres_only
async def test_a_worker_that_dies_mid_charge_holds_the_recharge_one_lease_at_most(
    committing_engine: AsyncEngine, heartbeats: asyncio.Event
) -> None:
    factory = session_factory(committing_engine)
    account = await due_recharge(factory)
    gateway = HeldCharge()
    worker = asyncio.create_task(
        recharge_engine.run_once(factory, gateway, heartbeat=timedelta(milliseconds=10))
    )
    await gateway.charging.wait()
    heartbeats.clear()
    await asyncio.wait_for(heartbeats.wait(), timeout=30)
    worker.cancel()  # killed mid-charge: its heartbeat dies with it
    with pytest.raises(asyncio.CancelledError):
        await worker
    async with unit_of_work(factory) as session:
        [held] = await recharges(session, account)
    assert held.status == RechargeStatus.PROCESSING and held.locked_until is not None
    assert held.locked_until <= utcnow() + recharge_engine.DEFAULT_LEASE

    # Once it ran out, the next worker asks Stripe (nothing was charged) and charges, once.
    successor = FakeGateway()
    assert await recharge_engine.run_once(factory, successor, now=held.locked_until) == 1
    assert successor.charges == 1 and gateway.charges == 0
    async with unit_of_work(factory) as session:
        [done] = await recharges(session, account)
        assert (done.status, done.attempts) == (RechargeStatus.SUCCEEDED, 2)
        assert await checked_balance(session, account) == 10_000
